import { registerDiag, type DiagSection, type DiagTreeNode, type DiagValue } from '@extsvc/common/diag';
import type { HealthState } from '@extsvc/common/health';
import { slidingDecision, type CounterStore } from './counter-store.ts';
import { ServiceError } from './errors.ts';
import { plan, type CoreSettings, type CounterOp } from './limiter.ts';
import type { Entry, LimitSpec, Rule, RuleNode, RuleSet } from './rules.ts';

/**
 * A read of counters without counting: the value of each key, 0 when absent. Stores that have it
 * (`peek`) are read with GET; otherwise the lookup uses `apply` with an addend of 0, which never
 * changes a count (at most it creates an empty key with its window TTL).
 */
export type CounterPeek = (keys: readonly string[]) => Promise<number[]>;

/** The counter store as the diagnostics use it. */
export type DiagStore = Pick<CounterStore, 'kind' | 'ready' | 'apply'> & { readonly peek?: CounterPeek };

/** Redis connection facts shown on the page (the URL is shown without credentials). */
export interface RedisView {
  readonly type: string;
  readonly url: string;
  readonly tls: boolean;
  /** Whether REDIS_AUTH is set (its value is never shown). */
  readonly auth: boolean;
}

/** What the ratelimit diagnostics read: live objects of the server, as closures. */
export interface RatelimitDiagSource {
  /** The active rule set (holder.rules). */
  readonly rules: () => RuleSet | undefined;
  /** Message of the last failed load, undefined after a success (holder.lastError). */
  readonly lastError: () => string | undefined;
  /** Epoch ms of the last successful load (holder.loadedAt). */
  readonly loadedAt: () => number | undefined;
  /** Directory the configuration is read from. */
  readonly configDir?: string | undefined;
  readonly settings: CoreSettings;
  readonly store: DiagStore;
  /** Present when counting in Redis. */
  readonly redis?: RedisView | undefined;
  /** Epoch ms clock (defaults to Date.now). */
  readonly now?: () => number;
  /** REDIS_FAIL_OPEN: what a request gets while the store is down. */
  readonly failOpen?: boolean;
  /** Epoch ms of the store's last readiness change (start time when it never changed). */
  readonly storeChangedAt?: () => number;
  /** Domains asked for that no configuration defines, with request counts (bounded). */
  readonly unknownDomains?: () => ReadonlyArray<readonly [string, number]>;
}

/** Admin path of the descriptor lookup form. */
export const RATELIMIT_LOOKUP_PATH = '/diag/ratelimit/lookup';

/** A URL (or `host:port` list) without credentials. */
export function safeRedisUrl(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return url.replace(/^[^@,]*@/, '(redacted)@');
  try {
    const u = new URL(url);
    const had = u.username !== '' || u.password !== '';
    u.username = '';
    u.password = '';
    u.search = '';
    return had ? u.toString().replace('//', '//(redacted)@') : u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

const onOff = (b: boolean): string => (b ? 'on' : 'off');

/** `5/MINUTE`, `10/HOUR sliding (burst)`; the limit's name is shown when it differs from the rule's. */
function limitText(l: LimitSpec, ruleName = ''): string {
  const name = l.name && l.name !== ruleName ? ` (${l.name})` : '';
  return `${l.requestsPerUnit}/${l.unit}${l.algorithm === 'sliding_window' ? ' sliding' : ''}${name}`;
}

/** Flags of a rule, as shown on the page: shadow_mode, quota_mode, name, replaces... */
export function ruleFlags(r: Rule): string[] {
  const f: string[] = [];
  if (r.unlimited) f.push('unlimited');
  if (r.shadowMode) f.push('shadow_mode');
  if (r.quotaMode) f.push('quota_mode');
  if (r.name) f.push(`name=${r.name}`);
  if (r.replaces.length > 0) f.push(`replaces=${r.replaces.join(',')}`);
  if (r.detailedMetric) f.push('detailed_metric');
  return f;
}

function nodeLabel(n: RuleNode): string {
  return n.id === n.key ? n.key : `${n.key}=${n.id.slice(n.key.length + 1)}`;
}

function tree(n: RuleNode): DiagTreeNode {
  const detail: string[] = [];
  if (n.rule) {
    const rule = n.rule;
    if (rule.limits.length > 0) detail.push(rule.limits.map((l) => limitText(l, rule.name)).join(' + '));
    detail.push(...ruleFlags(n.rule));
  }
  if (n.valueToMetric) detail.push('value_to_metric');
  if (n.shareThreshold) detail.push('share_threshold');
  const children = [...n.children.values()].map(tree);
  return {
    label: nodeLabel(n),
    ...(detail.length > 0 ? { detail: detail.join(' · ') } : {}),
    ...(children.length > 0 ? { children } : {}),
  };
}

function limitRows(rules: RuleSet): DiagValue[][] {
  const rows: DiagValue[][] = [];
  const visit = (domain: string, n: RuleNode): void => {
    if (n.rule)
      rows.push([
        domain,
        n.rule.statKey,
        n.rule.unlimited ? 'unlimited' : n.rule.limits.map((l) => limitText(l, n.rule?.name)).join(' + '),
        n.rule.shadowMode ? 'shadow' : '',
        n.rule.quotaMode ? 'quota' : '',
        ruleFlags(n.rule)
          .filter((f) => !['unlimited', 'shadow_mode', 'quota_mode'].includes(f))
          .join(', '),
      ]);
    for (const c of n.children.values()) visit(domain, c);
  };
  for (const [domain, root] of rules.domains) visit(domain, root);
  return rows;
}

/** Builds the ratelimit sections: configuration and last reload, store/Redis state, descriptor trees, limits, lookup form. */
export function ratelimitDiagSections(src: RatelimitDiagSource): DiagSection[] {
  const rules = src.rules();
  const loadedAt = src.loadedAt();
  const lastError = src.lastError();
  const s = src.settings;
  const config: Array<readonly [string, DiagValue]> = [
    ['config directory', src.configDir ?? ''],
    ['state', rules ? 'loaded' : 'not loaded'],
    ['loaded at', loadedAt === undefined ? 'never' : new Date(loadedAt).toISOString()],
    ['files', rules ? rules.files.join(', ') : ''],
    ['domains', rules ? [...rules.domains.keys()].join(', ') : ''],
    ['last reload', lastError === undefined ? 'ok' : 'failed'],
    ['last reload error', lastError ?? 'none'],
    ['global shadow mode', onOff(s.globalShadowMode)],
    ['global quota mode', onOff(s.globalQuotaMode)],
    ['near limit ratio', s.nearLimitRatio],
    ['cache key prefix', s.cacheKeyPrefix],
    ['rate limit headers', onOff(s.responseHeaders.enabled)],
  ];
  const ready = src.store.ready();
  const store: Array<readonly [string, DiagValue]> = [
    ['store', src.store.kind],
    ['state', src.store.kind === 'redis' ? (ready ? 'connected' : 'disconnected') : ready ? 'ok' : 'error'],
  ];
  if (!ready) {
    const since = src.storeChangedAt?.();
    store.push(
      ['readiness (component redis)', 'not ready'],
      [
        'impact',
        src.failOpen
          ? 'requests are answered OK without any limit (REDIS_FAIL_OPEN=true)'
          : "requests that need a counter fail UNAVAILABLE; Envoy's failure_mode_deny decides (false, Envoy's and Emissary's default: let through unlimited)",
      ],
    );
    if (since !== undefined) store.push(['down since', new Date(since).toISOString()]);
  }
  if (src.redis) {
    store.push(
      ['redis type', src.redis.type],
      ['redis url', safeRedisUrl(src.redis.url)],
      ['tls', onOff(src.redis.tls)],
      ['auth', src.redis.auth ? 'set (redacted)' : 'none'],
    );
  } else if (src.store.kind === 'memory')
    store.push(['note', 'in-process counters: exact for one replica only']);
  const domains = rules ? [...rules.domains.keys()] : [];
  return [
    { kind: 'kv', title: 'Configuration', entries: config },
    { kind: 'kv', title: 'Counter store', entries: store },
    {
      kind: 'table',
      title: 'Unknown domains',
      columns: ['domain', 'requests', 'state'],
      rows: (src.unknownDomains?.() ?? []).map(([d, n]) => [d, n, 'not limited']),
      empty: `none: every request named a configured domain (${domains.join(', ') || 'none loaded'})`,
    },
    {
      kind: 'tree',
      title: 'Descriptor trees',
      nodes: rules ? [...rules.domains.values()].map((n) => ({ ...tree(n), label: `domain ${n.id}` })) : [],
    },
    {
      kind: 'table',
      title: 'Limits',
      columns: ['domain', 'rule', 'limit', 'shadow', 'quota', 'flags'],
      rows: rules ? limitRows(rules) : [],
      empty: 'no configuration loaded',
    },
    {
      kind: 'form',
      title: 'Look up a descriptor',
      id: 'ratelimit-lookup',
      action: RATELIMIT_LOOKUP_PATH,
      note: 'Shows the rule a descriptor matches, its current count and window reset. Read-only: nothing is counted.',
      fields: [
        domains.length > 0
          ? { name: 'domain', label: 'Domain', kind: 'select', options: domains, value: domains[0] ?? '' }
          : { name: 'domain', label: 'Domain', kind: 'text' },
        {
          name: 'descriptor',
          label: 'Descriptor entries (k=v,k2=v2)',
          kind: 'text',
          placeholder: 'key1=value1,subkey1=x',
        },
      ],
    },
  ];
}

/** A bad lookup input. */
export class LookupInputError extends Error {
  override readonly name = 'LookupInputError';
}

/** Parses `k=v,k2=v2` (a key alone means an empty value). */
export function parseDescriptor(text: string): Entry[] {
  const entries: Entry[] = [];
  for (const part of text.split(',')) {
    const p = part.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    const key = (eq === -1 ? p : p.slice(0, eq)).trim();
    if (key === '') throw new LookupInputError(`descriptor: empty key in "${p}"`);
    entries.push({ key, value: eq === -1 ? '' : p.slice(eq + 1).trim() });
  }
  if (entries.length === 0) throw new LookupInputError('descriptor: at least one k=v entry is required');
  return entries;
}

async function readCounts(store: DiagStore, ops: readonly CounterOp[]): Promise<number[]> {
  if (ops.length === 0) return [];
  if (store.peek) {
    const keys: string[] = [];
    for (const op of ops) keys.push(op.key, op.prevKey ?? op.key);
    const values = await store.peek(keys);
    return ops.map((op, i) => {
      const cur = values[2 * i] ?? 0;
      if (op.algorithm !== 'sliding_window') return cur;
      return slidingDecision(cur, values[2 * i + 1] ?? 0, { ...op, addend: 0 }).after;
    });
  }
  // An addend of 0 reads: fixed windows INCRBY 0, sliding windows admit 0 more.
  return store.apply(ops.map((op) => ({ ...op, addend: 0 })));
}

/** The lookup: which rule a descriptor matches, the current count and reset of each limit. Never counts. */
export async function lookupDescriptor(
  src: RatelimitDiagSource,
  domain: string,
  entries: readonly Entry[],
): Promise<Record<string, unknown>> {
  const now = (src.now ?? Date.now)();
  const descriptor = entries.map((e) => `${e.key}=${e.value}`).join(',');
  let p;
  try {
    p = plan(
      { domain, descriptors: [{ entries, hitsAddend: 0 }], hitsAddend: 0 },
      src.rules(),
      { ...src.settings, expirationJitterMaxSeconds: 0 },
      now,
      () => 0,
    );
  } catch (err) {
    if (err instanceof ServiceError) throw new LookupInputError(err.message);
    throw err;
  }
  if (p.domainNotFound) return { domain, descriptor, match: 'domain_not_found', readOnly: true };
  const d = p.descriptors[0];
  if (!d || d.kind === 'none')
    return {
      domain,
      descriptor,
      match: 'none',
      note: 'no rule matches: the descriptor is not limited',
      readOnly: true,
    };
  const rule = d.match.rule;
  const base = {
    domain,
    descriptor,
    match: 'rule',
    rule: {
      key: rule.statKey,
      statKey: d.match.statKey,
      ...(rule.name ? { name: rule.name } : {}),
      unlimited: rule.unlimited,
      shadowMode: rule.shadowMode,
      quotaMode: rule.quotaMode,
      ...(rule.replaces.length > 0 ? { replaces: rule.replaces } : {}),
    },
    readOnly: true,
  };
  if (d.kind !== 'count') return { ...base, limits: [] };
  const ops = d.ops.map((i) => p.ops[i] as CounterOp);
  const counts = await readCounts(src.store, ops);
  const nowS = now / 1000;
  return {
    ...base,
    limits: ops.map((op, j) => {
      const spec = rule.limits[j] as LimitSpec;
      const count = counts[j] ?? 0;
      return {
        ...(spec.name ? { name: spec.name } : {}),
        requestsPerUnit: spec.requestsPerUnit,
        unit: spec.unit,
        algorithm: spec.algorithm,
        counterKey: op.key,
        count,
        remaining: Math.max(0, op.limit - count),
        nextHitOverLimit: count >= op.limit,
        resetSeconds: Math.max(1, Math.ceil(op.windowSeconds - (nowS % op.windowSeconds))),
        windowEnds: new Date(op.windowEndMs).toISOString(),
      };
    }),
  };
}

/** Registers GET /diag, GET /diag.json and the lookup form's POST on the admin server. */
export function registerRatelimitDiag(
  app: Parameters<typeof registerDiag>[0],
  opts: { service: string; version: string; health: HealthState; source: RatelimitDiagSource },
): void {
  registerDiag(app, {
    service: opts.service,
    version: opts.version,
    health: opts.health,
    sections: () => ratelimitDiagSections(opts.source),
  });
  app.post(RATELIMIT_LOOKUP_PATH, async (req, reply) => {
    const body = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body))
      return reply.code(400).send({ error: 'body must be a JSON object' });
    const { domain, descriptor } = body as Record<string, unknown>;
    if (typeof domain !== 'string' || domain.trim() === '')
      return reply.code(400).send({ error: 'domain is required' });
    if (typeof descriptor !== 'string' || descriptor.length > 4096)
      return reply.code(400).send({ error: 'descriptor must be k=v,k2=v2' });
    try {
      const answer = await lookupDescriptor(opts.source, domain.trim(), parseDescriptor(descriptor));
      return await reply.header('cache-control', 'no-store').send(answer);
    } catch (err) {
      if (err instanceof LookupInputError) return reply.code(400).send({ error: err.message });
      return reply
        .code(503)
        .send({ error: `counter store unavailable: ${err instanceof Error ? err.message : String(err)}` });
    }
  });
}
