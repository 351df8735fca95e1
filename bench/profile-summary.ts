// Summarises a V8 .cpuprofile (node --cpu-prof) by where the self time went: GC, Node's HTTP/2 layer,
// grpc-js, ioredis, the service's own code... as shares of the busy (non-idle) samples.
// Usage: node bench/profile-summary.ts FILE.cpuprofile [--top 15] [--from SECONDS]
// --from skips the first seconds of the profile (startup and module loading before the load starts).
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: node bench/profile-summary.ts FILE.cpuprofile [--top 15]\n');
  process.exit(2);
}
const topIdx = process.argv.indexOf('--top');
const TOP = topIdx === -1 ? 15 : Number(process.argv[topIdx + 1] ?? '15');
const fromIdx = process.argv.indexOf('--from');
const FROM_US = fromIdx === -1 ? 0 : Number(process.argv[fromIdx + 1] ?? '0') * 1e6;
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));

/** The bucket of one frame, from its URL (or V8's pseudo-frames). */
function bucket(n: Node): string {
  const { url, functionName } = n.callFrame;
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(program)') return '(program)';
    return 'V8/native builtins';
  }
  if (url.includes('/@grpc/grpc-js/')) return 'grpc-js';
  if (url.includes('/ioredis/') || url.includes('/redis-parser/') || url.includes('/@ioredis/'))
    return 'ioredis';
  if (url.includes('/protobufjs/') || url.includes('/@grpc/proto-loader/')) return 'protobufjs';
  if (url.includes('/prom-client/')) return 'prom-client';
  if (url.includes('/pino')) return 'pino';
  if (url.includes('/jose/')) return 'jose';
  if (url.includes('/fastify') || url.includes('/avvio/') || url.includes('/find-my-way/')) return 'fastify';
  if (url.startsWith('node:internal/http2') || url.startsWith('node:http2')) return 'Node HTTP/2';
  if (
    url.startsWith('node:internal/streams') ||
    url.startsWith('node:events') ||
    url.startsWith('node:stream')
  )
    return 'Node streams/events';
  if (url.startsWith('node:internal/crypto') || url.startsWith('node:crypto')) return 'Node crypto';
  if (url.startsWith('node:')) return 'Node other';
  if (url.includes('/services/') || url.includes('/bench/')) return 'own code (services/, bench/)';
  return 'other JS';
}

const self = new Map<number, number>();
let elapsed = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]!;
  elapsed += prof.timeDeltas[i] ?? 0;
  if (elapsed < FROM_US) continue;
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const buckets = new Map<string, number>();
const fns = new Map<string, number>();
let total = 0;
for (const [id, us] of self) {
  const n = byId.get(id);
  if (n === undefined) continue;
  const b = bucket(n);
  total += us;
  buckets.set(b, (buckets.get(b) ?? 0) + us);
  if (b !== '(idle)') {
    const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\//, '')}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
}
const idle = buckets.get('(idle)') ?? 0;
const busy = total - idle;
const pct = (us: number): string => `${((100 * us) / busy).toFixed(1)} %`;
const lines = [
  `${file}: ${(total / 1e6).toFixed(1)} s sampled${FROM_US > 0 ? ` after the first ${FROM_US / 1e6} s` : ''}, ${(busy / 1e6).toFixed(1)} s busy (shares below are of the busy time)`,
  '',
  '| where | self time |',
  '| --- | ---: |',
  ...[...buckets]
    .filter(([b]) => b !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .map(([b, us]) => `| ${b} | ${pct(us)} |`),
  '',
  `Top ${TOP} functions (self time):`,
  '',
  ...[...fns]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(([f, us]) => `- ${pct(us)} ${f}`),
];
process.stdout.write(lines.join('\n') + '\n');
