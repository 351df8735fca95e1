import { createHash } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { DenyReason } from './errors.ts';
import type { KeyStore } from './keys.ts';
import type { Provider } from './policy.ts';
import { fastVerify, type SignatureWorkers } from './verifier-node.ts';

/** Outcome of verifying one token. */
export type VerifyResult =
  | { readonly kind: 'ok'; readonly provider: Provider; readonly claims: Readonly<JWTPayload> }
  | { readonly kind: 'invalid'; readonly reason: DenyReason }
  | { readonly kind: 'error' };

interface CacheEntry {
  readonly provider: Provider;
  readonly claims: Readonly<JWTPayload>;
  readonly expiresAt: number;
}

/** Bounded cache of verified tokens keyed by SHA-256; an entry never outlives its token. */
export class TokenCache {
  readonly #max: number;
  readonly #maxTtlMs: number;
  readonly #map = new Map<string, CacheEntry>();
  constructor(maxEntries: number, maxTtlMs: number) {
    this.#max = maxEntries;
    this.#maxTtlMs = maxTtlMs;
  }
  get size(): number {
    return this.#map.size;
  }
  get(key: string, now: number): CacheEntry | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.#map.delete(key);
      return undefined;
    }
    return e;
  }
  set(key: string, provider: Provider, claims: Readonly<JWTPayload>, now: number): void {
    if (this.#max <= 0) return;
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY;
    const expiresAt = Math.min(exp, now + this.#maxTtlMs);
    if (expiresAt <= now) return;
    if (this.#map.size >= this.#max) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
    this.#map.set(key, { provider, claims, expiresAt });
  }
  clear(): void {
    this.#map.clear();
    this.#denied.clear();
  }

  readonly #denied = new Map<string, { reason: DenyReason; expiresAt: number }>();

  /** A cached verdict for a token that failed for a reason time cannot change (bad signature...). */
  getDenied(key: string, now: number): DenyReason | undefined {
    const e = this.#denied.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.#denied.delete(key);
      return undefined;
    }
    return e.reason;
  }

  /** Remembers a permanent failure for 60 s (bounded like the positive cache). */
  setDenied(key: string, reason: DenyReason, now: number): void {
    if (this.#max <= 0) return;
    if (this.#denied.size >= this.#max) {
      const oldest = this.#denied.keys().next();
      if (!oldest.done) this.#denied.delete(oldest.value);
    }
    this.#denied.set(key, { reason, expiresAt: now + Math.min(60_000, this.#maxTtlMs) });
  }
}

/** Failures that stay failures whatever the clock or key rotation do; safe to remember. */
const PERMANENT: ReadonlySet<DenyReason> = new Set<DenyReason>([
  'bad_signature',
  'malformed_token',
  'token_expired',
  'wrong_issuer',
  'wrong_audience',
  'missing_claim',
  'unsupported_token',
  'alg_not_allowed',
]);

const SEGMENTS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_HEADER_BYTES = 1024;

function decodeJson(seg: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function mapJoseError(err: unknown): DenyReason {
  // jose reports maxTokenAge (iat too far in the past) as JWTExpired on the `iat` claim.
  if (err instanceof joseErrors.JWTExpired) return err.claim === 'iat' ? 'token_too_old' : 'token_expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return 'missing_claim';
    switch (err.claim) {
      case 'nbf':
        return 'token_not_yet_valid';
      case 'iss':
        return 'wrong_issuer';
      case 'aud':
        return 'wrong_audience';
      case 'iat':
        return err.reason === 'check_failed' ? 'token_too_old' : 'invalid_token';
      default:
        return 'invalid_token';
    }
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'alg_not_allowed';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'unknown_kid';
  if (err instanceof joseErrors.JOSENotSupported) return 'unsupported_token';
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed_token';
  return 'invalid_token';
}

/** Dependencies of the verifier. */
export interface VerifierDeps {
  readonly keyStores: ReadonlyMap<string, KeyStore>;
  readonly cache: TokenCache;
  readonly now: () => number;
  /** Called on each cache lookup (metrics). */
  readonly onCache?: (hit: boolean) => void;
  /**
   * Signature checks with node:crypto in worker threads for plain ES/RS/PS tokens (verifier-node.ts);
   * absent: jose (WebCrypto) verifies every token on the main thread.
   */
  readonly signatures?: SignatureWorkers;
}

/**
 * Verifies a compact JWS against the providers a rule accepts. The provider is chosen by the
 * token's `iss` before any key lookup, so an unconfigured issuer never causes a fetch. Cheap
 * structural checks run first (size, segments, header size, alg allow-list); jose then checks the
 * signature (never `none`, key type bound to alg), `crit`, iss, aud, exp, nbf with the clock skew.
 */
export async function verifyToken(
  token: string,
  providers: readonly Provider[],
  deps: VerifierDeps,
): Promise<VerifyResult> {
  const maxBytes = Math.max(...providers.map((p) => p.maxTokenBytes));
  if (token.length > maxBytes) return { kind: 'invalid', reason: 'token_too_large' };
  if (!SEGMENTS.test(token)) return { kind: 'invalid', reason: 'malformed_token' };
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  const headerSeg = token.slice(0, dot1);
  if (headerSeg.length > (MAX_HEADER_BYTES * 4) / 3 + 4)
    return { kind: 'invalid', reason: 'malformed_token' };
  const header = decodeJson(headerSeg);
  const payload = decodeJson(token.slice(dot1 + 1, dot2));
  if (!header || !payload || typeof header['alg'] !== 'string')
    return { kind: 'invalid', reason: 'malformed_token' };
  const iss = payload['iss'];
  if (typeof iss !== 'string') return { kind: 'invalid', reason: 'unknown_issuer' };
  const provider = providers.find((p) => p.issuer === iss);
  if (!provider) return { kind: 'invalid', reason: 'unknown_issuer' };
  if (token.length > provider.maxTokenBytes) return { kind: 'invalid', reason: 'token_too_large' };
  const alg = header['alg'];
  if (!provider.algorithms.includes(alg)) return { kind: 'invalid', reason: 'alg_not_allowed' };
  const kid = header['kid'];
  if (kid !== undefined && (typeof kid !== 'string' || kid.length > 256))
    return { kind: 'invalid', reason: 'malformed_token' };

  const cacheKey = `${provider.name}\0${createHash('sha256').update(token).digest('base64url')}`;
  const now = deps.now();
  const hit = deps.cache.get(cacheKey, now);
  deps.onCache?.(hit !== undefined);
  if (hit) {
    // exp is re-checked with the skew on every hit: the entry lives no longer than the token.
    if (typeof hit.claims.exp === 'number' && hit.claims.exp + provider.clockSkewSec < now / 1000)
      return { kind: 'invalid', reason: 'token_expired' };
    // So is the provider's maximum token age (jose's maxTokenAge: iat + max lifetime, with the skew).
    if (
      provider.maxLifetimeSec !== undefined &&
      typeof hit.claims.iat === 'number' &&
      hit.claims.iat + provider.maxLifetimeSec + provider.clockSkewSec < now / 1000
    )
      return { kind: 'invalid', reason: 'token_too_old' };
    return { kind: 'ok', provider, claims: hit.claims };
  }
  // A repeated invalid token costs no second signature check.
  const known = deps.cache.getDenied(cacheKey, now);
  if (known) return { kind: 'invalid', reason: known };

  let key: JWTVerifyGetKey | Uint8Array;
  if (alg.startsWith('HS')) {
    if (!provider.hmacSecret) return { kind: 'invalid', reason: 'alg_not_allowed' };
    key = provider.hmacSecret;
  } else {
    // Keys that cannot be had are not the client's fault, but a client picks this path by naming the
    // issuer: a deny, unless the operator opted this provider into Envoy's failure mode.
    const unavailable: VerifyResult =
      provider.keysUnavailable === 'error'
        ? { kind: 'error' }
        : { kind: 'invalid', reason: 'keys_unavailable' };
    const store = deps.keyStores.get(provider.name);
    if (!store) return unavailable;
    const found = await store.lookup(kid);
    switch (found.kind) {
      case 'keys':
        key = found.resolver;
        break;
      case 'unknown_kid':
        return { kind: 'invalid', reason: 'unknown_kid' };
      case 'expired':
        return { kind: 'invalid', reason: 'keys_expired' };
      case 'unavailable':
        return unavailable;
    }
  }
  try {
    const opts = {
      algorithms: [...provider.algorithms],
      issuer: provider.issuer,
      clockTolerance: provider.clockSkewSec,
      currentDate: new Date(now),
      requiredClaims: provider.requireExp ? ['exp'] : [],
      ...(provider.audiences.length > 0 ? { audience: [...provider.audiences] } : {}),
      ...(provider.maxLifetimeSec !== undefined ? { maxTokenAge: provider.maxLifetimeSec } : {}),
    };
    let claims: JWTPayload;
    if (key instanceof Uint8Array) claims = (await jwtVerify(token, key, opts)).payload;
    else {
      const fast = deps.signatures ? await fastVerify(token, key, opts, deps.signatures) : undefined;
      // jose checks the signature before the claims: a bad signature is its JWSSignatureVerificationFailed.
      if (fast?.kind === 'bad_signature') throw new joseErrors.JWSSignatureVerificationFailed();
      claims = fast?.kind === 'ok' ? fast.claims : (await jwtVerify(token, key, opts)).payload;
    }
    if (typeof claims.iat === 'number' && claims.iat > now / 1000 + provider.clockSkewSec)
      return { kind: 'invalid', reason: 'token_issued_in_future' };
    deps.cache.set(cacheKey, provider, claims, now);
    return { kind: 'ok', provider, claims };
  } catch (err) {
    const reason = mapJoseError(err);
    if (PERMANENT.has(reason)) deps.cache.setDenied(cacheKey, reason, now);
    return { kind: 'invalid', reason };
  }
}
