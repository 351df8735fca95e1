import { createHash } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LimitStats } from './limiter.ts';

/** Per-rule statistics, as the reference's per-rule stats. */
type RuleStat =
  'total_hits' | 'over_limit' | 'near_limit' | 'within_limit' | 'shadow_mode' | 'over_limit_with_local_cache';

/** Stats counted only when non-zero. */
const SPARSE_STATS = [
  'over_limit',
  'near_limit',
  'within_limit',
  'shadow_mode',
  'over_limit_with_local_cache',
] as const;

/** Pending sums of one rule's stats since the last registry read. */
type RuleCounts = Record<RuleStat, number> & {
  readonly labels: { readonly domain: string; readonly key: string };
  touched: boolean;
};

const newCounts = (labels: { domain: string; key: string }): RuleCounts => ({
  labels,
  touched: false,
  total_hits: 0,
  over_limit: 0,
  near_limit: 0,
  within_limit: 0,
  shadow_mode: 0,
  over_limit_with_local_cache: 0,
});

/** Longest metric label value kept as is (domains, rule keys). */
export const MAX_LABEL_LENGTH = 128;

/**
 * A label value of at most MAX_LABEL_LENGTH characters: longer values (a domain or a key carrying
 * request values) keep their first 64 characters and a hash of the whole, so they stay distinct
 * while /metrics stays small.
 */
export function boundLabel(value: string): string {
  if (value.length <= MAX_LABEL_LENGTH) return value;
  return `${value.slice(0, 64)}~${createHash('sha256').update(value).digest('hex').slice(0, 16)}`;
}

/** Distinct unknown domains that get their own `domain_not_found` label. */
const MAX_MISSING_DOMAIN_LABELS = 50;

/** Prometheus metrics of the service. Per-rule label sets are bounded by `maxKeys`. */
export class Metrics {
  readonly #perRule: Record<RuleStat, Counter<'domain' | 'key'>>;
  readonly configLoad: Counter<'result'>;
  readonly globalShadowMode: Counter;
  readonly callErrors: Counter<'kind'>;
  readonly domainNotFound: Counter<'domain'>;
  readonly redisErrors: Counter;
  readonly redisLatency: Histogram<'result'>;
  readonly requests: Counter<'code'>;
  readonly memoryStoreRefused: Counter;
  readonly storeReady: Gauge;
  readonly #seen = new Set<string>();
  /** Unknown domains (bounded labels) and their request counts. */
  readonly #missingDomains = new Map<string, number>();
  readonly #maxKeys: number;

  constructor(registry: Registry, maxKeys: number) {
    this.#maxKeys = maxKeys;
    // Hits are summed in plain numbers per rule (RuleCounts) and handed to prom-client when the
    // registry is read: prom-client hashes the label set on every inc(), a string per call.
    const flushAll = this.#flushAll.bind(this);
    const per = (stat: string, help: string): Counter<'domain' | 'key'> =>
      new Counter({
        name: `ratelimit_service_rate_limit_${stat}`,
        help,
        labelNames: ['domain', 'key'],
        registers: [registry],
        collect: flushAll,
      });
    this.#perRule = {
      total_hits: per('total_hits', 'Hits (sum of addends) per rule.'),
      over_limit: per('over_limit', 'Hits over the limit per rule.'),
      near_limit: per('near_limit', 'Hits above NEAR_LIMIT_RATIO of the limit per rule.'),
      within_limit: per('within_limit', 'Hits within the limit per rule.'),
      shadow_mode: per('shadow_mode', 'Over-limit hits let through by shadow_mode per rule.'),
      over_limit_with_local_cache: per(
        'over_limit_with_local_cache',
        'Over-limit hits answered from the local cache per rule.',
      ),
    };
    this.configLoad = new Counter({
      name: 'ratelimit_service_config_load_total',
      help: 'Configuration loads by result (success, error).',
      labelNames: ['result'],
      registers: [registry],
    });
    this.globalShadowMode = new Counter({
      name: 'ratelimit_service_global_shadow_mode',
      help: 'Requests turned OK by global SHADOW_MODE.',
      registers: [registry],
    });
    this.callErrors = new Counter({
      name: 'ratelimit_service_call_should_rate_limit_errors',
      help: 'ShouldRateLimit errors by kind (redis_error, service_error).',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.domainNotFound = new Counter({
      name: 'ratelimit_service_rate_limit_domain_not_found',
      help: 'Requests for a domain absent from the configuration.',
      labelNames: ['domain'],
      registers: [registry],
    });
    this.redisErrors = new Counter({
      name: 'ratelimit_redis_errors',
      help: 'Failed or timed out Redis calls.',
      registers: [registry],
    });
    this.redisLatency = new Histogram({
      name: 'ratelimit_redis_latency_seconds',
      help: 'Latency of the one Redis call of a request.',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    });
    this.requests = new Counter({
      name: 'ratelimit_should_rate_limit_total',
      help: 'ShouldRateLimit calls by overall code (OK, OVER_LIMIT, ERROR).',
      labelNames: ['code'],
      registers: [registry],
      collect: () => {
        for (const code of ['OK', 'OVER_LIMIT', 'ERROR'] as const) {
          const n = this.#requestCounts[code];
          if (n === undefined) continue;
          this.requests.inc({ code }, n);
          this.#requestCounts[code] = 0;
        }
      },
    });
    this.memoryStoreRefused = new Counter({
      name: 'ratelimit_memory_store_full_refused',
      help: 'Memory mode: new counters refused (answered OVER_LIMIT) because MEMORY_STORE_MAX_BYTES was reached.',
      registers: [registry],
    });
    this.storeReady = new Gauge({
      name: 'ratelimit_store_ready',
      help: 'Whether the counter store can serve: 1 when Redis is connected (always 1 in memory mode), 0 otherwise.',
      registers: [registry],
    });
    for (const r of ['success', 'error']) this.configLoad.inc({ result: r }, 0);
  }

  /** Calls per overall code since the last registry read (undefined: never seen, no series yet). */
  readonly #requestCounts: Partial<Record<'OK' | 'OVER_LIMIT' | 'ERROR', number>> = {};
  #redisOk: { observe(v: number): void } | undefined;
  #redisError: { observe(v: number): void } | undefined;

  /** Counts one ShouldRateLimit answer (summed here, handed to prom-client when the registry is read). */
  requestDone(code: 'OK' | 'OVER_LIMIT' | 'ERROR'): void {
    this.#requestCounts[code] = (this.#requestCounts[code] ?? 0) + 1;
  }

  /** Observes one Redis call's latency in seconds. */
  redisObserved(seconds: number, ok: boolean): void {
    if (ok) (this.#redisOk ??= this.redisLatency.labels({ result: 'ok' })).observe(seconds);
    else (this.#redisError ??= this.redisLatency.labels({ result: 'error' })).observe(seconds);
  }

  /** Bounded label: the first `maxKeys` keys are kept, others are `_overflow`; values are bounded in length. */
  #label(domain: string, key: string): { domain: string; key: string } {
    const rule = key.startsWith(domain + '.') ? key.slice(domain.length + 1) : key;
    const id = `${domain}\u0000${rule}`;
    if (this.#seen.has(id)) return { domain, key: rule };
    if (this.#seen.size < this.#maxKeys) {
      this.#seen.add(id);
      return { domain, key: rule };
    }
    return { domain, key: '_overflow' };
  }

  /** Per domain, per stat key: the pending sums of one rule (shared by overflowed keys). */
  readonly #children = new Map<string, Map<string, RuleCounts>>();
  /** Every RuleCounts, in first-seen order. */
  readonly #all: RuleCounts[] = [];
  #overflow: RuleCounts | undefined;

  /** Pending sums of one rule, created once. */
  #rule(domain: string, key: string): RuleCounts {
    if (domain.length > MAX_LABEL_LENGTH || key.length > MAX_LABEL_LENGTH) {
      // long values are remembered (and labelled) by their bounded form only
      const rule = key.startsWith(domain + '.') ? key.slice(domain.length + 1) : key;
      domain = boundLabel(domain);
      key = `${domain}.${boundLabel(rule)}`;
    }
    let byKey = this.#children.get(domain);
    if (!byKey) {
      byKey = new Map();
      this.#children.set(domain, byKey);
    }
    let c = byKey.get(key);
    if (!c) {
      const l = this.#label(domain, key);
      if (l.key === '_overflow') {
        // overflowed keys share one entry; only keys that got their own label are remembered
        c = this.#overflow ??= newCounts(l);
        return c;
      }
      c = newCounts(l);
      this.#all.push(c);
      byKey.set(key, c);
    }
    return c;
  }

  /** Records the per-rule stats of one decision. */
  record(stats: readonly LimitStats[]): void {
    for (const s of stats) {
      const c = this.#rule(s.domain, s.statKey);
      c.touched = true;
      c.total_hits += s.totalHits;
      if (s.overLimit) c.over_limit += s.overLimit;
      if (s.nearLimit) c.near_limit += s.nearLimit;
      if (s.withinLimit) c.within_limit += s.withinLimit;
      if (s.shadowMode) c.shadow_mode += s.shadowMode;
      if (s.overLimitWithLocalCache) c.over_limit_with_local_cache += s.overLimitWithLocalCache;
    }
  }

  /** Hands the pending per-rule sums to prom-client (on every registry read). */
  #flushAll(): void {
    const flush = (c: RuleCounts): void => {
      if (!c.touched) return;
      const p = this.#perRule;
      // total_hits was inc'ed on every record, even by 0: its series exists once a rule is seen
      p.total_hits.inc(c.labels, c.total_hits);
      for (const stat of SPARSE_STATS) if (c[stat] > 0) p[stat].inc(c.labels, c[stat]);
      c.touched = false;
      c.total_hits = c.over_limit = c.near_limit = c.within_limit = 0;
      c.shadow_mode = c.over_limit_with_local_cache = 0;
    };
    for (const c of this.#all) flush(c);
    if (this.#overflow) flush(this.#overflow);
  }

  /**
   * Counts a request for an unknown domain. Unknown domains come from Envoy configuration (or a
   * client of the JSON endpoint), so they get their own small label budget: they can never push
   * the configured rules' labels into `_overflow`. Returns the label and whether it is new (the
   * caller warns once per domain).
   */
  domainMissing(domain: string): { readonly label: string; readonly first: boolean } {
    let label = boundLabel(domain);
    let first = false;
    if (!this.#missingDomains.has(label)) {
      if (this.#missingDomains.size < MAX_MISSING_DOMAIN_LABELS) first = true;
      else label = '_overflow';
    }
    this.#missingDomains.set(label, (this.#missingDomains.get(label) ?? 0) + 1);
    this.domainNotFound.inc({ domain: label });
    return { label, first };
  }

  /** Unknown domains seen so far with their request counts (bounded labels, `_overflow` last), for /diag. */
  missingDomains(): ReadonlyArray<readonly [string, number]> {
    return [...this.#missingDomains];
  }
}
