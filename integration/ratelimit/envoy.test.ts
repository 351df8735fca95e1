import { describe, it, before } from 'mocha';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type EnvoyHandle, type RedisHandle } from '../harness/stack.ts';
import { freePort, waitUntil } from '../harness/proc.ts';

// Descriptors produced by deploy/envoy/envoy.template.yaml: [generic_key=per_client, remote_address=<ip>]
// on every request, and [client_id=<x-client-id>] when the header is present.
const RULES = `
domain: extsvc
descriptors:
  - key: generic_key
    value: per_client
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 6}
  - key: client_id
    rate_limit: {unit: minute, requests_per_unit: 3}
`;

async function alignWindow(windowS: number, minLeftS: number): Promise<void> {
  const left = windowS - ((Date.now() / 1000) % windowS);
  if (left < minLeftS) await new Promise((r) => setTimeout(r, left * 1000 + 50));
}

describe('ratelimit through Envoy', function () {
  this.timeout(90_000);
  const stack = new Stack('ratelimit-envoy').install();
  let redis: RedisHandle;
  let allow: EnvoyHandle;
  let deny: EnvoyHandle;

  before(async function () {
    redis = await stack.redis();
    const dir = stack.mkdir('config');
    writeFileSync(join(dir, 'rules.yaml'), RULES);
    const rl = await stack.service('ratelimit', {
      args: ['--config-dir', dir],
      env: { REDIS_URL: redis.url, LIMIT_RESPONSE_HEADERS_ENABLED: 'true', REDIS_OP_TIMEOUT: '5s' },
    });
    const upstream = await stack.echo();
    const common = {
      RATELIMIT_GRPC_PORT: rl.ports.grpc!,
      UPSTREAM_PORT: upstream.port,
      // no authz in this suite: its filter lets requests through when the (absent) service fails
      AUTHZ_FAILURE_MODE_ALLOW: true,
      AUTHZ_GRPC_PORT: await freePort(),
      // generous: on a loaded machine a slow answer must not pass for an outage (Redis down is a
      // closed connection here, answered at once)
      RATELIMIT_TIMEOUT: '10s',
    };
    allow = await stack.envoy({ ...common, RATELIMIT_FAILURE_MODE_DENY: false });
    deny = await stack.envoy({ ...common, RATELIMIT_FAILURE_MODE_DENY: true });
  });

  it('limits by header and by remote address, 429 after the limit, RateLimit-* headers on responses', async () => {
    await alignWindow(60, 15);
    const get = (client?: string) =>
      fetch(allow.url('/app'), { headers: client ? { 'x-client-id': client } : {} });
    const first = await get('c1');
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('ratelimit-limit'), '3');
    assert.equal(first.headers.get('ratelimit-remaining'), '2');
    assert.ok(Number(first.headers.get('ratelimit-reset')) >= 1);
    assert.equal((await get('c1')).status, 200);
    assert.equal((await get('c1')).status, 200);
    const over = await get('c1');
    assert.equal(over.status, 429);
    assert.equal(over.headers.get('ratelimit-remaining'), '0');
    // another client id is not limited by c1's counter, but the address limit (6) is shared
    assert.equal((await get('c2')).status, 200);
    const addr = await get();
    assert.equal(addr.status, 200);
    assert.equal(addr.headers.get('ratelimit-limit'), '6');
    assert.equal(addr.headers.get('ratelimit-remaining'), '0');
    assert.equal((await get()).status, 429);
  });

  it('with Redis down: failure_mode_deny false lets requests through, true answers 500', async () => {
    await redis.stop();
    await waitUntil(
      'allow-mode request passes',
      async () => (await fetch(allow.url('/app'))).status === 200,
      { timeoutMs: 10_000 },
    );
    assert.equal((await fetch(deny.url('/app'))).status, 500);
    const stats = await allow.stats();
    const allowed = [...stats]
      .filter(([k]) => k.endsWith('ratelimit.failure_mode_allowed'))
      .reduce((a, [, v]) => a + v, 0);
    assert.ok(allowed >= 1, JSON.stringify([...stats].filter(([k]) => k.includes('ratelimit.'))));
    await redis.restart();
    await waitUntil(
      'deny-mode recovers',
      async () => (await fetch(deny.url('/fresh'), { headers: { 'x-client-id': 'fresh' } })).status !== 500,
      {
        timeoutMs: 15_000,
      },
    );
  });
});
