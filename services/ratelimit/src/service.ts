import type { Logger } from 'pino';
import { StoreError, ServiceError } from './errors.ts';
import type { CounterStore, OverLimitCache } from './counter-store.ts';
import { slidingDecision } from './counter-store.ts';
import {
  assemble,
  failOpen,
  plan,
  type CoreRequest,
  type CoreResponse,
  type CoreSettings,
  type CounterOp,
  type CounterResult,
} from './limiter.ts';
import type { Metrics } from './metrics.ts';
import type { RuleSet } from './rules.ts';

/** Dependencies of the rate limit service. */
export interface ServiceDeps {
  readonly rules: () => RuleSet | undefined;
  readonly settings: CoreSettings;
  readonly store: CounterStore;
  readonly localCache: OverLimitCache;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly failOpen: boolean;
  /** Epoch ms. */
  readonly now: () => number;
  readonly random: () => number;
}

/** ShouldRateLimit, transport-neutral: plan, local cache, one store call, assemble. */
export class RateLimitService {
  readonly #d: ServiceDeps;
  constructor(deps: ServiceDeps) {
    this.#d = deps;
  }

  /** Decides one request. Throws ServiceError (bad request / no config) or StoreError (Redis failure without fail-open). */
  async shouldRateLimit(req: CoreRequest): Promise<CoreResponse> {
    const d = this.#d;
    let p;
    try {
      p = plan(req, d.rules(), d.settings, d.now(), d.random);
    } catch (err) {
      if (err instanceof ServiceError) d.metrics.callErrors.inc({ kind: 'service_error' });
      throw err;
    }
    if (p.domainNotFound) {
      const missing = d.metrics.domainMissing(req.domain);
      // once per domain (bounded): an Envoy or Emissary domain that matches no configuration file
      // lets every request through, so it must be visible
      if (missing.first)
        d.logger.warn(
          { domain: missing.label, domains: [...(d.rules()?.domains.keys() ?? [])].slice(0, 20) },
          'request for a domain absent from the rate limit configuration: nothing is limited for it',
        );
    }
    const results: CounterResult[] = new Array<CounterResult>(p.ops.length);
    const pending: number[] = [];
    const now = p.nowMs;
    p.ops.forEach((op, i) => {
      if (op.algorithm === 'fixed_window' && d.localCache.enabled && d.localCache.has(op.key, now))
        results[i] = { kind: 'local_over' };
      else pending.push(i);
    });
    if (pending.length > 0) {
      try {
        let ops = pending.map((i) => p.ops[i]!);
        if (d.settings.stopIncrementWhenOverLimit)
          ops = await this.#withoutIncrementWhenOver(ops, pending.length < p.ops.length);
        const counts = await d.store.apply(ops);
        pending.forEach((opIndex, j) => (results[opIndex] = { kind: 'count', after: counts[j] ?? 0 }));
      } catch (err) {
        d.metrics.redisErrors.inc();
        d.metrics.callErrors.inc({ kind: 'redis_error' });
        if (!d.failOpen)
          throw err instanceof StoreError
            ? err
            : new StoreError('ERR_REDIS_UNAVAILABLE', err instanceof Error ? err.message : String(err), {
                cause: err,
              });
        d.logger.warn(
          { err: err instanceof StoreError ? err.message : String(err) },
          'counter store failed: failing open',
        );
        return {
          overallCode: 'OK',
          statuses: failOpen(p),
          responseHeaders: [],
          dynamicMetadata: undefined,
          newlyOver: [],
          stats: [],
          globalShadowApplied: false,
        };
      }
    }
    const resp = assemble(p, results, d.settings);
    for (const o of resp.newlyOver) d.localCache.set(o.key, o.windowEndMs);
    d.metrics.record(resp.stats);
    if (resp.globalShadowApplied) d.metrics.globalShadowMode.inc();
    return resp;
  }

  /**
   * The addends STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT gives (reference fixed_cache_impl.go): none
   * when a limit was answered from the local over-limit cache; otherwise the counters are read and,
   * when some would go over with this hit, only those are incremented. A counter left alone is still
   * read (addend 0), so its status reports its current count.
   */
  async #withoutIncrementWhenOver(ops: CounterOp[], localOver: boolean): Promise<CounterOp[]> {
    if (localOver) return ops.map((op) => ({ ...op, addend: 0 }));
    const keys: string[] = [];
    for (const op of ops) keys.push(op.key, ...(op.prevKey !== undefined ? [op.prevKey] : []));
    const values = await this.#d.store.peek(keys);
    let k = 0;
    const over = ops.map((op) => {
      const current = values[k++] ?? 0;
      if (op.algorithm === 'sliding_window') return !slidingDecision(current, values[k++] ?? 0, op).admit;
      return current + op.addend > op.limit;
    });
    if (!over.includes(true)) return ops;
    return ops.map((op, i) => (over[i] ? op : { ...op, addend: 0 }));
  }
}
