import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../harness/stack.ts';

// The alert rules are checked by Prometheus's own tool (issue 13): `promtool check rules` parses every
// expression and template, and `promtool test rules` runs deploy/monitoring/alerts.test.yaml, which
// feeds series that must and must not make each tested alert fire. scripts/setup.sh extracts promtool
// from Debian's prometheus package into .tools/promtool.
const MONITORING = join(ROOT, 'deploy', 'monitoring');
const PROMTOOL = existsSync(join(ROOT, '.tools', 'promtool', 'promtool'))
  ? join(ROOT, '.tools', 'promtool', 'promtool')
  : 'promtool';

function promtool(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, output: r.stdout + r.stderr };
}

describe('deploy/monitoring: alert rules checked and unit-tested with promtool', function () {
  this.timeout(60_000);

  it('promtool check rules accepts every rule of alerts.yaml', () => {
    const doc = parseYaml(readFileSync(join(MONITORING, 'alerts.yaml'), 'utf8')) as {
      groups: { rules: unknown[] }[];
    };
    const count = doc.groups.reduce((n, g) => n + g.rules.length, 0);
    const r = promtool('check', 'rules', join(MONITORING, 'alerts.yaml'));
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${count} rules found`));
  });

  it('promtool test rules: each tested alert fires on its series and stays quiet on the others', () => {
    const r = promtool('test', 'rules', join(MONITORING, 'alerts.test.yaml'));
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  it('the unit tests catch a broken rule (a threshold that never fires) and a broken expression', () => {
    const dir = mkdtempSync(join(tmpdir(), 'extsvc-promtool-'));
    try {
      copyFileSync(join(MONITORING, 'alerts.test.yaml'), join(dir, 'alerts.test.yaml'));
      const rules = readFileSync(join(MONITORING, 'alerts.yaml'), 'utf8');
      const weakened = rules.replace(
        'sum by (instance) (rate(ratelimit_redis_errors[5m])) > 0',
        'sum by (instance) (rate(ratelimit_redis_errors[5m])) > 1000',
      );
      assert.notEqual(weakened, rules, 'the rule under mutation is still in alerts.yaml');
      writeFileSync(join(dir, 'alerts.yaml'), weakened);
      const r = promtool('test', 'rules', join(dir, 'alerts.test.yaml'));
      assert.notEqual(r.status, 0, r.output);
      assert.match(r.output, /RatelimitRedisErrors/);

      writeFileSync(
        join(dir, 'alerts.yaml'),
        rules.replace('rate(ratelimit_redis_errors[5m])', 'rate(ratelimit_redis_errors[5m]'),
      );
      const c = promtool('check', 'rules', join(dir, 'alerts.yaml'));
      assert.notEqual(c.status, 0, c.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
