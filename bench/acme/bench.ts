// acme benchmark: time to Ready for 1, 10 and 50 Hosts issued at once against Debian's Pebble (VA
// sleeps off), with the service's CPU time and peak RSS; then RSS, start-up and scheduling cost with
// 1,000 stored certificates. Run: source scripts/env.sh && node bench/acme/bench.ts [--quick] [--stored-only]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { freePort, waitUntil } from '../../integration/harness/proc.ts';
import { type ServiceHandle, Stack } from '../../integration/harness/stack.ts';
import { hostStatuses, writeHosts } from '../../integration/acme/helpers.ts';
import { createCertificateForKey, generatePrivateKey } from '../../services/acme/src/certs.ts';
import { DirectoryCertificateStore } from '../../services/acme/src/file-store.ts';
import { parseHostsText } from '../../services/acme/src/host.ts';
import { Issuer, systemClock } from '../../services/acme/src/issuer.ts';
import { MemoryChallengeStore } from '../../services/acme/src/stores.ts';
import type { CaClient } from '../../services/acme/src/ca.ts';

const quick = process.argv.includes('--quick');
const storedOnly = process.argv.includes('--stored-only');
// Stop every stack on Ctrl-C / SIGTERM too, so no Pebble or acme process is left behind.
const stacks = new Set<Stack>();
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    void Promise.allSettled([...stacks].map((s) => s.stop())).then(() => process.exit(130));
  });
const CLK = 100; // USER_HZ on Linux

function procStats(pid: number): { cpuMs: number; rssMb: number; hwmMb: number; anonMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuMs, rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024, anonMb: kb('RssAnon') / 1024 };
}

/** The acme Dockerfile's node flags (as NODE_OPTIONS) and its MALLOC_ARENA_MAX. */
function imageSettings(): Record<string, string> {
  const text = readFileSync(join(import.meta.dirname, '..', '..', 'services', 'acme', 'Dockerfile'), 'utf8');
  const entry = /^ENTRYPOINT \[(.*)\]$/m.exec(text);
  const flags = entry ? (JSON.parse(`[${entry[1]}]`) as string[]).filter((p) => p.startsWith('--')) : [];
  const arena = /^ENV MALLOC_ARENA_MAX=(\d+)$/m.exec(text)?.[1];
  return {
    ...(flags.length > 0 ? { NODE_OPTIONS: flags.join(' ') } : {}),
    ...(arena !== undefined ? { MALLOC_ARENA_MAX: arena } : {}),
  };
}

async function allReady(acme: ServiceHandle, n: number): Promise<void> {
  await waitUntil(
    `${n} Hosts Ready`,
    async () => {
      const h = await hostStatuses(acme);
      let ready = 0;
      for (const s of h.values()) if (s.state === 'Ready') ready += 1;
      return ready === n;
    },
    { timeoutMs: 300_000, intervalMs: 25 },
  );
}

async function issueRun(n: number, concurrency: number): Promise<string> {
  const stack = new Stack(`acme-bench-${n}`);
  stacks.add(stack);
  try {
    const challenge = await freePort();
    const pebble = await stack.pebble({ httpPort: challenge });
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeHosts(
      hostsFile,
      Array.from({ length: n }, (_, i) => ({
        name: `h${i}`,
        hostname: `h${i}.bench.test`,
        secret: `h${i}-tls`,
        authority: pebble.directoryUrl,
      })),
    );
    const t0 = performance.now();
    const acme = await stack.service('acme', {
      ports: { challenge },
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${stack.mkdir('certs')}`,
        `--ca-file=${pebble.caCertPath}`,
        `--allowed-authorities=${pebble.directoryUrl}`,
        `--max-concurrent-orders=${concurrency}`,
        '--poll-interval=100ms',
        '--backoff-initial=1s',
        '--log-level=warn',
      ],
    });
    const pid = acme.proc.child.pid as number;
    const pebblePid = pebble.proc().child.pid as number;
    const atReady = procStats(pid);
    const pebbleAtReady = procStats(pebblePid);
    const tReady = performance.now();
    await allReady(acme, n);
    const t1 = performance.now();
    const s = procStats(pid);
    const pebbleCpu = procStats(pebblePid).cpuMs - pebbleAtReady.cpuMs;
    const orderSum = await acme.metric('acme_order_duration_seconds_sum', { result: 'issued' });
    const orders = await acme.metric('acme_order_duration_seconds_count', { result: 'issued' });
    return `| ${n} | ${concurrency} | ${((t1 - t0) / 1000).toFixed(2)} s | ${((t1 - tReady) / 1000).toFixed(2)} s | ${((orderSum / orders) * 1000).toFixed(0)} ms | ${(s.cpuMs - atReady.cpuMs).toFixed(0)} ms | ${pebbleCpu.toFixed(0)} ms | ${s.cpuMs.toFixed(0)} ms | ${s.hwmMb.toFixed(0)} MB |`;
  } finally {
    await stack.stop();
  }
}

async function storedRun(n: number): Promise<string[]> {
  const stack = new Stack('acme-bench-stored');
  stacks.add(stack);
  try {
    const certDir = stack.mkdir('certs');
    const store = new DirectoryCertificateStore(certDir);
    const hostsFile = join(stack.dir, 'hosts.yaml');
    const authority = 'https://127.0.0.1:9/dir'; // never contacted: every certificate is valid
    const names = Array.from({ length: n }, (_, i) => `s${i}.bench.test`);
    const now = Date.now();
    const tw = performance.now();
    for (let i = 0; i < n; i++) {
      const keyPem = generatePrivateKey('ecdsa-p256');
      const chainPem = createCertificateForKey(
        [names[i] as string],
        keyPem,
        now - 3_600_000,
        now + 90 * 86_400_000,
        'Bench CA',
      );
      await store.write(
        { namespace: 'default', name: `s${i}-tls` },
        {
          chainPem,
          keyPem,
          meta: { temporary: false, names: [names[i] as string], issuedAt: new Date().toISOString() },
        },
      );
    }
    const writeMs = performance.now() - tw;
    writeHosts(
      hostsFile,
      names.map((hostname, i) => ({ name: `s${i}`, hostname, secret: `s${i}-tls`, authority })),
    );
    // In process: the scheduling core alone (parse, group, load and check 1,000 certificates, plan).
    const parsed = parseHostsText(readFileSync(hostsFile, 'utf8'), hostsFile, {
      namespace: 'default',
      authority: 'none',
      ambassadorIds: ['default'],
      allowedAuthorities: [authority],
    });
    if (parsed.kind !== 'ok') throw new Error('hosts');
    const noCa: CaClient = {
      account: () => Promise.reject(new Error('unused')),
      order: () => Promise.reject(new Error('unused')),
      renewalInfo: async () => undefined,
      close: async () => undefined,
    };
    const issuer = new Issuer(
      {
        clock: systemClock,
        random: Math.random,
        ca: noCa,
        certs: store,
        accounts: { load: async () => undefined, save: async () => undefined },
        challenges: new MemoryChallengeStore(),
        logger: pino({ level: 'silent' }),
      },
      {
        renewal: { fraction: 2 / 3, jitter: 0.02 },
        backoff: { initialMs: 300_000, maxMs: 86_400_000 },
        maxConcurrent: 4,
        keyType: 'ecdsa-p256',
        temporaryValidityMs: 86_400_000,
        challengeTtlMs: 600_000,
        ari: false,
        maxSleepMs: 3_600_000,
      },
    );
    const h0 = process.memoryUsage().heapUsed;
    const tl = performance.now();
    await issuer.setHosts(parsed.hosts);
    const loadMs = performance.now() - tl;
    const tr = performance.now();
    await issuer.setHosts(parsed.hosts); // a reload with the same Hosts: regroup and reschedule
    const reloadMs = performance.now() - tr;
    const ts = performance.now();
    const statuses = issuer.statuses();
    const statusMs = performance.now() - ts;
    const heapMb = (process.memoryUsage().heapUsed - h0) / 1048576;
    const ready = statuses.filter((s) => s.state === 'Ready').length;
    await issuer.close();
    // The real process: start-up to readiness and RSS with 1,000 stored certificates, from source and
    // as the image runs it (the Dockerfile's node flags and MALLOC_ARENA_MAX, a warm compile cache).
    const measureProcess = async (variant: string, env: Record<string, string>): Promise<string> => {
      const t0 = performance.now();
      const acme = await stack.service('acme', {
        args: [
          `--hosts-file=${hostsFile}`,
          `--cert-dir=${certDir}`,
          `--allowed-authorities=${authority}`,
          '--log-level=warn',
          '--no-ari',
        ],
        env,
      });
      const startMs = performance.now() - t0;
      await allReady(acme, n);
      const pid = acme.proc.child.pid as number;
      const atReady = procStats(pid);
      // Settle: RSS stable to 0.5 MiB over one second (at most 15 s), as bench/idle-rss.ts does.
      let last = atReady.rssMb;
      for (let i = 0; i < 15; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const now = procStats(pid).rssMb;
        if (Math.abs(now - last) < 0.5) break;
        last = now;
      }
      const p = procStats(pid);
      const orders = await acme.metric('acme_orders_total');
      await acme.stop();
      return `- service process, ${variant}: start to /readyz ${(startMs / 1000).toFixed(2)} s, RSS ${atReady.rssMb.toFixed(0)} MiB when all Ready, ${p.rssMb.toFixed(0)} MiB settled (anonymous ${p.anonMb.toFixed(0)} MiB; peak ${p.hwmMb.toFixed(0)} MiB), CPU ${p.cpuMs.toFixed(0)} ms, orders ${orders}`;
    };
    const fromSource = await measureProcess('from source', { NODE_COMPILE_CACHE: '' });
    const image = imageSettings();
    const cache = stack.mkdir('compile-cache');
    await measureProcess('fill', { ...image, NODE_COMPILE_CACHE: cache });
    const asImage = await measureProcess(
      `as the image (${Object.entries(image)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}, warm NODE_COMPILE_CACHE)`,
      { ...image, NODE_COMPILE_CACHE: cache },
    );
    return [
      `- writing ${n} stored certificates (key generation included): ${(writeMs / 1000).toFixed(1)} s`,
      `- issuer core, in process: first load of ${n} certificates (read, parse, check key, plan) ${loadMs.toFixed(0)} ms; reload with the same Hosts ${reloadMs.toFixed(1)} ms; statuses() ${statusMs.toFixed(1)} ms; heap +${heapMb.toFixed(1)} MB; ${ready} Ready`,
      fromSource,
      asImage,
    ];
  } finally {
    await stack.stop();
  }
}

const rows = [
  '| Hosts | max concurrent orders | spawn → all Ready | ready → all Ready | mean order | acme CPU during issue | Pebble CPU during issue | acme CPU total | acme peak RSS |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
];
for (const [n, c] of storedOnly
  ? []
  : quick
    ? [
        [1, 4],
        [10, 4],
      ]
    : [
        [1, 4],
        [10, 4],
        [50, 4],
        [50, 16],
      ]) {
  rows.push(await issueRun(n as number, c as number));
  process.stdout.write(`${rows.at(-1)}\n`);
}
const stored = await storedRun(quick ? 100 : 1000);
const out = [
  `node ${process.version}, ${new Date().toISOString()}, load average ${(await import('node:os'))
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
  '',
  ...rows,
  '',
  ...stored,
  '',
].join('\n');
process.stdout.write(`\n${out}`);
writeFileSync(join(import.meta.dirname, 'results.md'), out);
