import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { MemoryStore } from '../src/counter-store.ts';
import { StoreError } from '../src/errors.ts';
import type { CounterOp } from '../src/limiter.ts';

const op = (key: string, addend = 1): CounterOp => ({
  key,
  prevKey: undefined,
  algorithm: 'fixed_window',
  addend,
  limit: 10,
  windowSeconds: 60,
  ttlSeconds: 60,
  elapsedMs: 0,
  windowEndMs: 60_000,
});

describe('ratelimit/counter-store MemoryStore', () => {
  it('counts per key and expires with the TTL', async () => {
    let now = 0;
    const store = new MemoryStore({ now: () => now });
    try {
      assert.deepEqual(await store.apply([op('a'), op('a'), op('b', 3)]), [1, 2, 3]);
      now = 61_000;
      assert.deepEqual(await store.apply([op('a')]), [1]);
    } finally {
      await store.close();
    }
  });

  it('is bounded: a request needing more live keys than maxKeys fails and changes nothing', async () => {
    let now = 0;
    const store = new MemoryStore({ now: () => now, maxKeys: 3 });
    try {
      await store.apply([op('k1'), op('k2')]);
      await assert.rejects(
        store.apply([op('k3'), op('k4')]),
        (err: unknown) => err instanceof StoreError && err.code === 'ERR_STORE_FULL',
      );
      assert.equal(store.size, 2, 'the refused request incremented nothing');
      assert.deepEqual(await store.apply([op('k1')]), [2]);
      now = 61_000; // expired counters are dropped to make room
      assert.deepEqual(await store.apply([op('k3'), op('k4'), op('k5')]), [1, 1, 1]);
    } finally {
      await store.close();
    }
  });
});

describe('ratelimit/counter-store MemoryStore.peek', () => {
  it('reads counts without creating or changing a key', async () => {
    const store = new MemoryStore({ now: () => 0 });
    try {
      await store.apply([op('seen', 2)]);
      assert.deepEqual(await store.peek(['seen', 'never']), [2, 0]);
      assert.equal(store.size, 1, 'peeking at an absent key created nothing');
      assert.deepEqual(await store.apply([op('seen')]), [3], 'peek did not increment');
    } finally {
      await store.close();
    }
  });
});
