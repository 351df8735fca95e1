import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ROOT, Stack, type ServiceName } from '../harness/stack.ts';
import { hmacToken, SECRETS, startAcme, startAuthz, startRatelimit, type AuthzFixture } from './fixtures.ts';
import { balanced, exportedMetricNames, promqlMetricNames } from './promql.ts';

const MONITORING = join(ROOT, 'deploy', 'monitoring');
const SERVICES: readonly ServiceName[] = ['authz', 'ratelimit', 'acme'];

interface Panel {
  type: string;
  title?: string;
  id?: number;
  gridPos?: unknown;
  datasource?: unknown;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating?: { list: Array<{ name: string; type: string; query?: string | { query?: string } }> };
}
interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const dashboard = (svc: ServiceName): Dashboard =>
  JSON.parse(readFileSync(join(MONITORING, `${svc}.json`), 'utf8')) as Dashboard;
const alertRules = (): AlertRule[] =>
  (
    parseYaml(readFileSync(join(MONITORING, 'alerts.yaml'), 'utf8')) as {
      groups: Array<{ rules: AlertRule[] }>;
    }
  ).groups.flatMap((g) => g.rules);

function panelsOf(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (ps: readonly Panel[]): void => {
    for (const p of ps) {
      out.push(p);
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

/** Every PromQL expression of a dashboard: panel targets and `label_values(metric...)` variable queries. */
function dashboardExprs(d: Dashboard): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of panelsOf(d))
    for (const t of p.targets ?? [])
      if (t.expr) out.push({ where: `panel "${p.title ?? p.id}"`, expr: t.expr });
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = q ? /label_values\(\s*([^,)]+)/.exec(q) : null;
    if (m?.[1]) out.push({ where: `variable ${v.name}`, expr: m[1] });
  }
  return out;
}

describe('deploy/monitoring: dashboards and alerts use the metrics the services export', function () {
  this.timeout(90_000);
  const stack = new Stack('diag-monitoring').install();
  const exported = new Map<ServiceName, Set<string>>();
  const exposition = new Map<ServiceName, string>();
  let authz: AuthzFixture | undefined;

  before(async function () {
    this.timeout(90_000);
    const [a, rl, acme] = await Promise.all([startAuthz(stack), startRatelimit(stack), startAcme(stack)]);
    authz = a;
    // Traffic so that labelled series exist beside the # HELP/# TYPE lines.
    await a.check('/public/x');
    await a.check('/api/x', { authorization: `Bearer ${await hmacToken()}` });
    await a.check('/partner/x', { 'x-api-key': SECRETS.apiKey });
    await a.check('/nowhere');
    await rl.hit('diag', [['key2', 'm']]);
    await rl.hit('nodomain', [['key2', 'm']]);
    for (const [name, svc] of [
      ['authz', a.svc],
      ['ratelimit', rl.svc],
      ['acme', acme.svc],
    ] as const) {
      const text = await svc.metrics();
      exposition.set(name, text);
      exported.set(name, exportedMetricNames(text));
    }
  });
  after(() => authz?.issuer.stop());

  it('reads metric names out of PromQL, and nothing else', () => {
    assert.deepEqual(
      promqlMetricNames(
        'histogram_quantile(0.99, sum by (le, instance) (rate(x_seconds_bucket{service="a", le!="+Inf"}[$__rate_interval]))) > 0.25',
      ),
      ['x_seconds_bucket'],
    );
    assert.deepEqual(
      promqlMetricNames(
        'sum without (pod) (rate(a_total{r="deny"}[5m] offset 1d)) / on(instance) group_left(version) b_info unless c > 1e-3 and bool 14 * 86400 - time()',
      ).sort(),
      ['a_total', 'b_info', 'c'],
    );
    assert.deepEqual(promqlMetricNames('min(acme_x{t="false"} - time()) or vector(0)'), ['acme_x']);
    const names = exportedMetricNames('# HELP h x\n# TYPE h histogram\n# TYPE c counter\nc 1\n');
    assert.deepEqual([...names].sort(), ['c', 'h', 'h_bucket', 'h_count', 'h_sum']);
  });

  it('every service exports its own metrics (the lists compared below are not empty)', () => {
    for (const svc of SERVICES) {
      const own = [...(exported.get(svc) ?? [])].filter((n) => n.startsWith(`${svc}_`));
      assert.ok(own.length >= 5, `${svc} exports only ${own.join(', ')}`);
      assert.ok(exported.get(svc)?.has('process_cpu_seconds_total'), `${svc}: no process metrics`);
    }
    // Labelled series exist after the traffic above.
    assert.match(exposition.get('authz') ?? '', /^authz_check_total\{[^}]*result="deny"/m);
    assert.match(exposition.get('ratelimit') ?? '', /^ratelimit_should_rate_limit_total\{/m);
    assert.match(exposition.get('acme') ?? '', /^acme_certificate_not_after_timestamp_seconds\{/m);
  });

  for (const svc of SERVICES) {
    it(`${svc}.json refers only to metrics ${svc} exports, and shows every ${svc}_* metric`, () => {
      const d = dashboard(svc);
      const have = exported.get(svc) ?? new Set<string>();
      const exprs = dashboardExprs(d);
      assert.ok(exprs.length >= 10, `only ${exprs.length} expressions`);
      const used = new Set<string>();
      const missing: string[] = [];
      for (const { where, expr } of exprs) {
        assert.ok(balanced(expr), `${where}: unbalanced expression ${expr}`);
        const names = promqlMetricNames(expr);
        assert.ok(names.length > 0, `${where}: no metric in ${expr}`);
        for (const n of names) {
          used.add(n.replace(/_(bucket|sum|count)$/, ''));
          used.add(n);
          if (!have.has(n)) missing.push(`${where}: ${n}`);
        }
      }
      assert.deepEqual(missing, [], `not exported by ${svc}:\n${missing.join('\n')}`);
      const unshown = [...have].filter(
        (n) => n.startsWith(`${svc}_`) && !/_(bucket|sum|count)$/.test(n) && !used.has(n),
      );
      assert.deepEqual(unshown, [], `${svc} metrics without a panel: ${unshown.join(', ')}`);
    });
  }

  it('dashboards are importable: unique uids and panel ids, a grid position and data source per panel', () => {
    const uids = new Set<string>();
    for (const svc of SERVICES) {
      const d = dashboard(svc);
      assert.ok(!uids.has(d.uid), `duplicate uid ${d.uid}`);
      uids.add(d.uid);
      const ids = new Set<number>();
      for (const p of panelsOf(d)) {
        assert.ok(typeof p.id === 'number' && !ids.has(p.id), `${svc}: panel id ${p.id}`);
        ids.add(p.id);
        assert.ok(p.gridPos, `${svc}: panel ${p.title} has no gridPos`);
        if (p.type !== 'row') assert.ok(p.datasource, `${svc}: panel ${p.title} has no datasource`);
      }
      assert.ok(
        d.templating?.list.some((v) => v.type === 'datasource'),
        `${svc}: no datasource variable`,
      );
    }
  });

  it('alerts.yaml refers only to metrics exported by the service each rule names', () => {
    const rules = alertRules();
    assert.ok(rules.length >= 10);
    const problems: string[] = [];
    for (const r of rules) {
      const svc = r.labels?.['service'] as ServiceName | undefined;
      if (!svc || !SERVICES.includes(svc)) {
        problems.push(`${r.alert}: labels.service must name one of ${SERVICES.join(', ')}`);
        continue;
      }
      if (!r.alert || !r.labels?.['severity'] || !r.annotations?.['summary'])
        problems.push(`${r.alert ?? r.expr}: alert, labels.severity and annotations.summary are required`);
      if (!balanced(r.expr)) problems.push(`${r.alert}: unbalanced expression`);
      const names = promqlMetricNames(r.expr);
      if (names.length === 0) problems.push(`${r.alert}: no metric`);
      for (const n of names)
        if (!exported.get(svc)?.has(n)) problems.push(`${r.alert}: ${n} not exported by ${svc}`);
    }
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('alerts cover expiring certificates, failing renewals, Redis errors, authz errors and deny spikes, reload failures', () => {
    const rules = alertRules();
    const find = (what: string, pred: (r: AlertRule) => boolean): void =>
      assert.ok(rules.some(pred), `no alert for ${what}`);
    find(
      'a certificate expiring within 14 days',
      (r) => /acme_certificate_not_after_timestamp_seconds/.test(r.expr) && /14 \* 86400/.test(r.expr),
    );
    find('a failing renewal', (r) => /acme_certificate_renewal_timestamp_seconds/.test(r.expr));
    find('failing orders', (r) => /acme_orders_total\{result=~"failed/.test(r.expr));
    find('Redis errors', (r) => /ratelimit_redis_errors/.test(r.expr));
    find('authz errors', (r) => /authz_check_total\{result="error"\}/.test(r.expr));
    find('a deny-rate spike', (r) => /authz_check_total\{result="deny"\}\[5m\][\s\S]*\[6h\]/.test(r.expr));
    find('authz policy reload failures', (r) => /authz_policy_reload_ok/.test(r.expr));
    find('ratelimit config reload failures', (r) =>
      /ratelimit_service_config_load_total\{result="error"\}/.test(r.expr),
    );
    find('acme Hosts reload failures', (r) => /acme_hosts_reloads_total\{result="error"\}/.test(r.expr));
  });
});
