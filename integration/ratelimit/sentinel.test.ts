import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { freePort, tcpOpen, waitUntil } from '../harness/proc.ts';
import { d, RlsClient } from './client.ts';
import { RULES } from './config.ts';

describe('ratelimit through Redis Sentinel', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-sentinel').install();
  let rl: ServiceHandle;
  let client: RlsClient;
  let masterPort: number;

  before(async function () {
    const master = await stack.redis();
    masterPort = master.port;
    const sentinelPort = await freePort();
    const dir = stack.mkdir('sentinel');
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
        'sentinel down-after-milliseconds mymaster 5000',
        '',
      ].join('\n'),
    );
    stack.spawn(`sentinel-${sentinelPort}`, 'redis-server', [conf, '--sentinel']);
    await waitUntil(`sentinel on ${sentinelPort}`, () => tcpOpen(sentinelPort));
    const cfg = stack.mkdir('config');
    writeFileSync(join(cfg, 'rules.yaml'), RULES);
    rl = await stack.service('ratelimit', {
      args: ['--config-dir', cfg],
      env: {
        REDIS_TYPE: 'SENTINEL',
        REDIS_URL: `mymaster,127.0.0.1:${sentinelPort}`,
        CACHE_KEY_PREFIX: 's:',
        // a functional test: a loaded machine must not turn a slow answer into UNAVAILABLE
        REDIS_OP_TIMEOUT: '10s',
      },
    });
    client = new RlsClient(rl.ports.grpc!);
  });
  after(() => client?.close());

  it('finds the master through the sentinel and counts there', async () => {
    const left = 60 - ((Date.now() / 1000) % 60);
    if (left < 5) await new Promise((r) => setTimeout(r, left * 1000 + 50));
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push((await client.call('it', [d('key2', 'sentinel')])).overall_code);
    assert.deepEqual(codes, ['OK', 'OK', 'OK', 'OVER_LIMIT']);
    const keys = execFileSync('redis-cli', ['-p', String(masterPort), 'KEYS', 's:*'], { encoding: 'utf8' });
    assert.match(keys, /s:it_key2_sentinel_\d+/);
  });
});
