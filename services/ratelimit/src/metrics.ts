import { Counter, Histogram, type Registry } from 'prom-client';
import type { LimitStats } from './limiter.ts';

/** Per-rule statistics, as the reference's per-rule stats. */
type RuleStat =
  'total_hits' | 'over_limit' | 'near_limit' | 'within_limit' | 'shadow_mode' | 'over_limit_with_local_cache';

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
  readonly #seen = new Set<string>();
  readonly #maxKeys: number;

  constructor(registry: Registry, maxKeys: number) {
    this.#maxKeys = maxKeys;
    const per = (stat: string, help: string): Counter<'domain' | 'key'> =>
      new Counter({
        name: `ratelimit_service_rate_limit_${stat}`,
        help,
        labelNames: ['domain', 'key'],
        registers: [registry],
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
    });
    for (const r of ['success', 'error']) this.configLoad.inc({ result: r }, 0);
  }

  /** Bounded label: the first `maxKeys` keys are kept, others are `_overflow`. */
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

  readonly #children = new Map<string, Record<RuleStat, { inc(v: number): void }>>();

  /** Label children of one rule, created once (label hashing stays off the hot path). */
  #rule(domain: string, key: string): Record<RuleStat, { inc(v: number): void }> {
    const id = `${domain}\u0000${key}`;
    let c = this.#children.get(id);
    if (!c) {
      const l = this.#label(domain, key);
      const p = this.#perRule;
      c = {
        total_hits: p.total_hits.labels(l),
        over_limit: p.over_limit.labels(l),
        near_limit: p.near_limit.labels(l),
        within_limit: p.within_limit.labels(l),
        shadow_mode: p.shadow_mode.labels(l),
        over_limit_with_local_cache: p.over_limit_with_local_cache.labels(l),
      };
      // overflowed keys share children; only remember keys that got their own label
      if (l.key !== '_overflow') this.#children.set(id, c);
    }
    return c;
  }

  /** Records the per-rule stats of one decision. */
  record(stats: readonly LimitStats[]): void {
    for (const s of stats) {
      const c = this.#rule(s.domain, s.statKey);
      c.total_hits.inc(s.totalHits);
      if (s.overLimit) c.over_limit.inc(s.overLimit);
      if (s.nearLimit) c.near_limit.inc(s.nearLimit);
      if (s.withinLimit) c.within_limit.inc(s.withinLimit);
      if (s.shadowMode) c.shadow_mode.inc(s.shadowMode);
      if (s.overLimitWithLocalCache) c.over_limit_with_local_cache.inc(s.overLimitWithLocalCache);
    }
  }

  /** Counts a request for an unknown domain (bounded like per-rule labels). */
  domainMissing(domain: string): void {
    const l = this.#label(domain, '\u0001domain_not_found');
    this.domainNotFound.inc({ domain: l.key === '_overflow' ? '_overflow' : domain });
  }
}
