import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type RedisHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { d, RlsClient } from './client.ts';
import { RULES } from './config.ts';

/** Waits until at least `minLeftS` seconds remain in the current window of `windowS` seconds. */
async function alignWindow(windowS: number, minLeftS: number): Promise<void> {
  const left = windowS - ((Date.now() / 1000) % windowS);
  if (left < minLeftS) await new Promise((r) => setTimeout(r, left * 1000 + 50));
}

describe('ratelimit against redis-server', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-redis').install();
  let redis: RedisHandle;
  let rl: ServiceHandle;
  let client: RlsClient;
  let configDir: string;

  before(async function () {
    redis = await stack.redis();
    configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir, '--config-poll-interval=100ms'],
      env: {
        REDIS_URL: redis.url,
        CACHE_KEY_PREFIX: 'it:',
        EXPIRATION_JITTER_MAX_SECONDS: '10',
        LIMIT_RESPONSE_HEADERS_ENABLED: 'true',
        LOCAL_CACHE_SIZE: '1000',
        REDIS_OP_TIMEOUT: '200ms',
      },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('counts in Redis with the reference key layout and TTL', async () => {
    await alignWindow(60, 5);
    const r = await client.call('it', [d('key2', 'layout')]);
    assert.equal(r.overall_code, 'OK');
    assert.equal(r.statuses[0]?.limit_remaining, 2);
    const start = Math.floor(Date.now() / 60_000) * 60;
    const key = `it:it_key2_layout_${start}`;
    assert.equal(redis.cli('GET', key).trim(), '1');
    const ttl = Number(redis.cli('TTL', key).trim());
    assert.ok(ttl > 50 && ttl <= 70, `ttl ${ttl}`);
  });

  it('reference behaviours: nesting, defaults, whitelist, wildcards, unlimited, blocked values', async () => {
    await alignWindow(60, 10);
    const r = await client.call('it', [
      d('key1', 'value1', 'subkey1', 'x'),
      d('key1', 'value1', 'subkey1', 'subvalue1'),
      d('key1', 'value1'),
      d('key2', 'free'),
      d('wild', 'foo-123-bar'),
      d('wild', 'foo-123-baz'),
      d('unlimited', 'u'),
      d('remote_address', '50.0.0.5'),
      d('remote_address', '10.0.0.1'),
    ]);
    const s = r.statuses;
    assert.equal(s[0]?.current_limit?.requests_per_unit, 5);
    assert.equal(s[1]?.current_limit?.requests_per_unit, 10);
    assert.equal(s[2]?.current_limit, null);
    assert.equal(s[3]?.current_limit, null);
    assert.equal(s[4]?.current_limit?.requests_per_unit, 2);
    assert.equal(s[5]?.current_limit, null);
    assert.equal(s[6]?.limit_remaining, 4294967295);
    assert.equal(s[7]?.code, 'OVER_LIMIT');
    assert.equal(s[8]?.current_limit?.requests_per_unit, 4);
    assert.equal(r.overall_code, 'OVER_LIMIT');
  });

  it('replaces, shadow, quota, overrides and hits_addend', async () => {
    await alignWindow(60, 10);
    const rep = await client.call('it', [d('named', 'r'), d('replacer', 'r')]);
    assert.equal(rep.statuses[0]?.current_limit, null);
    assert.equal(rep.statuses[1]?.current_limit?.requests_per_unit, 50);
    await client.call('it', [d('shadow', 's')]);
    const sh = await client.call('it', [d('shadow', 's')]);
    assert.equal(sh.overall_code, 'OK');
    assert.equal(sh.statuses[0]?.code, 'OK');
    assert.equal(sh.statuses[0]?.limit_remaining, 0);
    await client.call('it', [d('quota', 'q')]);
    const q = await client.call('it', [d('quota', 'q'), d('quota', 'q2')]);
    assert.equal(q.statuses[0]?.code, 'OVER_LIMIT');
    assert.equal(q.overall_code, 'OK');
    const ov = await client.call('it', [
      { entries: [['anything', 'ov']], limit: { requests_per_unit: 1, unit: 'HOUR' } },
    ]);
    assert.deepEqual(ov.statuses[0]?.current_limit, { name: '', requests_per_unit: 1, unit: 'HOUR' });
    const ha = await client.call('it', [d('key2', 'ha'), { entries: [['key2', 'ha2']], hits_addend: 0 }], {
      hitsAddend: 2,
    });
    assert.deepEqual(
      ha.statuses.map((s) => s.limit_remaining),
      [1, 3],
    );
  });

  it('returns RateLimit-* headers from the most restrictive status', async () => {
    await alignWindow(60, 5);
    const r = await client.call('it', [d('key2', 'hdr'), d('key1', 'value1', 'subkey1', 'hdr')]);
    const h = Object.fromEntries(r.response_headers_to_add.map((x) => [x.key, x.value]));
    assert.equal(h['RateLimit-Limit'], '3');
    assert.equal(h['RateLimit-Remaining'], '2');
    const reset = Number(h['RateLimit-Reset']);
    assert.ok(reset >= 1 && reset <= 60);
  });

  it('rolls over to a new window', async () => {
    await alignWindow(1, 0.7);
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) codes.push((await client.call('it', [d('persecond', 'roll')])).overall_code);
    assert.deepEqual(codes, ['OK', 'OK', 'OVER_LIMIT']);
    await alignWindow(1, 1);
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    assert.equal((await client.call('it', [d('persecond', 'roll')])).overall_code, 'OK');
  });

  it('admits exactly 100 of 1,000 concurrent requests from 50 clients against 100/minute', async () => {
    await alignWindow(60, 20);
    const clients = Array.from({ length: 50 }, () => new RlsClient(rl.ports.grpc!));
    try {
      const results = await Promise.all(
        clients.map(async (c) => {
          let ok = 0;
          for (let i = 0; i < 20; i++)
            if ((await c.call('it', [d('concurrency', 'c')])).overall_code === 'OK') ok++;
          return ok;
        }),
      );
      assert.equal(
        results.reduce((a, b) => a + b, 0),
        100,
      );
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('several limits on one descriptor and the sliding window', async () => {
    await alignWindow(1, 0.8);
    const codes: string[] = [];
    for (let i = 0; i < 4; i++)
      codes.push((await client.call('it', [d('burst_and_sustained', 'b')])).overall_code);
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 20));
    const more = [];
    for (let i = 0; i < 3; i++)
      more.push((await client.call('it', [d('burst_and_sustained', 'b')])).statuses[0]);
    // hour limit 5: 4 counted before, the 5th is OK, then over with the sustained limit reported
    assert.deepEqual(
      more.map((s) => s?.code),
      ['OK', 'OVER_LIMIT', 'OVER_LIMIT'],
    );
    assert.equal(more[2]?.current_limit?.name, 'sustained');
    await alignWindow(60, 5);
    const sw: string[] = [];
    for (let i = 0; i < 7; i++) sw.push((await client.call('it', [d('smooth', 's')])).overall_code);
    assert.deepEqual(sw, ['OK', 'OK', 'OK', 'OK', 'OK', 'OVER_LIMIT', 'OVER_LIMIT']);
    const start = Math.floor(Date.now() / 60_000) * 60;
    // rejected hits are not counted
    assert.equal(redis.cli('GET', `it:{it_smooth_s_sw}_${start}`).trim(), '5');
  });

  it('answers over-limit keys from the local cache without Redis commands', async () => {
    await client.call('it', [d('lc', 'x')]);
    await client.call('it', [d('lc', 'x')]);
    const calls = (): number => {
      const m = /cmdstat_evalsha:calls=(\d+)/.exec(redis.cli('INFO', 'commandstats'));
      return Number(m?.[1] ?? 0);
    };
    const before = calls();
    for (let i = 0; i < 20; i++)
      assert.equal((await client.call('it', [d('lc', 'x')])).overall_code, 'OVER_LIMIT');
    assert.equal(calls(), before);
    assert.ok(
      (await rl.metric('ratelimit_service_rate_limit_over_limit_with_local_cache', { key: 'lc' })) >= 20,
    );
  });

  it('reloads on a kubelet-style ConfigMap symlink swap and keeps the last good config on a bad one', async () => {
    await alignWindow(60, 10);
    writeConfigMapDir(configDir, {
      'rules.yaml':
        'domain: swapped\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 1}\n',
    });
    await waitUntil('swapped config', async () => (await rl.admin('/config')).body.includes('"swapped"'), {
      timeoutMs: 10_000,
    });
    await client.call('swapped', [d('k', 'v')]);
    assert.equal((await client.call('swapped', [d('k', 'v')])).overall_code, 'OVER_LIMIT');
    const errorsBefore = await rl.metric('ratelimit_service_config_load_total', { result: 'error' });
    writeConfigMapDir(configDir, {
      'rules.yaml': 'domain: swapped\ndescriptors:\n  - key: k\n    ratelimit: {}\n',
    });
    await waitUntil(
      'load error counted',
      async () =>
        (await rl.metric('ratelimit_service_config_load_total', { result: 'error' })) > errorsBefore,
      {
        timeoutMs: 10_000,
      },
    );
    assert.equal((await client.call('swapped', [d('k', 'v')])).overall_code, 'OVER_LIMIT');
    assert.match((await rl.admin('/config')).body, /unknown key 'ratelimit'/);
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    await waitUntil('restored config', async () => !(await rl.admin('/config')).body.includes('"swapped"'), {
      timeoutMs: 10_000,
    });
  });

  it('with Redis stopped: errors within the deadline, not ready, recovers when Redis returns', async () => {
    await redis.stop();
    await waitUntil('not ready', async () => (await rl.admin('/readyz')).status === 503);
    const hc = await fetch(`http://127.0.0.1:${rl.ports.http}/healthcheck`);
    assert.equal(hc.status, 500);
    // The service's own answer (UNAVAILABLE naming Redis), not the client's deadline (DEADLINE_EXCEEDED),
    // which is 50 times the 200 ms REDIS_OP_TIMEOUT: no wall-clock bound on a loaded machine.
    await assert.rejects(
      client.call('it', [d('key2', 'down')], { deadlineMs: 10_000 }),
      (e: Error & { code?: number; details?: string }) =>
        e.code === 14 && /^redis (unavailable|timeout)$/.test(e.details ?? ''),
    );
    // descriptors that need no counter still answer
    assert.equal((await client.call('it', [d('unlimited', 'u'), d('key2', 'free')])).overall_code, 'OK');
    const j = await fetch(`http://127.0.0.1:${rl.ports.http}/json`, {
      method: 'POST',
      body: JSON.stringify({ domain: 'it', descriptors: [{ entries: [{ key: 'key2', value: 'down' }] }] }),
    });
    assert.equal(j.status, 400);
    await redis.restart();
    await waitUntil('ready again', async () => (await rl.admin('/readyz')).status === 200, {
      timeoutMs: 15_000,
    });
    assert.equal((await client.call('it', [d('key2', 'back')])).overall_code, 'OK');
    assert.ok((await rl.metric('ratelimit_redis_errors')) >= 1);
  });

  it('with Redis hung (SIGSTOP): every call answers within the deadline, then recovers', async () => {
    const proc = redis.proc();
    proc.signal('SIGSTOP');
    try {
      // Redis never answers while stopped: every call ends by the service's REDIS_OP_TIMEOUT (200 ms),
      // answered as UNAVAILABLE 'redis timeout', never by the client's deadline (50 times longer).
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          client.call('it', [d('key2', `hung-${i}`)], { deadlineMs: 10_000 }),
        ),
      );
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        const e = r.reason as { code?: number; details?: string };
        assert.deepEqual({ code: e.code, details: e.details }, { code: 14, details: 'redis timeout' });
      }
    } finally {
      proc.signal('SIGCONT');
    }
    await waitUntil(
      'answers again',
      async () => (await client.call('it', [d('key2', 'after-hang')])).overall_code === 'OK',
      { timeoutMs: 10_000 },
    );
  });

  it('fails open when configured', async () => {
    const dead = stack.mkdir('failopen');
    writeFileSync(join(dead, 'rules.yaml'), RULES);
    const open = await stack.service('ratelimit', {
      args: ['--config-dir', dead],
      env: { REDIS_URL: 'redis://127.0.0.1:1', REDIS_FAIL_OPEN: 'true', REDIS_OP_TIMEOUT: '50ms' },
      readyPath: '/healthz',
    });
    const c = new RlsClient(open.ports.grpc!);
    try {
      const r = await c.call('it', [d('key2', 'x')]);
      assert.equal(r.overall_code, 'OK');
      assert.equal((await open.admin('/readyz')).status, 503);
    } finally {
      c.close();
      await open.stop();
    }
  });
});
