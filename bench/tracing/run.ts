// The cost of OpenTelemetry tracing on authz Check and ratelimit ShouldRateLimit (issue 15): each service
// runs three times side by side — tracing off (no OTEL_* variable), on with 1 % sampling
// (parentbased_traceidratio 0.01) and on with every call sampled — exporting OTLP/HTTP to a local sink
// that answers 200. The calls carry no trace context (as from an Envoy without a tracer), so the ratio
// sampler decides. Variants are interleaved within each round; each row is the median of the rounds.
//
//   node bench/tracing/run.ts [--duration 5] [--rounds 3] [--concurrency 32]
//
// The load is a closed loop of `concurrency` outstanding unary calls from this process (grpc-js).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, ManagedProcess, waitUntil } from '../../integration/harness/proc.ts';
import { AuthzClient } from '../../integration/authz/client.ts';
import { RlsClient, d } from '../../integration/ratelimit/client.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '32' },
  },
});
const DURATION_MS = Number(opt.duration) * 1000;
const ROUNDS = Number(opt.rounds);
const CONCURRENCY = Number(opt.concurrency);

const VARIANTS = [
  { name: 'off', env: {} },
  {
    name: 'on, 1 %',
    env: { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.01' },
  },
  { name: 'on, 100 %', env: { OTEL_TRACES_SAMPLER: 'parentbased_always_on' } },
] as const;

const dir = mkdtempSync(join(tmpdir(), 'bench-tracing-'));
const procs: ManagedProcess[] = [];
const clients: Array<{ close(): void }> = [];
let spans = 0;
const sink = createServer((req, res) => {
  req.on('data', () => undefined);
  req.on('end', () => {
    spans += 1;
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const sinkUrl = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;

async function service(
  name: 'authz' | 'ratelimit',
  args: string[],
  env: Record<string, string>,
): Promise<{ port: number; pid: number }> {
  const [grpc, http, admin] = [await freePort(), await freePort(), await freePort()];
  const p = new ManagedProcess(
    `${name}`,
    process.execPath,
    [
      join(ROOT, 'services', name, 'src', 'main.ts'),
      `--grpc-port=${grpc}`,
      `--http-port=${http}`,
      `--admin-port=${admin}`,
      '--grpc-host=127.0.0.1',
      '--http-host=127.0.0.1',
      ...args,
    ],
    {
      env: { ...process.env, LOG_LEVEL: 'warn', NODE_OPTIONS: '--max-semi-space-size=32', ...env },
      cwd: ROOT,
    },
  );
  procs.push(p);
  await waitUntil(
    `${name} ready`,
    async () => (await fetch(`http://127.0.0.1:${admin}/readyz`)).status === 200,
    {
      timeoutMs: 60_000,
    },
  );
  return { port: grpc, pid: p.child.pid ?? 0 };
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (USER_HZ 100). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs the closed loop for DURATION_MS; returns calls per second and p50/p99 latency (ms). */
async function load(call: () => Promise<unknown>): Promise<{ rps: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const end = performance.now() + DURATION_MS;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      await call();
      lat.push(performance.now() - t);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0;
  return { rps: lat.length / secs, p50: q(0.5), p99: q(0.99) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const policy = join(dir, 'policy.yaml');
writeFileSync(
  policy,
  'apiKeys:\n  k: { keys: [ { name: bench, value: bench-key-0123456789 } ] }\nrules:\n  - { name: api, match: { pathPrefix: / }, apiKey: k }\n',
);
const rlDir = join(dir, 'rl');
mkdirSync(rlDir);
writeFileSync(
  join(rlDir, 'bench.yaml'),
  'domain: bench\ndescriptors:\n  - key: client\n    rate_limit: { unit: hour, requests_per_unit: 1000000000 }\n',
);

const loadBefore = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
const rows: string[] = [];
try {
  for (const svc of ['authz', 'ratelimit'] as const) {
    const calls: Array<() => Promise<unknown>> = [];
    const pids: number[] = [];
    for (const v of VARIANTS) {
      const env = v.name === 'off' ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, ...v.env };
      if (svc === 'authz') {
        const s = await service('authz', [`--policy-file=${policy}`, '--admin-host=127.0.0.1'], env);
        pids.push(s.pid);
        const c = new AuthzClient(s.port);
        clients.push(c);
        calls.push(() => c.checkHttp({ 'x-api-key': 'bench-key-0123456789' }));
      } else {
        const s = await service('ratelimit', [`--config-dir=${rlDir}`, '--admin-host=127.0.0.1'], env);
        pids.push(s.pid);
        const c = new RlsClient(s.port);
        clients.push(c);
        let n = 0;
        calls.push(() => c.call('bench', [d('client', `c${n++ % 1000}`)]));
      }
    }
    // Warm-up (JIT, connections), then interleaved rounds.
    for (const call of calls) await Promise.all(Array.from({ length: 200 }, call));
    const results = VARIANTS.map(() => [] as Array<{ rps: number; p50: number; p99: number; cpuMs: number }>);
    for (let r = 0; r < ROUNDS; r++)
      for (const [i, call] of calls.entries()) {
        const pid = pids[i] ?? 0;
        const cpu0 = cpuSeconds(pid);
        const res = await load(call);
        // CPU per 1,000 calls: robust on a shared machine, where calls/s mostly measures the neighbours.
        const cpuMs = ((cpuSeconds(pid) - cpu0) * 1e6) / (res.rps * (DURATION_MS / 1000));
        results[i]?.push({ ...res, cpuMs });
      }
    VARIANTS.forEach((v, i) => {
      const rs = results[i] ?? [];
      rows.push(
        `| ${svc} | ${v.name} | ${median(rs.map((x) => x.rps)).toFixed(0)} | ${median(rs.map((x) => x.p50)).toFixed(2)} | ${median(rs.map((x) => x.p99)).toFixed(2)} | ${median(rs.map((x) => x.cpuMs)).toFixed(0)} |`,
      );
    });
  }
} finally {
  for (const c of clients) c.close();
  await Promise.all(procs.map((p) => p.stop(3000)));
  await new Promise<void>((r) => sink.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(
  `load before: ${loadBefore}\nload after:  ${spawnSync('uptime', { encoding: 'utf8' }).stdout.trim()}\n` +
    `duration ${opt.duration}s x ${ROUNDS} rounds, concurrency ${CONCURRENCY}, OTLP export requests received: ${spans}\n\n` +
    '| service | tracing | calls/s | p50 ms | p99 ms | service CPU ms / 1,000 calls |\n|---|---|---:|---:|---:|---:|\n' +
    rows.join('\n') +
    '\n',
);
