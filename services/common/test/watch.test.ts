import { describe, it, after } from 'mocha';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchPaths } from '../src/watch.ts';

const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('common/watch', () => {
  const dir = mkdtempSync(join(tmpdir(), 'extsvc-watch-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('notices a kubelet-style ..data symlink swap', async () => {
    // The kubelet layout: config/..2026_1/file, config/..data -> ..2026_1, config/file -> ..data/file
    const cfg = join(dir, 'config');
    mkdirSync(join(cfg, '..v1'), { recursive: true });
    writeFileSync(join(cfg, '..v1', 'a.yaml'), 'one');
    symlinkSync('..v1', join(cfg, '..data'));
    symlinkSync('..data/a.yaml', join(cfg, 'a.yaml'));
    let changes = 0;
    let polls = 0;
    const w = watchPaths([cfg], 20, () => void changes++, { onPoll: () => void polls++ });
    try {
      // Three comparisons of the unchanged tree (a positive signal, not a fixed sleep): no change seen.
      await until(() => polls >= 3);
      assert.equal(changes, 0);
      mkdirSync(join(cfg, '..v2'));
      writeFileSync(join(cfg, '..v2', 'a.yaml'), 'two');
      symlinkSync('..v2', join(cfg, '..data_tmp'));
      renameSync(join(cfg, '..data_tmp'), join(cfg, '..data'));
      await until(() => changes >= 1);
    } finally {
      await w.close();
    }
  });
});
