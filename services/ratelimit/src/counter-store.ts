import type { CounterOp } from './limiter.ts';

/** Where counters live. `apply` runs all ops of one request atomically and returns each count after. */
export interface CounterStore {
  /** `memory` or `redis`. */
  readonly kind: string;
  /** Applies every op (one round trip for Redis) and returns, per op, the count after the hit. */
  apply(ops: readonly CounterOp[]): Promise<number[]>;
  /** Reads counters without touching them (diagnostics): no increment, no key created, no TTL change. */
  peek(keys: readonly string[]): Promise<number[]>;
  /** True when the store can serve (Redis connected). */
  ready(): boolean;
  /** Subscribes to readiness changes. */
  onReadyChange(listener: (ready: boolean) => void): void;
  /** Idempotent. */
  close(): Promise<void>;
}

/**
 * Sliding window counter decision shared by both stores: the previous window's count weighted by
 * the part of it still inside the sliding window, plus the current count. A hit is admitted (and
 * counted) only when `used + addend <= limit`; rejected hits are not counted.
 * Returns the count after (`used + addend`), compared with the limit by the caller.
 */
export function slidingDecision(
  current: number,
  previous: number,
  op: Pick<CounterOp, 'elapsedMs' | 'windowSeconds' | 'limit' | 'addend'>,
): { after: number; admit: boolean } {
  const windowMs = op.windowSeconds * 1000;
  const weight = Math.max(0, windowMs - op.elapsedMs) / windowMs;
  const used = Math.floor(previous * weight) + current;
  const after = used + op.addend;
  return { after, admit: after <= op.limit };
}

/** Default bound of MemoryStore, in bytes of heap (MEMORY_STORE_MAX_BYTES): 32 MiB. */
export const MEMORY_STORE_MAX_BYTES = 32 * 1024 * 1024;

/**
 * Heap bytes one counter costs, as estimated for the bound: the Map slot and the `{ value,
 * expiresAt }` record (measured on Node 24: about 170 bytes with a short key) plus the key at two
 * bytes per character (a key with non-Latin-1 characters is stored two bytes wide).
 */
export function counterCost(key: string): number {
  return 160 + 2 * key.length;
}

/**
 * In-process counters: the default without Redis. Exact for one replica only (every replica
 * counts on its own). Bounded to `maxBytes` of estimated heap (`counterCost`). When a request needs
 * a new counter and the store is full even after dropping expired ones:
 * - counters that already exist keep counting (a full store never stops a limit that is running);
 * - a new counter is not created and its limit is answered OVER_LIMIT (the hit is refused, as if
 *   the limit were reached) — never an error, which Envoy's `failure_mode_deny: false` would turn
 *   into "allow everything"; never an eviction of live counters, which would let a client reset
 *   other clients' limits by flooding the store with fresh keys.
 * A check-only hit (addend 0) on an absent key reads 0 without creating it.
 *
 * A full store sweeps for expired counters only when one can have expired (the store keeps a lower
 * bound of the earliest expiry) and at most once per `fullSweepMs`: a flood of fresh keys against
 * a full store costs O(1) per refused key, not a walk over every counter (issue 18 review).
 */
export class MemoryStore implements CounterStore {
  readonly kind = 'memory';
  readonly #counters = new Map<string, { value: number; expiresAt: number }>();
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  readonly #maxBytes: number;
  readonly #onFull: () => void;
  readonly #fullSweepMs: number;
  #bytes = 0;
  /** No counter expires before this (epoch ms): a lower bound, lowered on insert, exact after a sweep. */
  #nextExpiry = Infinity;
  /** When the last sweep ran (epoch ms). */
  #lastSweep = -Infinity;
  #sweeps = 0;

  constructor(opts: {
    now: () => number;
    sweepMs?: number;
    maxBytes?: number;
    onFull?: () => void;
    fullSweepMs?: number;
  }) {
    this.#now = opts.now;
    this.#maxBytes = opts.maxBytes ?? MEMORY_STORE_MAX_BYTES;
    this.#onFull = opts.onFull ?? (() => undefined);
    this.#fullSweepMs = opts.fullSweepMs ?? 1000;
    this.#timer = setInterval(() => this.#sweep(), opts.sweepMs ?? 10_000);
    this.#timer.unref();
  }

  #get(key: string, now: number): number {
    const c = this.#counters.get(key);
    if (!c) return 0;
    if (c.expiresAt <= now) {
      this.#delete(key);
      return 0;
    }
    return c.value;
  }

  #delete(key: string): void {
    if (this.#counters.delete(key)) this.#bytes -= counterCost(key);
  }

  /**
   * Room for a new counter of `key`: after a sweep of expired counters when one can have expired
   * and no sweep ran in the last `fullSweepMs`.
   */
  #room(key: string, now: number): boolean {
    const cost = counterCost(key);
    if (this.#bytes + cost <= this.#maxBytes) return true;
    if (now < this.#nextExpiry || now - this.#lastSweep < this.#fullSweepMs) return false;
    this.#sweep();
    return this.#bytes + cost <= this.#maxBytes;
  }

  /** Adds `by` to `key`; undefined when the key is new and the store is full (nothing changed). */
  #incr(key: string, by: number, ttlSeconds: number, now: number): number | undefined {
    const cur = this.#counters.get(key);
    if (cur && cur.expiresAt > now) {
      cur.value += by;
      return cur.value;
    }
    if (by === 0) return 0;
    if (cur) this.#delete(key);
    if (!this.#room(key, now)) {
      this.#onFull();
      return undefined;
    }
    const expiresAt = now + ttlSeconds * 1000;
    if (expiresAt < this.#nextExpiry) this.#nextExpiry = expiresAt;
    this.#counters.set(key, { value: by, expiresAt });
    this.#bytes += counterCost(key);
    return by;
  }

  async apply(ops: readonly CounterOp[]): Promise<number[]> {
    const now = this.#now();
    return ops.map((op) => {
      // a refused new counter answers one hit past the limit: OVER_LIMIT, whatever the addend
      const refused = op.limit + Math.max(1, op.addend);
      if (op.algorithm === 'sliding_window') {
        const d = slidingDecision(this.#get(op.key, now), op.prevKey ? this.#get(op.prevKey, now) : 0, op);
        if (d.admit && this.#incr(op.key, op.addend, op.ttlSeconds, now) === undefined) return refused;
        return d.after;
      }
      return this.#incr(op.key, op.addend, op.ttlSeconds, now) ?? refused;
    });
  }

  #sweep(): void {
    const now = this.#now();
    let next = Infinity;
    for (const [k, v] of this.#counters) {
      if (v.expiresAt <= now) this.#delete(k);
      else if (v.expiresAt < next) next = v.expiresAt;
    }
    this.#nextExpiry = next;
    this.#lastSweep = now;
    this.#sweeps++;
  }

  /** Number of sweeps over every counter so far (periodic and full-store ones; tests). */
  get sweeps(): number {
    return this.#sweeps;
  }

  /** Number of counters held (tests, admin view). */
  get size(): number {
    return this.#counters.size;
  }

  /** Keys of the counters held (tests, diagnostics). */
  keys(): IterableIterator<string> {
    return this.#counters.keys();
  }

  /** Estimated heap bytes of the counters held (`counterCost` summed). */
  get bytes(): number {
    return this.#bytes;
  }

  async peek(keys: readonly string[]): Promise<number[]> {
    const now = this.#now();
    return keys.map((k) => this.#get(k, now));
  }

  ready(): boolean {
    return true;
  }

  onReadyChange(): void {}

  async close(): Promise<void> {
    clearInterval(this.#timer);
  }
}

/**
 * The local over-limit cache: a key found over its limit is answered OVER_LIMIT from memory until
 * its window ends, with no store call. Bounded (oldest entries evicted first).
 */
export class OverLimitCache {
  readonly #entries = new Map<string, number>();
  readonly #max: number;
  constructor(maxEntries: number) {
    this.#max = maxEntries;
  }
  /** True when enabled (max entries > 0). */
  get enabled(): boolean {
    return this.#max > 0;
  }
  /** True when `key` is cached as over at `now` (epoch ms). */
  has(key: string, now: number): boolean {
    const until = this.#entries.get(key);
    if (until === undefined) return false;
    if (until <= now) {
      this.#entries.delete(key);
      return false;
    }
    return true;
  }
  /** Caches `key` as over until `until` (epoch ms). */
  set(key: string, until: number): void {
    if (this.#max <= 0) return;
    if (this.#entries.has(key)) this.#entries.delete(key);
    else if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, until);
  }
  /** Current number of entries. */
  get size(): number {
    return this.#entries.size;
  }
}
