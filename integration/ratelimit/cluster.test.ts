import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type RedisHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { d, RlsClient } from './client.ts';
import { RULES } from './config.ts';

async function alignWindow(windowS: number, minLeftS: number): Promise<void> {
  const left = windowS - ((Date.now() / 1000) % windowS);
  if (left < minLeftS) await new Promise((r) => setTimeout(r, left * 1000 + 50));
}

describe('ratelimit against a Redis Cluster', function () {
  this.timeout(90_000);
  const stack = new Stack('ratelimit-cluster').install();
  let nodes: RedisHandle[];
  let rl: ServiceHandle;
  let client: RlsClient;

  before(async function () {
    nodes = [];
    for (let i = 0; i < 3; i++)
      nodes.push(
        await stack.redis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] }),
      );
    execFileSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    await waitUntil(
      'cluster_state:ok',
      () => nodes.every((n) => n.cli('CLUSTER', 'INFO').includes('cluster_state:ok')),
      { timeoutMs: 30_000 },
    );
    const dir = stack.mkdir('config');
    writeFileSync(join(dir, 'rules.yaml'), RULES);
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', dir],
      env: {
        REDIS_TYPE: 'cluster',
        REDIS_URL: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
        CACHE_KEY_PREFIX: 'c:',
        // no fault is injected here: a generous op timeout, so 1,000 concurrent calls on a loaded machine do not time out
        REDIS_OP_TIMEOUT: '5s',
      },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('counts descriptors that live on different slots in one request', async () => {
    await alignWindow(60, 10);
    // distinct words: their slots spread over the three nodes' ranges (similar strings often do not)
    const descs = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'].map((v) => d('key2', v));
    const first = await client.call('it', descs);
    assert.deepEqual(
      first.statuses.map((s) => s.limit_remaining),
      [2, 2, 2, 2, 2, 2],
    );
    const owners = nodes.filter((n) => Number(n.cli('DBSIZE').trim()) > 0);
    assert.ok(owners.length > 1, 'keys spread over several nodes');
    await client.call('it', descs);
    await client.call('it', descs);
    assert.equal((await client.call('it', descs)).overall_code, 'OVER_LIMIT');
  });

  it('admits exactly 100 of 1,000 concurrent requests from 50 clients', async () => {
    await alignWindow(60, 20);
    const clients = Array.from({ length: 50 }, () => new RlsClient(rl.ports.grpc!));
    try {
      const ok = await Promise.all(
        clients.map(async (c) => {
          let n = 0;
          for (let i = 0; i < 20; i++)
            if ((await c.call('it', [d('concurrency', 'cluster')])).overall_code === 'OK') n++;
          return n;
        }),
      );
      assert.equal(
        ok.reduce((a, b) => a + b, 0),
        100,
      );
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('sliding window keys share a slot', async () => {
    await alignWindow(60, 5);
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) codes.push((await client.call('it', [d('smooth', 'cl')])).overall_code);
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OK', 'OK', 'OVER_LIMIT']);
  });
});
