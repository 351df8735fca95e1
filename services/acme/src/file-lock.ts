import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, readFile, rename, rm } from 'node:fs/promises';
import { hostname } from 'node:os';

/** Who holds an issuing lock: written into the lock file as JSON. */
export interface LockHolder {
  /** Process id of the holder. */
  readonly pid: number;
  /** Host name of the holder (pids are only comparable on the same host). */
  readonly host: string;
  /** Start time of the holder process (epoch ms): tells this process from a former one with its pid. */
  readonly started: number;
  /** After this time (epoch ms) the lock is stale whatever the holder's state. */
  readonly expiresAt: number;
  /** Random id of this acquisition (a release removes only its own lock). */
  readonly id: string;
}

/** The outcome of trying to take a lock. */
export type LockResult =
  { readonly kind: 'held'; release(): Promise<void> } | { readonly kind: 'busy'; readonly holder: string };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const processStarted = (): number => Math.round(performance.timeOrigin);

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    return typeof h.pid === 'number' && typeof h.host === 'string' && typeof h.expiresAt === 'number'
      ? (h as LockHolder)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when nobody can still be using the lock: expired, unreadable, or held by a dead process of
 * this host. A lock with this process's pid but another start time is a leftover of a former life
 * (a container restarted with the same pid and host name).
 */
function stale(text: string, now: number): boolean {
  const h = parseHolder(text);
  if (!h || h.expiresAt <= now) return true;
  if (h.host !== hostname()) return false;
  if (h.pid === process.pid) return h.started !== processStarted();
  return !alive(h.pid);
}

function describe(text: string): string {
  const h = parseHolder(text);
  return h ? `pid ${h.pid} on ${h.host} until ${new Date(h.expiresAt).toISOString()}` : 'unknown holder';
}

/**
 * Takes the lock file `path` for `ttlMs`, so that several instances sharing one certificate
 * directory never order the same certificate twice. The file appears with its content in one step
 * (written to a temporary name, then hard-linked: `link` fails with EEXIST when a holder exists), so
 * a reader never sees a half-written lock. A stale lock (expired, or its holder is a dead process of
 * this host) is moved aside with one rename and taken over; when two instances race for the same
 * stale lock, the one that finds a different lock than the one it judged stale backs off.
 */
export async function acquireFileLock(path: string, ttlMs: number, now = Date.now()): Promise<LockResult> {
  const holder: LockHolder = {
    pid: process.pid,
    host: hostname(),
    started: processStarted(),
    expiresAt: now + ttlMs,
    id: randomBytes(8).toString('hex'),
  };
  const text = `${JSON.stringify(holder)}\n`;
  const tmp = `${path}.tmp-${holder.id}`;
  const fh = await open(tmp, constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL, 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, path);
        return {
          kind: 'held',
          release: async () => {
            // Only our own lock: after an expiry another instance may have taken it over.
            const current = await readFile(path, 'utf8').catch(() => undefined);
            if (current === text) await rm(path, { force: true });
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const current = await readFile(path, 'utf8').catch(() => undefined);
      if (current === undefined) continue; // released meanwhile
      if (!stale(current, now)) return { kind: 'busy', holder: describe(current) };
      const aside = `${path}.stale-${holder.id}`;
      try {
        await rename(path, aside);
      } catch {
        continue; // someone else moved it first
      }
      const moved = await readFile(aside, 'utf8').catch(() => undefined);
      if (moved !== current) {
        // We moved a lock another instance had just taken: put it back (link never overwrites).
        await link(aside, path).catch(() => undefined);
        await rm(aside, { force: true });
        return { kind: 'busy', holder: moved === undefined ? 'unknown holder' : describe(moved) };
      }
      await rm(aside, { force: true });
    }
    const last = await readFile(path, 'utf8').catch(() => '');
    return { kind: 'busy', holder: describe(last) };
  } finally {
    await rm(tmp, { force: true });
  }
}
