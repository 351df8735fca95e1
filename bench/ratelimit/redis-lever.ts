// Issue 16 lever: the Redis round trip of one request, one EVALSHA of the service's script (what
// RedisStore does) against INCRBY + EXPIRE sent together (the reference's pipeline), measured as CPU
// per request of this client process and of redis-server, side by side in alternating rounds.
//   node bench/ratelimit/redis-lever.ts [--requests 100000] [--inflight 50] [--rounds 3] [--port 26380]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pino from 'pino';
import { RedisStore } from '../../services/ratelimit/src/redis-store.ts';
import type { CounterOp } from '../../services/ratelimit/src/limiter.ts';

const { values: opt } = parseArgs({
  options: {
    requests: { type: 'string', default: '100000' },
    inflight: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    port: { type: 'string', default: '26380' },
  },
});
const N = Number(opt.requests);
const INFLIGHT = Number(opt.inflight);
const port = Number(opt.port);

const redisCpu = (): number => {
  const info = execFileSync('redis-cli', ['-p', String(port), 'INFO', 'cpu'], { encoding: 'utf8' });
  const v = (k: string): number => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return v('used_cpu_sys') + v('used_cpu_user');
};

const op = (i: number): CounterOp => ({
  key: `lever:k${i % 1000}_1764750000`,
  prevKey: undefined,
  algorithm: 'fixed_window',
  addend: 1,
  limit: 1_000_000_000,
  windowSeconds: 60,
  ttlSeconds: 60,
  elapsedMs: 0,
  windowEndMs: 0,
});

async function run(
  one: (i: number) => Promise<unknown>,
): Promise<{ rps: number; us: number; redisUs: number }> {
  const c0 = process.cpuUsage();
  const r0 = redisCpu();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (next < N) await one(next++);
    }),
  );
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { rps: (N / ms) * 1000, us: (c.user + c.system) / N, redisUs: ((redisCpu() - r0) * 1e6) / N };
}

const dir = mkdtempSync(join(tmpdir(), 'rl-lever-'));
const server = spawn(
  'redis-server',
  ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir],
  {
    stdio: 'ignore',
  },
);
try {
  await new Promise((r) => setTimeout(r, 300));
  const store = new RedisStore(
    {
      type: 'single',
      url: `127.0.0.1:${port}`,
      socketType: 'tcp',
      auth: undefined,
      sentinelAuth: undefined,
      tls: false,
      connectTimeoutMs: 5000,
      opTimeoutMs: 5000,
    },
    { logger: pino({ level: 'silent' }) },
  );
  await store.waitReady(5000);
  // the same client options as RedisStore: auto-pipelining, so both commands share one write
  const raw = new Redis({ port, host: '127.0.0.1', enableAutoPipelining: true });
  const variants: Record<string, (i: number) => Promise<unknown>> = {
    'EVALSHA (RedisStore.apply)': (i) => store.apply([op(i)]),
    'INCRBY + EXPIRE (auto-pipelined)': (i) => {
      const k = op(i).key;
      return Promise.all([raw.incrby(k, 1), raw.expire(k, 60)]);
    },
    'INCRBY + EXPIRE (pipeline() object)': (i) => {
      const k = op(i).key;
      return raw.pipeline().incrby(k, 1).expire(k, 60).exec();
    },
  };
  for (const f of Object.values(variants)) await run(f); // warm-up
  const rows = new Map<string, Array<{ rps: number; us: number; redisUs: number }>>();
  for (let round = 0; round < Number(opt.rounds); round++) {
    const names = Object.keys(variants);
    for (const name of round % 2 === 0 ? names : names.reverse()) {
      const r = await run(variants[name]!);
      rows.set(name, [...(rows.get(name) ?? []), r]);
    }
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');
  process.stdout.write(
    [
      `${N} requests, ${INFLIGHT} in flight, ${opt.rounds} alternating rounds (medians), load average ${load}`,
      '',
      '| variant | req/s | client CPU µs/req | redis-server CPU µs/req |',
      '| --- | ---: | ---: | ---: |',
      ...[...rows].map(
        ([name, xs]) =>
          `| ${name} | ${Math.round(med(xs.map((x) => x.rps)))} | ${med(xs.map((x) => x.us)).toFixed(1)} | ${med(xs.map((x) => x.redisUs)).toFixed(1)} |`,
      ),
      '',
    ].join('\n'),
  );
  raw.disconnect();
  await store.close();
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
