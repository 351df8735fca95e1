import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'mocha';
import { acquireFileLock } from '../src/file-lock.ts';

const root = mkdtempSync(join(tmpdir(), 'acme-lock-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const lockPath = (): string => join(root, `.s${++n}.lock`);
const holder = (pid: number, host: string, expiresAt: number): string =>
  `${JSON.stringify({ pid, host, expiresAt, id: 'other' })}\n`;

describe('acme/file-lock', () => {
  it('one holder at a time; busy names the holder; release frees it', async () => {
    const path = lockPath();
    const a = await acquireFileLock(path, 60_000);
    assert.equal(a.kind, 'held');
    const b = await acquireFileLock(path, 60_000);
    assert.equal(b.kind, 'busy');
    assert.match(b.kind === 'busy' ? b.holder : '', new RegExp(`pid ${process.pid} on `));
    const content = JSON.parse(readFileSync(path, 'utf8')) as { pid: number; expiresAt: number };
    assert.equal(content.pid, process.pid);
    if (a.kind === 'held') await a.release();
    assert.equal(existsSync(path), false);
    assert.equal((await acquireFileLock(path, 60_000)).kind, 'held');
    // No temporary or moved-aside files are left behind.
    assert.deepEqual(
      readdirSync(root).filter((f) => f.includes('.tmp-') || f.includes('.stale-')),
      [],
    );
  });

  it('takes over an expired lock, and a lock of a dead process of this host', async () => {
    const expired = lockPath();
    writeFileSync(expired, holder(999_999, 'elsewhere', Date.now() - 1));
    assert.equal((await acquireFileLock(expired, 60_000)).kind, 'held');
    const dead = lockPath();
    // A pid that surely exited: a child that has been reaped.
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(dead, holder(gone, hostname(), Date.now() + 600_000));
    assert.equal((await acquireFileLock(dead, 60_000)).kind, 'held');
    // This pid on this host but another process start: a leftover of a restarted container.
    const leftover = lockPath();
    writeFileSync(leftover, holder(process.pid, hostname(), Date.now() + 600_000));
    assert.equal((await acquireFileLock(leftover, 60_000)).kind, 'held');
  });

  it('leaves a live lock alone: another host before expiry, a live process of this host', async () => {
    const remote = lockPath();
    writeFileSync(remote, holder(1, 'another-host', Date.now() + 600_000));
    assert.equal((await acquireFileLock(remote, 60_000)).kind, 'busy');
    const live = lockPath();
    const liveHolder = holder(process.ppid, hostname(), Date.now() + 600_000);
    writeFileSync(live, liveHolder);
    assert.equal((await acquireFileLock(live, 60_000)).kind, 'busy');
    assert.equal(readFileSync(live, 'utf8'), liveHolder);
  });

  it('release removes only its own lock (after an expiry another instance may hold it)', async () => {
    const path = lockPath();
    const a = await acquireFileLock(path, 60_000);
    assert.equal(a.kind, 'held');
    const other = holder(1, 'another-host', Date.now() + 600_000);
    writeFileSync(path, other);
    if (a.kind === 'held') await a.release();
    assert.equal(readFileSync(path, 'utf8'), other);
  });
});
