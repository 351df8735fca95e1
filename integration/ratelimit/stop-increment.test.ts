// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT against redis-server, with the reference's key layout.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { Stack, type RedisHandle, type ServiceHandle } from '../harness/stack.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { RlsClient, type Desc } from './client.ts';
import { RULES } from './config.ts';

describe('ratelimit STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT against redis-server', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-stop-increment').install();
  let redis: RedisHandle;
  let rl: ServiceHandle;
  let client: RlsClient;

  before(async () => {
    redis = await stack.redis();
    const configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      env: {
        REDIS_URL: redis.url,
        CACHE_KEY_PREFIX: 'st:',
        STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: 'true',
        // a functional test: a loaded machine must not turn a slow answer into UNAVAILABLE (not under test)
        REDIS_OP_TIMEOUT: '10s',
      },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('a request rejected by one limit does not consume the others', async function () {
    const wide: Desc = { entries: [['wide', 'w']], limit: { requests_per_unit: 5, unit: 'HOUR' } };
    const narrow: Desc = { entries: [['narrow', 'n']], limit: { requests_per_unit: 2, unit: 'HOUR' } };
    const hour = (): number => Math.floor(Date.now() / 3_600_000) * 3600;
    const codes = async (): Promise<string[]> =>
      (await client.call('it', [wide, narrow])).statuses.map((s) => `${s.code} ${s.limit_remaining}`);
    const start = hour();
    assert.deepEqual(await codes(), ['OK 4', 'OK 1']);
    assert.deepEqual(await codes(), ['OK 3', 'OK 0']);
    assert.deepEqual(await codes(), ['OK 3', 'OVER_LIMIT 0']);
    assert.deepEqual(await codes(), ['OK 3', 'OVER_LIMIT 0']);
    if (hour() !== start) this.skip(); // the hour turned mid-test: counters restarted
    assert.equal(
      redis.cli('GET', `st:it_wide_w_${start}`).trim(),
      '2',
      'wide was consumed by OK requests only',
    );
    assert.equal(
      redis.cli('GET', `st:it_narrow_n_${start}`).trim(),
      '4',
      'the limit going over keeps counting',
    );
  });
});
