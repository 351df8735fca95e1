import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, ProblemCollector } from '@extsvc/common/errors';
import { deepFreeze, parseDuration } from '@extsvc/common/config';
import type { JSONWebKeySet } from 'jose';
import { hostMatcher, parseTemplate, type HostMatcher, type PathMatcher, type Template } from './match.ts';
import { EDGE_STACK_PATHS, parseLogin, type LoginSettings } from './signin/config.ts';

/** Asymmetric JWS algorithms accepted by default. */
export const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
/** HMAC algorithms; allowed only with a configured secret. */
export const HMAC_ALGS = ['HS256', 'HS384', 'HS512'] as const;
const KNOWN_ALGS: ReadonlySet<string> = new Set<string>([...ASYMMETRIC_ALGS, ...HMAC_ALGS]);

/** Where a token is read from. */
export type TokenSource =
  | { readonly kind: 'header'; readonly name: string; readonly prefix: string }
  | { readonly kind: 'query'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string };

/** Where a provider's verification keys come from. */
export type KeySource =
  | { readonly kind: 'discovery'; readonly url: string }
  | { readonly kind: 'remote'; readonly url: string }
  | { readonly kind: 'inline'; readonly jwks: JSONWebKeySet }
  | { readonly kind: 'none' };

/** Key cache bounds of a remote key source (milliseconds). */
export interface KeyCacheSettings {
  /** Fetch timeout, default 1500 ms (well under Emissary's 5 s). */
  readonly timeoutMs: number;
  /** Lower bound of the cache age, whatever Cache-Control says (default 60 s). */
  readonly minAgeMs: number;
  /** Upper bound of the cache age, and the age without Cache-Control (default 10 min). */
  readonly maxAgeMs: number;
  /** How long keys are served after they expired while the issuer is unreachable (default 24 h). */
  readonly maxStaleMs: number;
  /** Minimum time between unknown-kid refetches (default 30 s). */
  readonly cooldownMs: number;
  /** Minimum time between fetch attempts while no keys were ever obtained (default 1 s). */
  readonly failedRetryMs: number;
  /** Largest accepted discovery or JWKS response (default 256 KiB). */
  readonly maxBytes: number;
  /** Allow http:// key URLs to non-loopback hosts (default false). */
  readonly allowHttp: boolean;
}

/** One identity provider (JWT issuer). */
export interface Provider {
  readonly name: string;
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewSec: number;
  readonly requireExp: boolean;
  readonly maxTokenBytes: number;
  /** Max age from iat (seconds), when set iat is required. */
  readonly maxLifetimeSec: number | undefined;
  readonly sources: readonly TokenSource[];
  readonly keys: KeySource;
  readonly hmacSecret: Uint8Array | undefined;
  readonly cache: KeyCacheSettings;
  /**
   * When the keys were never obtained (or the kid is still unknown after a refetch), a token of this
   * issuer cannot be checked: `deny` (default) answers 401 keys_unavailable; `error` is the explicit
   * opt-in to an RPC error / 503, where Envoy's failure_mode_allow decides (any client can pick that
   * path by naming the issuer).
   */
  readonly keysUnavailable: 'deny' | 'error';
}

/** One API key, stored as its SHA-256. */
export interface ApiKey {
  readonly name: string;
  readonly hash: Buffer;
  readonly claims: Readonly<Record<string, unknown>>;
}

/** A named set of API keys read from one header. */
export interface ApiKeySet {
  readonly name: string;
  readonly header: string;
  readonly prefix: string;
  readonly keys: readonly ApiKey[];
}

/** A claim matcher of a JWT or API key requirement. */
export type ClaimMatcher =
  | { readonly claim: string; readonly kind: 'equals'; readonly value: unknown }
  | { readonly claim: string; readonly kind: 'oneOf'; readonly values: readonly unknown[] }
  | { readonly claim: string; readonly kind: 'regex'; readonly regex: RegExp };

/** What a rule requires. */
export type Requirement =
  | { readonly kind: 'public' }
  | { readonly kind: 'deny'; readonly status: number }
  | {
      readonly kind: 'jwt';
      readonly providers: readonly string[];
      readonly audiences: readonly string[];
      readonly scopes: readonly string[];
      readonly claims: readonly ClaimMatcher[];
      /** No token: allowed as anonymous (no identity headers). A token that is present must be valid. */
      readonly optional: boolean;
    }
  | { readonly kind: 'apiKey'; readonly sets: readonly string[]; readonly claims: readonly ClaimMatcher[] }
  | { readonly kind: 'anyOf' | 'allOf'; readonly of: readonly Requirement[] };

/** Headers sent upstream on allow. */
export interface IdentitySettings {
  readonly headers: ReadonlyArray<{ readonly name: string; readonly template: Template }>;
  /** Header carrying the verified JWT payload as base64url JSON. */
  readonly payloadHeader: string | undefined;
  /** Remove every credential the rule reads (its providers' token sources, its key sets' headers) before the upstream. */
  readonly removeCredentials: boolean;
}

/** One ordered rule. */
export interface Rule {
  readonly name: string;
  readonly hosts: readonly HostMatcher[] | undefined;
  readonly path: PathMatcher | undefined;
  readonly methods: ReadonlySet<string> | undefined;
  readonly requirement: Requirement;
  /** Allow CORS preflights (OPTIONS + Origin + Access-Control-Request-Method) without credentials. */
  readonly allowPreflight: boolean;
  readonly identity: IdentitySettings;
  /** Browser sign-in (OIDC code flow) for requests without a bearer token, when set. */
  readonly login: LoginSettings | undefined;
}

/** A validated, frozen policy. */
export interface Policy {
  readonly realm: string;
  readonly providers: ReadonlyMap<string, Provider>;
  readonly apiKeySets: ReadonlyMap<string, ApiKeySet>;
  /** The default rule list. */
  readonly rules: readonly Rule[];
  /** Named rule lists selectable by context_extensions `policy`. */
  readonly policies: ReadonlyMap<string, readonly Rule[]>;
  /** Identity headers clients may never set (always stripped unless set by authz). */
  readonly reservedHeaders: readonly string[];
  /** Header name prefixes (`x-auth-`) clients may never use: every such request header is stripped. */
  readonly reservedHeaderPrefixes: readonly string[];
  /** Every distinct login block (root, per policy, per rule), for sign-in endpoints and /diag. */
  readonly logins: readonly LoginSettings[];
  /** Files read while loading (policy, secrets, JWKS files), for the reload watcher. */
  readonly files: readonly string[];
}

/** Defaults of the key cache, overridable per provider under `keyCache`. */
export const DEFAULT_CACHE: KeyCacheSettings = {
  timeoutMs: 1500,
  minAgeMs: 60_000,
  maxAgeMs: 600_000,
  maxStaleMs: 86_400_000,
  cooldownMs: 30_000,
  failedRetryMs: 1000,
  maxBytes: 256 * 1024,
  allowHttp: false,
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
const FORBIDDEN_SET = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'te', 'upgrade']);

/** What the service configuration tells policy validation. */
export interface PolicyOptions {
  /**
   * The raw HTTP listener is served and Envoy copies only these headers from its answer to the
   * upstream (exact names or `prefix*`): a policy setting any other header is refused. Undefined:
   * gRPC only, not checked.
   */
  readonly httpUpstreamHeaders?: readonly string[] | undefined;
}

/** True when `name` (lower case) is one of `patterns`: an exact name or a `prefix*`. */
export function headerListed(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    const l = p.toLowerCase();
    return l.endsWith('*') ? name.startsWith(l.slice(0, -1)) : name === l;
  });
}

/** Validation context: collects problems as `file: field: message`. */
export class Ctx {
  readonly problems = new ProblemCollector();
  readonly files: string[] = [];
  readonly file: string;
  readonly baseDir: string;
  readonly opts: PolicyOptions;
  constructor(file: string, opts: PolicyOptions) {
    this.file = file;
    this.baseDir = dirname(file);
    this.files.push(file);
    this.opts = opts;
  }
  /**
   * In HTTP mode Envoy copies only its allow-listed answer headers upstream and drops the rest, and a
   * header both set and listed in x-envoy-auth-headers-to-remove ends up removed: a header outside
   * the list would leave the client's own copy in place. Refuse it.
   */
  deliverable(name: string, field: string): void {
    const list = this.opts.httpUpstreamHeaders;
    if (list === undefined || headerListed(name, list)) return;
    this.add(
      field,
      `HTTP mode cannot deliver '${name}' upstream (a client-sent ${name} would reach it): list it in --http-upstream-headers (HTTP_UPSTREAM_HEADERS) and in Envoy's allowed_upstream_headers / Emissary's allowed_authorization_headers, or run gRPC only with --http-enabled=false`,
    );
  }
  add(field: string, message: string): void {
    this.problems.add(`${this.file}: ${field}`, message);
  }
  /** Reports keys outside `allowed`. */
  keys(o: Obj, field: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.add(`${field}.${k}`, 'unknown field');
  }
  str(v: unknown, field: string, opts: { required?: boolean } = {}): string | undefined {
    if (v === undefined || v === null) {
      if (opts.required) this.add(field, 'required');
      return undefined;
    }
    if (typeof v !== 'string' || v === '') {
      this.add(field, 'must be a non-empty string');
      return undefined;
    }
    return v;
  }
  strList(v: unknown, field: string): string[] | undefined {
    if (v === undefined || v === null) return undefined;
    const arr = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(arr) || arr.some((x) => typeof x !== 'string' || x === '')) {
      this.add(field, 'must be a string or a list of strings');
      return undefined;
    }
    return arr as string[];
  }
  bool(v: unknown, field: string, def: boolean): boolean {
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') {
      this.add(field, 'must be true or false');
      return def;
    }
    return v;
  }
  /** Durations: a string with unit (500ms, 30s, 10m, 24h) or a number of seconds. */
  duration(v: unknown, field: string, defMs: number): number {
    if (v === undefined || v === null) return defMs;
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return Math.round(v * 1000);
    if (typeof v === 'string') {
      const d = parseDuration(v);
      if (d !== undefined) return d;
    }
    this.add(field, 'must be a duration like 500ms, 30s, 10m or a number of seconds');
    return defMs;
  }
  int(v: unknown, field: string, def: number, min: number): number {
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      this.add(field, `must be an integer >= ${min}`);
      return def;
    }
    return v;
  }
  headerName(v: unknown, field: string): string | undefined {
    const s = this.str(v, field, { required: true });
    if (s === undefined) return undefined;
    const l = s.toLowerCase();
    if (!HEADER_NAME.test(l) || l.startsWith(':')) {
      this.add(field, `invalid header name '${s}'`);
      return undefined;
    }
    return l;
  }
  readFile(path: string, field: string): string | undefined {
    const full = resolve(this.baseDir, path);
    try {
      const text = readFileSync(full, 'utf8');
      this.files.push(full);
      return text;
    } catch (err) {
      this.add(field, `cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  }
  /** A secret from `value`, `file` (Kubernetes Secret mount) or `env`; never echoed in messages. */
  secret(v: unknown, field: string, env: Readonly<Record<string, string | undefined>>): string | undefined {
    if (typeof v === 'string') return v;
    if (!isObj(v)) {
      this.add(field, 'must be a string or {value | file | env}');
      return undefined;
    }
    this.keys(v, field, ['value', 'file', 'env']);
    const given = ['value', 'file', 'env'].filter((k) => v[k] !== undefined);
    if (given.length !== 1) {
      this.add(field, 'exactly one of value, file, env is required');
      return undefined;
    }
    if (v['value'] !== undefined) return this.str(v['value'], `${field}.value`);
    if (v['file'] !== undefined) {
      const path = this.str(v['file'], `${field}.file`);
      const text = path === undefined ? undefined : this.readFile(path, `${field}.file`);
      return text?.replace(/\r?\n$/, '');
    }
    const name = this.str(v['env'], `${field}.env`);
    if (name === undefined) return undefined;
    const val = env[name];
    if (val === undefined || val === '') {
      this.add(`${field}.env`, `environment variable ${name} is not set`);
      return undefined;
    }
    return val;
  }
}

function parseUrl(ctx: Ctx, v: unknown, field: string): string | undefined {
  const s = ctx.str(v, field);
  if (s === undefined) return undefined;
  try {
    const u = new URL(s);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    return u.toString();
  } catch {
    ctx.add(field, `must be an http(s) URL, got '${s}'`);
    return undefined;
  }
}

function parseSources(ctx: Ctx, v: unknown, field: string): TokenSource[] {
  if (v === undefined || v === null) return [{ kind: 'header', name: 'authorization', prefix: 'bearer ' }];
  if (!Array.isArray(v) || v.length === 0) {
    ctx.add(field, 'must be a non-empty list');
    return [];
  }
  const out: TokenSource[] = [];
  v.forEach((s: unknown, i) => {
    const f = `${field}[${i}]`;
    if (s === 'bearer') {
      out.push({ kind: 'header', name: 'authorization', prefix: 'bearer ' });
      return;
    }
    if (!isObj(s)) {
      ctx.add(f, "must be 'bearer' or one of {header, prefix}, {query}, {cookie}");
      return;
    }
    ctx.keys(s, f, ['header', 'prefix', 'query', 'cookie']);
    if (s['header'] !== undefined) {
      const name = ctx.headerName(s['header'], `${f}.header`);
      const prefix = s['prefix'] === undefined ? '' : ctx.str(s['prefix'], `${f}.prefix`);
      if (name !== undefined && prefix !== undefined)
        out.push({ kind: 'header', name, prefix: prefix.toLowerCase() });
    } else if (s['query'] !== undefined) {
      const name = ctx.str(s['query'], `${f}.query`);
      if (name !== undefined) out.push({ kind: 'query', name });
    } else if (s['cookie'] !== undefined) {
      const name = ctx.str(s['cookie'], `${f}.cookie`);
      if (name !== undefined) out.push({ kind: 'cookie', name });
    } else ctx.add(f, 'one of header, query, cookie is required');
  });
  return out;
}

function parseJwks(ctx: Ctx, v: unknown, field: string): JSONWebKeySet | undefined {
  if (!isObj(v) || !Array.isArray(v['keys'])) {
    ctx.add(field, 'must be a JWKS object {keys: [...]}');
    return undefined;
  }
  for (const [i, k] of (v['keys'] as unknown[]).entries()) {
    if (!isObj(k) || typeof k['kty'] !== 'string') ctx.add(`${field}.keys[${i}]`, 'must be a JWK with kty');
    else if ('d' in k || k['kty'] === 'oct') ctx.add(`${field}.keys[${i}]`, 'must be a public key');
  }
  return v as unknown as JSONWebKeySet;
}

function parseProvider(
  ctx: Ctx,
  name: string,
  v: unknown,
  env: Readonly<Record<string, string | undefined>>,
): Provider | undefined {
  const f = `providers.${name}`;
  if (!isObj(v)) {
    ctx.add(f, 'must be a mapping');
    return undefined;
  }
  ctx.keys(v, f, [
    'issuer',
    'discovery',
    'discoveryUrl',
    'jwksUri',
    'jwks',
    'jwksFile',
    'hmacSecret',
    'audiences',
    'algorithms',
    'clockSkew',
    'requireExp',
    'maxTokenBytes',
    'maxLifetime',
    'tokenSources',
    'keyCache',
    'keysUnavailable',
  ]);
  const issuer = ctx.str(v['issuer'], `${f}.issuer`, { required: true });
  const given = ['discovery', 'discoveryUrl', 'jwksUri', 'jwks', 'jwksFile'].filter(
    (k) => v[k] !== undefined && v[k] !== false,
  );
  let hmacSecret: Uint8Array | undefined;
  if (v['hmacSecret'] !== undefined) {
    const s = ctx.secret(v['hmacSecret'], `${f}.hmacSecret`, env);
    if (s !== undefined) {
      hmacSecret = new TextEncoder().encode(s);
      if (hmacSecret.length < 32) ctx.add(`${f}.hmacSecret`, 'must be at least 32 bytes');
    }
  }
  let keys: KeySource = { kind: 'none' };
  if (given.length > 1) ctx.add(f, `only one of ${given.join(', ')} may be set`);
  else if (given.length === 0 && hmacSecret === undefined) {
    if (issuer !== undefined) keys = { kind: 'discovery', url: discoveryUrl(issuer) };
  } else if (given[0] === 'discovery') {
    if (v['discovery'] !== true) ctx.add(`${f}.discovery`, 'must be true or false');
    else if (issuer !== undefined) keys = { kind: 'discovery', url: discoveryUrl(issuer) };
  } else if (given[0] === 'discoveryUrl') {
    const url = parseUrl(ctx, v['discoveryUrl'], `${f}.discoveryUrl`);
    if (url) keys = { kind: 'discovery', url };
  } else if (given[0] === 'jwksUri') {
    const url = parseUrl(ctx, v['jwksUri'], `${f}.jwksUri`);
    if (url) keys = { kind: 'remote', url };
  } else if (given[0] === 'jwks') {
    const jwks = parseJwks(ctx, v['jwks'], `${f}.jwks`);
    if (jwks) keys = { kind: 'inline', jwks };
  } else if (given[0] === 'jwksFile') {
    const path = ctx.str(v['jwksFile'], `${f}.jwksFile`);
    const text = path === undefined ? undefined : ctx.readFile(path, `${f}.jwksFile`);
    if (text !== undefined) {
      try {
        const jwks = parseJwks(ctx, JSON.parse(text), `${f}.jwksFile`);
        if (jwks) keys = { kind: 'inline', jwks };
      } catch {
        ctx.add(`${f}.jwksFile`, 'is not valid JSON');
      }
    }
  }
  const hasAsym = keys.kind !== 'none';
  const defaultAlgs = [...(hasAsym ? ASYMMETRIC_ALGS : []), ...(hmacSecret ? HMAC_ALGS : [])];
  const algorithms = ctx.strList(v['algorithms'], `${f}.algorithms`) ?? defaultAlgs;
  for (const a of algorithms) {
    if (!KNOWN_ALGS.has(a)) ctx.add(`${f}.algorithms`, `unsupported algorithm '${a}'`);
    else if (a.startsWith('HS') && !hmacSecret) ctx.add(`${f}.algorithms`, `${a} requires hmacSecret`);
    else if (!a.startsWith('HS') && !hasAsym)
      ctx.add(`${f}.algorithms`, `${a} requires a key source (discovery, jwksUri, jwks, jwksFile)`);
  }
  const cacheObj = v['keyCache'];
  let cache = DEFAULT_CACHE;
  if (cacheObj !== undefined) {
    if (!isObj(cacheObj)) ctx.add(`${f}.keyCache`, 'must be a mapping');
    else {
      const cf = `${f}.keyCache`;
      ctx.keys(cacheObj, cf, [
        'timeout',
        'minAge',
        'maxAge',
        'maxStale',
        'cooldown',
        'failedRetry',
        'maxBytes',
        'allowHttp',
      ]);
      cache = {
        timeoutMs: ctx.duration(cacheObj['timeout'], `${cf}.timeout`, DEFAULT_CACHE.timeoutMs),
        minAgeMs: ctx.duration(cacheObj['minAge'], `${cf}.minAge`, DEFAULT_CACHE.minAgeMs),
        maxAgeMs: ctx.duration(cacheObj['maxAge'], `${cf}.maxAge`, DEFAULT_CACHE.maxAgeMs),
        maxStaleMs: ctx.duration(cacheObj['maxStale'], `${cf}.maxStale`, DEFAULT_CACHE.maxStaleMs),
        cooldownMs: ctx.duration(cacheObj['cooldown'], `${cf}.cooldown`, DEFAULT_CACHE.cooldownMs),
        failedRetryMs: ctx.duration(
          cacheObj['failedRetry'],
          `${cf}.failedRetry`,
          DEFAULT_CACHE.failedRetryMs,
        ),
        maxBytes: ctx.int(cacheObj['maxBytes'], `${cf}.maxBytes`, DEFAULT_CACHE.maxBytes, 1024),
        allowHttp: ctx.bool(cacheObj['allowHttp'], `${cf}.allowHttp`, false),
      };
      if (cache.minAgeMs > cache.maxAgeMs) ctx.add(`${cf}.minAge`, 'must not exceed maxAge');
      if (cache.timeoutMs <= 0) ctx.add(`${cf}.timeout`, 'must be positive');
    }
  }
  const keysUnavailable = v['keysUnavailable'] ?? 'deny';
  if (keysUnavailable !== 'deny' && keysUnavailable !== 'error')
    ctx.add(`${f}.keysUnavailable`, 'must be deny or error');
  const maxLifetime =
    v['maxLifetime'] === undefined ? undefined : ctx.duration(v['maxLifetime'], `${f}.maxLifetime`, 0);
  if (issuer === undefined) return undefined;
  return {
    name,
    issuer,
    audiences: ctx.strList(v['audiences'], `${f}.audiences`) ?? [],
    algorithms,
    clockSkewSec: Math.round(ctx.duration(v['clockSkew'], `${f}.clockSkew`, 60_000) / 1000),
    requireExp: ctx.bool(v['requireExp'], `${f}.requireExp`, true),
    maxTokenBytes: ctx.int(v['maxTokenBytes'], `${f}.maxTokenBytes`, 8192, 64),
    maxLifetimeSec: maxLifetime === undefined ? undefined : Math.round(maxLifetime / 1000),
    sources: parseSources(ctx, v['tokenSources'], `${f}.tokenSources`),
    keys,
    hmacSecret,
    cache,
    keysUnavailable: keysUnavailable === 'error' ? 'error' : 'deny',
  };
}

/** The OIDC discovery document URL of an issuer. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

function parseApiKeySet(
  ctx: Ctx,
  name: string,
  v: unknown,
  env: Readonly<Record<string, string | undefined>>,
): ApiKeySet | undefined {
  const f = `apiKeys.${name}`;
  if (!isObj(v)) {
    ctx.add(f, 'must be a mapping');
    return undefined;
  }
  ctx.keys(v, f, ['header', 'prefix', 'keys']);
  const header = v['header'] === undefined ? 'x-api-key' : ctx.headerName(v['header'], `${f}.header`);
  const prefix = v['prefix'] === undefined ? '' : (ctx.str(v['prefix'], `${f}.prefix`) ?? '');
  const keys: ApiKey[] = [];
  if (!Array.isArray(v['keys']) || v['keys'].length === 0) ctx.add(`${f}.keys`, 'must be a non-empty list');
  else
    (v['keys'] as unknown[]).forEach((k, i) => {
      const kf = `${f}.keys[${i}]`;
      if (!isObj(k)) {
        ctx.add(kf, 'must be a mapping');
        return;
      }
      ctx.keys(k, kf, ['name', 'sha256', 'value', 'file', 'env', 'claims']);
      const kname = ctx.str(k['name'], `${kf}.name`, { required: true });
      let hash: Buffer | undefined;
      const forms = ['sha256', 'value', 'file', 'env'].filter((x) => k[x] !== undefined);
      if (forms.length !== 1) ctx.add(kf, 'exactly one of sha256, value, file, env is required');
      else if (k['sha256'] !== undefined) {
        const hex = k['sha256'];
        if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex))
          ctx.add(`${kf}.sha256`, 'must be 64 hex characters');
        else hash = Buffer.from(hex, 'hex');
      } else {
        const raw = ctx.secret({ [forms[0] as string]: k[forms[0] as string] }, kf, env);
        if (raw !== undefined) hash = createHash('sha256').update(raw).digest();
      }
      const claims = k['claims'] === undefined ? {} : k['claims'];
      if (!isObj(claims)) ctx.add(`${kf}.claims`, 'must be a mapping');
      if (kname !== undefined && hash !== undefined && isObj(claims))
        keys.push({ name: kname, hash, claims: { ...claims, sub: claims['sub'] ?? kname } });
    });
  if (header === undefined) return undefined;
  return { name, header, prefix: prefix.toLowerCase(), keys };
}

function parseClaims(ctx: Ctx, v: unknown, field: string): ClaimMatcher[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    ctx.add(field, 'must be a list of {claim, equals | oneOf | regex}');
    return [];
  }
  const out: ClaimMatcher[] = [];
  v.forEach((c: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(c)) {
      ctx.add(f, 'must be a mapping');
      return;
    }
    ctx.keys(c, f, ['claim', 'equals', 'oneOf', 'regex']);
    const claim = ctx.str(c['claim'], `${f}.claim`, { required: true });
    const ops = ['equals', 'oneOf', 'regex'].filter((k) => c[k] !== undefined);
    if (ops.length !== 1) {
      ctx.add(f, 'exactly one of equals, oneOf, regex is required');
      return;
    }
    if (claim === undefined) return;
    if (c['equals'] !== undefined) out.push({ claim, kind: 'equals', value: c['equals'] });
    else if (c['oneOf'] !== undefined) {
      if (!Array.isArray(c['oneOf']) || c['oneOf'].length === 0)
        ctx.add(`${f}.oneOf`, 'must be a non-empty list');
      else out.push({ claim, kind: 'oneOf', values: c['oneOf'] as unknown[] });
    } else {
      const src = ctx.str(c['regex'], `${f}.regex`);
      if (src === undefined) return;
      try {
        out.push({ claim, kind: 'regex', regex: new RegExp(`^(?:${src})$`, 'u') });
      } catch {
        ctx.add(`${f}.regex`, 'invalid regular expression');
      }
    }
  });
  return out;
}

/** 4xx codes defined in envoy.type.v3.StatusCode (a deny status must be one of them). */
const ENVOY_4XX: ReadonlySet<number> = new Set([
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 423,
  424, 426, 428, 429, 431,
]);

const REQUIREMENT_KEYS = ['public', 'deny', 'jwt', 'apiKey', 'anyOf', 'allOf'] as const;

function parseRequirement(
  ctx: Ctx,
  v: Obj,
  field: string,
  providers: ReadonlyMap<string, unknown>,
  sets: ReadonlyMap<string, unknown>,
): Requirement | undefined {
  const given = REQUIREMENT_KEYS.filter((k) => v[k] !== undefined);
  if (given.length !== 1) {
    ctx.add(field, `exactly one of ${REQUIREMENT_KEYS.join(', ')} is required`);
    return undefined;
  }
  const key = given[0] as (typeof REQUIREMENT_KEYS)[number];
  const val = v[key];
  const f = `${field}.${key}`;
  switch (key) {
    case 'public':
      if (val !== true) ctx.add(f, 'must be true');
      return { kind: 'public' };
    case 'deny': {
      if (val === true) return { kind: 'deny', status: 403 };
      if (isObj(val)) {
        ctx.keys(val, f, ['status']);
        const status = ctx.int(val['status'], `${f}.status`, 403, 400);
        if (status > 499) ctx.add(`${f}.status`, 'must be a 4xx status (5xx would be an error for Envoy)');
        else if (!ENVOY_4XX.has(status))
          ctx.add(`${f}.status`, 'must be a status defined by envoy.type.v3.StatusCode');
        return { kind: 'deny', status };
      }
      ctx.add(f, 'must be true or {status}');
      return undefined;
    }
    case 'jwt': {
      const j = val === true ? {} : val;
      if (!isObj(j)) {
        ctx.add(f, 'must be true or a mapping');
        return undefined;
      }
      ctx.keys(j, f, ['providers', 'audiences', 'scopes', 'claims', 'optional']);
      const names = ctx.strList(j['providers'], `${f}.providers`) ?? [...providers.keys()];
      if (names.length === 0) ctx.add(`${f}.providers`, 'no providers are configured');
      for (const n of names) if (!providers.has(n)) ctx.add(`${f}.providers`, `unknown provider '${n}'`);
      const scopes =
        typeof j['scopes'] === 'string'
          ? j['scopes'].split(/\s+/).filter((s) => s !== '')
          : (ctx.strList(j['scopes'], `${f}.scopes`) ?? []);
      return {
        kind: 'jwt',
        providers: names,
        audiences: ctx.strList(j['audiences'], `${f}.audiences`) ?? [],
        scopes,
        claims: parseClaims(ctx, j['claims'], `${f}.claims`),
        optional: ctx.bool(j['optional'], `${f}.optional`, false),
      };
    }
    case 'apiKey': {
      const a = typeof val === 'string' || Array.isArray(val) ? { sets: val } : val === true ? {} : val;
      if (!isObj(a)) {
        ctx.add(f, 'must be a set name, a list of names, or {sets, claims}');
        return undefined;
      }
      ctx.keys(a, f, ['sets', 'claims']);
      const names = ctx.strList(a['sets'], `${f}.sets`) ?? [...sets.keys()];
      if (names.length === 0) ctx.add(`${f}.sets`, 'no apiKeys sets are configured');
      for (const n of names) if (!sets.has(n)) ctx.add(`${f}.sets`, `unknown apiKeys set '${n}'`);
      return { kind: 'apiKey', sets: names, claims: parseClaims(ctx, a['claims'], `${f}.claims`) };
    }
    case 'anyOf':
    case 'allOf': {
      if (!Array.isArray(val) || val.length === 0) {
        ctx.add(f, 'must be a non-empty list of requirements');
        return undefined;
      }
      const of: Requirement[] = [];
      val.forEach((item: unknown, i) => {
        if (!isObj(item)) ctx.add(`${f}[${i}]`, 'must be a mapping');
        else {
          ctx.keys(item, `${f}[${i}]`, REQUIREMENT_KEYS);
          const r = parseRequirement(ctx, item, `${f}[${i}]`, providers, sets);
          if (r) of.push(r);
        }
      });
      return { kind: key, of };
    }
  }
}

function parseIdentity(ctx: Ctx, v: unknown, field: string, base: IdentitySettings): IdentitySettings {
  if (v === undefined || v === null) return base;
  if (!isObj(v)) {
    ctx.add(field, 'must be a mapping');
    return base;
  }
  ctx.keys(v, field, ['headers', 'payloadHeader', 'removeCredentials']);
  let headers = base.headers;
  if (v['headers'] !== undefined) {
    const h = v['headers'];
    if (!isObj(h)) ctx.add(`${field}.headers`, 'must be a mapping of header name to template');
    else {
      const list: Array<{ name: string; template: Template }> = [];
      for (const [name, tpl] of Object.entries(h)) {
        const hf = `${field}.headers.${name}`;
        const lname = ctx.headerName(name, hf);
        if (lname !== undefined && FORBIDDEN_SET.has(lname)) ctx.add(hf, 'this header cannot be set');
        if (typeof tpl !== 'string') {
          ctx.add(hf, 'must be a template string like "{{ sub }}"');
          continue;
        }
        if (lname !== undefined) ctx.deliverable(lname, hf);
        const t = parseTemplate(tpl);
        if (typeof t === 'string') ctx.add(hf, t);
        else if (lname !== undefined) list.push({ name: lname, template: t });
      }
      headers = list;
    }
  }
  const payloadHeader =
    v['payloadHeader'] === undefined
      ? base.payloadHeader
      : ctx.headerName(v['payloadHeader'], `${field}.payloadHeader`);
  if (v['payloadHeader'] !== undefined && payloadHeader !== undefined)
    ctx.deliverable(payloadHeader, `${field}.payloadHeader`);
  return {
    headers,
    payloadHeader,
    removeCredentials: ctx.bool(v['removeCredentials'], `${field}.removeCredentials`, base.removeCredentials),
  };
}

function parsePathMatcher(
  ctx: Ctx,
  kind: 'exact' | 'prefix' | 'regex',
  v: unknown,
  field: string,
): PathMatcher | undefined {
  const p = ctx.str(v, field);
  if (p === undefined) return undefined;
  if (kind === 'regex') {
    try {
      return { kind: 'regex', regex: new RegExp(`^(?:${p})$`, 'u') };
    } catch {
      ctx.add(field, 'invalid regular expression');
      return undefined;
    }
  }
  if (!p.startsWith('/')) {
    ctx.add(field, "must start with '/'");
    return undefined;
  }
  return kind === 'exact' ? { kind: 'exact', path: p } : { kind: 'prefix', prefix: p };
}

/** Names of the JWT providers a requirement may accept. */
function jwtProviders(r: Requirement): string[] {
  switch (r.kind) {
    case 'jwt':
      return [...r.providers];
    case 'anyOf':
    case 'allOf':
      return r.of.flatMap(jwtProviders);
    case 'apiKey':
    case 'deny':
    case 'public':
      return [];
  }
}

function parseRules(
  ctx: Ctx,
  v: unknown,
  field: string,
  providers: ReadonlyMap<string, Provider>,
  sets: ReadonlyMap<string, unknown>,
  identity: IdentitySettings,
  login: {
    readonly base: LoginSettings | undefined;
    readonly env: Readonly<Record<string, string | undefined>>;
  },
): Rule[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    ctx.add(field, 'must be a list of rules');
    return [];
  }
  const rules: Rule[] = [];
  const names = new Set<string>();
  v.forEach((r: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(r)) {
      ctx.add(f, 'must be a mapping');
      return;
    }
    ctx.keys(r, f, ['name', 'match', 'cors', 'identity', 'action', 'login', ...REQUIREMENT_KEYS]);
    const name = r['name'] === undefined ? `${field}[${i}]` : ctx.str(r['name'], `${f}.name`);
    if (name !== undefined && names.has(name)) ctx.add(`${f}.name`, `duplicate rule name '${name}'`);
    if (name !== undefined) names.add(name);
    let hosts: HostMatcher[] | undefined;
    let path: PathMatcher | undefined;
    let methods: Set<string> | undefined;
    const m = r['match'];
    if (m !== undefined) {
      if (!isObj(m)) ctx.add(`${f}.match`, 'must be a mapping');
      else {
        const mf = `${f}.match`;
        ctx.keys(m, mf, ['host', 'hosts', 'path', 'pathPrefix', 'pathRegex', 'method', 'methods']);
        const hs = [
          ...(ctx.strList(m['host'], `${mf}.host`) ?? []),
          ...(ctx.strList(m['hosts'], `${mf}.hosts`) ?? []),
        ];
        if (hs.length > 0) hosts = hs.map(hostMatcher);
        const pk = ['path', 'pathPrefix', 'pathRegex'].filter((k) => m[k] !== undefined);
        if (pk.length > 1) ctx.add(mf, 'only one of path, pathPrefix, pathRegex may be set');
        else if (isObj(m['path'])) {
          // Also accepted: path: { exact | prefix | regex: ... }
          const po = m['path'];
          ctx.keys(po, `${mf}.path`, ['exact', 'prefix', 'regex']);
          const kinds = (['exact', 'prefix', 'regex'] as const).filter((k) => po[k] !== undefined);
          const kind = kinds[0];
          if (kinds.length !== 1 || kind === undefined)
            ctx.add(`${mf}.path`, 'exactly one of exact, prefix, regex is required');
          else path = parsePathMatcher(ctx, kind, po[kind], `${mf}.path.${kind}`);
        } else if (m['path'] !== undefined) path = parsePathMatcher(ctx, 'exact', m['path'], `${mf}.path`);
        else if (m['pathPrefix'] !== undefined)
          path = parsePathMatcher(ctx, 'prefix', m['pathPrefix'], `${mf}.pathPrefix`);
        else if (m['pathRegex'] !== undefined)
          path = parsePathMatcher(ctx, 'regex', m['pathRegex'], `${mf}.pathRegex`);
        const ms = [
          ...(ctx.strList(m['method'], `${mf}.method`) ?? []),
          ...(ctx.strList(m['methods'], `${mf}.methods`) ?? []),
        ];
        if (ms.length > 0) methods = new Set(ms.map((x) => x.toUpperCase()));
      }
    }
    let allowPreflight = false;
    if (r['cors'] !== undefined) {
      const c = r['cors'];
      if (!isObj(c)) ctx.add(`${f}.cors`, 'must be a mapping');
      else {
        ctx.keys(c, `${f}.cors`, ['allowPreflight']);
        allowPreflight = ctx.bool(c['allowPreflight'], `${f}.cors.allowPreflight`, false);
      }
    }
    let reqObj: Obj = r;
    if (r['action'] !== undefined) {
      // `action: public | deny` is shorthand for `public: true` / `deny: true`.
      if (r['action'] === 'public' || r['action'] === 'deny') reqObj = { ...r, [r['action']]: true };
      else ctx.add(`${f}.action`, 'must be public or deny');
    }
    const requirement = parseRequirement(ctx, reqObj, f, providers, sets);
    const id = parseIdentity(ctx, r['identity'], `${f}.identity`, identity);
    // Envoy's http_service has no way to rewrite the path: a query-string token would reach the upstream.
    if (requirement && id.removeCredentials && ctx.opts.httpUpstreamHeaders !== undefined)
      for (const n of new Set(jwtProviders(requirement)))
        if (providers.get(n)?.sources.some((src) => src.kind === 'query'))
          ctx.add(
            `${f}.identity.removeCredentials`,
            `HTTP mode cannot remove the query-string token of provider '${n}' (Envoy's http_service cannot rewrite the path): drop its query token source or run gRPC only with --http-enabled=false`,
          );
    // `login: false` opts a rule out of its policy's sign-in.
    const ruleLogin =
      r['login'] === undefined
        ? login.base
        : r['login'] === false
          ? undefined
          : parseLogin(ctx, r['login'], `${f}.login`, providers, login.env);
    if (ruleLogin && requirement && jwtProviders(requirement).length === 0)
      ctx.add(`${f}.login`, 'needs a jwt requirement (the session stands in for its bearer token)');
    else if (ruleLogin && requirement && !jwtProviders(requirement).includes(ruleLogin.provider))
      ctx.add(
        `${f}.login.provider`,
        `provider '${ruleLogin.provider}' is not among the rule's jwt providers`,
      );
    if (name !== undefined && requirement)
      rules.push({ name, hosts, path, methods, requirement, allowPreflight, identity: id, login: ruleLogin });
  });
  return rules;
}

/**
 * Parses and validates a policy document. Every problem is collected with `file: field` and thrown
 * together as a ConfigError; secret values never appear in messages.
 */
export function parsePolicy(
  text: string,
  file: string,
  env: Readonly<Record<string, string | undefined>> = {},
  opts: PolicyOptions = {},
): Policy {
  const ctx = new Ctx(file, opts);
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    const line = (err as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new ConfigError([{ field: `${file}${line ? `:${line}` : ''}`, message: 'invalid YAML' }]);
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObj(doc)) throw new ConfigError([{ field: file, message: 'must be a YAML mapping' }]);
  ctx.keys(doc, '(root)', [
    'realm',
    'providers',
    'apiKeys',
    'identity',
    'reservedHeaders',
    'reservedHeaderPrefixes',
    'rules',
    'policies',
    'login',
  ]);
  const realm = doc['realm'] === undefined ? 'authz' : (ctx.str(doc['realm'], 'realm') ?? 'authz');
  if (/["\\\r\n]/.test(realm)) ctx.add('realm', 'must not contain quotes, backslashes or newlines');
  const providers = new Map<string, Provider>();
  const rawProviders = doc['providers'] ?? {};
  if (!isObj(rawProviders)) ctx.add('providers', 'must be a mapping of name to provider');
  else
    for (const [name, p] of Object.entries(rawProviders)) {
      const prov = parseProvider(ctx, name, p, env);
      if (prov) providers.set(name, prov);
    }
  const seenIss = new Map<string, string>();
  for (const p of providers.values()) {
    const other = seenIss.get(p.issuer);
    if (other !== undefined) ctx.add(`providers.${p.name}.issuer`, `same issuer as provider '${other}'`);
    seenIss.set(p.issuer, p.name);
  }
  const sets = new Map<string, ApiKeySet>();
  const rawSets = doc['apiKeys'] ?? {};
  if (!isObj(rawSets)) ctx.add('apiKeys', 'must be a mapping of set name to key set');
  else
    for (const [name, s] of Object.entries(rawSets)) {
      const set = parseApiKeySet(ctx, name, s, env);
      if (set) sets.set(name, set);
    }
  const identity = parseIdentity(ctx, doc['identity'], 'identity', {
    headers: [],
    payloadHeader: undefined,
    removeCredentials: false,
  });
  const rootLogin =
    doc['login'] === undefined ? undefined : parseLogin(ctx, doc['login'], 'login', providers, env);
  const rules = parseRules(ctx, doc['rules'], 'rules', providers, sets, identity, { base: rootLogin, env });
  const policies = new Map<string, Rule[]>();
  const rawPolicies = doc['policies'] ?? {};
  if (!isObj(rawPolicies)) ctx.add('policies', 'must be a mapping of name to {rules}');
  else
    for (const [name, p] of Object.entries(rawPolicies)) {
      if (!isObj(p)) {
        ctx.add(`policies.${name}`, 'must be a mapping with rules');
        continue;
      }
      ctx.keys(p, `policies.${name}`, ['rules', 'login']);
      const pl =
        p['login'] === undefined
          ? rootLogin
          : parseLogin(ctx, p['login'], `policies.${name}.login`, providers, env);
      policies.set(
        name,
        parseRules(ctx, p['rules'], `policies.${name}.rules`, providers, sets, identity, { base: pl, env }),
      );
    }
  const reserved = new Set<string>();
  const extra = ctx.strList(doc['reservedHeaders'], 'reservedHeaders') ?? [];
  extra.forEach((h, i) => {
    const n = ctx.headerName(h, `reservedHeaders[${i}]`);
    if (n !== undefined) reserved.add(n);
  });
  for (const r of [...rules, ...[...policies.values()].flat()]) {
    for (const h of r.identity.headers) reserved.add(h.name);
    if (r.identity.payloadHeader) reserved.add(r.identity.payloadHeader);
  }
  for (const h of reserved)
    if (h === 'authorization' || FORBIDDEN_SET.has(h))
      ctx.add('reservedHeaders', `'${h}' cannot be reserved`);
  const prefixes: string[] = [];
  (ctx.strList(doc['reservedHeaderPrefixes'], 'reservedHeaderPrefixes') ?? []).forEach((h, i) => {
    const pf = `reservedHeaderPrefixes[${i}]`;
    const n = ctx.headerName(h, pf);
    if (n === undefined) return;
    const hit = ['authorization', 'cookie', ...FORBIDDEN_SET].find((x) => x.startsWith(n));
    if (hit !== undefined || n.length < 3)
      ctx.add(pf, `'${n}' is too broad (it would strip ${hit ?? 'common headers'})`);
    else prefixes.push(n);
  });
  const logins = [
    ...new Set([...rules, ...[...policies.values()].flat()].flatMap((r) => (r.login ? [r.login] : []))),
  ];
  const byCookie = new Map<string, string>();
  for (const l of logins) {
    const other = byCookie.get(l.cookie.name);
    if (other !== undefined && other !== l.id)
      ctx.add(
        `${l.id}.cookie.name`,
        `the same cookie name as ${other}: give each login block its own cookie`,
      );
    byCookie.set(l.cookie.name, l.id);
  }
  // Within one rule set the first block owning a path answers it: a second block's callback or
  // logout there would never run (its sign-ins would all fail), so two blocks may not share one.
  for (const set of [rules, ...policies.values()]) {
    const byPath = new Map<string, string>();
    for (const l of new Set(set.flatMap((r) => (r.login ? [r.login] : []))))
      for (const [field, path] of loginPaths(l)) {
        const other = byPath.get(path);
        if (other !== undefined && !other.startsWith(`${l.id}.`))
          ctx.add(
            `${l.id}.${field}`,
            `'${path}' is already the path of ${other}: give each login block its own`,
          );
        else byPath.set(path, `${l.id}.${field}`);
      }
  }
  ctx.problems.throwIfAny();
  return deepFreeze({
    realm,
    providers,
    apiKeySets: sets,
    rules,
    policies,
    reservedHeaders: [...reserved],
    reservedHeaderPrefixes: prefixes,
    logins,
    files: ctx.files,
  });
}

/** The request paths a login block answers, with the field that sets each. */
function loginPaths(l: LoginSettings): Array<readonly [string, string]> {
  const callback = /^https?:\/\//.test(l.redirectPath) ? new URL(l.redirectPath).pathname : l.redirectPath;
  const out: Array<readonly [string, string]> = [
    ['redirectPath', callback],
    ['logoutPath', l.logoutPath],
  ];
  if (l.edgeStack) out.push(['edgeStack', EDGE_STACK_PATHS.postLogout]);
  return out;
}

/** Reads and parses a policy file. */
export function loadPolicyFile(
  file: string,
  env: Readonly<Record<string, string | undefined>> = {},
  opts: PolicyOptions = {},
): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      { field: file, message: `cannot read policy file (${(err as NodeJS.ErrnoException).code ?? 'error'})` },
    ]);
  }
  return parsePolicy(text, file, env, opts);
}

/** A policy with no rules: every request is denied (no_matching_rule). */
export function emptyPolicy(): Policy {
  return parsePolicy('{}', '(none)');
}
