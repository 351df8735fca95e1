import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { errors as joseErrors, SignJWT, type JWTPayload } from 'jose';
import type { KeyLookup, KeyStore } from '../src/keys.ts';
import { DEFAULT_CACHE, type Provider } from '../src/policy.ts';
import { TokenCache, verifyToken, type VerifierDeps } from '../src/verifier.ts';

// The deny reasons the verifier reports (issue 13: mutants no unit test reached): what a key store
// answers, how each jose error class maps to a reason (and which are remembered as permanent), and the
// checks the verifier makes itself on a cache hit and on a remembered denial, whatever the cache holds.

const T0 = 1_800_000_000_000;
const SEC = Math.floor(T0 / 1000);
const SECRET = new TextEncoder().encode('an-hmac-secret-that-is-32-bytes-long!');

const provider = (over: Partial<Provider> = {}): Provider => ({
  name: 'p',
  issuer: 'https://issuer.test',
  audiences: [],
  algorithms: ['ES256', 'HS256'],
  clockSkewSec: 0,
  requireExp: true,
  maxTokenBytes: 8192,
  maxLifetimeSec: undefined,
  sources: [],
  keys: { kind: 'none' },
  hmacSecret: SECRET,
  cache: DEFAULT_CACHE,
  keysUnavailable: 'deny',
  ...over,
});

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
/** An ES256-headed token: the key store answers before any signature check. */
const es = (claims: Record<string, unknown> = {}): string =>
  `${b64({ alg: 'ES256', kid: 'k1' })}.${b64({ iss: 'https://issuer.test', exp: SEC + 600, ...claims })}.c2ln`;
const hs = (claims: Record<string, unknown> = {}): Promise<string> =>
  new SignJWT({ iss: 'https://issuer.test', sub: 's', iat: SEC, exp: SEC + 600, ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(SECRET);
const keyOf = (p: Provider, token: string): string =>
  `${p.name}\0${createHash('sha256').update(token).digest('base64url')}`;

/** A key store that answers `found` to every lookup. */
const store = (found: KeyLookup): KeyStore => ({ lookup: async () => found }) as unknown as KeyStore;
/** A key store whose key resolver throws `err`, as jose's remote JWKS resolver does. */
const throwing = (err: Error): KeyStore =>
  store({
    kind: 'keys',
    resolver: () => {
      throw err;
    },
  });

function deps(p: Provider, s?: KeyStore, cache = new TokenCache(10, 3_600_000)): VerifierDeps {
  return { keyStores: new Map(s ? [[p.name, s]] : []), cache, now: () => T0 };
}
async function reason(token: string, p: Provider, d: VerifierDeps): Promise<string> {
  const r = await verifyToken(token, [p], d);
  return r.kind === 'invalid' ? r.reason : r.kind;
}

/** A cache that returns a fixed entry for every key, whatever its expiry (a stale or shared cache). */
class FixedCache extends TokenCache {
  readonly #entry: { provider: Provider; claims: JWTPayload; expiresAt: number };
  constructor(p: Provider, claims: JWTPayload) {
    super(10, 3_600_000);
    this.#entry = { provider: p, claims, expiresAt: Number.POSITIVE_INFINITY };
  }
  override get(): { provider: Provider; claims: JWTPayload; expiresAt: number } {
    return this.#entry;
  }
}

describe('authz verifier deny reasons', () => {
  it('key store answers: unknown kid, keys expired past their stale window, unavailable', async () => {
    const p = provider();
    assert.equal(await reason(es(), p, deps(p, store({ kind: 'unknown_kid' }))), 'unknown_kid');
    assert.equal(await reason(es(), p, deps(p, store({ kind: 'expired' }))), 'keys_expired');
    assert.equal(await reason(es(), p, deps(p, store({ kind: 'unavailable' }))), 'keys_unavailable');
    const opted = provider({ keysUnavailable: 'error' });
    assert.equal(await reason(es(), opted, deps(opted, store({ kind: 'unavailable' }))), 'error');
    assert.equal(await reason(es(), opted, deps(opted, store({ kind: 'expired' }))), 'keys_expired');
  });

  it('an HS token for a provider without an HMAC secret: alg_not_allowed, no verification', async () => {
    const p = provider({ hmacSecret: undefined });
    const cache = new TokenCache(10, 3_600_000);
    const t = await hs();
    assert.equal(await reason(t, p, deps(p, undefined, cache)), 'alg_not_allowed');
    assert.equal(cache.getDenied(keyOf(p, t), T0), undefined, 'refused before any verdict is remembered');
  });

  it('maps each jose error class to its reason, and remembers only the permanent ones', async () => {
    const claim = (c: string, r: string): Error => new joseErrors.JWTClaimValidationFailed('x', {}, c, r);
    const cases: Array<[Error, string, boolean]> = [
      [new joseErrors.JWTExpired('x', {}, 'exp', 'check_failed'), 'token_expired', true],
      [new joseErrors.JWTExpired('x', {}, 'iat', 'check_failed'), 'token_too_old', false],
      [claim('exp', 'missing'), 'missing_claim', true],
      [claim('nbf', 'check_failed'), 'token_not_yet_valid', false],
      [claim('iss', 'check_failed'), 'wrong_issuer', true],
      [claim('aud', 'check_failed'), 'wrong_audience', true],
      [claim('iat', 'check_failed'), 'token_too_old', false],
      [claim('iat', 'invalid'), 'invalid_token', false],
      [claim('sub', 'check_failed'), 'invalid_token', false],
      [new joseErrors.JWSSignatureVerificationFailed(), 'bad_signature', true],
      [new joseErrors.JOSEAlgNotAllowed('x'), 'alg_not_allowed', true],
      [new joseErrors.JWKSNoMatchingKey(), 'unknown_kid', false],
      [new joseErrors.JOSENotSupported('x'), 'unsupported_token', true],
      [new joseErrors.JWSInvalid('x'), 'malformed_token', true],
      [new joseErrors.JWTInvalid('x'), 'malformed_token', true],
      [new joseErrors.JWKSTimeout(), 'invalid_token', false],
      [new Error('anything else'), 'invalid_token', false],
    ];
    const p = provider();
    for (const [err, want, permanent] of cases) {
      const cache = new TokenCache(10, 3_600_000);
      const t = es({ jti: want });
      assert.equal(await reason(t, p, deps(p, throwing(err), cache)), want, err.constructor.name);
      assert.equal(
        cache.getDenied(keyOf(p, t), T0),
        permanent ? want : undefined,
        `${err.constructor.name} remembered: ${String(permanent)}`,
      );
    }
  });

  it('a remembered denial answers without a key lookup or a signature check', async () => {
    const p = provider();
    const cache = new TokenCache(10, 3_600_000);
    const t = await hs();
    assert.equal(await reason(t, p, deps(p, undefined, cache)), 'ok');
    const other = await hs({ jti: '2' });
    cache.setDenied(keyOf(p, other), 'wrong_audience', T0);
    assert.equal(await reason(other, p, deps(p, undefined, cache)), 'wrong_audience');
    let looked = 0;
    const counting = { lookup: async () => (looked++, { kind: 'unknown_kid' }) } as unknown as KeyStore;
    const e = es();
    cache.setDenied(keyOf(p, e), 'bad_signature', T0);
    assert.equal(await reason(e, p, deps(p, counting, cache)), 'bad_signature');
    assert.equal(looked, 0);
  });

  it('a cache hit is re-checked against exp with the skew, whatever the cache returns', async () => {
    const t = await hs();
    const strict = provider();
    const skewed = provider({ clockSkewSec: 30 });
    const at = (exp: unknown, p: Provider): Promise<string> =>
      reason(t, p, deps(p, undefined, new FixedCache(p, { iss: p.issuer, exp } as JWTPayload)));
    assert.equal(await at(SEC - 1, strict), 'token_expired');
    assert.equal(await at(SEC, strict), 'ok', 'exp equal to now is not yet past');
    assert.equal(await at(SEC - 29, skewed), 'ok');
    assert.equal(await at(SEC - 30, skewed), 'ok');
    assert.equal(await at(SEC - 31, skewed), 'token_expired');
    assert.equal(await at(undefined, strict), 'ok', 'no exp: nothing to re-check');
    assert.equal(await at('0', strict), 'ok', 'a non-numeric exp is not compared');
  });
});
