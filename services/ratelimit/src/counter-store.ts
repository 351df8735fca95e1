import type { CounterOp } from './limiter.ts';
import { StoreError } from './errors.ts';

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

/** Default bound of MemoryStore: counters keyed by client-chosen values must not grow the heap forever. */
export const MEMORY_STORE_MAX_KEYS = 1_000_000;

/**
 * In-process counters: the default without Redis. Exact for one replica only. Bounded: when a
 * request would need more than `maxKeys` live counters (after dropping expired ones), it fails with
 * ERR_STORE_FULL like a Redis outage (Envoy's failure mode decides) rather than evicting counters,
 * which would let a client reset other clients' limits.
 */
export class MemoryStore implements CounterStore {
  readonly kind = 'memory';
  readonly #counters = new Map<string, { value: number; expiresAt: number }>();
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  readonly #maxKeys: number;

  constructor(opts: { now: () => number; sweepMs?: number; maxKeys?: number }) {
    this.#now = opts.now;
    this.#maxKeys = opts.maxKeys ?? MEMORY_STORE_MAX_KEYS;
    this.#timer = setInterval(() => this.#sweep(), opts.sweepMs ?? 10_000);
    this.#timer.unref();
  }

  #get(key: string, now: number): number {
    const c = this.#counters.get(key);
    if (!c) return 0;
    if (c.expiresAt <= now) {
      this.#counters.delete(key);
      return 0;
    }
    return c.value;
  }

  #incr(key: string, by: number, ttlSeconds: number, now: number): number {
    const cur = this.#counters.get(key);
    if (cur && cur.expiresAt > now) {
      cur.value += by;
      return cur.value;
    }
    this.#counters.set(key, { value: by, expiresAt: now + ttlSeconds * 1000 });
    return by;
  }

  async apply(ops: readonly CounterOp[]): Promise<number[]> {
    const now = this.#now();
    // Checked before any increment so that a refused request changes no counter (all or nothing).
    if (this.#counters.size + ops.length > this.#maxKeys) {
      this.#sweep();
      if (this.#counters.size + ops.length > this.#maxKeys)
        throw new StoreError('ERR_STORE_FULL', `in-memory counter store is full (${this.#maxKeys} keys)`);
    }
    return ops.map((op) => {
      if (op.algorithm === 'sliding_window') {
        const d = slidingDecision(this.#get(op.key, now), op.prevKey ? this.#get(op.prevKey, now) : 0, op);
        if (d.admit) this.#incr(op.key, op.addend, op.ttlSeconds, now);
        return d.after;
      }
      return this.#incr(op.key, op.addend, op.ttlSeconds, now);
    });
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, v] of this.#counters) if (v.expiresAt <= now) this.#counters.delete(k);
  }

  /** Number of live counters (tests, admin view). */
  get size(): number {
    return this.#counters.size;
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
