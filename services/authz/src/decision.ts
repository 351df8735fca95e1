import { createHash, timingSafeEqual } from 'node:crypto';
import { DenyReasons, type AllowReason, type DenyReason, type ErrorReason } from './errors.ts';
import { claimAt, matchHost, matchPath, normalizeHost, renderTemplate, splitTarget } from './match.ts';
import type { ApiKeySet, ClaimMatcher, Policy, Provider, Requirement, Rule, TokenSource } from './policy.ts';
import { verifyToken, type VerifierDeps } from './verifier.ts';
import type { LoginSettings } from './signin/config.ts';
import type { Signin, SigninAnswer } from './signin/flow.ts';
import { checkCsrf, isNavigation, requestOrigin } from './signin/guard.ts';

/** What both transports hand to the decision function. Header names are lower-case. */
export interface AuthRequest {
  readonly method: string;
  /** Host or :authority, port allowed. */
  readonly host: string;
  /** Request target: path and query string, as received. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Envoy context_extensions (gRPC only): `policy` and/or `rule` select what applies. */
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** The contract the check came through (sign-in: HTTP mode cannot set cookies on an allow). */
  readonly transport?: 'grpc' | 'http';
}

/** Allow: headers to set (overwrite) and remove on the upstream request, metadata for access logs. */
export interface Allow {
  readonly kind: 'allow';
  readonly reason: AllowReason;
  readonly rule: string;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly removeHeaders: readonly string[];
  /** Query parameters to remove from the upstream :path (a token read from the query string). */
  readonly removeQuery: readonly string[];
  readonly metadata: Readonly<Record<string, string>>;
  /** Headers for the client's response (gRPC response_headers_to_add): a refreshed session's Set-Cookie. */
  readonly responseHeaders?: ReadonlyArray<readonly [string, string]>;
}

/** Deny: the status, headers and body the client gets (never 5xx, never token material). */
export interface Deny {
  readonly kind: 'deny';
  readonly reason: DenyReason;
  readonly rule: string;
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
}

/** Infrastructure failure (an issuer's keys were never obtainable): Envoy's failure mode decides. */
export interface DecisionError {
  readonly kind: 'error';
  readonly reason: ErrorReason;
  readonly rule: string;
}

/** The decision for one request. */
export type Decision = Allow | Deny | DecisionError;

/** Dependencies of the decision function (key stores, token cache, clock, browser sign-in). */
export interface DecisionDeps extends VerifierDeps {
  readonly signin?: Signin;
}

/** A valid sign-in session standing in for a bearer token of its provider. */
interface SessionPrincipal {
  readonly provider: string;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly cookie: string;
}

type EvalDeps = DecisionDeps & { readonly session?: SessionPrincipal };

interface Principal {
  readonly method: 'jwt' | 'api_key';
  readonly claims: Readonly<Record<string, unknown>>;
  /** Where the credential came from (removed upstream when removeCredentials). */
  readonly credential: TokenSource;
  /** The sign-in session cookie, not a token (cross-site checks apply). */
  readonly fromSession?: boolean;
}

type Outcome =
  | { readonly kind: 'allow'; readonly principals: readonly Principal[]; readonly reason: AllowReason }
  | {
      readonly kind: 'deny';
      readonly reason: DenyReason;
      readonly challenge: 'bearer' | 'apikey' | 'none';
      readonly scope?: readonly string[];
      readonly status?: number;
    }
  | { readonly kind: 'error' };

/** Finds a token in the request by the given sources, first found wins. */
export function extractToken(
  req: AuthRequest,
  sources: readonly TokenSource[],
  query: string,
): { token: string; source: TokenSource } | undefined {
  for (const s of sources) {
    switch (s.kind) {
      case 'header': {
        const v = req.headers[s.name];
        if (v === undefined) break;
        const t = v.trim();
        if (s.prefix === '') {
          if (t !== '') return { token: t, source: s };
        } else if (t.length > s.prefix.length && t.slice(0, s.prefix.length).toLowerCase() === s.prefix) {
          const tok = t.slice(s.prefix.length).trim();
          if (tok !== '') return { token: tok, source: s };
        }
        break;
      }
      case 'query': {
        if (query === '') break;
        for (const pair of query.split('&')) {
          const eq = pair.indexOf('=');
          const k = eq === -1 ? pair : pair.slice(0, eq);
          if (safeDecode(k) === s.name && eq !== -1) {
            const v = safeDecode(pair.slice(eq + 1));
            if (v) return { token: v, source: s };
          }
        }
        break;
      }
      case 'cookie': {
        const c = req.headers['cookie'];
        if (!c) break;
        for (const part of c.split(/;\s*|,\s*/)) {
          const eq = part.indexOf('=');
          if (eq !== -1 && part.slice(0, eq).trim() === s.name) {
            const v = part
              .slice(eq + 1)
              .trim()
              .replace(/^"(.*)"$/, '$1');
            if (v) return { token: v, source: s };
          }
        }
        break;
      }
    }
  }
  return undefined;
}

/**
 * The Cookie header without the cookies named `name` (undefined when none is left). Envoy joins
 * several Cookie headers with `; `; a part that also holds the cookie after a comma is dropped whole.
 */
export function cookieWithout(header: string, name: string): string | undefined {
  const kept = header
    .split(/;\s*/)
    .filter((part) => part.trim() !== '')
    .filter(
      (part) => !part.split(/,\s*/).some((p) => p.slice(0, Math.max(p.indexOf('='), 0)).trim() === name),
    );
  return kept.length === 0 ? undefined : kept.join('; ');
}

/**
 * Every key of `query` as sent (`access_token`, `access%5Ftoken`, ...) that reads as `name` once
 * percent-decoded, `name` itself always included: Envoy's query_parameters_to_remove compares the
 * keys as they are on the wire, while the token was found by the decoded key.
 */
export function queryKeysNamed(query: string, name: string): string[] {
  const keys = new Set([name]);
  if (query !== '')
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      const k = eq === -1 ? pair : pair.slice(0, eq);
      if (safeDecode(k) === name) keys.add(k);
    }
  return [...keys];
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** Scopes of a token: `scope` (space-separated or array) and `scp`. */
export function tokenScopes(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  for (const name of ['scope', 'scp']) {
    const v = claims[name];
    if (typeof v === 'string') for (const s of v.split(/\s+/)) if (s) out.add(s);
    if (Array.isArray(v)) for (const s of v) if (typeof s === 'string') out.add(s);
  }
  return out;
}

/** True when the claim matcher accepts the claims (arrays: any element). */
export function matchClaim(m: ClaimMatcher, claims: Readonly<Record<string, unknown>>): boolean {
  const v = claimAt(claims, m.claim);
  if (v === undefined) return false;
  const values = Array.isArray(v) ? (v as unknown[]) : [v];
  switch (m.kind) {
    case 'equals':
      return values.some((x) => x === m.value);
    case 'oneOf':
      return values.some((x) => m.values.includes(x));
    case 'regex':
      return values.some((x) => typeof x === 'string' && m.regex.test(x));
  }
}

async function evalJwt(
  req: AuthRequest,
  r: Extract<Requirement, { kind: 'jwt' }>,
  policy: Policy,
  query: string,
  deps: EvalDeps,
): Promise<Outcome> {
  const providers = r.providers
    .map((n) => policy.providers.get(n))
    .filter((p): p is Provider => p !== undefined);
  const sources: TokenSource[] = [];
  const seen = new Set<string>();
  for (const p of providers)
    for (const s of p.sources) {
      const k = JSON.stringify(s);
      if (!seen.has(k)) sources.push(s);
      seen.add(k);
    }
  const found = extractToken(req, sources, query);
  const session = deps.session;
  if (!found && session && r.providers.includes(session.provider)) {
    // The ID token was verified with this provider's keys at sign-in; its audience was the client id.
    if (r.scopes.length > 0) {
      const have = tokenScopes(session.claims);
      if (!r.scopes.every((s) => have.has(s)))
        return { kind: 'deny', reason: 'insufficient_scope', challenge: 'none', scope: r.scopes };
    }
    if (!r.claims.every((m) => matchClaim(m, session.claims)))
      return { kind: 'deny', reason: 'claim_mismatch', challenge: 'none' };
    return {
      kind: 'allow',
      reason: 'session',
      principals: [
        {
          method: 'jwt',
          claims: session.claims,
          credential: { kind: 'cookie', name: session.cookie },
          fromSession: true,
        },
      ],
    };
  }
  if (!found)
    return r.optional
      ? { kind: 'allow', reason: 'anonymous', principals: [] }
      : { kind: 'deny', reason: 'missing_credentials', challenge: 'bearer' };
  const v = await verifyToken(found.token, providers, deps);
  if (v.kind === 'error') return { kind: 'error' };
  if (v.kind === 'invalid') return { kind: 'deny', reason: v.reason, challenge: 'bearer' };
  const claims = v.claims as Record<string, unknown>;
  if (r.audiences.length > 0) {
    const aud = claims['aud'];
    const auds = Array.isArray(aud) ? aud : [aud];
    if (!auds.some((a) => typeof a === 'string' && r.audiences.includes(a)))
      return { kind: 'deny', reason: 'wrong_audience', challenge: 'bearer' };
  }
  if (r.scopes.length > 0) {
    const have = tokenScopes(claims);
    if (!r.scopes.every((s) => have.has(s)))
      return { kind: 'deny', reason: 'insufficient_scope', challenge: 'bearer', scope: r.scopes };
  }
  if (!r.claims.every((m) => matchClaim(m, claims)))
    return { kind: 'deny', reason: 'claim_mismatch', challenge: 'bearer' };
  return {
    kind: 'allow',
    reason: 'jwt',
    principals: [{ method: 'jwt', claims, credential: found.source }],
  };
}

function evalApiKey(req: AuthRequest, r: Extract<Requirement, { kind: 'apiKey' }>, policy: Policy): Outcome {
  let presented = false;
  for (const name of r.sets) {
    const set = policy.apiKeySets.get(name) as ApiKeySet;
    const raw = req.headers[set.header];
    if (raw === undefined) continue;
    let v = raw.trim();
    if (set.prefix !== '') {
      if (v.slice(0, set.prefix.length).toLowerCase() !== set.prefix) continue;
      v = v.slice(set.prefix.length).trim();
    }
    if (v === '') continue;
    presented = true;
    const h = createHash('sha256').update(v).digest();
    let match: ApiKeySet['keys'][number] | undefined;
    // Every key is compared, in constant time, with no early exit.
    for (const k of set.keys) if (timingSafeEqual(h, k.hash) && !match) match = k;
    if (match) {
      const claims = { ...match.claims, api_key: match.name, api_key_set: set.name };
      if (!r.claims.every((m) => matchClaim(m, claims)))
        return { kind: 'deny', reason: 'claim_mismatch', challenge: 'none' };
      return {
        kind: 'allow',
        reason: 'api_key',
        principals: [
          { method: 'api_key', claims, credential: { kind: 'header', name: set.header, prefix: set.prefix } },
        ],
      };
    }
  }
  return presented
    ? { kind: 'deny', reason: 'invalid_api_key', challenge: 'apikey' }
    : { kind: 'deny', reason: 'missing_credentials', challenge: 'apikey' };
}

async function evalRequirement(
  req: AuthRequest,
  r: Requirement,
  policy: Policy,
  query: string,
  deps: EvalDeps,
): Promise<Outcome> {
  switch (r.kind) {
    case 'public':
      return { kind: 'allow', reason: 'public', principals: [] };
    case 'deny':
      return { kind: 'deny', reason: 'policy_deny', challenge: 'none', status: r.status };
    case 'jwt':
      return evalJwt(req, r, policy, query, deps);
    case 'apiKey':
      return evalApiKey(req, r, policy);
    case 'anyOf': {
      const denies: Array<Extract<Outcome, { kind: 'deny' }>> = [];
      let errored = false;
      for (const sub of r.of) {
        const o = await evalRequirement(req, sub, policy, query, deps);
        if (o.kind === 'allow') return o;
        if (o.kind === 'error') errored = true;
        else denies.push(o);
      }
      if (errored) return { kind: 'error' };
      // The most specific deny: one about presented credentials beats "missing".
      return (
        denies.find((d) => d.reason !== 'missing_credentials') ??
        denies[0] ?? { kind: 'deny', reason: 'policy_deny', challenge: 'none' }
      );
    }
    case 'allOf': {
      const principals: Principal[] = [];
      let reason: AllowReason = 'public';
      for (const sub of r.of) {
        const o = await evalRequirement(req, sub, policy, query, deps);
        if (o.kind !== 'allow') return o;
        principals.push(...o.principals);
        if (o.reason !== 'public') reason = o.reason;
      }
      return { kind: 'allow', reason, principals };
    }
  }
}

function challengeHeader(
  realm: string,
  o: Extract<Outcome, { kind: 'deny' }>,
  scheme: 'bearer' | 'apikey',
): string {
  const name = scheme === 'bearer' ? 'Bearer' : 'ApiKey';
  const parts = [`realm="${realm}"`];
  if (o.reason === 'insufficient_scope' || o.reason === 'claim_mismatch') {
    parts.push('error="insufficient_scope"');
    if (o.scope && o.scope.length > 0) parts.push(`scope="${o.scope.join(' ')}"`);
  } else if (o.reason !== 'missing_credentials') {
    parts.push(scheme === 'bearer' ? 'error="invalid_token"' : 'error="invalid_key"');
    parts.push(`error_description="${DenyReasons[o.reason]}"`);
  }
  return `${name} ${parts.join(', ')}`;
}

/** Builds the client-facing deny: RFC 6750 status and challenge, small JSON body with a stable code. */
export function denyOf(policy: Policy, rule: string, o: Extract<Outcome, { kind: 'deny' }>): Deny {
  const forbidden = o.reason === 'insufficient_scope' || o.reason === 'claim_mismatch';
  let status: number;
  let error: string;
  if (o.status !== undefined) {
    status = o.status;
    error = 'access_denied';
  } else if (forbidden) {
    status = 403;
    error = 'insufficient_scope';
  } else if (o.reason === 'ambiguous_path' || o.reason === 'bad_request') {
    status = 400;
    error = 'invalid_request';
  } else if (o.reason === 'too_many_headers') {
    status = 431;
    error = 'invalid_request';
  } else if (o.reason === 'policy_deny' || o.reason === 'no_matching_rule' || o.reason === 'unknown_policy') {
    status = 403;
    error = 'access_denied';
  } else {
    status = 401;
    error =
      o.reason === 'missing_credentials'
        ? 'unauthorized'
        : o.challenge === 'apikey'
          ? 'invalid_key'
          : 'invalid_token';
  }
  const headers: Array<[string, string]> = [['content-type', 'application/json']];
  if (o.challenge !== 'none' && (status === 401 || forbidden))
    headers.push(['www-authenticate', challengeHeader(policy.realm, o, o.challenge)]);
  const body = JSON.stringify({ status, error, code: o.reason, message: DenyReasons[o.reason] });
  return { kind: 'deny', reason: o.reason, rule, status, headers, body };
}

/** Every place the requirement reads a credential from: its providers' token sources, its key sets' headers. */
function credentialSources(r: Requirement, policy: Policy): TokenSource[] {
  switch (r.kind) {
    case 'jwt':
      return r.providers.flatMap((n) => policy.providers.get(n)?.sources ?? []);
    case 'apiKey':
      return r.sets.flatMap((n) => {
        const set = policy.apiKeySets.get(n);
        return set ? [{ kind: 'header' as const, name: set.header, prefix: set.prefix }] : [];
      });
    case 'anyOf':
    case 'allOf':
      return r.of.flatMap((sub) => credentialSources(sub, policy));
    case 'public':
    case 'deny':
      return [];
  }
}

function isPreflight(req: AuthRequest): boolean {
  return (
    req.method === 'OPTIONS' &&
    req.headers['origin'] !== undefined &&
    req.headers['access-control-request-method'] !== undefined
  );
}

function findRule(rules: readonly Rule[], method: string, host: string, path: string): Rule | undefined {
  for (const r of rules) {
    if (r.methods && !r.methods.has(method)) continue;
    if (r.hosts && !r.hosts.some((h) => matchHost(h, host))) continue;
    if (r.path && !matchPath(r.path, path)) continue;
    return r;
  }
  return undefined;
}

function allowOf(
  policy: Policy,
  req: AuthRequest,
  rule: Rule,
  policyName: string,
  o: Extract<Outcome, { kind: 'allow' }>,
): Allow {
  const claims: Record<string, unknown> = {};
  for (const p of [...o.principals].reverse()) Object.assign(claims, p.claims);
  const set = new Map<string, string>();
  if (o.principals.length > 0) {
    for (const h of rule.identity.headers) {
      const v = renderTemplate(h.template, claims);
      if (v !== undefined) set.set(h.name, v);
    }
    const jwt = o.principals.find((p) => p.method === 'jwt');
    if (rule.identity.payloadHeader && jwt)
      set.set(rule.identity.payloadHeader, Buffer.from(JSON.stringify(jwt.claims)).toString('base64url'));
  }
  const remove = new Set(policy.reservedHeaders.filter((h) => !set.has(h)));
  // A reserved family (`x-auth-`): every client-sent member not set by this decision goes.
  if (policy.reservedHeaderPrefixes.length > 0)
    for (const h of Object.keys(req.headers))
      if (!set.has(h) && policy.reservedHeaderPrefixes.some((p) => h.startsWith(p))) remove.add(h);
  const removeQuery = new Set<string>();
  if (rule.identity.removeCredentials) {
    const query = splitTarget(req.path).query;
    // Every credential the rule could read goes, not only the one that decided: a second token
    // (another source of the provider, a key of an anyOf branch that did not decide) is still a secret.
    const sources = [
      ...o.principals.map((p) => p.credential),
      ...credentialSources(rule.requirement, policy),
    ];
    for (const c of sources) {
      if (extractToken(req, [c], query) === undefined) continue;
      if (c.kind === 'header' && !set.has(c.name)) remove.add(c.name);
      else if (c.kind === 'query')
        // Envoy removes by the key as sent: `access%5Ftoken` (read as access_token) must be named so.
        for (const k of queryKeysNamed(query, c.name)) removeQuery.add(k);
      else if (c.kind === 'cookie') {
        // The Cookie header is rewritten without the token's cookie, or removed when nothing is left.
        const current = set.get('cookie') ?? (remove.has('cookie') ? undefined : req.headers['cookie']);
        const rest = current === undefined ? undefined : cookieWithout(current, c.name);
        if (rest === undefined) {
          set.delete('cookie');
          remove.add('cookie');
        } else set.set('cookie', rest);
      }
    }
  }
  // Sign-in cookies are authz's own credentials: no upstream gets them, whatever the rule (public,
  // `login: false`, an API key, removeCredentials off). The other cookies stay.
  if (policy.logins.length > 0) {
    const current = set.get('cookie') ?? (remove.has('cookie') ? undefined : req.headers['cookie']);
    if (current !== undefined) {
      let rest: string | undefined = current;
      for (const l of policy.logins)
        for (const name of [l.cookie.name, `${l.cookie.name}_state`])
          rest = rest === undefined ? undefined : cookieWithout(rest, name);
      if (rest !== current)
        if (rest === undefined) {
          set.delete('cookie');
          remove.add('cookie');
        } else set.set('cookie', rest);
    }
  }
  const metadata: Record<string, string> = { policy: policyName, rule: rule.name, auth: o.reason };
  for (const k of ['sub', 'iss', 'api_key'] as const) {
    const v = claims[k];
    if (typeof v === 'string') metadata[k] = v;
  }
  return {
    kind: 'allow',
    reason: o.reason,
    rule: rule.name,
    headers: [...set],
    removeHeaders: [...remove],
    removeQuery: [...removeQuery],
    metadata,
  };
}

/** Most distinct header names a checked request may carry (Envoy's max_headers_count default is 100). */
export const MAX_HEADERS = 1000;
/** Most context_extensions entries (they come from route configuration: a handful). */
export const MAX_CONTEXT_EXTENSIONS = 64;

/** A sign-in answer (redirect to the provider, callback, logout) as the denied response Envoy sends. */
function answerOf(rule: string, a: SigninAnswer): Deny {
  return { kind: 'deny', reason: a.reason, rule, status: a.status, headers: a.headers, body: a.body };
}

/** The login block whose callback or logout path `path` is, among the blocks of `rules`. */
function loginEndpoint(rules: readonly Rule[], path: string, signin: Signin): LoginSettings | undefined {
  for (const r of rules) if (r.login && signin.isEndpoint(r.login, path)) return r.login;
  return undefined;
}

/** Whether insteadOfRedirect asks for a status instead of the sign-in redirect. */
function insteadOf(l: LoginSettings, req: AuthRequest): number | undefined {
  const i = l.insteadOfRedirect;
  if (!i) return undefined;
  const v = req.headers[i.header];
  if (v === undefined || (i.value !== undefined && !i.value.test(v))) return undefined;
  return i.status;
}

/** Browser sign-in around a rule with a login block: session in, redirect out, cross-site check. */
async function decideWithLogin(
  policy: Policy,
  req: AuthRequest,
  rule: Rule & { readonly login: LoginSettings },
  policyName: string,
  query: string,
  deps: DecisionDeps & { readonly signin: Signin },
): Promise<Decision> {
  const l = rule.login;
  const session = await deps.signin.session(l, req);
  if (session.kind === 'answer') return answerOf(rule.name, session.answer);
  const o = await evalRequirement(req, rule.requirement, policy, query, {
    ...deps,
    ...(session.kind === 'valid'
      ? { session: { provider: session.provider, claims: session.claims, cookie: l.cookie.name } }
      : {}),
  });
  switch (o.kind) {
    case 'allow': {
      if (o.principals.some((p) => p.fromSession)) {
        const origin = requestOrigin(req.host, req.headers, l.cookie.secure ? 'https' : 'http');
        const csrf = checkCsrf(req.method.toUpperCase(), req.headers, origin, l.csrfHeader);
        if (csrf !== 'ok')
          return denyOf(policy, rule.name, { kind: 'deny', reason: 'csrf', challenge: 'none', status: 403 });
      }
      const a = allowOf(policy, req, rule, policyName, o);
      return session.kind === 'valid' && session.setCookie.length > 0
        ? { ...a, responseHeaders: session.setCookie.map((c) => ['set-cookie', c] as const) }
        : a;
    }
    case 'deny': {
      if (o.reason !== 'missing_credentials') return denyOf(policy, rule.name, o);
      const status = insteadOf(l, req);
      if (status !== undefined)
        return denyOf(policy, rule.name, {
          kind: 'deny',
          reason: 'login_required',
          challenge: 'none',
          status,
        });
      if (isNavigation(req.method.toUpperCase(), req.headers))
        return answerOf(
          rule.name,
          await deps.signin.startLogin(l, req, session.kind === 'none' && session.hadCookie),
        );
      return denyOf(policy, rule.name, o); // XHR and APIs: 401 as without sign-in, an SPA reacts to it
    }
    case 'error':
      return { kind: 'error', reason: 'keys_unavailable', rule: rule.name };
  }
}

function denyUnmatched(policy: Policy, reason: DenyReason): Deny {
  return denyOf(policy, '-', { kind: 'deny', reason, challenge: 'none' });
}

/**
 * The decision function: request + policy (+ key stores, token cache, clock) → allow, deny or
 * error. Rule selection: context_extensions `rule`/`policy` (gRPC), else the first rule matching
 * host, path and method; no match is a deny. Both transports adapt its result.
 */
export async function decide(policy: Policy, req: AuthRequest, deps: DecisionDeps): Promise<Decision> {
  // Bounded before any work: a deny, never an RPC error (failure_mode_allow would let it through).
  if (Object.keys(req.headers).length > MAX_HEADERS) return denyUnmatched(policy, 'too_many_headers');
  if (Object.keys(req.contextExtensions).length > MAX_CONTEXT_EXTENSIONS)
    return denyUnmatched(policy, 'bad_request');
  const { path, query, ambiguous } = splitTarget(req.path);
  // `/public/..;/admin`: Tomcat serves /admin, nginx a literal `..;` segment. No rule can be right for both.
  if (ambiguous) return denyUnmatched(policy, 'ambiguous_path');
  const host = normalizeHost(req.host);
  const method = req.method.toUpperCase();
  let rules = policy.rules;
  let policyName = 'default';
  const ctxPolicy = req.contextExtensions['policy'];
  if (ctxPolicy !== undefined) {
    const named = policy.policies.get(ctxPolicy);
    if (!named) return denyUnmatched(policy, 'unknown_policy');
    rules = named;
    policyName = ctxPolicy;
  }
  let rule: Rule | undefined;
  const ctxRule = req.contextExtensions['rule'];
  if (ctxRule !== undefined) {
    rule = rules.find((r) => r.name === ctxRule);
    if (!rule) return denyUnmatched(policy, 'unknown_policy');
  }
  if (isPreflight(req)) {
    const requested = (req.headers['access-control-request-method'] ?? '').trim().toUpperCase();
    const pre = rule ?? findRule(rules, requested, host, path);
    if (pre?.allowPreflight)
      return allowOf(policy, req, pre, policyName, {
        kind: 'allow',
        reason: 'cors_preflight',
        principals: [],
      });
  }
  const signin = deps.signin;
  if (signin) {
    const l = loginEndpoint(rules, path, signin);
    if (l) return answerOf('-', await signin.endpoint(l, req, path));
  }
  rule ??= findRule(rules, method, host, path);
  if (!rule) return denyUnmatched(policy, 'no_matching_rule');
  if (rule.login && signin)
    return decideWithLogin(policy, req, { ...rule, login: rule.login }, policyName, query, {
      ...deps,
      signin,
    });
  const o = await evalRequirement(req, rule.requirement, policy, query, deps);
  switch (o.kind) {
    case 'allow':
      return allowOf(policy, req, rule, policyName, o);
    case 'deny':
      return denyOf(policy, rule.name, o);
    case 'error':
      return { kind: 'error', reason: 'keys_unavailable', rule: rule.name };
  }
}
