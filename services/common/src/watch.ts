import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A stopped-or-running watcher. */
export interface Watcher {
  close(): Promise<void>;
}

/** The change fingerprint of `paths` (real path, inode, size, mtime of each entry), as watchPaths compares. */
export function pathsFingerprint(paths: readonly string[]): string {
  const parts: string[] = [];
  const visit = (p: string, depth: number): void => {
    try {
      const real = realpathSync(p);
      const st = statSync(real);
      parts.push(`${p}>${real}:${st.ino}:${st.size}:${st.mtimeMs}`);
      if (st.isDirectory() && depth < 2) {
        for (const name of readdirSync(real).sort()) visit(join(p, name), depth + 1);
      }
    } catch {
      parts.push(`${p}:missing`);
    }
  };
  for (const p of paths) visit(p, 0);
  return parts.join('|');
}

/**
 * Watches files or directories for changes by polling a fingerprint (real path, inode, size, mtime of
 * each entry). Polling survives what fs.watch misses: Kubernetes ConfigMap `..data` symlink swaps,
 * editors that replace files, network filesystems. `onChange` is never run concurrently. `opts.onPoll`
 * sees every comparison (a test's positive signal that the watcher looked and found nothing).
 * `opts.baseline` is a fingerprint taken before the caller's first read: a change made between that
 * read and this call is then seen at the first poll instead of becoming the baseline.
 */
export function watchPaths(
  paths: readonly string[],
  intervalMs: number,
  onChange: () => Promise<void> | void,
  opts: { readonly onPoll?: (changed: boolean) => void; readonly baseline?: string } = {},
): Watcher {
  let last = opts.baseline ?? pathsFingerprint(paths);
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    const now = pathsFingerprint(paths);
    opts.onPoll?.(now !== last);
    if (now === last) return;
    last = now;
    running = true;
    Promise.resolve()
      .then(onChange)
      .catch(() => undefined)
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return {
    close: async () => {
      clearInterval(timer);
    },
  };
}
