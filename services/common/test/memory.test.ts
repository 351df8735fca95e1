import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { getHeapSpaceStatistics } from 'node:v8';
import { compactHeap } from '../src/memory.ts';

const newSpace = (): number =>
  getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;

describe('common/memory', () => {
  it('compactHeap gives back the committed young generation and reports the heap before and after, with no global gc()', () => {
    // Objects that survive a few scavenges grow the young generation, as loading modules does.
    const keep: unknown[] = [];
    for (let round = 0; round < 40; round++) {
      keep.splice(0, keep.length, ...Array.from({ length: 20_000 }, (_, i) => ({ i, s: `v${i}`, round })));
    }
    const young = newSpace();
    assert.ok(keep.length > 0);
    keep.length = 0;
    const c = compactHeap();
    assert.ok(c.heapAfter < c.heapBefore, `heap ${c.heapBefore} -> ${c.heapAfter}`);
    assert.ok(newSpace() < young, `young generation ${young} -> ${newSpace()}`);
    assert.ok(c.cpuMs >= 0);
    // gc() came from a throw-away context: the service's global scope has none.
    assert.equal((globalThis as { gc?: unknown }).gc, undefined);
  });
});
