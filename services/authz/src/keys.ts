import { createLocalJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Logger } from '@extsvc/common/logger';
import { errorMessage } from '@extsvc/common/errors';
import { AuthzError } from './errors.ts';
import type { JsonFetcher } from './fetch.ts';
import type { KeySource, Provider } from './policy.ts';

/** Result of looking up verification keys for a token. */
export type KeyLookup =
  | { readonly kind: 'keys'; readonly resolver: JWTVerifyGetKey }
  | { readonly kind: 'unknown_kid' }
  | { readonly kind: 'expired' }
  | { readonly kind: 'unavailable' };

/** Outcome label of one fetch, for metrics. */
export type FetchResult = 'ok' | 'error' | 'invalid';

/** Dependencies of a key store. */
export interface KeyStoreDeps {
  readonly fetch: JsonFetcher;
  readonly now: () => number;
  readonly logger: Logger;
  /** Called after each discovery or JWKS fetch attempt. */
  readonly onFetch?: (issuer: string, result: FetchResult) => void;
}

interface Snapshot {
  readonly kids: ReadonlySet<string>;
  readonly resolver: JWTVerifyGetKey;
  readonly count: number;
  readonly fetchedAt: number;
  /** Fresh until (ms epoch); served stale after that up to maxStale. */
  readonly freshUntil: number;
}

const MAX_RETRY_MS = 30_000;

function snapshotOf(jwks: JSONWebKeySet, fetchedAt: number, freshUntil: number): Snapshot {
  // Only public signing keys: private or symmetric members would let a JWKS turn into an HMAC secret.
  const keys = jwks.keys.filter(
    (k: JWK) =>
      typeof k.kty === 'string' && k.kty !== 'oct' && !('d' in k) && (k.use === undefined || k.use === 'sig'),
  );
  const kids = new Set<string>();
  for (const k of keys) if (typeof k.kid === 'string') kids.add(k.kid);
  return { kids, resolver: createLocalJWKSet({ keys }), count: keys.length, fetchedAt, freshUntil };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\./.test(host);
}

/**
 * The verification keys of one provider: inline keys, or a remote JWKS (directly or through OIDC
 * discovery) with a bounded cache. Remote keys are refreshed in the background before they expire,
 * served stale while the issuer is down (up to maxStale), and an unknown kid triggers at most one
 * refetch per cooldown (counted on attempts, not successes); concurrent refetches share one fetch.
 */
export class KeyStore {
  readonly #provider: Provider;
  readonly #deps: KeyStoreDeps;
  readonly #source: KeySource;
  #snapshot: Snapshot | undefined;
  #pending: Promise<void> | undefined;
  #lastAttempt = Number.NEGATIVE_INFINITY;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(provider: Provider, deps: KeyStoreDeps) {
    this.#provider = provider;
    this.#deps = deps;
    this.#source = provider.keys;
    if (this.#source.kind === 'inline')
      this.#snapshot = snapshotOf(this.#source.jwks, deps.now(), Number.POSITIVE_INFINITY);
  }

  /** True for discovery/jwksUri sources. */
  get remote(): boolean {
    return this.#source.kind === 'discovery' || this.#source.kind === 'remote';
  }

  /** Starts the first fetch in the background (remote sources). */
  start(): Promise<void> {
    return this.remote ? this.#refresh() : Promise.resolve();
  }

  /** State for /config and readiness diagnostics. */
  status(): { keys: number; fetchedAt: string | undefined; stale: boolean } {
    const s = this.#snapshot;
    return {
      keys: s?.count ?? 0,
      fetchedAt: s && Number.isFinite(s.fetchedAt) ? new Date(s.fetchedAt).toISOString() : undefined,
      stale: s ? this.#deps.now() > s.freshUntil : true,
    };
  }

  /** Finds the keys for a token's kid, fetching only within the limits above. */
  async lookup(kid: string | undefined): Promise<KeyLookup> {
    if (this.#source.kind === 'none') return { kind: 'unavailable' };
    const c = this.#provider.cache;
    let s = this.#snapshot;
    if (!s) {
      if (this.#pending) await this.#pending;
      else if (this.#deps.now() - this.#lastAttempt >= c.failedRetryMs) await this.#refresh();
      s = this.#snapshot;
      if (!s) return { kind: 'unavailable' };
    }
    const now = this.#deps.now();
    if (now > s.freshUntil + c.maxStaleMs) {
      if (this.#pending) await this.#pending;
      else if (now - this.#lastAttempt >= c.failedRetryMs) await this.#refresh();
      s = this.#snapshot;
      if (!s || this.#deps.now() > s.freshUntil + c.maxStaleMs) return { kind: 'expired' };
    } else if (now > s.freshUntil && !this.#pending && now - this.#lastAttempt >= c.failedRetryMs) {
      void this.#refresh();
    }
    if (kid !== undefined && !s.kids.has(kid)) {
      if (!this.remote) return { kind: 'unknown_kid' };
      if (this.#pending) await this.#pending;
      else if (this.#deps.now() - this.#lastAttempt >= c.cooldownMs) await this.#refresh();
      else return { kind: 'unknown_kid' };
      s = this.#snapshot;
      if (!s?.kids.has(kid)) return { kind: 'unknown_kid' };
    }
    return { kind: 'keys', resolver: s.resolver };
  }

  /** Stops background refreshes. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#refresh(), Math.max(ms, 100));
    this.#timer.unref();
  }

  #refresh(): Promise<void> {
    if (this.#pending) return this.#pending;
    if (this.#closed) return Promise.resolve();
    this.#lastAttempt = this.#deps.now();
    this.#pending = this.#fetchKeys()
      .then((snap) => {
        const first = this.#snapshot === undefined || !Number.isFinite(this.#snapshot.fetchedAt);
        this.#snapshot = snap;
        this.#failures = 0;
        if (first || this.#deps.logger.isLevelEnabled('debug'))
          this.#deps.logger.info({ issuer: this.#provider.issuer, keys: snap.count }, 'issuer keys loaded');
        this.#schedule((snap.freshUntil - snap.fetchedAt) * 0.8);
      })
      .catch((err: unknown) => {
        this.#failures += 1;
        const c = this.#provider.cache;
        const cap = Math.max(c.failedRetryMs, Math.min(c.cooldownMs, MAX_RETRY_MS));
        const wait = Math.min(cap, c.failedRetryMs * 2 ** Math.min(this.#failures - 1, 16));
        this.#deps.logger.warn(
          {
            issuer: this.#provider.issuer,
            code: err instanceof AuthzError ? err.code : 'ERR_JWKS_FETCH',
            err: errorMessage(err),
            stale: this.#snapshot !== undefined,
            retryMs: wait,
          },
          'issuer keys fetch failed',
        );
        this.#schedule(wait);
      })
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }

  async #get(url: string): Promise<{ json: unknown; maxAgeSec: number | undefined }> {
    const c = this.#provider.cache;
    try {
      const r = await this.#deps.fetch(url, { timeoutMs: c.timeoutMs, maxBytes: c.maxBytes });
      return r;
    } catch (err) {
      this.#deps.onFetch?.(this.#provider.issuer, 'error');
      throw err;
    }
  }

  async #fetchKeys(): Promise<Snapshot> {
    const src = this.#source;
    const c = this.#provider.cache;
    let jwksUrl: string;
    if (src.kind === 'discovery') {
      const d = await this.#get(src.url);
      const doc = d.json as { issuer?: unknown; jwks_uri?: unknown } | null;
      if (
        !doc ||
        typeof doc !== 'object' ||
        doc.issuer !== this.#provider.issuer ||
        typeof doc.jwks_uri !== 'string'
      ) {
        this.#deps.onFetch?.(this.#provider.issuer, 'invalid');
        throw new AuthzError('ERR_DISCOVERY_INVALID', 'discovery document issuer or jwks_uri is invalid');
      }
      let u: URL;
      try {
        u = new URL(doc.jwks_uri);
      } catch {
        this.#deps.onFetch?.(this.#provider.issuer, 'invalid');
        throw new AuthzError('ERR_DISCOVERY_INVALID', 'jwks_uri is not a URL');
      }
      // Plain http only to loopback, and only when the discovery document itself came from loopback:
      // a remote (https) document pointing at http://127.0.0.1:port would be a blind GET to local ports.
      const fromLoopback = isLoopback(new URL(src.url).hostname);
      if (
        u.protocol !== 'https:' &&
        !(u.protocol === 'http:' && (c.allowHttp || (fromLoopback && isLoopback(u.hostname))))
      ) {
        this.#deps.onFetch?.(this.#provider.issuer, 'invalid');
        throw new AuthzError('ERR_DISCOVERY_INVALID', 'jwks_uri must be https');
      }
      jwksUrl = u.toString();
      this.#deps.onFetch?.(this.#provider.issuer, 'ok');
    } else if (src.kind === 'remote') jwksUrl = src.url;
    else throw new AuthzError('ERR_JWKS_FETCH', 'no remote key source');
    const r = await this.#get(jwksUrl);
    const jwks = r.json as { keys?: unknown } | null;
    if (
      !jwks ||
      typeof jwks !== 'object' ||
      !Array.isArray(jwks.keys) ||
      jwks.keys.some((k) => !k || typeof k !== 'object')
    ) {
      this.#deps.onFetch?.(this.#provider.issuer, 'invalid');
      throw new AuthzError('ERR_JWKS_INVALID', 'JWKS has no keys array');
    }
    this.#deps.onFetch?.(this.#provider.issuer, 'ok');
    const now = this.#deps.now();
    const ageMs = Math.min(
      c.maxAgeMs,
      Math.max(c.minAgeMs, r.maxAgeSec === undefined ? c.maxAgeMs : r.maxAgeSec * 1000),
    );
    return snapshotOf(jwks as JSONWebKeySet, now, now + ageMs);
  }
}
