// Idle memory of each service: starts authz, ratelimit and acme with their embedded defaults (loopback
// ports, no Redis, no Kubernetes), waits for /readyz, lets RSS settle and prints VmRSS, the V8 heap and
// what the process loaded. RSS is VmRSS = RssAnon (heap, malloc: what the cgroup counts as `anon`) +
// RssFile (pages of the node binary and libraries, shared with every other node process). Variants: the Dockerfile's node flags, with and without a warm
// NODE_COMPILE_CACHE (the cache the images fill at build time).
// Usage: node bench/idle-rss.ts [--rounds 3] [--only authz] ['--node-flags=--max-semi-space-size=8']
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntil } from '../integration/harness/proc.ts';

const ROOT = join(import.meta.dirname, '..');
const arg = (name: string, def: string): string => {
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (eq !== undefined) return eq.slice(name.length + 3);
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : (process.argv[i + 1] ?? def);
};
const ROUNDS = Math.min(10, Number(arg('rounds', '3')));
const ONLY = arg('only', '');
const NODE_FLAGS = arg('node-flags', '');
const dir = mkdtempSync(join(tmpdir(), 'bench-idle-'));

/** The node flags of each service's Dockerfile ENTRYPOINT. */
function dockerFlags(service: string): string[] {
  const text = readFileSync(join(ROOT, 'services', service, 'Dockerfile'), 'utf8');
  const m = /^ENTRYPOINT \[(.*)\]$/m.exec(text);
  if (m === null) return [];
  const parts = JSON.parse(`[${m[1]}]`) as string[];
  return parts.slice(1).filter((p) => p.startsWith('--'));
}

function kib(pid: number, field: string): number {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
  return m === null ? 0 : Number(m[1]);
}

interface Service {
  name: string;
  args: (ports: number[]) => string[];
  admin: (ports: number[]) => number;
}
const policy = join(dir, 'policy.yaml');
writeFileSync(
  policy,
  'providers:\n  main: { issuer: "https://issuer.example", audiences: [api], jwks: { keys: [] }, algorithms: [ES256] }\n' +
    'rules:\n  - { name: api, match: { pathPrefix: /api }, jwt: true }\n',
);
const rlConfig = join(dir, 'rl', 'config');
spawnSync('mkdir', ['-p', rlConfig]);
writeFileSync(
  join(rlConfig, 'c.yaml'),
  'domain: bench\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1000 }\n',
);
const services: Service[] = [
  {
    name: 'authz',
    args: ([g, h, a]) => [
      `--grpc-port=${g}`,
      `--http-port=${h}`,
      `--admin-port=${a}`,
      '--grpc-host=127.0.0.1',
      '--http-host=127.0.0.1',
      `--policy-file=${policy}`,
    ],
    admin: (p) => p[2]!,
  },
  {
    name: 'ratelimit',
    args: ([g, h, a]) => [
      `--grpc-port=${g}`,
      `--http-port=${h}`,
      `--admin-port=${a}`,
      '--grpc-host=127.0.0.1',
      '--http-host=127.0.0.1',
      `--config-dir=${rlConfig}`,
    ],
    admin: (p) => p[2]!,
  },
  {
    name: 'acme',
    args: ([c, a]) => [`--challenge-port=${c}`, `--admin-port=${a}`, '--challenge-host=127.0.0.1'],
    admin: (p) => p[1]!,
  },
];

async function measure(svc: Service, variant: string, env: NodeJS.ProcessEnv): Promise<string> {
  const ports = [await freePort(), await freePort(), await freePort()];
  const flags = NODE_FLAGS !== '' ? NODE_FLAGS.split(' ') : dockerFlags(svc.name);
  const p: ChildProcess = spawn(
    process.execPath,
    [...flags, join(ROOT, 'services', svc.name, 'src', 'main.ts'), ...svc.args(ports)],
    {
      env: { ...process.env, LOG_LEVEL: 'warn', DRAIN_MS: '0', ...env },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  try {
    const url = `http://127.0.0.1:${svc.admin(ports)}/readyz`;
    await waitUntil(`${svc.name} ready`, async () => (await fetch(url).catch(() => undefined))?.ok === true, {
      timeoutMs: 30_000,
    });
    // Settle: RSS stable to 0.5 MiB over one second (at most 15 s).
    let last = kib(p.pid!, 'VmRSS');
    for (let i = 0; i < 15; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = kib(p.pid!, 'VmRSS');
      if (Math.abs(now - last) < 512) break;
      last = now;
    }
    const metrics = await (await fetch(url.replace('/readyz', '/metrics'))).text();
    const gauge = (name: string): number =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN) / 1048576;
    const heap = `${gauge('nodejs_heap_size_used_bytes').toFixed(1)} / ${gauge('nodejs_heap_size_total_bytes').toFixed(1)}`;
    const rss = kib(p.pid!, 'VmRSS') / 1024;
    const anon = kib(p.pid!, 'RssAnon') / 1024;
    const file = kib(p.pid!, 'RssFile') / 1024;
    const hwm = kib(p.pid!, 'VmHWM') / 1024;
    return `| ${svc.name} | ${variant} | ${flags.join(' ') || '-'} | ${rss.toFixed(1)} | ${anon.toFixed(1)} | ${file.toFixed(1)} | ${hwm.toFixed(1)} | ${heap} |`;
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }
}

try {
  const lines: string[] = [];
  const cache = join(dir, 'compile-cache');
  for (let r = 0; r < ROUNDS; r++) {
    for (const svc of services) {
      if (ONLY !== '' && !svc.name.includes(ONLY)) continue;
      lines.push(await measure(svc, 'no compile cache', { NODE_COMPILE_CACHE: '' }));
      // The first start fills the cache (as the image build does), the second one reads it.
      if (r === 0) await measure(svc, 'fill', { NODE_COMPILE_CACHE: cache });
      lines.push(await measure(svc, 'warm NODE_COMPILE_CACHE', { NODE_COMPILE_CACHE: cache }));
    }
  }
  process.stdout.write(
    `${new Date().toISOString()} node ${process.version}; load average: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n\n` +
      '| service | variant | node flags | idle RSS MiB | anonymous MiB | file-backed MiB | peak RSS MiB | V8 heap used / total MiB |\n' +
      '|---|---|---|---:|---:|---:|---:|---:|\n' +
      lines.sort().join('\n') +
      '\n',
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
