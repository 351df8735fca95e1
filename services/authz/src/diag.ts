import { registerDiag, type DiagSection, type DiagValue } from '@extsvc/common/diag';
import type { HealthState } from '@extsvc/common/health';
import { correlationOfHeaders } from '@extsvc/common/trace';
import { DenyReasons } from './errors.ts';
import { failuresText, type SigninStats } from './signin/stats.ts';
import type { AuthRequest, Decision } from './decision.ts';
import type { HostMatcher, PathMatcher, Template } from './match.ts';
import type { ClaimMatcher, KeySource, Policy, Provider, Requirement, Rule, TokenSource } from './policy.ts';

/** One decision as the diagnostics page keeps it: never a token, header value or query string. */
export interface DecisionRecord {
  /** ISO 8601 time of the decision. */
  readonly at: string;
  readonly method: string;
  readonly host: string;
  /** Path without its query string (a query may carry `access_token`). */
  readonly path: string;
  readonly result: Decision['kind'];
  readonly rule: string;
  readonly reason: string;
  /** HTTP status of a deny. */
  readonly status: number | undefined;
  /** Envoy's x-request-id, when the request carried one. */
  readonly requestId: string | undefined;
  /** W3C or B3 trace id (32 hex digits), when the request carried one. */
  readonly traceId: string | undefined;
}

const MAX_FIELD = 200;
const clip = (s: string): string => (s.length > MAX_FIELD ? `${s.slice(0, MAX_FIELD)}…` : s);
const withoutQuery = (target: string): string => {
  const q = target.search(/[?#]/);
  return q === -1 ? target : target.slice(0, q);
};

/** A bounded ring buffer of the latest real decisions (default 100), newest first in list(). */
export class RecentDecisions {
  readonly #items: DecisionRecord[] = [];
  readonly #capacity: number;
  readonly #now: () => number;
  #total = 0;

  constructor(capacity = 100, now: () => number = Date.now) {
    this.#capacity = Math.max(1, capacity);
    this.#now = now;
  }

  /**
   * Keeps method, host, path (no query), result, rule, reason, status, request id and trace id;
   * nothing else of the request.
   */
  record(
    req: Pick<AuthRequest, 'method' | 'host' | 'path'> & { readonly headers?: AuthRequest['headers'] },
    d: Decision,
  ): void {
    this.#total += 1;
    const c = req.headers ? correlationOfHeaders(req.headers) : {};
    this.#items.push({
      at: new Date(this.#now()).toISOString(),
      method: clip(req.method.toUpperCase()),
      host: clip(req.host),
      path: clip(withoutQuery(req.path)),
      result: d.kind,
      rule: d.rule,
      reason: d.reason,
      status: d.kind === 'deny' ? d.status : undefined,
      requestId: c.requestId,
      traceId: c.traceId,
    });
    if (this.#items.length > this.#capacity) this.#items.shift();
  }

  /** Kept decisions, newest first. */
  list(): DecisionRecord[] {
    return [...this.#items].reverse();
  }

  /** Decisions recorded since start (also those pushed out of the buffer). */
  get total(): number {
    return this.#total;
  }
}

/**
 * Wraps a decision function so that every real decision lands in `recent` (a thrown error is
 * recorded as an internal error and rethrown). The diagnostics test form calls the unwrapped one.
 */
export function recordingDecide(
  decide: (req: AuthRequest) => Promise<Decision>,
  recent: RecentDecisions,
): (req: AuthRequest) => Promise<Decision> {
  return async (req) => {
    try {
      const d = await decide(req);
      recent.record(req, d);
      return d;
    } catch (err) {
      recent.record(req, { kind: 'error', reason: 'internal', rule: '-' });
      throw err;
    }
  };
}

/** Key store state of one provider; every field optional so older key stores still render. */
export interface KeyStatusView {
  readonly keys?: number;
  /** Key ids of the cached keys (never key material). */
  readonly kids?: readonly string[];
  readonly fetchedAt?: string;
  readonly stale?: boolean;
  readonly lastAttemptAt?: string;
  /** Last fetch error (code and message), cleared by a success. */
  readonly lastError?: string;
  readonly lastErrorAt?: string;
  readonly failures?: number;
}

/** What the fetch log knows about one issuer's discovery/JWKS fetches. */
export interface FetchLogEntry {
  readonly lastAttemptAt: string;
  readonly lastResult: 'ok' | 'error' | 'invalid';
  readonly lastOkAt: string | undefined;
  readonly lastFailure: { readonly result: 'error' | 'invalid'; readonly at: string } | undefined;
  /** Failed fetches since the last success. */
  readonly failuresInARow: number;
}

/**
 * Outcomes of discovery/JWKS fetches per issuer, fed by the authorizer's `onFetch` hook (the hook
 * that also counts authz_jwks_fetch_total): when the last fetch failed, and how often in a row.
 */
export class FetchLog {
  readonly #by = new Map<string, FetchLogEntry>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Records one fetch outcome of `issuer`. */
  record(issuer: string, result: 'ok' | 'error' | 'invalid'): void {
    const at = new Date(this.#now()).toISOString();
    const prev = this.#by.get(issuer);
    this.#by.set(issuer, {
      lastAttemptAt: at,
      lastResult: result,
      lastOkAt: result === 'ok' ? at : prev?.lastOkAt,
      lastFailure: result === 'ok' ? prev?.lastFailure : { result, at },
      failuresInARow: result === 'ok' ? 0 : (prev?.failuresInARow ?? 0) + 1,
    });
  }

  /** The entry of `issuer`, undefined before its first fetch. */
  get(issuer: string): FetchLogEntry | undefined {
    return this.#by.get(issuer);
  }
}

/** Result of the last policy (re)load, when the server keeps it. */
export interface ReloadState {
  readonly ok: boolean;
  /** ISO 8601 time of the last attempt. */
  readonly at?: string;
  /** Message of the failed reload (file and field), undefined after a success. */
  readonly error?: string;
}

/** What the authz diagnostics read: live objects of the server, as closures. */
export interface AuthzDiagSource {
  /** The active policy (authorizer.policy). */
  readonly policy: () => Policy;
  /** Key store status per provider name (authorizer.keyStatus()). */
  readonly keyStatus: () => Readonly<Record<string, unknown>>;
  /** Recent real decisions. */
  readonly recent: RecentDecisions;
  /** The decision function WITHOUT metrics or recording (authorizer.decide), for the test form. */
  readonly decide: (req: AuthRequest) => Promise<Decision>;
  /** Policy file path, when one is configured. */
  readonly policyFile?: string | undefined;
  /** Last reload outcome, when the server keeps it. */
  readonly reload?: () => ReloadState;
  /** Fetch outcomes per issuer (fed by the authorizer's onFetch), when the server keeps them. */
  readonly fetchLog?: FetchLog;
  /** HTTP mode's path prefix and the checks that lacked it, when the HTTP listener runs. */
  readonly httpPrefix?: (() => HttpPrefixState) | undefined;
  /** Browser sign-in counters per login block, when the server keeps them. */
  readonly signin?: SigninStats;
}

/** HTTP mode's configured path prefix and the checks denied for lacking it. */
export interface HttpPrefixState {
  readonly prefix: string;
  mismatches: number;
  lastAt?: string;
  /** First path segment of the last such check (never the query string). */
  lastSegment?: string;
}

/** Admin path of the "test a request" form. */
export const AUTHZ_TEST_PATH = '/diag/authz/test';

/** Outcome of one use of the test form (metric label). */
export type TestFormResult = 'allow' | 'deny' | 'error' | 'invalid' | 'limited';

/** Budget of the test form, a token bucket: `perMinute` runs, refilled continuously; 0 turns the form off. */
export interface TestFormLimit {
  readonly perMinute: number;
  readonly now: () => number;
}

/**
 * Token bucket for the test form: the form is a decision oracle (API keys, tokens), so guesses are
 * counted and slowed down like a login form's.
 */
export class TestFormBudget {
  readonly #limit: TestFormLimit;
  #tokens: number;
  #at: number;
  constructor(limit: TestFormLimit) {
    this.#limit = limit;
    this.#tokens = limit.perMinute;
    this.#at = limit.now();
  }
  /** Takes one run; returns 0 when allowed, else the seconds until the next run is. */
  take(): number {
    const { perMinute, now } = this.#limit;
    if (perMinute <= 0) return 60;
    const t = now();
    this.#tokens = Math.min(perMinute, this.#tokens + ((t - this.#at) * perMinute) / 60_000);
    this.#at = t;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.#tokens) * 60_000) / perMinute / 1000));
  }
}

function hostText(h: HostMatcher): string {
  switch (h.kind) {
    case 'any':
      return '*';
    case 'exact':
      return h.host;
    case 'suffix':
      return `*${h.suffix}`;
  }
}

/** The pattern as written: without the anchoring wrapper the policy loader adds, slashes unescaped. */
function regexText(r: RegExp): string {
  return r.source.replace(/^\^\(\?:([\s\S]*)\)\$$/, '$1').replace(/\\\//g, '/');
}

function pathText(p: PathMatcher | undefined): string {
  if (!p) return 'any';
  switch (p.kind) {
    case 'exact':
      return `= ${p.path}`;
    case 'prefix':
      return `${p.prefix}*`;
    case 'regex':
      return `~ ${regexText(p.regex)}`;
  }
}

function claimText(m: ClaimMatcher): string {
  switch (m.kind) {
    case 'equals':
      return `${m.claim}=${JSON.stringify(m.value)}`;
    case 'oneOf':
      return `${m.claim} in ${JSON.stringify(m.values)}`;
    case 'regex':
      return `${m.claim} ~ ${regexText(m.regex)}`;
  }
}

/** One-line summary of a requirement: `jwt(corp) scopes=admin`, `anyOf(jwt(corp) | apiKey(partners))`. */
export function requirementText(r: Requirement): string {
  switch (r.kind) {
    case 'public':
      return 'public';
    case 'deny':
      return `deny ${r.status}`;
    case 'jwt': {
      const parts = [`jwt(${r.providers.join(',')})`];
      if (r.optional) parts.push('optional');
      if (r.audiences.length > 0) parts.push(`aud=${r.audiences.join(',')}`);
      if (r.scopes.length > 0) parts.push(`scopes=${r.scopes.join(' ')}`);
      if (r.claims.length > 0) parts.push(`claims: ${r.claims.map(claimText).join('; ')}`);
      return parts.join(' ');
    }
    case 'apiKey': {
      const parts = [`apiKey(${r.sets.join(',')})`];
      if (r.claims.length > 0) parts.push(`claims: ${r.claims.map(claimText).join('; ')}`);
      return parts.join(' ');
    }
    case 'anyOf':
    case 'allOf':
      return `${r.kind}(${r.of.map(requirementText).join(r.kind === 'anyOf' ? ' | ' : ' & ')})`;
  }
}

function templateText(t: Template): string {
  return t.parts.map((p) => ('literal' in p ? p.literal : `{{ ${p.claim} }}`)).join('');
}

function identityText(rule: Rule): string {
  const parts = rule.identity.headers.map((h) => `${h.name}: ${templateText(h.template)}`);
  if (rule.identity.payloadHeader) parts.push(`${rule.identity.payloadHeader}: (payload)`);
  if (rule.identity.removeCredentials) parts.push('remove credentials');
  return parts.join(', ');
}

/** A URL without userinfo, query or fragment (they may carry credentials). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    const auth = u.username !== '' || u.password !== '';
    u.username = '';
    u.password = '';
    const hidden = u.search !== '' || u.hash !== '';
    u.search = '';
    u.hash = '';
    return `${u.toString()}${auth || hidden ? ' (credentials/query hidden)' : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

function keySourceText(k: KeySource): string {
  switch (k.kind) {
    case 'discovery':
      return `discovery ${safeUrl(k.url)}`;
    case 'remote':
      return `jwks ${safeUrl(k.url)}`;
    case 'inline':
      return 'inline JWKS';
    case 'none':
      return 'none (HMAC)';
  }
}

function sourceText(s: TokenSource): string {
  switch (s.kind) {
    case 'header':
      return s.name === 'authorization' && s.prefix === 'bearer '
        ? 'bearer'
        : `header ${s.name}${s.prefix ? ` (${s.prefix.trim()})` : ''}`;
    case 'query':
      return `query ${s.name}`;
    case 'cookie':
      return `cookie ${s.name}`;
  }
}

/** `RS256, RS384, RS512, ES256` → `RS256/384/512, ES256`. */
export function compactAlgorithms(algs: readonly string[]): string {
  const groups = new Map<string, string[]>();
  for (const a of algs) {
    const m = /^([A-Z]{2})(\d{3})$/.exec(a);
    const key = m ? (m[1] as string) : a;
    const list = groups.get(key) ?? [];
    list.push(m ? (m[2] as string) : '');
    groups.set(key, list);
  }
  return [...groups].map(([k, v]) => (v[0] === '' ? k : `${k}${v.join('/')}`)).join(', ');
}

function inlineKids(p: Provider): string[] {
  if (p.keys.kind !== 'inline') return [];
  return p.keys.jwks.keys.map((k) => (typeof k.kid === 'string' ? k.kid : '(no kid)'));
}

function asKeyStatus(v: unknown): KeyStatusView {
  if (v === null || typeof v !== 'object') return {};
  const o = v as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof o[k] === 'string' ? o[k] : undefined);
  const out: Record<string, unknown> = {};
  if (typeof o['keys'] === 'number') out['keys'] = o['keys'];
  if (Array.isArray(o['kids'])) out['kids'] = o['kids'].filter((x): x is string => typeof x === 'string');
  for (const k of ['fetchedAt', 'lastAttemptAt', 'lastError', 'lastErrorAt'] as const)
    if (str(k) !== undefined) out[k] = str(k);
  if (typeof o['stale'] === 'boolean') out['stale'] = o['stale'];
  if (typeof o['failures'] === 'number') out['failures'] = o['failures'];
  return out;
}

function keyState(p: Provider, s: KeyStatusView, log: FetchLogEntry | undefined): string {
  if (p.keys.kind === 'none') return p.hmacSecret ? 'valid' : 'error';
  if (p.keys.kind === 'inline') return 'loaded';
  const failing = s.lastError !== undefined || (log !== undefined && log.failuresInARow > 0);
  if (!s.keys) return failing ? 'error' : 'pending';
  return s.stale || failing ? 'stale' : 'loaded';
}

function lastErrorText(s: KeyStatusView, log: FetchLogEntry | undefined): string {
  if (s.lastError) return `${s.lastError}${s.lastErrorAt ? ` (${s.lastErrorAt})` : ''}`;
  if (!log?.lastFailure) return '';
  const f = log.lastFailure;
  const what = f.result === 'invalid' ? 'invalid document' : 'fetch failed';
  return log.failuresInARow > 0
    ? `${what} at ${f.at} (${log.failuresInARow} in a row)`
    : `${what} at ${f.at}, recovered since`;
}

function rulesRows(policy: Policy): DiagValue[][] {
  const rows: DiagValue[][] = [];
  const add = (list: string, rules: readonly Rule[]): void =>
    rules.forEach((r, i) =>
      rows.push([
        list,
        i + 1,
        r.name,
        r.hosts ? r.hosts.map(hostText).join(', ') : 'any',
        pathText(r.path),
        r.methods ? [...r.methods].join(', ') : 'any',
        requirementText(r.requirement),
        r.allowPreflight ? 'yes' : '',
        identityText(r),
      ]),
    );
  add('default', policy.rules);
  for (const [name, rules] of policy.policies) add(name, rules);
  return rows;
}

/** Filters of the recent decisions (query parameters `request_id` and `trace_id` of /diag). */
export interface RecentFilter {
  readonly requestId?: string | undefined;
  readonly traceId?: string | undefined;
}

/** Builds the authz sections: summary, rules in order, providers with key state, API key sets, recent decisions, test form. */
export function authzDiagSections(src: AuthzDiagSource, filter: RecentFilter = {}): DiagSection[] {
  const policy = src.policy();
  const status = src.keyStatus();
  const reload = src.reload?.();
  const summary: Array<readonly [string, DiagValue]> = [
    ['policy file', src.policyFile ?? '(none: every request is denied)'],
    ['realm', policy.realm],
    ['rules', policy.rules.length],
    ['named policies', [...policy.policies.keys()].join(', ') || 'none'],
    ['providers', policy.providers.size],
    ['API key sets', policy.apiKeySets.size],
    ['reserved headers', policy.reservedHeaders.join(', ')],
    ['decisions seen', src.recent.total],
  ];
  const hp = src.httpPrefix?.();
  if (hp) {
    summary.push(['HTTP path prefix', hp.prefix === '' ? '(none)' : hp.prefix]);
    summary.push([
      'HTTP checks without the prefix (denied)',
      hp.mismatches === 0
        ? 0
        : `${hp.mismatches}, last ${hp.lastAt ?? '?'} (path began ${hp.lastSegment ?? '?'}): Envoy/Emissary path_prefix differs from --http-path-prefix`,
    ]);
  }
  if (reload) {
    summary.push(['last reload', reload.ok ? 'ok' : 'failed']);
    if (reload.at) summary.push(['last reload at', reload.at]);
    if (reload.error) summary.push(['last reload error', reload.error]);
  }
  const providers = [...policy.providers.values()].map((p): DiagValue[] => {
    const s = asKeyStatus(status[p.name]);
    const log =
      p.keys.kind === 'discovery' || p.keys.kind === 'remote' ? src.fetchLog?.get(p.issuer) : undefined;
    const kids = s.kids ?? inlineKids(p);
    return [
      p.name,
      p.issuer,
      keySourceText(p.keys),
      keyState(p, s, log),
      s.keys ?? (p.keys.kind === 'inline' ? kids.length : 0),
      kids.join(', '),
      s.fetchedAt ?? log?.lastOkAt ?? '',
      lastErrorText(s, log),
      p.audiences.join(', ') || 'any',
      compactAlgorithms(p.algorithms),
      p.sources.map(sourceText).join(', '),
      p.hmacSecret ? 'configured' : '',
    ];
  });
  const keySets = [...policy.apiKeySets.values()].map((k): DiagValue[] => [
    k.name,
    k.header,
    k.prefix,
    k.keys.length,
    k.keys.map((x) => x.name).join(', '),
  ]);
  const traceFilter = filter.traceId?.toLowerCase();
  const recent = src.recent
    .list()
    .filter((d) => !filter.requestId || d.requestId === filter.requestId)
    .filter((d) => !traceFilter || d.traceId === traceFilter)
    .map((d): DiagValue[] => [
      d.at,
      d.result,
      d.method,
      d.host,
      d.path,
      d.rule,
      d.reason,
      d.status,
      d.requestId,
      d.traceId,
    ]);
  const filtered = [
    filter.requestId ? `request id ${filter.requestId}` : '',
    traceFilter ? `trace id ${traceFilter}` : '',
  ].filter((f) => f !== '');
  // Browser sign-in: settings without secrets (client secret and session keys are never shown) and counts.
  const logins = policy.logins.map((l): DiagValue[] => {
    const c = src.signin?.get(l.id);
    return [
      l.id,
      l.provider,
      l.clientId,
      l.redirectPath,
      l.logoutPath,
      l.cookie.name,
      `${l.sessionKeys.length} key(s)`,
      c?.redirects ?? 0,
      c?.sessions ?? 0,
      c?.refreshes ?? 0,
      c?.refreshFailures ?? 0,
      c?.logouts ?? 0,
      c ? failuresText(c.failures) : '',
      c?.lastFailure ? `${c.lastFailure.reason} at ${c.lastFailure.at}` : '',
    ];
  });
  return [
    { kind: 'kv', title: 'Policy', entries: summary },
    {
      kind: 'table',
      title: 'Browser sign-in',
      columns: [
        'login',
        'provider',
        'client id',
        'callback',
        'logout',
        'cookie',
        'session keys',
        'sent to sign in',
        'sessions issued',
        'refreshes',
        'failed refreshes',
        'logouts',
        'failures by reason',
        'last failure',
      ],
      rows: logins,
      empty: 'no login blocks',
    },
    {
      kind: 'table',
      title: 'Rules',
      columns: ['policy', '#', 'rule', 'hosts', 'path', 'methods', 'requires', 'CORS preflight', 'identity'],
      rows: rulesRows(policy),
      empty: 'no rules: every request is denied (no_matching_rule)',
    },
    {
      kind: 'table',
      title: 'Providers',
      columns: [
        'provider',
        'issuer',
        'keys from',
        'state',
        'keys',
        'key ids',
        'last fetch',
        'last error',
        'audiences',
        'algorithms',
        'token sources',
        'HMAC secret',
      ],
      rows: providers,
      empty: 'no JWT providers',
    },
    {
      kind: 'table',
      title: 'API key sets',
      columns: ['set', 'header', 'prefix', 'keys', 'key names'],
      rows: keySets,
      empty: 'no API key sets',
    },
    {
      kind: 'table',
      title: 'Recent decisions',
      columns: [
        'time',
        'result',
        'method',
        'host',
        'path',
        'rule',
        'reason',
        'status',
        'request id',
        'trace id',
      ],
      rows: recent,
      empty: filtered.length > 0 ? `no recent decision with ${filtered.join(' and ')}` : 'no decisions yet',
    },
    {
      kind: 'form',
      title: 'Test a request',
      id: 'authz-test',
      action: AUTHZ_TEST_PATH,
      note: 'Runs the decision function on the active policy. Not in the decision metrics or recent decisions; each use is counted (authz_diag_test_total) and limited (429 beyond the budget per minute). What you type is not stored or echoed.',
      fields: [
        {
          name: 'method',
          label: 'Method',
          kind: 'select',
          options: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'],
          value: 'GET',
        },
        { name: 'host', label: 'Host', kind: 'text', placeholder: 'api.example.com' },
        { name: 'path', label: 'Path', kind: 'text', value: '/', placeholder: '/api/things?x=1' },
        {
          name: 'headers',
          label: 'Headers (one "name: value" per line)',
          kind: 'textarea',
          placeholder: 'authorization: Bearer eyJ…\nx-api-key: …',
        },
        {
          name: 'context',
          label: 'Context extensions (gRPC: policy=name rule=name)',
          kind: 'text',
          placeholder: 'policy=internal',
        },
      ],
    },
  ];
}

/** A bad test-form input. */
export class TestInputError extends Error {
  override readonly name = 'TestInputError';
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** Parses the test form body into an AuthRequest; throws TestInputError naming the bad field. */
export function parseTestRequest(body: unknown): AuthRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new TestInputError('body must be a JSON object');
  const o = body as Record<string, unknown>;
  const str = (k: string, def: string, max: number): string => {
    const v = o[k];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string') throw new TestInputError(`${k} must be a string`);
    if (v.length > max) throw new TestInputError(`${k} is longer than ${max} characters`);
    return v;
  };
  const method = str('method', 'GET', 20).trim().toUpperCase() || 'GET';
  if (!/^[A-Z]+$/.test(method)) throw new TestInputError('method must be letters only');
  const headers: Record<string, string> = {};
  str('headers', '', 65536)
    .split(/\r?\n/)
    .forEach((line, i) => {
      if (line.trim() === '') return;
      const colon = line.indexOf(':', line.startsWith(':') ? 1 : 0);
      const name = (colon === -1 ? '' : line.slice(0, colon)).trim().toLowerCase();
      if (colon <= 0 || !(HEADER_NAME.test(name) || /^:[a-z]+$/.test(name)))
        throw new TestInputError(`headers line ${i + 1}: expected "name: value"`);
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
    });
  const host = str('host', '', 1024).trim() || headers['host'] || headers[':authority'] || '';
  const path = str('path', '/', 8192).trim() || '/';
  const contextExtensions: Record<string, string> = {};
  for (const part of str('context', '', 1024).split(/[\s,]+/)) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new TestInputError(`context: expected key=value, got "${clip(part)}"`);
    contextExtensions[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return { method, host, path, headers, contextExtensions };
}

function findRule(policy: Policy, name: string): Rule | undefined {
  return (
    policy.rules.find((r) => r.name === name) ??
    [...policy.policies.values()].flat().find((r) => r.name === name)
  );
}

/** The test form's answer: the decision without token material (the payload header is summarised). */
export function describeDecision(policy: Policy, req: AuthRequest, d: Decision): Record<string, unknown> {
  const request = {
    method: req.method,
    host: req.host,
    path: withoutQuery(req.path),
    headerNames: Object.keys(req.headers),
    contextExtensions: req.contextExtensions,
  };
  switch (d.kind) {
    case 'allow': {
      const payload = findRule(policy, d.rule)?.identity.payloadHeader;
      return {
        request,
        decision: {
          result: 'allow',
          rule: d.rule,
          reason: d.reason,
          upstreamHeaders: Object.fromEntries(
            d.headers.map(([k, v]) => [k, k === payload ? `(verified payload, ${v.length} characters)` : v]),
          ),
          removeHeaders: d.removeHeaders,
          metadata: d.metadata,
        },
      };
    }
    case 'deny':
      return {
        request,
        decision: {
          result: 'deny',
          rule: d.rule,
          reason: d.reason,
          message: DenyReasons[d.reason],
          status: d.status,
          headers: Object.fromEntries(d.headers),
          body: d.body,
        },
      };
    case 'error':
      return {
        request,
        decision: {
          result: 'error',
          rule: d.rule,
          reason: d.reason,
          message:
            'issuer keys unavailable: Envoy failure mode decides (failure_mode_allow / status_on_error)',
        },
      };
  }
}

/** Registers GET /diag, GET /diag.json and the test form's POST on the admin server. */
export function registerAuthzDiag(
  app: Parameters<typeof registerDiag>[0],
  opts: {
    service: string;
    version: string;
    health: HealthState;
    source: AuthzDiagSource;
    /** Test form budget (default 20 per minute, wall clock). */
    testLimit?: TestFormLimit;
    /** Counts each use of the test form. */
    onTest?: (result: TestFormResult) => void;
  },
): void {
  const budget = new TestFormBudget(opts.testLimit ?? { perMinute: 20, now: Date.now });
  registerDiag(app, {
    service: opts.service,
    version: opts.version,
    health: opts.health,
    sections: (query) =>
      authzDiagSections(opts.source, { requestId: query['request_id'], traceId: query['trace_id'] }),
  });
  app.post(AUTHZ_TEST_PATH, async (req, reply) => {
    const wait = budget.take();
    if (wait > 0) {
      opts.onTest?.('limited');
      return reply
        .code(429)
        .header('retry-after', String(wait))
        .header('cache-control', 'no-store')
        .send({
          error: `too many test requests: at most ${opts.testLimit?.perMinute ?? 20} per minute (retry in ${wait} s)`,
        });
    }
    let auth: AuthRequest;
    try {
      auth = parseTestRequest(req.body);
    } catch (err) {
      if (err instanceof TestInputError) {
        opts.onTest?.('invalid');
        return reply.code(400).send({ error: err.message });
      }
      throw err;
    }
    const policy = opts.source.policy();
    let d: Decision;
    try {
      d = await opts.source.decide(auth);
    } catch {
      d = { kind: 'error', reason: 'internal', rule: '-' };
    }
    opts.onTest?.(d.kind);
    return reply.header('cache-control', 'no-store').send(describeDecision(policy, auth, d));
  });
}
