import { ServiceError } from './errors.ts';
import {
  matchDescriptor,
  UNIT_SECONDS,
  type Entry,
  type LimitSpec,
  type Match,
  type Override,
  type Rule,
  type RuleSet,
  type Unit,
} from './rules.ts';

/** Response codes of RLS v3. */
export type Code = 'OK' | 'OVER_LIMIT';

/** A request as the core sees it (transport-neutral). */
export interface CoreRequest {
  readonly domain: string;
  readonly descriptors: ReadonlyArray<{
    readonly entries: readonly Entry[];
    readonly override?: Override | undefined;
    /** Per-descriptor `hits_addend` when set (0 allowed: check only). */
    readonly hitsAddend?: number | undefined;
  }>;
  /** Request-level `hits_addend` (0 means 1). */
  readonly hitsAddend: number;
}

/** Behaviour switches of the core (reference env names in config.ts). */
export interface CoreSettings {
  readonly cacheKeyPrefix: string;
  readonly nearLimitRatio: number;
  readonly globalShadowMode: boolean;
  readonly globalQuotaMode: boolean;
  readonly responseHeaders: {
    readonly enabled: boolean;
    readonly limit: string;
    readonly remaining: string;
    readonly reset: string;
  };
  readonly dynamicMetadata: boolean;
  /** Upper bound of the random extra TTL seconds (EXPIRATION_JITTER_MAX_SECONDS). */
  readonly expirationJitterMaxSeconds: number;
  /**
   * STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT (the reference's semantics): counters are read first; when
   * a limit of the request is over in the local cache, no counter is incremented; when some limits
   * would go over with this hit, only those are incremented and the others are left as they are.
   */
  readonly stopIncrementWhenOverLimit?: boolean | undefined;
  /** Bounds of an acceptable request; DEFAULT_REQUEST_LIMITS when absent. */
  readonly requestLimits?: RequestLimits | undefined;
}

/**
 * Bounds of one request, checked before any counter is touched: past them the request is refused
 * (gRPC INVALID_ARGUMENT). The defaults are above anything Envoy sends with its default header size
 * limit (60 KiB), so only direct callers meet them.
 */
export interface RequestLimits {
  /** Most descriptors in one request (MAX_DESCRIPTORS). */
  readonly maxDescriptors: number;
  /** Most entries in one descriptor (MAX_DESCRIPTOR_ENTRIES). */
  readonly maxEntries: number;
  /** Longest domain, entry key or entry value, in characters (MAX_DESCRIPTOR_VALUE_LENGTH). */
  readonly maxValueLength: number;
  /** Largest request or per-descriptor hits_addend (MAX_HITS_ADDEND). */
  readonly maxHitsAddend: number;
}

/** Default RequestLimits (the flags' defaults). */
export const DEFAULT_REQUEST_LIMITS: RequestLimits = Object.freeze({
  maxDescriptors: 256,
  maxEntries: 64,
  maxValueLength: 65_536,
  maxHitsAddend: 4_294_967_295,
});

/** Throws ERR_INVALID_REQUEST when the request exceeds a bound (nothing echoed back but sizes). */
export function checkRequestLimits(req: CoreRequest, limits: RequestLimits): void {
  const refuse = (what: string): never => {
    throw new ServiceError('ERR_INVALID_REQUEST', what);
  };
  if (req.domain.length > limits.maxValueLength)
    refuse(`domain longer than ${limits.maxValueLength} characters`);
  if (req.descriptors.length > limits.maxDescriptors)
    refuse(`${req.descriptors.length} descriptors, more than ${limits.maxDescriptors}`);
  if (!(req.hitsAddend <= limits.maxHitsAddend)) refuse(`hits_addend above ${limits.maxHitsAddend}`);
  for (const d of req.descriptors) {
    if (d.entries.length > limits.maxEntries)
      refuse(`descriptor with ${d.entries.length} entries, more than ${limits.maxEntries}`);
    if (d.hitsAddend !== undefined && !(d.hitsAddend <= limits.maxHitsAddend))
      refuse(`descriptor hits_addend above ${limits.maxHitsAddend}`);
    for (const e of d.entries)
      if (e.key.length > limits.maxValueLength || e.value.length > limits.maxValueLength)
        refuse(`descriptor entry longer than ${limits.maxValueLength} characters`);
  }
}

/** One counter operation for the store: add `addend` to `key` and return the count after. */
export interface CounterOp {
  /** Counter key (reference layout for fixed windows). */
  readonly key: string;
  /** For sliding windows: the previous window's key. */
  readonly prevKey: string | undefined;
  readonly algorithm: LimitSpec['algorithm'];
  readonly addend: number;
  readonly limit: number;
  /** Window length in seconds. */
  readonly windowSeconds: number;
  /** Key TTL in seconds. */
  readonly ttlSeconds: number;
  /** Milliseconds since the start of the current window (sliding window weight). */
  readonly elapsedMs: number;
  /** Epoch ms at which the current window ends (local over-limit cache expiry). */
  readonly windowEndMs: number;
}

/** What the store returns per op: the count after the hit, or that the local cache said over. */
export type CounterResult =
  { readonly kind: 'count'; readonly after: number } | { readonly kind: 'local_over' };

/** A descriptor's resolution in a plan. */
export type PlannedDescriptor =
  | { readonly kind: 'none' }
  | { readonly kind: 'replaced'; readonly match: Match }
  | { readonly kind: 'unlimited'; readonly match: Match }
  | {
      readonly kind: 'count';
      readonly match: Match;
      readonly addend: number;
      readonly ops: readonly number[];
    };

/** The first half of a decision: which counters to touch. Pure. */
export interface Plan {
  readonly request: CoreRequest;
  readonly descriptors: readonly PlannedDescriptor[];
  readonly ops: readonly CounterOp[];
  readonly nowMs: number;
  readonly domainNotFound: boolean;
}

/** Limit as returned in `current_limit`. */
export interface CurrentLimit {
  readonly name: string;
  readonly requestsPerUnit: number;
  readonly unit: Unit;
}

/** One descriptor status. */
export interface CoreStatus {
  readonly code: Code;
  readonly currentLimit: CurrentLimit | undefined;
  readonly limitRemaining: number;
  /** Seconds until the window resets; undefined when there is no limit. */
  readonly durationUntilReset: number | undefined;
}

/** Metric events for one counted limit. */
export interface LimitStats {
  readonly domain: string;
  readonly statKey: string;
  readonly totalHits: number;
  readonly overLimit: number;
  readonly nearLimit: number;
  readonly withinLimit: number;
  readonly overLimitWithLocalCache: number;
  readonly shadowMode: number;
}

/** The full decision. */
export interface CoreResponse {
  readonly overallCode: Code;
  readonly statuses: readonly CoreStatus[];
  readonly responseHeaders: ReadonlyArray<{ readonly key: string; readonly value: string }>;
  readonly dynamicMetadata: Record<string, unknown> | undefined;
  /** Keys found over the limit by the store: the caller caches them until `windowEndMs`. */
  readonly newlyOver: ReadonlyArray<{ readonly key: string; readonly windowEndMs: number }>;
  readonly stats: readonly LimitStats[];
  readonly globalShadowApplied: boolean;
}

/** Largest uint32, the `limit_remaining` of an unlimited descriptor. */
export const UNLIMITED_REMAINING = 4294967295;

/** Addend of descriptor i (reference GetHitsAddends). */
export function hitsAddendOf(req: CoreRequest, i: number): number {
  const d = req.descriptors[i];
  if (d?.hitsAddend !== undefined) return d.hitsAddend;
  return Math.max(1, req.hitsAddend);
}

/**
 * Builds the counter key: `<prefix><domain>_<k1>_<v1>_..._<windowStart>` (the reference's layout)
 * for `rate_limit`; `..._r<i>_<windowStart>` for `rate_limits[i]`; sliding windows put the part
 * before the window start in a `{hash tag}` so both windows of a counter share a Cluster slot.
 */
export function counterKey(
  prefix: string,
  domain: string,
  entries: readonly Entry[],
  values: readonly string[],
  tag: string,
  windowStart: number,
): string {
  let k = domain + '_';
  for (let i = 0; i < entries.length; i++) k += `${(entries[i] as Entry).key}_${values[i] ?? ''}_`;
  if (tag.endsWith('_sw')) return `${prefix}{${k}${tag.slice(1)}}_${windowStart}`;
  return prefix + k + (tag === '' ? '' : tag.slice(1) + '_') + String(windowStart);
}

/** Validates the request and resolves every descriptor; throws ServiceError for empty domain/descriptors. */
export function plan(
  req: CoreRequest,
  rules: RuleSet | undefined,
  settings: CoreSettings,
  nowMs: number,
  random: () => number,
): Plan {
  if (req.domain === '') throw new ServiceError('ERR_EMPTY_DOMAIN', 'rate limit domain must not be empty');
  if (req.descriptors.length === 0)
    throw new ServiceError('ERR_EMPTY_DESCRIPTORS', 'rate limit descriptor list must not be empty');
  checkRequestLimits(req, settings.requestLimits ?? DEFAULT_REQUEST_LIMITS);
  if (!rules) throw new ServiceError('ERR_NO_CONFIG', 'no rate limit configuration loaded');
  let domainNotFound = false;
  const matches: Array<Match | undefined> = req.descriptors.map((d) => {
    const m = matchDescriptor(rules, req.domain, d.entries, d.override);
    if (m === 'domain_not_found') {
      domainNotFound = true;
      return undefined;
    }
    return m;
  });
  const replaced = new Set<string>();
  for (const m of matches) if (m) for (const r of m.rule.replaces) replaced.add(r);
  const nowS = Math.floor(nowMs / 1000);
  const ops: CounterOp[] = [];
  const descriptors: PlannedDescriptor[] = matches.map((m, i) => {
    if (!m) return { kind: 'none' };
    if (m.rule.name !== '' && replaced.has(m.rule.name)) return { kind: 'replaced', match: m };
    if (m.rule.unlimited) return { kind: 'unlimited', match: m };
    const addend = hitsAddendOf(req, i);
    const entries = req.descriptors[i]?.entries ?? [];
    const idx: number[] = [];
    for (const l of m.rule.limits) {
      const win = UNIT_SECONDS[l.unit];
      const start = Math.floor(nowS / win) * win;
      const jitter =
        settings.expirationJitterMaxSeconds > 0
          ? Math.floor(random() * settings.expirationJitterMaxSeconds)
          : 0;
      const sliding = l.algorithm === 'sliding_window';
      const tag = sliding ? `${l.keyTag}_sw` : l.keyTag;
      idx.push(ops.length);
      ops.push({
        key: counterKey(settings.cacheKeyPrefix, req.domain, entries, m.keyValues, tag, start),
        prevKey: sliding
          ? counterKey(settings.cacheKeyPrefix, req.domain, entries, m.keyValues, tag, start - win)
          : undefined,
        algorithm: l.algorithm,
        addend,
        limit: l.requestsPerUnit,
        windowSeconds: win,
        ttlSeconds: (sliding ? 2 * win : win) + jitter,
        elapsedMs: nowMs - start * 1000,
        windowEndMs: (start + win) * 1000,
      });
    }
    return { kind: 'count', match: m, addend, ops: idx };
  });
  return { request: req, descriptors, ops, nowMs, domainNotFound };
}

interface LimitOutcome {
  readonly spec: LimitSpec;
  readonly over: boolean;
  readonly remaining: number;
  readonly reset: number;
}

/** Near/over/within split of one limit's hits, as the reference's base limiter computes it. */
function splitStats(
  limit: number,
  after: number,
  addend: number,
  nearRatio: number,
): { over: number; near: number; within: number } {
  const before = after - addend;
  const near = Math.floor(limit * nearRatio);
  if (after > limit) {
    if (before >= limit) return { over: addend, near: 0, within: 0 };
    return { over: after - limit, near: limit - Math.max(near, before), within: 0 };
  }
  let nearHits = 0;
  if (after > near) nearHits = before >= near ? addend : after - near;
  return { over: 0, near: nearHits, within: addend };
}

const currentLimitOf = (l: LimitSpec): CurrentLimit => ({
  name: l.name,
  requestsPerUnit: l.requestsPerUnit,
  unit: l.unit,
});

/** The second half of a decision: statuses, overall code, headers and metadata from counter results. Pure. */
export function assemble(p: Plan, results: readonly CounterResult[], settings: CoreSettings): CoreResponse {
  const stats: LimitStats[] = [];
  const newlyOver: Array<{ key: string; windowEndMs: number }> = [];
  const nowS = p.nowMs / 1000;
  const quota: boolean[] = [];
  const statuses: CoreStatus[] = p.descriptors.map((d) => {
    quota.push(d.kind !== 'none' && (settings.globalQuotaMode || d.match.rule.quotaMode));
    switch (d.kind) {
      case 'none':
      case 'replaced':
        return { code: 'OK', currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined };
      case 'unlimited':
        return {
          code: 'OK',
          currentLimit: undefined,
          limitRemaining: UNLIMITED_REMAINING,
          durationUntilReset: undefined,
        };
      case 'count': {
        const rule: Rule = d.match.rule;
        const outcomes: LimitOutcome[] = d.ops.map((opIndex, j) => {
          const op = p.ops[opIndex] as CounterOp;
          const spec = rule.limits[j] as LimitSpec;
          const r = results[opIndex] ?? { kind: 'count', after: 0 };
          const reset = Math.max(1, Math.ceil(op.windowSeconds - (nowS % op.windowSeconds)));
          let s: { over: number; near: number; within: number };
          let local = 0;
          let over: boolean;
          let remaining = 0;
          if (r.kind === 'local_over') {
            over = true;
            s = { over: d.addend, near: 0, within: 0 };
            local = d.addend;
          } else {
            over = r.after > op.limit;
            remaining = over ? 0 : op.limit - r.after;
            s = splitStats(op.limit, r.after, d.addend, settings.nearLimitRatio);
            if (over && op.algorithm === 'fixed_window')
              newlyOver.push({ key: op.key, windowEndMs: op.windowEndMs });
          }
          const shadow = over && rule.shadowMode ? d.addend : 0;
          stats.push({
            domain: p.request.domain,
            statKey: d.match.statKey,
            totalHits: d.addend,
            overLimit: s.over,
            nearLimit: s.near,
            withinLimit: s.within,
            overLimitWithLocalCache: local,
            shadowMode: shadow,
          });
          return { spec, over, remaining, reset };
        });
        // Several limits: the first exceeded one is reported, else the one with the least remaining.
        let chosen = outcomes.find((o) => o.over);
        if (!chosen) for (const o of outcomes) if (!chosen || o.remaining < chosen.remaining) chosen = o;
        if (!chosen)
          return { code: 'OK', currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined };
        const code: Code = chosen.over && !rule.shadowMode ? 'OVER_LIMIT' : 'OK';
        return {
          code,
          currentLimit: currentLimitOf(chosen.spec),
          limitRemaining: chosen.remaining,
          durationUntilReset: chosen.reset,
        };
      }
    }
  });
  let anyRegularOver = false;
  let quotaCount = 0;
  let quotaOver = 0;
  statuses.forEach((s, i) => {
    if (quota[i]) {
      quotaCount++;
      if (s.code === 'OVER_LIMIT') quotaOver++;
    } else if (s.code === 'OVER_LIMIT') anyRegularOver = true;
  });
  let overall: Code = anyRegularOver || (quotaCount > 0 && quotaOver === quotaCount) ? 'OVER_LIMIT' : 'OK';
  let globalShadowApplied = false;
  if (overall === 'OVER_LIMIT' && settings.globalShadowMode) {
    overall = 'OK';
    globalShadowApplied = true;
  }
  const responseHeaders: Array<{ key: string; value: string }> = [];
  if (settings.responseHeaders.enabled) {
    let src: CoreStatus | undefined;
    statuses.forEach((s, i) => {
      if (!s.currentLimit) return;
      if (s.code === 'OVER_LIMIT' && !quota[i]) {
        src = s;
        return;
      }
      if (src && src.code === 'OVER_LIMIT' && !quota[statuses.indexOf(src)]) return;
      if (!src || s.limitRemaining < src.limitRemaining) src = s;
    });
    const chosen = src;
    if (chosen?.currentLimit) {
      responseHeaders.push(
        { key: settings.responseHeaders.limit, value: String(chosen.currentLimit.requestsPerUnit) },
        { key: settings.responseHeaders.remaining, value: String(chosen.limitRemaining) },
        { key: settings.responseHeaders.reset, value: String(chosen.durationUntilReset ?? 0) },
      );
    }
  }
  let dynamicMetadata: Record<string, unknown> | undefined;
  if (settings.dynamicMetadata) {
    const req = p.request;
    const md: Record<string, unknown> = {
      domain: req.domain,
      descriptors: req.descriptors.map((d) => ({
        entries: d.entries.map((e) => `${e.key}=${e.value}`),
        ...(d.override
          ? { limit: `requests_per_unit:${d.override.requestsPerUnit} unit:${d.override.unit}` }
          : {}),
        ...(d.hitsAddend !== undefined ? { hitsAddend: d.hitsAddend } : {}),
      })),
    };
    if (req.hitsAddend > 0) md['hitsAddend'] = req.hitsAddend;
    let merged: Record<string, unknown> | undefined;
    p.descriptors.forEach((d, i) => {
      if (d.kind === 'none' || statuses[i]?.code !== 'OK' || !d.match.rule.metadata) return;
      merged = mergeFirstWins(merged ?? {}, d.match.rule.metadata);
    });
    if (merged) md['metadata'] = merged;
    dynamicMetadata = md;
  }
  return {
    overallCode: overall,
    statuses,
    responseHeaders,
    dynamicMetadata,
    newlyOver,
    stats,
    globalShadowApplied,
  };
}

function mergeFirstWins(
  into: Record<string, unknown>,
  from: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...into };
  for (const [k, v] of Object.entries(from)) {
    const cur = out[k];
    if (cur === undefined) out[k] = v;
    else if (isObj(cur) && isObj(v)) out[k] = mergeFirstWins(cur, v);
  }
  return out;
}
const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Answer for the fail-open path: every counted descriptor OK with its limit, nothing counted. */
export function failOpen(p: Plan): CoreStatus[] {
  return p.descriptors.map((d) =>
    d.kind === 'unlimited'
      ? {
          code: 'OK',
          currentLimit: undefined,
          limitRemaining: UNLIMITED_REMAINING,
          durationUntilReset: undefined,
        }
      : { code: 'OK', currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined },
  );
}
