import { randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

const DATA = '..data';
const DATA_TMP = '..data_tmp';

function timestampDirName(now: Date): string {
  // kubelet: time.Now().UTC().Format("..2006_01_02_15_04_05.") + a random suffix (os.MkdirTemp).
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const d = now;
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.${randomBytes(5).toString('hex')}`;
}

/**
 * Writes `files` (key -> content) into `dir` the way the kubelet updates a ConfigMap volume
 * (pkg/volume/util/atomic_writer.go): the payload goes into a fresh `..<timestamp>` directory, the
 * `..data` symlink is swapped to it with a rename (atomic), each key is a symlink `key -> ..data/key`
 * (created once, never rewritten), then keys no longer present and the old timestamp directory are
 * removed. Readers that resolve paths on every read see the old set or the new set, never a mix; a
 * watcher on a key's inode sees nothing change (only the directory behind `..data` does).
 */
export function writeConfigMapDir(
  dir: string,
  files: Readonly<Record<string, string>>,
  now = new Date(),
): void {
  mkdirSync(dir, { recursive: true });
  let oldTs: string | undefined;
  try {
    oldTs = readlinkSync(join(dir, DATA));
  } catch {
    oldTs = undefined;
  }
  const oldKeys = oldTs ? listPayload(join(dir, oldTs)) : [];

  const ts = timestampDirName(now);
  for (const [key, content] of Object.entries(files)) {
    if (key.startsWith('..') || key.split('/').some((s) => s === '' || s === '..'))
      throw new Error(`invalid ConfigMap key ${key}`);
    const path = join(dir, ts, key);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content, { mode: 0o644 });
  }
  mkdirSync(join(dir, ts), { recursive: true });

  rmSync(join(dir, DATA_TMP), { force: true });
  symlinkSync(ts, join(dir, DATA_TMP));
  renameSync(join(dir, DATA_TMP), join(dir, DATA));

  // User-visible paths: one symlink per top-level entry, pointing into ..data.
  const top = new Set(Object.keys(files).map((k) => k.split('/')[0] as string));
  for (const name of top) {
    const link = join(dir, name);
    if (!existsSync(link) && !isSymlink(link)) symlinkSync(join(DATA, name), link);
  }
  for (const key of oldKeys) {
    const name = key.split('/')[0] as string;
    if (!top.has(name) && isSymlink(join(dir, name))) rmSync(join(dir, name), { force: true });
  }
  if (oldTs && oldTs !== ts) rmSync(join(dir, oldTs), { recursive: true, force: true });
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function listPayload(root: string, rel = ''): string[] {
  let names: string[];
  try {
    names = readdirSync(join(root, rel));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const r = rel === '' ? n : `${rel}/${n}`;
    if (lstatSync(join(root, r)).isDirectory()) out.push(...listPayload(root, r));
    else out.push(r);
  }
  return out;
}
