// Measurement-only prototype of the issue-16 "one process per core" lever, not a shipped mode:
// PROTO_WORKERS (default 2) node:cluster workers, each a whole ratelimit process, sharing the gRPC,
// HTTP and admin listen sockets through the primary (so /metrics and health answer for one worker).
//   node bench/ratelimit/bench.ts … --ours-entry bench/ratelimit/workers-prototype.ts
// The bench's CPU and RSS columns then cover the primary only.
import cluster from 'node:cluster';
import { join } from 'node:path';

const workers = Number(process.env['PROTO_WORKERS'] ?? '2');
cluster.setupPrimary({
  exec: join(import.meta.dirname, '..', '..', 'services', 'ratelimit', 'src', 'main.ts'),
  execArgv: process.execArgv,
});
for (let i = 0; i < workers; i++) cluster.fork();
process.on('SIGTERM', () => {
  for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
  setTimeout(() => process.exit(0), 1000).unref();
});
