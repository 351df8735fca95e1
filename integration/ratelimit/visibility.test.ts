// Issue 10: what an Emissary operator must see. Redis unreachable turns the pod not ready and shows
// on /diag, /metrics and the log; requests for an unknown domain (Emissary's default is `ambassador`)
// show on /metrics, /diag and once in the log.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { Stack, type RedisHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { d, RlsClient } from './client.ts';

/** Emissary's RateLimitService default domain, with a limit. */
const AMBASSADOR = `
domain: ambassador
descriptors:
  - key: generic_key
    value: per_client
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 2}
`;

interface DiagDoc {
  header: unknown;
  sections: Array<{ title: string; entries?: Array<[string, unknown]>; rows?: unknown[][] }>;
}

describe('ratelimit visibility: Redis down and unknown domains', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-visibility').install();
  let redis: RedisHandle;
  let rl: ServiceHandle;
  let client: RlsClient;

  const diag = async (): Promise<DiagDoc> => JSON.parse((await rl.admin('/diag.json')).body) as DiagDoc;
  const section = async (title: string): Promise<DiagDoc['sections'][number]> => {
    const s = (await diag()).sections.find((x) => x.title === title);
    assert.ok(s, `/diag has a ${title} section`);
    return s;
  };
  const warnings = (domain: string): number =>
    rl.proc
      .logs()
      .split('\n')
      .filter(
        (l) => l.includes('absent from the rate limit configuration') && l.includes(`"domain":"${domain}"`),
      ).length;

  before(async () => {
    redis = await stack.redis();
    const configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'ambassador.yaml': AMBASSADOR });
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      // Redis is stopped (connection closed, failing at once), never slow: no short deadline needed
      env: { REDIS_URL: redis.url, REDIS_OP_TIMEOUT: '10s' },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it("limits Emissary's default domain `ambassador`", async () => {
    const desc = d('generic_key', 'per_client', 'remote_address', '10.1.2.3');
    assert.equal((await client.call('ambassador', [desc])).overall_code, 'OK');
    assert.equal((await client.call('ambassador', [desc])).overall_code, 'OK');
    assert.equal((await client.call('ambassador', [desc])).overall_code, 'OVER_LIMIT');
  });

  it('shows an unknown domain on /metrics and /diag, and warns once per domain', async () => {
    for (let i = 0; i < 3; i++)
      assert.equal((await client.call('emissary', [d('generic_key', 'x')])).overall_code, 'OK');
    assert.equal(await rl.metric('ratelimit_service_rate_limit_domain_not_found', { domain: 'emissary' }), 3);
    const unknown = await section('Unknown domains');
    assert.deepEqual(unknown.rows, [['emissary', 3, 'not limited']]);
    // a later warning for another domain: once it is in the log, any repeat for the first would be too
    await client.call('other-unknown', [d('generic_key', 'x')]);
    await waitUntil('warning for other-unknown', () => warnings('other-unknown') === 1);
    assert.equal(warnings('emissary'), 1);
  });

  it('with Redis unreachable: not ready (component redis), loud on /diag, /metrics and the log', async () => {
    assert.equal(await rl.metric('ratelimit_store_ready'), 1);
    await redis.stop();
    await waitUntil('not ready', async () => (await rl.admin('/readyz')).status === 503);
    const ready = JSON.parse((await rl.admin('/readyz')).body) as { components?: unknown };
    assert.match(JSON.stringify(ready), /redis/);
    assert.equal(await rl.metric('ratelimit_store_ready'), 0);
    const store = new Map((await section('Counter store')).entries);
    assert.equal(store.get('state'), 'disconnected');
    assert.equal(store.get('readiness (component redis)'), 'not ready');
    assert.match(String(store.get('impact')), /UNAVAILABLE/);
    assert.ok(store.has('down since'));
    assert.match(rl.proc.logs(), /"level":"error".*redis unreachable/);
    await redis.restart();
    await waitUntil('ready again', async () => (await rl.admin('/readyz')).status === 200, {
      timeoutMs: 15_000,
    });
    assert.equal(await rl.metric('ratelimit_store_ready'), 1);
    assert.equal(new Map((await section('Counter store')).entries).get('impact'), undefined);
  });
});
