// Lists (and with --kill, SIGKILLs) the processes a test run left behind: every process whose environment
// carries EXTSVC_RUN_ID=<id> of THIS run, except the run's own shell and its live descendants (the
// checker itself). Processes of other runs, other checkouts or unrelated Envoys are never matched.
//   node scripts/leftovers.ts <run-id> <shell-pid> [--kill]     exit 1 when something was left behind
import { readdirSync, readFileSync } from 'node:fs';

/** A process that outlived the run. */
interface Leftover {
  readonly pid: number;
  readonly cmdline: string;
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined; // exited meanwhile, or not ours to read
  }
}

function parentOf(pid: number): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
    if (p === ancestor) return true;
    p = parentOf(p);
  }
  return false;
}

/** Processes carrying `EXTSVC_RUN_ID=runId` that are not `shellPid` or below it. */
export function leftovers(runId: string, shellPid: number): Leftover[] {
  const marker = `EXTSVC_RUN_ID=${runId}`;
  const out: Leftover[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const environ = read(`/proc/${pid}/environ`);
    if (!environ?.split('\0').includes(marker)) continue;
    if (descendsFrom(pid, shellPid)) continue;
    out.push({ pid, cmdline: (read(`/proc/${pid}/cmdline`) ?? '').split('\0').join(' ').trim() });
  }
  return out;
}

if (import.meta.main) {
  const [runId, shell, flag] = process.argv.slice(2);
  if (!runId || !shell) {
    process.stderr.write('usage: node scripts/leftovers.ts <run-id> <shell-pid> [--kill]\n');
    process.exit(2);
  }
  const found = leftovers(runId, Number(shell));
  for (const l of found) {
    process.stdout.write(`${l.pid} ${l.cmdline}\n`);
    if (flag === '--kill') {
      try {
        process.kill(l.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  process.exit(found.length > 0 ? 1 : 0);
}
