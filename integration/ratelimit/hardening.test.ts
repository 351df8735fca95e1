// Attacks on the ratelimit service from issue 18 (items 6 and 11), made the way they were found:
// direct calls to the gRPC port, as any pod in the cluster can.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
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
