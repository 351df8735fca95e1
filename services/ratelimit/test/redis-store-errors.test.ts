import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { RedisStore } from '../src/redis-store.ts';
import { StoreError } from '../src/errors.ts';

/** A Redis that finishes the handshake (INFO for ioredis's ready check, OK to the rest) but never answers a read. */
async function silentRedis(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', (chunk) => {
      for (const m of chunk.toString('latin1').matchAll(/\*\d+\r\n\$\d+\r\n(\w+)/g)) {
        const cmd = m[1]?.toUpperCase();
        if (cmd === 'GET' || cmd === 'EVALSHA' || cmd === 'EVAL') continue; // never answered
        const info = '# Server\r\nloading:0\r\n';
        s.write(cmd === 'INFO' ? `$${info.length}\r\n${info}\r\n` : '+OK\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

describe('ratelimit/redis-store errors', function () {
  it('a read past the deadline (STOP_CACHE_KEY_INCREMENT peek) is a timeout, not "unavailable"', async function () {
    const redis = await silentRedis();
    const store = new RedisStore(
      {
        type: 'single',
        url: `127.0.0.1:${redis.port}`,
        socketType: 'tcp',
        auth: undefined,
        sentinelAuth: undefined,
        tls: false,
        connectTimeoutMs: 5000,
        opTimeoutMs: 50,
      },
      { logger: pino({ level: 'silent' }) },
    );
    try {
      await store.waitReady(5000);
      await assert.rejects(
        store.peek(['k1', 'k2']),
        (err: unknown) => err instanceof StoreError && err.code === 'ERR_REDIS_TIMEOUT',
      );
    } finally {
      await store.close();
      for (const s of redis.sockets) s.destroy();
      await new Promise((r) => redis.server.close(r));
    }
  });
});
