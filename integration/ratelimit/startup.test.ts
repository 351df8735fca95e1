// Issue 16: right after start, before Redis is connected, a Check waits for the connection (within
// REDIS_OP_TIMEOUT) instead of failing UNAVAILABLE, which Envoy's failure_mode_deny: false lets through.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Stack, type RedisHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { d, RlsClient } from './client.ts';
import { RULES } from './config.ts';

/** A TCP proxy to Redis that holds every connection until `release()`. */
class HoldingProxy {
  readonly server: Server;
  readonly #held: Socket[] = [];
  readonly #all = new Set<Socket>();
  #released = false;
  readonly #target: number;
  constructor(target: number) {
    this.#target = target;
    this.server = createServer((sock) => {
      this.#all.add(sock);
      if (this.#released) this.#pipe(sock);
      else this.#held.push(sock);
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }
  get held(): number {
    return this.#held.length;
  }
  #pipe(sock: Socket): void {
    const up = createConnection(this.#target, '127.0.0.1');
    this.#all.add(up);
    sock.pipe(up).pipe(sock);
    const end = (): void => {
      sock.destroy();
      up.destroy();
    };
    sock.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  }
  release(): void {
    this.#released = true;
    for (const s of this.#held.splice(0)) this.#pipe(s);
  }
  async close(): Promise<void> {
    for (const s of this.#all) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('ratelimit startup before Redis is connected', function () {
  this.timeout(60_000);
  const stack = new Stack('ratelimit-startup').install();
  let redis: RedisHandle;
  let proxy: HoldingProxy;

  before(async () => {
    redis = await stack.redis();
    proxy = new HoldingProxy(redis.port);
  });
  after(async () => proxy?.close());

  it('a Check made while the first connection is under way waits for it and is counted', async () => {
    const port = await proxy.listen();
    const configDir = stack.mkdir('config');
    writeConfigMapDir(configDir, { 'rules.yaml': RULES });
    const rl = await stack.service('ratelimit', {
      args: ['--config-dir', configDir],
      env: { REDIS_URL: `127.0.0.1:${port}`, REDIS_OP_TIMEOUT: '20s', CACHE_KEY_PREFIX: 'su:' },
      readyPath: '/healthz',
    });
    const client = new RlsClient(rl.ports.grpc!);
    try {
      await waitUntil('redis connection held by the proxy', () => proxy.held > 0);
      assert.equal((await rl.admin('/readyz')).status, 503, 'not ready before Redis');
      const first = client.call('it', [d('key2', 'startup')], { deadlineMs: 30_000 });
      const settled = first.then(
        () => 'resolved',
        (err: unknown) => err,
      );
      // a later call on the same connection that needs no counter: once it is answered, the first
      // call has reached the service
      assert.equal((await client.call('it', [d('unlimited', 'u')])).overall_code, 'OK');
      proxy.release();
      // before the fix the first call had already failed: UNAVAILABLE 'redis not connected'
      assert.equal(await settled, 'resolved');
      const r = await first;
      assert.equal(r.overall_code, 'OK');
      assert.equal(r.statuses[0]?.limit_remaining, 2);
      await waitUntil('ready', async () => (await rl.admin('/readyz')).status === 200);
      const start = Math.floor(Date.now() / 60_000) * 60;
      const counted = [start, start - 60].map((s) => redis.cli('GET', `su:it_key2_startup_${s}`).trim());
      assert.ok(counted.includes('1'), `counted in Redis: ${counted.join(',')}`);
    } finally {
      client.close();
      await rl.stop();
    }
  });
});
