import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { counterCost, MemoryStore } from '../src/counter-store.ts';
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

  it('when full, existing counters keep counting and a new counter is answered over its limit', async () => {
    let now = 0;
    let refused = 0;
    // room for exactly three two-character keys
    const store = new MemoryStore({
      now: () => now,
      maxBytes: 3 * counterCost('k1'),
      onFull: () => refused++,
    });
    try {
      assert.deepEqual(await store.apply([op('k1'), op('k2'), op('k3')]), [1, 1, 1]);
      // attack: the store is full; before the fix every call failed and Envoy's fail-open let it through
      assert.deepEqual(await store.apply([op('k1', 9), op('k4')]), [10, 11], 'k1 counts on; k4 is over');
      assert.deepEqual(await store.apply([op('k1')]), [11], 'an existing counter still passes its limit');
      assert.deepEqual(
        await store.apply([op('k4', 0)]),
        [0],
        'a check-only hit on an absent key creates nothing',
      );
      assert.equal(store.size, 3);
      assert.equal(refused, 1);
      now = 61_000; // expired counters are dropped to make room
      assert.deepEqual(await store.apply([op('k4'), op('k5'), op('k6')]), [1, 1, 1]);
      assert.equal(store.bytes, 3 * counterCost('k1'));
    } finally {
      await store.close();
    }
  });

  it('a refused new counter on a sliding window is over its limit too', async () => {
    const store = new MemoryStore({ now: () => 0, maxBytes: counterCost('k1') });
    try {
      const sliding = (key: string): CounterOp => ({
        ...op(key),
        algorithm: 'sliding_window',
        prevKey: `${key}p`,
      });
      assert.deepEqual(await store.apply([sliding('k1')]), [1]);
      assert.deepEqual(await store.apply([sliding('k2')]), [11]);
    } finally {
      await store.close();
    }
  });
  it('a flood of fresh keys against a full store does not walk every counter per key', async () => {
    let now = 0;
    // room for 1000 counters; the periodic sweep is out of the way
    const store = new MemoryStore({
      now: () => now,
      maxBytes: 1000 * counterCost('k0000'),
      sweepMs: 3_600_000,
    });
    try {
      await store.apply(Array.from({ length: 1000 }, (_, i) => op(`k${String(i).padStart(4, '0')}`)));
      assert.equal(store.size, 1000);
      assert.equal(store.sweeps, 0, 'no sweep while there was room');
      // attack: 2000 fresh keys while full and nothing has expired yet. Before the fix each refused
      // key swept the whole map (2000 sweeps over 1000 counters).
      for (let i = 0; i < 2000; i++) assert.deepEqual(await store.apply([op(`f${i}`)]), [11]);
      assert.equal(store.sweeps, 0, 'nothing can have expired: no sweep at all');
      // the counters expire at 60 s: the first fresh key after that sweeps once and gets a counter
      now = 60_000;
      const after = await store.apply(
        Array.from({ length: 500 }, (_, i) => op(`g${String(i).padStart(3, '0')}`)),
      );
      assert.deepEqual(after, Array(500).fill(1));
      assert.equal(store.sweeps, 1);
      assert.equal(store.size, 500);
    } finally {
      await store.close();
    }
  });

  it('a full store whose counters expire one by one sweeps at most once per fullSweepMs', async () => {
    let now = 0;
    const store = new MemoryStore({
      now: () => now,
      maxBytes: 100 * counterCost('k000'),
      sweepMs: 3_600_000,
      fullSweepMs: 1000,
    });
    try {
      // 100 counters with a 1 s TTL created 1 ms apart: one expires every millisecond from 1 s on
      for (let i = 0; i < 100; i++) {
        now = i;
        await store.apply([{ ...op(`k${String(i).padStart(3, '0')}`), ttlSeconds: 1 }]);
      }
      // attack: a fresh key every millisecond while full; each one could free a single counter
      let admitted = 0;
      for (let t = 1000; t < 1100; t++) {
        now = t;
        const [count] = await store.apply([
          { ...op(`f${String(t - 1000).padStart(3, '0')}`), ttlSeconds: 1 },
        ]);
        if (count === 1) admitted++;
      }
      assert.equal(store.sweeps, 1, 'one sweep in the 100 ms, not one per fresh key');
      assert.equal(admitted, 1, 'the sweep freed the one counter expired by then');
      now = 2000; // past fullSweepMs: the next fresh key sweeps again and finds the expired ones
      assert.deepEqual(await store.apply([op('late')]), [1]);
      assert.equal(store.sweeps, 2);
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
