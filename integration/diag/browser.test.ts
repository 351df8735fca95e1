import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchBrowser } from '../harness/browser.ts';
import { waitUntil } from '../harness/proc.ts';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import {
  adminUrl,
  hmacToken,
  SECRETS,
  startAcme,
  startAuthz,
  startRatelimit,
  type AcmeFixture,
  type AuthzFixture,
  type RatelimitFixture,
} from './fixtures.ts';

type Browser = Awaited<ReturnType<typeof launchBrowser>>;

/** Rows of a table section (section id: the title, kebab-cased), each keyed by column header. */
async function rows(page: Page, section: string): Promise<Array<Record<string, string>>> {
  const [head, body] = await page.evaluate<[string[], string[][]]>(
    `[Array.from(document.querySelectorAll('#${section} thead th')).map((th) => th.textContent.trim()),
      Array.from(document.querySelectorAll('#${section} tbody tr')).map((tr) => Array.from(tr.cells).map((td) => td.textContent.trim()))]`,
  );
  return body.map((cells) => Object.fromEntries(head.map((h, i) => [h, cells[i] ?? ''])));
}

/** Picks columns of a row, in order. */
const pick = (row: Record<string, string> | undefined, ...cols: string[]): string[] =>
  cols.map((c) => row?.[c] ?? '(none)');

/** Key/value entries of a kv section. */
async function entries(page: Page, section: string): Promise<Map<string, string>> {
  const pairs = await page.evaluate<Array<[string, string]>>(
    `Array.from(document.querySelectorAll('#${section} dt')).map((dt) => [dt.textContent.trim(), dt.nextElementSibling.textContent.trim()])`,
  );
  return new Map(pairs);
}

/** Submits a form of the page and returns its answer (status and JSON) once shown. */
async function submit(page: Page, form: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const result = page.locator(`#${form} .result`);
  await page.evaluate(`document.querySelector('#${form} .result').textContent = ''`);
  await page.click(`#${form} button[type=submit]`);
  await page.locator(`#${form} .result`, { hasText: /^HTTP \d+/ }).waitFor({ timeout: 10_000 });
  const text = (await result.textContent()) ?? '';
  const m = /^HTTP (\d+)\n([\s\S]*)$/.exec(text);
  assert.ok(m, `unexpected form answer: ${text}`);
  return { status: Number(m[1]), json: JSON.parse(m[2] ?? '{}') as Record<string, unknown> };
}

async function diagJson(
  svc: ServiceHandle,
): Promise<{ sections: Array<{ title: string; rows?: unknown[][]; entries?: unknown[][] }> }> {
  return JSON.parse((await svc.admin('/diag.json')).body) as {
    sections: Array<{ title: string; rows?: unknown[][]; entries?: unknown[][] }>;
  };
}

/** Wide tables scroll inside their section; the page itself never gets wider than the phone. */
async function assertFitsPhone(page: Page): Promise<void> {
  const width = await page.evaluate<number>('document.documentElement.scrollWidth');
  assert.ok(width <= 390, `page wider than the phone: ${width}`);
}

async function open(browser: Browser, svc: ServiceHandle, phone = false): Promise<Page> {
  const page = await browser.browser.newPage({
    viewport: phone ? { width: 390, height: 844 } : { width: 1400, height: 900 },
  });
  const res = await page.goto(adminUrl(svc, '/diag'));
  assert.equal(res?.status(), 200);
  assert.equal(await page.locator('h1').textContent(), svc.name);
  assert.equal(await page.locator('#readiness').textContent(), 'ready');
  if (phone) await assertFitsPhone(page);
  return page;
}

async function shot(browser: Browser, page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(browser.screenshotDir, `${name}.png`), fullPage: true });
}

describe('diagnostics pages in headless Chromium', function () {
  this.timeout(120_000);
  const stack = new Stack('diag-browser').install();
  let browser: Browser;
  let authz: AuthzFixture;
  let rl: RatelimitFixture;
  let acme: AcmeFixture;

  before(async function () {
    this.timeout(90_000);
    [authz, rl, acme, browser] = await Promise.all([
      startAuthz(stack),
      startRatelimit(stack),
      startAcme(stack),
      launchBrowser(),
    ]);
  });
  after(async () => {
    await browser?.close();
    await authz?.issuer.stop();
  });

  describe('authz', () => {
    before(async () => {
      assert.equal(await authz.check('/public/page'), 200);
      assert.equal(await authz.check('/old/thing', {}, 'DELETE'), 410);
      assert.equal(await authz.check('/partner/x', { 'x-api-key': SECRETS.apiKey }), 200);
      assert.equal(await authz.check('/api/none'), 401);
    });

    it('shows the rules in order, the providers with their keys, and the recent decisions', async () => {
      const page = await open(browser, authz.svc);
      const config = JSON.parse((await authz.svc.admin('/config')).body) as {
        policy: { rules: string[] };
        keys: Record<string, { keys: number }>;
      };
      const rules = await rows(page, 'rules');
      assert.deepEqual(
        rules.map((r) => r['rule']),
        config.policy.rules,
      );
      assert.deepEqual(pick(rules[3], '#', 'path', 'methods', 'requires'), ['4', '/old*', 'any', 'deny 410']);
      assert.deepEqual(pick(rules[2], 'requires'), ['jwt(hmac,remote,down)']);
      const providers = new Map((await rows(page, 'providers')).map((r) => [r['provider'], r]));
      const remote = providers.get('remote');
      assert.deepEqual(pick(remote, 'issuer', 'state', 'keys', 'audiences'), [
        authz.issuer.url,
        'loaded',
        String(config.keys['remote']?.keys),
        'api',
      ]);
      // Key ids show once the key store reports them (kids in KeyStore.status()).
      if (remote?.['key ids']) assert.equal(remote['key ids'], authz.issuer.kid);
      assert.equal(providers.get('down')?.['state'], 'error');
      assert.match(providers.get('down')?.['last error'] ?? '', /fetch failed at \S+ \(\d+ in a row\)|ERR_/);
      assert.deepEqual(pick(providers.get('hmac'), 'keys from', 'state', 'HMAC secret'), [
        'none (HMAC)',
        'valid',
        'configured',
      ]);
      assert.deepEqual(pick((await rows(page, 'api-key-sets'))[0], 'set', 'header', 'key names'), [
        'partners',
        'x-api-key',
        'partner-one',
      ]);
      const recent = await rows(page, 'recent-decisions');
      const host = `127.0.0.1:${authz.svc.ports.http}`;
      const cols = ['result', 'method', 'host', 'path', 'rule', 'reason', 'status'];
      // Newest first.
      assert.deepEqual(pick(recent[0], ...cols), [
        'deny',
        'GET',
        host,
        '/api/none',
        'api',
        'missing_credentials',
        '401',
      ]);
      assert.deepEqual(pick(recent[1], ...cols), [
        'allow',
        'GET',
        host,
        '/partner/x',
        'partner',
        'api_key',
        '',
      ]);
      assert.deepEqual(pick(recent[2], ...cols), [
        'deny',
        'DELETE',
        host,
        '/old/thing',
        'gone',
        'policy_deny',
        '410',
      ]);
      await shot(browser, page, 'authz-diag');
      await page.close();
    });

    it('the test form answers with the decision and leaves no trace in metrics or recent decisions', async () => {
      const decisionsBefore = await authz.svc.metric('authz_decisions_total');
      const checksBefore = await authz.svc.metric('authz_check_total');
      const recentBefore = (await diagJson(authz.svc)).sections.find(
        (s) => s.title === 'Recent decisions',
      )?.rows;
      const page = await open(browser, authz.svc, true);
      await page.selectOption('#authz-test select[name=method]', 'POST');
      await page.fill('#authz-test input[name=host]', 'api.diag.test');
      await page.fill('#authz-test input[name=path]', '/api/orders?page=2');
      await page.fill(
        '#authz-test textarea[name=headers]',
        `authorization: Bearer ${await hmacToken({ sub: 'form-user' })}`,
      );
      const allow = await submit(page, 'authz-test');
      assert.equal(allow.status, 200);
      assert.deepEqual(allow.json['request'], {
        method: 'POST',
        host: 'api.diag.test',
        path: '/api/orders',
        headerNames: ['authorization'],
        contextExtensions: {},
      });
      const d = allow.json['decision'] as Record<string, unknown>;
      assert.equal(d['result'], 'allow');
      assert.equal(d['rule'], 'api');
      assert.equal(d['reason'], 'jwt');
      const up = d['upstreamHeaders'] as Record<string, string>;
      assert.equal(up['x-user-id'], 'form-user');
      assert.match(up['x-jwt-payload'] ?? '', /^\(verified payload, \d+ characters\)$/);
      await shot(browser, page, 'authz-diag-phone-test-form');

      await page.fill('#authz-test input[name=path]', '/partner/x');
      await page.fill('#authz-test textarea[name=headers]', 'x-api-key: not-the-key');
      const deny = await submit(page, 'authz-test');
      assert.equal(deny.status, 200);
      const dd = deny.json['decision'] as Record<string, unknown>;
      assert.deepEqual(
        [dd['result'], dd['rule'], dd['reason'], dd['status']],
        ['deny', 'partner', 'invalid_api_key', 401],
      );
      await page.fill('#authz-test textarea[name=headers]', 'no colon here');
      assert.equal((await submit(page, 'authz-test')).status, 400);
      await page.close();

      assert.equal(
        await authz.svc.metric('authz_decisions_total'),
        decisionsBefore,
        'the form counted a decision',
      );
      assert.equal(await authz.svc.metric('authz_check_total'), checksBefore, 'the form counted a check');
      const recentAfter = (await diagJson(authz.svc)).sections.find(
        (s) => s.title === 'Recent decisions',
      )?.rows;
      assert.deepEqual(recentAfter, recentBefore, 'the form shows up in recent decisions');
    });
  });

  describe('ratelimit', () => {
    const counterKey = (): string =>
      `diag:diag_key1_value1_subkey1_a_${Math.floor(Date.now() / 60_000) * 60}`;
    before(async () => {
      // A minute boundary between the hits and the lookup would reset the counter: stay clear of it.
      const left = 60 - ((Date.now() / 1000) % 60);
      if (left < 15) await new Promise((r) => setTimeout(r, left * 1000 + 100));
      for (let i = 0; i < 2; i++)
        assert.equal(
          await rl.hit('diag', [
            ['key1', 'value1'],
            ['subkey1', 'a'],
          ]),
          200,
        );
      for (let i = 0; i < 3; i++) assert.equal(await rl.hit('diag', [['smooth', 's']]), 200);
    });

    it('shows the descriptor trees with limits and flags, the configuration and Redis', async () => {
      const page = await open(browser, rl.svc);
      const tree = (await page.locator('#descriptor-trees').textContent()) ?? '';
      for (const s of [
        'domain diag',
        'key1=value1',
        'subkey15/MINUTE',
        'key23/HOUR',
        'shadow_mode',
        'quota_mode',
        '7/HOUR sliding',
        'freeunlimited',
      ])
        assert.ok(tree.replace(/\s+/g, '').includes(s.replace(/\s+/g, '')), `tree lacks ${s}: ${tree}`);
      const limits = new Map((await rows(page, 'limits')).map((r) => [r['rule'], r]));
      assert.deepEqual(pick(limits.get('diag.shadow'), 'limit', 'shadow', 'quota'), [
        '1/MINUTE',
        'shadow',
        '',
      ]);
      assert.deepEqual(pick(limits.get('diag.quota'), 'limit', 'shadow', 'quota'), ['2/MINUTE', '', 'quota']);
      assert.deepEqual(pick(limits.get('diag.free'), 'limit'), ['unlimited']);
      const config = await entries(page, 'configuration');
      assert.equal(config.get('state'), 'loaded');
      assert.equal(config.get('last reload error'), 'none');
      assert.equal(config.get('files'), 'diag.yaml');
      const store = await entries(page, 'counter-store');
      assert.equal(store.get('store'), 'redis');
      assert.equal(store.get('state'), 'connected');
      assert.equal(store.get('redis url'), `redis://(redacted)@127.0.0.1:${rl.redis.port}`);
      await shot(browser, page, 'ratelimit-diag');
      await page.close();
    });

    it('the lookup form shows the matching rule, count and reset without counting', async () => {
      const hitsBefore = await rl.svc.metric('ratelimit_service_rate_limit_total_hits');
      const requestsBefore = await rl.svc.metric('ratelimit_should_rate_limit_total');
      assert.equal(rl.cli('GET', counterKey()).trim(), '2');
      const page = await open(browser, rl.svc, true);
      await page.selectOption('#ratelimit-lookup select[name=domain]', 'diag');
      await page.fill('#ratelimit-lookup input[name=descriptor]', 'key1=value1,subkey1=a');
      for (let i = 0; i < 3; i++) {
        const r = await submit(page, 'ratelimit-lookup');
        assert.equal(r.status, 200);
        assert.equal(r.json['match'], 'rule');
        assert.equal((r.json['rule'] as Record<string, unknown>)['key'], 'diag.key1_value1.subkey1');
        const [limit] = r.json['limits'] as Array<Record<string, unknown>>;
        assert.equal(limit?.['count'], 2);
        assert.equal(limit?.['remaining'], 3);
        assert.equal(limit?.['requestsPerUnit'], 5);
        assert.equal(limit?.['counterKey'], counterKey());
        const reset = Number(limit?.['resetSeconds']);
        assert.ok(reset >= 1 && reset <= 60, `reset ${reset}`);
      }
      await shot(browser, page, 'ratelimit-diag-phone-lookup');
      await page.fill('#ratelimit-lookup input[name=descriptor]', 'smooth=s');
      const smooth = await submit(page, 'ratelimit-lookup');
      const [sl] = smooth.json['limits'] as Array<Record<string, unknown>>;
      assert.deepEqual([sl?.['algorithm'], sl?.['count'], sl?.['remaining']], ['sliding_window', 3, 4]);
      await page.fill('#ratelimit-lookup input[name=descriptor]', 'nothing=here');
      assert.equal((await submit(page, 'ratelimit-lookup')).json['match'], 'none');
      await page.close();
      assert.equal(rl.cli('GET', counterKey()).trim(), '2', 'the lookup changed the counter');
      assert.equal(await rl.svc.metric('ratelimit_service_rate_limit_total_hits'), hitsBefore);
      assert.equal(await rl.svc.metric('ratelimit_should_rate_limit_total'), requestsBefore);
      // And the next real hit counts from the same value.
      assert.equal(
        await rl.hit('diag', [
          ['key1', 'value1'],
          ['subkey1', 'a'],
        ]),
        200,
      );
      assert.equal(rl.cli('GET', counterKey()).trim(), '3');
    });

    it('shows the load error of a failed reload while the last good configuration stays', async () => {
      const bad = join(rl.configDir, 'broken.yaml');
      writeFileSync(
        bad,
        'domain: broken\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n',
      );
      try {
        await waitUntil(
          'reload error on /diag.json',
          async () => (await rl.svc.admin('/diag.json')).body.includes('fortnight'),
          {
            timeoutMs: 10_000,
          },
        );
        const page = await open(browser, rl.svc);
        const config = await entries(page, 'configuration');
        assert.equal(config.get('last reload'), 'failed');
        assert.match(config.get('last reload error') ?? '', /broken\.yaml.*fortnight/);
        assert.equal(config.get('state'), 'loaded');
        assert.equal(config.get('domains'), 'diag');
        assert.ok((await rl.svc.metric('ratelimit_service_config_load_total', { result: 'error' })) >= 1);
        await shot(browser, page, 'ratelimit-diag-reload-error');
        await page.close();
      } finally {
        rmSync(bad, { force: true });
      }
      await waitUntil(
        'reload ok again',
        async () => !(await rl.svc.admin('/diag.json')).body.includes('fortnight'),
        {
          timeoutMs: 10_000,
        },
      );
    });
  });

  describe('acme', () => {
    it('shows every Host with state, phases, names, notAfter, renewal, error and backoff, the accounts, and no action', async () => {
      const live = new Map(
        (
          JSON.parse((await acme.svc.admin('/hosts')).body) as { hosts: Array<Record<string, unknown>> }
        ).hosts.map((h) => [String(h['key']), h]),
      );
      const page = await open(browser, acme.svc);
      assert.equal(
        await page.locator('form, button, input, textarea, select').count(),
        0,
        'the acme page has controls',
      );
      const hosts = new Map((await rows(page, 'hosts')).map((r) => [r['host'], r]));
      assert.deepEqual([...hosts.keys()].sort(), [...live.keys()].sort());
      const ready = hosts.get('default/ready');
      assert.deepEqual(
        pick(
          ready,
          'hostname',
          'state',
          'phase completed',
          'phase pending',
          'certificate source',
          'tlsSecret',
          'names',
        ),
        ['ready.diag.test', 'Ready', 'NA', 'NA', 'ACME', 'default/ready-tls', 'ready.diag.test'],
      );
      assert.equal(ready?.['notAfter'], acme.readyNotAfter);
      assert.equal(ready?.['next renewal'], live.get('default/ready')?.['nextRenewal']);
      assert.ok(Date.parse(ready?.['next renewal'] ?? '') < Date.parse(acme.readyNotAfter));
      const failing = hosts.get('default/failing');
      assert.deepEqual(pick(failing, 'state', 'notAfter', 'backoff'), ['Error', 'temporary', '1h0m0s']);
      assert.equal(failing?.['last error'], live.get('default/failing')?.['errorReason']);
      assert.match(failing?.['last error'] ?? '', /unreachable/i);
      assert.equal(failing?.['next renewal'], live.get('default/failing')?.['nextRenewal']);
      assert.equal(failing?.['error at'], live.get('default/failing')?.['errorTimestamp']);
      const wild = hosts.get('default/wild');
      assert.equal(wild?.['state'], 'Error');
      assert.match(wild?.['last error'] ?? '', /wildcard/);
      const accounts = new Map((await rows(page, 'accounts')).map((r) => [r['email'], r]));
      assert.deepEqual(pick(accounts.get('ops@diag.test'), 'authority', 'state', 'account URL', 'hosts'), [
        acme.authority,
        'registered',
        acme.accountUrl,
        'default/ready',
      ]);
      assert.deepEqual(pick(accounts.get('other@diag.test'), 'hosts'), ['default/failing']);
      const issuer = await entries(page, 'issuer');
      assert.equal(issuer.get('Ready'), '1');
      assert.equal(issuer.get('Error'), '2');
      await shot(browser, page, 'acme-diag');
      await page.setViewportSize({ width: 390, height: 844 });
      await assertFitsPhone(page);
      await shot(browser, page, 'acme-diag-phone');
      await page.close();
    });
  });
});
