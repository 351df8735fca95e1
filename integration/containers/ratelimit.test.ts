// The ratelimit image (services/ratelimit/Dockerfile) and a Redis container on one network, started by
// testcontainers: the compose demo limits over RLS v3 from the host, counters in the Redis container.
// Skipped, with one line, when no engine answers.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import {
  GenericContainer,
  Network,
  Wait,
  type StartedNetwork,
  type StartedTestContainer,
} from 'testcontainers';
import { RlsClient, d } from '../ratelimit/client.ts';
import {
  containerUid,
  ensureImages,
  requireEngine,
  ROOT,
  serviceContainer,
  stopAll,
} from '../harness/containers.ts';

describe('container: the extsvc-ratelimit image with a Redis container (testcontainers)', function () {
  let network: StartedNetwork | undefined;
  let redis: StartedTestContainer | undefined;
  let ratelimit: StartedTestContainer | undefined;
  let client: RlsClient | undefined;

  before(async function () {
    this.timeout(45 * 60_000); // a cold machine builds the images first
    await requireEngine(this);
    const images = await ensureImages();
    network = await new Network().start();
    redis = await new GenericContainer(images.redis)
      .withCommand(['redis-server', '--save', '', '--appendonly', 'no'])
      .withNetwork(network)
      .withNetworkAliases('redis')
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start();
    ratelimit = await serviceContainer(images.ratelimit, {
      adminPort: 6070,
      ports: [8081],
      env: { REDIS_URL: 'redis://redis:6379', CONFIG_DIR: '/config' },
      files: [{ source: join(ROOT, 'deploy/compose/ratelimit/config.yaml'), target: '/config/config.yaml' }],
      network,
    }).start();
    client = new RlsClient(ratelimit.getMappedPort(8081));
  });

  after(async function () {
    this.timeout(60_000);
    client?.close();
    await stopAll([ratelimit, redis], network);
  });

  it('runs as a non-root user', async () => {
    assert.notEqual(await containerUid(ratelimit!), 0);
  });

  it('client_id: 10 a minute, OVER_LIMIT on the 11th, counted in the Redis container', async () => {
    const id = `tc-${process.pid}`;
    for (let i = 1; i <= 10; i++) {
      const r = await client!.call('extsvc', [d('client_id', id)], { hitsAddend: 1 });
      assert.equal(r.overall_code, 'OK', `request ${i}`);
    }
    const over = await client!.call('extsvc', [d('client_id', id)], { hitsAddend: 1 });
    assert.equal(over.overall_code, 'OVER_LIMIT');
    const keys = await redis!.exec(['redis-cli', '--scan', '--pattern', `*${id}*`]);
    assert.equal(keys.exitCode, 0, keys.output);
    assert.notEqual(keys.output.trim(), '', 'a counter key for the client in Redis');
  });
});
