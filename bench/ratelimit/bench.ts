// Side-by-side benchmark of this ratelimit service and envoyproxy/ratelimit (the reference), against
// the same redis-server (separate CACHE_KEY_PREFIX), same config, same ghz load. See README.md here.
//
//   node bench/ratelimit/bench.ts --ref-bin /path/to/ratelimit --ghz /path/to/ghz [--duration 15s] [--concurrency 50]
//
// Prints a Markdown table: req/s, p50, p99, errors, Redis commands per request (INFO commandstats
// delta), CPU seconds per 1,000 requests and peak RSS of each server.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(import.meta.dirname, '..', '..');
const { values: opt } = parseArgs({
  options: {
    'ref-bin': { type: 'string' },
    ghz: { type: 'string', default: 'ghz' },
    duration: { type: 'string', default: '15s' },
    concurrency: { type: 'string', default: '50' },
    connections: { type: 'string', default: '5' },
    only: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    'node-flags': { type: 'string' },
    rate: { type: 'string', default: '2000' },
    'ours-entry': { type: 'string' },
  },
});

const CONFIG = `domain: bench
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
  - key: a
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
  - key: b
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: c
    rate_limit: {unit: day, requests_per_unit: 1000000000}
  - key: over
    rate_limit: {unit: hour, requests_per_unit: 10}
`;

/** The cases: request body (ghz template: one key per worker) and extra ghz arguments. */
const CASES: Record<string, { body: unknown; args?: string[] }> = {
  'one descriptor, under the limit': {
    body: { domain: 'bench', descriptors: [{ entries: [{ key: 'user', value: 'u{{.WorkerID}}' }] }] },
  },
  'three descriptors, under the limit': {
    body: {
      domain: 'bench',
      descriptors: [
        { entries: [{ key: 'a', value: 'u{{.WorkerID}}' }] },
        { entries: [{ key: 'b', value: 'u{{.WorkerID}}' }] },
        { entries: [{ key: 'c', value: 'u{{.WorkerID}}' }] },
      ],
    },
  },
  'mostly over the limit (local cache)': {
    body: { domain: 'bench', descriptors: [{ entries: [{ key: 'over', value: 'u{{.WorkerID}}' }] }] },
  },
  // open loop at a fixed rate, a fresh key per request (latency at a normal load, not saturation)
  [`fixed ${opt.rate} req/s, fresh key per request`]: {
    body: { domain: 'bench', descriptors: [{ entries: [{ key: 'user', value: 'f{{.RequestNumber}}' }] }] },
    args: ['--rps', opt.rate],
  },
};

/** Node flags the service runs with (services/ratelimit/Dockerfile ENTRYPOINT); --node-flags overrides. */
const OURS_NODE_FLAGS = (opt['node-flags'] ?? '--max-semi-space-size=8').split(' ').filter(Boolean);

const procs: ChildProcess[] = [];
process.on('exit', () => procs.forEach((p) => p.kill('SIGKILL')));

function start(cmd: string, args: string[], env: Record<string, string>): ChildProcess {
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  return p;
}

async function waitHttp(url: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** utime+stime in seconds and VmHWM (peak RSS) in MiB of a process. */
function procStats(pid: number): { cpu: number; rssMiB: number; hwmMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpu: ticks / 100, rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

const redisCli = (port: number, ...args: string[]): string =>
  execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' });

/** Redis commands per request by name, e.g. `evalsha 1.00 + incrby 1.00` (script-internal commands included). */
function redisCommands(port: number, requests: number): string {
  const parts: string[] = [];
  for (const m of redisCli(port, 'INFO', 'commandstats').matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
    if (m[1] === 'info' || m[1] === 'config') continue;
    const per = Number(m[2]) / requests;
    if (per >= 0.005) parts.push(`${m[1]} ${per.toFixed(2)}`);
  }
  return parts.join(' + ') || '0';
}

async function main(): Promise<void> {
  if (!opt['ref-bin']) throw new Error('--ref-bin is required (see bench/ratelimit/README.md)');
  const dir = mkdtempSync(join(tmpdir(), 'rl-bench-'));
  const cfg = join(dir, 'runtime', 'ratelimit', 'config');
  mkdirSync(cfg, { recursive: true });
  writeFileSync(join(cfg, 'bench.yaml'), CONFIG);
  const redisPort = 26379;
  start(
    'redis-server',
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    {},
  );
  await new Promise((r) => setTimeout(r, 500));
  const ref = start(opt['ref-bin'], [], {
    USE_STATSD: 'false',
    DISABLE_STATS: 'true',
    LOG_LEVEL: 'warn',
    REDIS_SOCKET_TYPE: 'tcp',
    REDIS_TYPE: 'single',
    REDIS_URL: `127.0.0.1:${redisPort}`,
    REDIS_POOL_SIZE: '10',
    CACHE_KEY_PREFIX: 'ref:',
    LOCAL_CACHE_SIZE_IN_BYTES: String(8 * 1024 * 1024),
    RUNTIME_ROOT: join(dir, 'runtime'),
    RUNTIME_SUBDIRECTORY: 'ratelimit',
    RUNTIME_APPDIRECTORY: 'config',
    RUNTIME_WATCH_ROOT: 'false',
    RUNTIME_IGNOREDOTFILES: 'true',
    HOST: '127.0.0.1',
    PORT: '28080',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: '28081',
    DEBUG_HOST: '127.0.0.1',
    DEBUG_PORT: '26070',
  });
  // the node flags of the service's Dockerfile ENTRYPOINT
  const ours = start(
    process.execPath,
    [...OURS_NODE_FLAGS, opt['ours-entry'] ?? join(ROOT, 'services', 'ratelimit', 'src', 'main.ts')],
    {
      LOG_LEVEL: 'warn',
      // exits at once on SIGTERM, so that a --cpu-prof in --node-flags is written
      DRAIN_MS: '0',
      REDIS_URL: `127.0.0.1:${redisPort}`,
      CACHE_KEY_PREFIX: 'ts:',
      LOCAL_CACHE_SIZE_IN_BYTES: String(8 * 1024 * 1024),
      RUNTIME_ROOT: join(dir, 'runtime'),
      RUNTIME_SUBDIRECTORY: 'ratelimit',
      RUNTIME_APPDIRECTORY: 'config',
      HOST: '127.0.0.1',
      PORT: '38080',
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: '38081',
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: '36070',
    },
  );
  await waitHttp('http://127.0.0.1:28080/healthcheck');
  await waitHttp('http://127.0.0.1:38080/healthcheck');
  const servers = [
    { name: 'envoyproxy/ratelimit', proc: ref, port: 28081 },
    { name: 'extsvc ratelimit', proc: ours, port: 38081 },
  ];
  const rows: string[] = [];
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const rounds = Number(opt.rounds);
  const idle = servers.map((s) => `${s.name} ${procStats(s.proc.pid!).rssMiB.toFixed(0)} MiB`).join(', ');
  for (const [caseName, { body, args: extra = [] }] of Object.entries(CASES)) {
    if (opt.only && !caseName.includes(opt.only)) continue;
    const samples = new Map<
      string,
      Array<{ rps: number; p50: number; p99: number; errors: number; cmds: string; cpuPer1k: number }>
    >();
    // Rounds alternate the order of the servers, so that noise from other load hits both alike.
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const s of order) {
        const ghzArgs = [
          '--insecure',
          '--proto',
          'envoy/service/ratelimit/v3/rls.proto',
          '--import-paths',
          join(ROOT, 'proto'),
          '--call',
          'envoy.service.ratelimit.v3.RateLimitService.ShouldRateLimit',
          '-d',
          JSON.stringify(body),
          '-c',
          opt.concurrency,
          '--connections',
          opt.connections,
          '-O',
          'json',
          ...extra,
        ];
        // warm-up (also fills the local over-limit cache in the third case)
        execFileSync(opt.ghz, [...ghzArgs, '-z', '2s', `127.0.0.1:${s.port}`], { maxBuffer: 1 << 28 });
        redisCli(redisPort, 'CONFIG', 'RESETSTAT');
        const before = procStats(s.proc.pid!);
        const out = JSON.parse(
          execFileSync(opt.ghz, [...ghzArgs, '-z', opt.duration, `127.0.0.1:${s.port}`], {
            encoding: 'utf8',
            maxBuffer: 1 << 28,
          }),
        ) as {
          count: number;
          rps: number;
          latencyDistribution: Array<{ percentage: number; latency: number }>;
          statusCodeDistribution: Record<string, number>;
        };
        const after = procStats(s.proc.pid!);
        const lat = (p: number): number =>
          (out.latencyDistribution.find((l) => l.percentage === p)?.latency ?? 0) / 1e6;
        // calls cancelled by ghz when the duration ends are not errors
        const errors =
          out.count - (out.statusCodeDistribution['OK'] ?? 0) - (out.statusCodeDistribution['Canceled'] ?? 0);
        const list = samples.get(s.name) ?? [];
        list.push({
          rps: out.rps,
          p50: lat(50),
          p99: lat(99),
          errors,
          cmds: redisCommands(redisPort, out.count),
          cpuPer1k: ((after.cpu - before.cpu) / out.count) * 1000,
        });
        samples.set(s.name, list);
        process.stderr.write(
          `${caseName} / ${s.name} round ${round + 1}: ${Math.round(out.rps)} req/s p99 ${lat(99).toFixed(2)} ms\n`,
        );
      }
    }
    for (const s of servers) {
      const xs = samples.get(s.name) ?? [];
      const m = xs.find((x) => x.rps === median(xs.map((y) => y.rps))) ?? xs[0]!;
      rows.push(
        `| ${caseName} | ${s.name} | ${Math.round(m.rps)} (${xs.map((x) => Math.round(x.rps)).join(' / ')}) | ${m.p50.toFixed(2)} | ${m.p99.toFixed(2)} | ${m.errors} | ${m.cmds} | ${m.cpuPer1k.toFixed(3)} | ${procStats(s.proc.pid!).hwmMiB.toFixed(0)} |`,
      );
    }
  }
  process.stdout.write(
    [
      `ghz -c ${opt.concurrency} --connections ${opt.connections} -z ${opt.duration}, ${rounds} alternating rounds (median shown, every round in brackets), same redis-server, ours with node ${OURS_NODE_FLAGS.join(' ') || '(no flags)'}, ${new Date().toISOString()}`,
      '',
      `idle RSS before the load: ${idle}; load average before: ${loadBefore}, after: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
      '',
      '| case | server | req/s | p50 ms | p99 ms | errors | Redis commands per request | CPU s per 1k req | peak RSS MiB |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
    ].join('\n'),
  );
  const oursExited = new Promise((r) => ours.once('exit', r));
  for (const p of procs) p.kill('SIGTERM');
  await Promise.race([oursExited, new Promise((r) => setTimeout(r, 5000))]);
  rmSync(dir, { recursive: true, force: true });
}

await main();
