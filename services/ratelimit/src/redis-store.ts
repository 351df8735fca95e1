import { createHash } from 'node:crypto';
import { Redis, Cluster, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { StoreError } from './errors.ts';
import type { CounterStore } from './counter-store.ts';
import type { CounterOp } from './limiter.ts';

/**
 * One script for all the counters of a request: atomic (no other client runs between its
 * commands), one round trip. ARGV[1] is the op count, then 6 values per op:
 * algorithm (f|s), addend, limit, ttl seconds, ms elapsed in the window, window seconds.
 * Fixed window: INCRBY, EXPIRE when the key is new (the reference EXPIREs on every hit).
 * Sliding window: the weighted previous count plus the current one; counted only when admitted.
 */
export const APPLY_SCRIPT = `
local n = tonumber(ARGV[1])
local out = {}
local k = 1
local a = 2
for i = 1, n do
  local algo = ARGV[a]
  local addend = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local ttl = tonumber(ARGV[a + 3])
  local elapsed = tonumber(ARGV[a + 4])
  local win = tonumber(ARGV[a + 5])
  a = a + 6
  if algo == 'f' then
    local v = redis.call('INCRBY', KEYS[k], addend)
    if v == addend then redis.call('EXPIRE', KEYS[k], ttl) end
    out[i] = v
    k = k + 1
  else
    local cur = tonumber(redis.call('GET', KEYS[k]) or '0')
    local prev = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    local winMs = win * 1000
    local weight = (winMs - elapsed) / winMs
    if weight < 0 then weight = 0 end
    local after = math.floor(prev * weight) + cur + addend
    if after <= limit then
      local v = redis.call('INCRBY', KEYS[k], addend)
      if v == addend then redis.call('EXPIRE', KEYS[k], ttl) end
    end
    out[i] = after
    k = k + 2
  end
end
return out
`;
const SCRIPT_SHA = createHash('sha1').update(APPLY_SCRIPT).digest('hex');

/** Redis connection settings (names as the reference's environment variables). */
export interface RedisSettings {
  /** single | sentinel | cluster. */
  readonly type: 'single' | 'sentinel' | 'cluster';
  /** single: host:port, unix path or redis:// URL; sentinel: master,host:port,...; cluster: host:port,... */
  readonly url: string;
  readonly socketType: 'tcp' | 'unix';
  readonly auth: string | undefined;
  readonly sentinelAuth: string | undefined;
  readonly tls: boolean;
  /** Connect timeout, ms. */
  readonly connectTimeoutMs: number;
  /** Deadline of one request's script call, ms. */
  readonly opTimeoutMs: number;
}

function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  if (i === -1) return { host: s, port: 6379 };
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

function authOptions(auth: string | undefined): Pick<RedisOptions, 'username' | 'password'> {
  if (!auth) return {};
  const i = auth.indexOf(':');
  return i === -1 ? { password: auth } : { username: auth.slice(0, i), password: auth.slice(i + 1) };
}

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** Redis Cluster hash slot of a key (CRC16/XMODEM of the `{tag}` or the whole key, mod 16384). */
export function keySlot(key: string): number {
  let s = key;
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) s = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const b of Buffer.from(s))
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ b) & 0xff] as number);
  return crc % 16384;
}

type Client = Redis | Cluster;

/** Counters in Redis: one EVALSHA per request (per hash slot in parallel for Cluster). */
export class RedisStore implements CounterStore {
  readonly kind = 'redis';
  readonly #client: Client;
  readonly #settings: RedisSettings;
  readonly #listeners = new Set<(ready: boolean) => void>();
  readonly #observe: (seconds: number, ok: boolean) => void;
  #ready = false;
  #everReady = false;
  #closed = false;

  constructor(
    settings: RedisSettings,
    deps: { logger: Logger; observe?: (seconds: number, ok: boolean) => void },
  ) {
    this.#settings = settings;
    this.#observe = deps.observe ?? (() => undefined);
    const log = deps.logger.child({ component: 'redis' });
    const common = {
      // Calls issued in the same event-loop tick share one socket write (fewer syscalls under load);
      // each request still costs exactly one EVALSHA.
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: settings.connectTimeoutMs,
      commandTimeout: settings.opTimeoutMs,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      ...authOptions(settings.auth),
      ...(settings.tls ? { tls: {} } : {}),
    };
    if (settings.type === 'cluster') {
      const nodes = settings.url.split(',').map((s) => hostPort(s.trim()));
      this.#client = new Cluster(nodes, {
        enableOfflineQueue: false,
        redisOptions: common,
        clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
      });
    } else if (settings.type === 'sentinel') {
      const [name, ...rest] = settings.url.split(',').map((s) => s.trim());
      this.#client = new Redis({
        ...common,
        name: name ?? 'mymaster',
        sentinels: rest.map(hostPort),
        ...(settings.sentinelAuth ? { sentinelPassword: settings.sentinelAuth } : {}),
      });
    } else if (/^rediss?:\/\//.test(settings.url)) {
      this.#client = new Redis(settings.url, common);
    } else if (settings.socketType === 'unix' || settings.url.startsWith('/')) {
      this.#client = new Redis({ ...common, path: settings.url });
    } else {
      this.#client = new Redis({ ...common, ...hostPort(settings.url) });
    }
    this.#client.on('ready', () => {
      log.info('redis ready');
      this.#setReady(true);
    });
    const down = (what: string) => (err?: unknown) => {
      if (this.#ready) log.warn({ err }, `redis ${what}`);
      this.#setReady(false);
    };
    this.#client.on('close', down('connection closed'));
    this.#client.on('end', down('connection ended'));
    this.#client.on('error', (err: unknown) => {
      log.debug({ err }, 'redis error');
      if (settings.type === 'cluster') this.#setReady(this.#client.status === 'ready');
    });
  }

  #setReady(ready: boolean): void {
    if (ready === this.#ready) return;
    this.#ready = ready;
    if (ready) this.#everReady = true;
    for (const l of this.#listeners) l(ready);
  }

  ready(): boolean {
    return this.#ready && !this.#closed;
  }

  /** GETs the counters (diagnostics): read-only, one command per key, works in Cluster too. */
  async peek(keys: readonly string[]): Promise<number[]> {
    if (!this.#ready) await this.#firstConnection();
    if (this.#closed || !this.#ready) throw new StoreError('ERR_REDIS_UNAVAILABLE', 'redis not connected');
    try {
      const values = await Promise.all(keys.map((k) => this.#client.get(k)));
      return values.map((v) => Number(v ?? 0));
    } catch (err) {
      throw this.#storeError(err);
    }
  }

  onReadyChange(listener: (ready: boolean) => void): void {
    this.#listeners.add(listener);
  }

  /** Resolves once connected, or rejects after `ms`. */
  async waitReady(ms: number): Promise<void> {
    if (this.#ready) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(on);
        reject(new StoreError('ERR_REDIS_UNAVAILABLE', 'redis not ready'));
      }, ms);
      timer.unref();
      const on = (r: boolean): void => {
        if (!r) return;
        clearTimeout(timer);
        this.#listeners.delete(on);
        resolve();
      };
      this.#listeners.add(on);
    });
  }

  #script(ops: readonly CounterOp[]): Array<string | number> {
    const keys: string[] = [];
    const args: Array<string | number> = [ops.length];
    for (const op of ops) {
      keys.push(op.key);
      if (op.algorithm === 'sliding_window') keys.push(op.prevKey ?? op.key);
      args.push(
        op.algorithm === 'sliding_window' ? 's' : 'f',
        op.addend,
        op.limit,
        op.ttlSeconds,
        op.elapsedMs,
        op.windowSeconds,
      );
    }
    return [keys.length, ...keys, ...args];
  }

  async #evalsha(ops: readonly CounterOp[]): Promise<number[]> {
    return (await this.#client.evalsha(SCRIPT_SHA, ...(this.#script(ops) as [number]))) as number[];
  }

  async #eval(ops: readonly CounterOp[]): Promise<number[]> {
    return (await this.#client.eval(APPLY_SCRIPT, ...(this.#script(ops) as [number]))) as number[];
  }

  async #run(ops: readonly CounterOp[]): Promise<number[]> {
    try {
      return await this.#evalsha(ops);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return await this.#eval(ops);
      throw err;
    }
  }

  /** `p`, or a ERR_REDIS_TIMEOUT StoreError once `ms` have passed. */
  #withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#timeout()), Math.max(0, ms));
    });
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
  }

  #timeout(): StoreError {
    return new StoreError('ERR_REDIS_TIMEOUT', `redis did not answer within ${this.#settings.opTimeoutMs}ms`);
  }

  /**
   * Right after start, before the first connection is up, a call waits for it within the op
   * deadline instead of failing: no UNAVAILABLE window while the service starts (the reference keeps
   * its listeners closed until Redis answers). Later disconnections fail at once.
   */
  async #firstConnection(): Promise<void> {
    if (this.#ready || this.#everReady || this.#closed) return;
    await this.waitReady(this.#settings.opTimeoutMs).catch(() => undefined);
  }

  async apply(ops: readonly CounterOp[]): Promise<number[]> {
    if (ops.length === 0) return [];
    if (!this.#ready) await this.#firstConnection();
    if (this.#closed || !this.#ready) throw new StoreError('ERR_REDIS_UNAVAILABLE', 'redis not connected');
    const started = performance.now();
    try {
      let result: number[];
      if (this.#settings.type === 'cluster') {
        const groups = new Map<number, number[]>();
        ops.forEach((op, i) => {
          const slot = keySlot(op.key);
          const g = groups.get(slot);
          if (g) g.push(i);
          else groups.set(slot, [i]);
        });
        result = new Array<number>(ops.length).fill(0);
        const parts = [...groups.values()].map(async (idx) => {
          const r = await this.#run(idx.map((i) => ops[i] as CounterOp));
          idx.forEach((opIndex, j) => (result[opIndex] = Number(r[j])));
        });
        await this.#withDeadline(Promise.all(parts), this.#settings.opTimeoutMs);
      } else {
        // The one EVALSHA carries ioredis's commandTimeout (= opTimeoutMs): no second timer per request.
        let r: number[];
        try {
          r = await this.#evalsha(ops);
        } catch (err) {
          if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
          // script cache flushed: EVAL within what is left of the deadline
          r = await this.#withDeadline(
            this.#eval(ops),
            this.#settings.opTimeoutMs - (performance.now() - started),
          );
        }
        result = new Array<number>(r.length);
        for (let i = 0; i < r.length; i++) result[i] = Number(r[i]);
      }
      this.#observe((performance.now() - started) / 1000, true);
      return result;
    } catch (err) {
      this.#observe((performance.now() - started) / 1000, false);
      throw this.#storeError(err);
    }
  }

  /** A client error as a StoreError: ioredis's commandTimeout is the same timeout as the deadline's. */
  #storeError(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    if (msg === 'Command timed out') return this.#timeout();
    return new StoreError(/timed out/i.test(msg) ? 'ERR_REDIS_TIMEOUT' : 'ERR_REDIS_UNAVAILABLE', msg, {
      cause: err,
    });
  }

  /** Sends PING (readiness probes, tests). */
  async ping(): Promise<string> {
    return this.#client.ping();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#setReady(false);
    this.#client.disconnect();
  }
}
