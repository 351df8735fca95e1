// Attacks on the ratelimit service from issue 18 (items 6 and 11), made the way they were found:
// direct calls to the gRPC port, as any pod in the cluster can.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { connect, type Settings } from 'node:http2';
import { Stack, type RedisHandle, type ServiceHandle } from '../harness/stack.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { RlsClient, type Desc } from './client.ts';
import { RULES } from './config.ts';

const perMinute = (n: number): NonNullable<Desc['limit']> => ({ requests_per_unit: n, unit: 'MINUTE' });

describe('ratelimit hardening: memory mode with a full counter store', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-hardening-memory').install();
  let rl: ServiceHandle;
  let client: RlsClient;

  before(async () => {
    const configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    // about 300 counters: small enough to fill with a few calls
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      env: { MEMORY_STORE_MAX_BYTES: '65536' },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('keeps counting existing keys and answers new keys over limit, never an error (Envoy fail-open)', async () => {
    const victim: Desc = { entries: [['key2', 'victim']] }; // 3 per minute
    assert.equal((await client.call('it', [victim])).overall_code, 'OK');
    // attack: fresh keys until the store refuses one (a positive signal that it is full)
    let full = false;
    for (let call = 0; call < 50 && !full; call++) {
      const fresh: Desc[] = Array.from({ length: 100 }, (_, i) => ({
        entries: [['flood', `${call}-${i}`]],
        limit: perMinute(1000),
      }));
      // before the fix, the call that found the store full failed (UNAVAILABLE): limits off
      const r = await client.call('it', fresh);
      full = r.statuses.some((s) => s.code === 'OVER_LIMIT');
    }
    assert.ok(full, 'the store filled up');
    assert.ok((await rl.metric('ratelimit_memory_store_full_refused')) >= 1);
    // the victim's running limit still counts: 2nd and 3rd OK, 4th over
    assert.equal((await client.call('it', [victim])).overall_code, 'OK');
    assert.equal((await client.call('it', [victim])).overall_code, 'OK');
    assert.equal((await client.call('it', [victim])).overall_code, 'OVER_LIMIT');
    // a new client while full: over its limit, not an error Envoy would let through
    const fresh = await client.call('it', [{ entries: [['key2', 'newcomer']] }]);
    assert.equal(fresh.overall_code, 'OVER_LIMIT');
    assert.equal(fresh.statuses[0]?.current_limit?.requests_per_unit, 3);
    // descriptors that need no counter still answer OK
    assert.equal((await client.call('it', [{ entries: [['unlimited', 'u']] }])).overall_code, 'OK');
  });
});

/** gRPC status code of a failed call. */
async function grpcCode(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

describe('ratelimit hardening: oversized requests are refused before Redis, labels stay short', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-hardening-requests').install();
  let redis: RedisHandle;
  let rl: ServiceHandle;
  let client: RlsClient;
  let configDir: string;

  before(async () => {
    redis = await stack.redis();
    configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      // a loaded machine must not turn a slow answer into UNAVAILABLE (deadlines are not under test)
      env: { REDIS_URL: redis.url, REDIS_OP_TIMEOUT: '10s' },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('refuses a huge hits_addend, too many descriptors or entries and long values with INVALID_ARGUMENT', async () => {
    const INVALID_ARGUMENT = 3;
    const scripts = (): string[] =>
      redis
        .cli('INFO', 'commandstats')
        .split('\n')
        .filter((l) => /^cmdstat_(eval|evalsha|incrby|get|set|expire):/.test(l));
    assert.deepEqual(scripts(), []);
    // before the fix each of these reached Redis, failed there and came back UNAVAILABLE (fail-open)
    assert.equal(
      await grpcCode(client.call('it', [{ entries: [['key2', 'a']], hits_addend: 2 ** 53 + 2 }])),
      INVALID_ARGUMENT,
    );
    assert.equal(
      await grpcCode(client.call('it', [{ entries: [['key2', 'a']], hits_addend: 2 ** 32 }])),
      INVALID_ARGUMENT,
    );
    const many = Array.from({ length: 30_000 }, (_, i): Desc => ({ entries: [['key2', `m${i}`]] }));
    assert.equal(await grpcCode(client.call('it', many)), INVALID_ARGUMENT);
    const wide: Desc = { entries: Array.from({ length: 65 }, (_, i): [string, string] => [`k${i}`, 'v']) };
    assert.equal(await grpcCode(client.call('it', [wide])), INVALID_ARGUMENT);
    assert.equal(
      await grpcCode(client.call('it', [{ entries: [['key2', 'x'.repeat(70_000)]] }])),
      INVALID_ARGUMENT,
    );
    assert.deepEqual(scripts(), [], 'Redis saw no counter command');
    assert.equal(redis.cli('DBSIZE').trim(), '0');
    // a 3.9 MiB value does not even get decoded: the receive limit is 1 MiB
    const RESOURCE_EXHAUSTED = 8;
    assert.equal(
      await grpcCode(client.call('it', [{ entries: [['key2', 'x'.repeat(3_900_000)]] }])),
      RESOURCE_EXHAUSTED,
    );
    // the bounds leave ordinary traffic alone
    const ok = await client.call('it', [{ entries: [['key2', 'y'.repeat(60_000)]], hits_addend: 2 }]);
    assert.equal(ok.statuses[0]?.limit_remaining, 1);
  });

  it('caps the concurrent streams of the gRPC listener', async () => {
    const session = connect(`http://127.0.0.1:${rl.ports.grpc}`);
    try {
      const settings = await new Promise<Settings>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      // grpc-js's default is 2^32-1
      assert.equal(settings.maxConcurrentStreams, 1000);
    } finally {
      session.close();
    }
  });

  it('keeps /metrics small with 3 MiB domains and keys (labels bounded in length)', async () => {
    // the request bounds are raised here so that the labels themselves are what is tested
    const big = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      env: {
        MAX_DESCRIPTOR_VALUE_LENGTH: String(4 * 1024 * 1024),
        GRPC_MAX_RECEIVE_MESSAGE_BYTES: String(8 * 1024 * 1024),
      },
    });
    const c = new RlsClient(big.ports.grpc!);
    try {
      for (let i = 0; i < 10; i++) {
        const domain = `${i}`.padEnd(3 * 1024 * 1024, 'd');
        assert.equal((await c.call(domain, [{ entries: [['key2', 'a']] }])).overall_code, 'OK');
        // an override's stats key carries the request's values
        const value = `${i}`.padEnd(3 * 1024 * 1024, 'v');
        await c.call('it', [{ entries: [['override', value]], limit: perMinute(5) }]);
      }
      const text = await big.metrics();
      assert.ok(text.length < 64 * 1024, `/metrics is ${text.length} bytes`);
      assert.equal(await big.metric('ratelimit_service_rate_limit_domain_not_found'), 10);
      const domains = new Set(
        [...text.matchAll(/domain_not_found\{[^}]*domain="([^"]*)"/g)].map((m) => m[1]),
      );
      assert.equal(domains.size, 10, 'each long domain keeps a distinct (hashed) label');
      assert.equal(await big.metric('ratelimit_service_rate_limit_total_hits', { domain: 'it' }), 10);
    } finally {
      c.close();
      await big.stop();
    }
  });
});
