import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { SignJWT } from 'jose';
import { parsePolicy, type Provider } from '../src/policy.ts';
import { TokenCache, verifyToken, type VerifierDeps } from '../src/verifier.ts';

// Verifier cases the mutation run (issue 13) found unasserted: the structural checks before any
// signature work, the bounded caches, and the claims checked on a cache hit.

const SECRET = 'an-hmac-secret-that-is-32-bytes-long!';
const T0 = 1_800_000_000_000;

const b64 = (v: unknown): string =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
/** A compact HS256 token signed as is (jose refuses to sign some of the headers tested here). */
const signedRaw = (header: unknown, payload: unknown): string => {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
};
/** An unsigned compact token: enough for the checks that run before the signature. */
const raw = (header: unknown, payload: unknown, sig = 'c2ln'): string =>
  `${b64(header)}.${b64(payload)}.${sig}`;

function providers(extra = '', second = ''): Provider[] {
  const p = parsePolicy(
    `providers:\n  a: { issuer: a, hmacSecret: { value: ${SECRET} }${extra} }\n  k: { issuer: k, jwksUri: "https://k.test/jwks"${second} }\nrules: []`,
    'v.yaml',
  );
  return [...p.providers.values()];
}

describe('authz verifier cases (mutation findings)', () => {
  let now = T0;
  const deps = (cache = new TokenCache(10, 300_000)): VerifierDeps => ({
    keyStores: new Map(),
    cache,
    now: () => now,
  });
  const hs = (claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> =>
    new SignJWT({
      iss: 'a',
      sub: 's',
      iat: Math.floor(now / 1000),
      exp: Math.floor(now / 1000) + 600,
      ...claims,
    })
      .setProtectedHeader({ alg: 'HS256', ...header })
      .sign(new TextEncoder().encode(SECRET));
  const reason = async (token: string, ps = providers(), d = deps()): Promise<string> => {
    const r = await verifyToken(token, ps, d);
    return r.kind === 'invalid' ? r.reason : r.kind;
  };

  it('size limits: the largest limit of the rule first, then the limit of the issuer', async () => {
    const ps = providers(', maxTokenBytes: 64', ', maxTokenBytes: 4096');
    const big = raw({ alg: 'HS256' }, { iss: 'a', pad: 'x'.repeat(200) });
    assert.equal(await reason(big, ps), 'token_too_large');
    assert.equal(
      await reason(raw({ alg: 'HS256' }, { iss: 'zz', pad: 'x'.repeat(200) }), ps),
      'unknown_issuer',
    );
    assert.equal(await reason('x'.repeat(5000), ps), 'token_too_large');
  });

  it('refuses malformed headers and payloads before any key work', async () => {
    now = T0;
    for (const t of [
      `${b64('null')}.${b64({ iss: 'a' })}.c2ln`,
      `${b64('[1]')}.${b64({ iss: 'a' })}.c2ln`,
      `${b64('{')}.${b64({ iss: 'a' })}.c2ln`,
      raw({ alg: 'HS256' }, '5'),
      raw({ alg: 5 }, { iss: 'a' }),
      raw({ alg: 'HS256', kid: 5 }, { iss: 'a' }),
      raw({ alg: 'HS256', kid: 'k'.repeat(257) }, { iss: 'a' }),
      raw({ alg: 'HS256', pad: 'x'.repeat(1100) }, { iss: 'a' }),
    ])
      assert.equal(await reason(t), 'malformed_token', t.slice(0, 40));
    assert.equal(await reason(raw({ alg: 'HS256' }, { iss: 5 })), 'unknown_issuer');
    assert.equal(await reason(raw({ alg: 'RS256' }, { iss: 'a' })), 'alg_not_allowed');
    // Below the header bound (1369 base64url characters) the token goes on to the signature check.
    assert.equal(await reason(raw({ alg: 'HS256', pad: 'x'.repeat(1002) }, { iss: 'a' })), 'bad_signature');
    assert.equal(await reason(raw({ alg: 'HS256', pad: 'x'.repeat(200) }, { iss: 'a' })), 'bad_signature');
    assert.equal(await reason(raw({ alg: 'HS256', kid: 'k'.repeat(256) }, { iss: 'a' })), 'bad_signature');
  });

  it('an asymmetric issuer without a key store: keys_unavailable, or an error when opted in', async () => {
    assert.equal(await reason(raw({ alg: 'ES256' }, { iss: 'k' })), 'keys_unavailable');
    assert.equal(
      await reason(raw({ alg: 'ES256' }, { iss: 'k' }), providers('', ', keysUnavailable: error')),
      'error',
    );
  });

  it('remembers permanent failures under the token hash, and nothing else', async () => {
    now = T0;
    const cache = new TokenCache(10, 300_000);
    const bad = raw({ alg: 'HS256' }, { iss: 'a', exp: Math.floor(T0 / 1000) + 60 });
    assert.equal(await reason(bad, providers(), deps(cache)), 'bad_signature');
    const key = `a\0${createHash('sha256').update(bad).digest('base64url')}`;
    assert.equal(cache.getDenied(key, now), 'bad_signature');
    // Not yet valid is not permanent: valid once the clock passes nbf.
    const early = await hs({ nbf: Math.floor(T0 / 1000) + 30 });
    const strict = providers(', clockSkew: 0');
    assert.equal(await reason(early, strict, deps(cache)), 'token_not_yet_valid');
    now = T0 + 40_000;
    assert.equal(await reason(early, strict, deps(cache)), 'ok');
    now = T0;
  });

  it('maximum token age: checked by jose, and again on a cache hit', async () => {
    now = T0;
    const ps = providers(', maxLifetime: 60s, clockSkew: 0');
    const cache = new TokenCache(10, 3_600_000);
    assert.equal(
      await reason(await hs({ iat: Math.floor(T0 / 1000) - 7200 }), ps, deps(cache)),
      'token_too_old',
    );
    const t = await hs({});
    assert.equal(await reason(t, ps, deps(cache)), 'ok');
    now = T0 + 30_000;
    assert.equal(await reason(t, ps, deps(cache)), 'ok');
    now = T0 + 120_000;
    assert.equal(await reason(t, ps, deps(cache)), 'token_too_old');
    now = T0; // With a skew, on a cache hit: refused only once iat + maxLifetime + skew is in the past.
    const skewed = providers(', maxLifetime: 60s, clockSkew: 10s');
    const c2 = new TokenCache(10, 3_600_000);
    now = T0;
    const t2 = await hs({});
    assert.equal(await reason(t2, skewed, deps(c2)), 'ok');
    now = T0 + 65_000;
    assert.equal(await reason(t2, skewed, deps(c2)), 'ok');
    now = T0 + 70_000;
    assert.equal(await reason(t2, skewed, deps(c2)), 'ok');
    now = T0 + 71_000;
    assert.equal(await reason(t2, skewed, deps(c2)), 'token_too_old');
    now = T0;
  });

  it('a token exactly at the size limit is accepted for verification', async () => {
    const t = raw({ alg: 'HS256' }, { iss: 'a', pad: 'x'.repeat(100) });
    const ps = providers(`, maxTokenBytes: ${t.length}`, `, maxTokenBytes: ${t.length}`);
    assert.equal(await reason(t, ps), 'bad_signature');
    const smaller = providers(`, maxTokenBytes: ${t.length - 1}`, `, maxTokenBytes: ${t.length}`);
    assert.equal(await reason(t, smaller), 'token_too_large');
  });

  it('iat in the future beyond the skew is refused; at the skew it passes', async () => {
    now = T0;
    const sec = Math.floor(T0 / 1000);
    assert.equal(
      await reason(await hs({ iat: sec + 61 }), providers(', clockSkew: 60s')),
      'token_issued_in_future',
    );
    assert.equal(await reason(await hs({ iat: sec + 60 }), providers(', clockSkew: 60s')), 'ok');
  });

  it('maps claim failures: missing exp, a non-numeric exp, crit it does not know', async () => {
    now = T0;
    const noExp = await new SignJWT({ iss: 'a' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(SECRET));
    assert.equal(await reason(noExp), 'missing_claim');
    assert.equal(await reason(noExp, providers(', requireExp: false')), 'ok');
    assert.equal(await reason(await hs({ exp: 'soon' })), 'invalid_token');
    assert.equal(
      await reason(
        signedRaw({ alg: 'HS256', crit: ['x'], x: 1 }, { iss: 'a', exp: Math.floor(now / 1000) + 60 }),
      ),
      'unsupported_token',
    );
  });
});

describe('authz TokenCache', () => {
  const prov = providers()[0] as Provider;

  it('evicts the oldest entry when full, drops expired ones, stores nothing with size 0', () => {
    const c = new TokenCache(2, 60_000);
    c.set('a', prov, { exp: 2000 }, 1000);
    c.set('b', prov, { exp: 2000 }, 1000);
    c.set('c', prov, { exp: 2000 }, 1000);
    assert.equal(c.size, 2);
    assert.equal(c.get('a', 1000), undefined);
    assert.ok(c.get('b', 1000));
    c.set('d', prov, { exp: 1 }, 1000);
    assert.equal(c.size, 2, 'a token expiring now is not cached');
    assert.ok(c.get('b', 1000), 'and evicts nothing');
    assert.equal(c.get('d', 1000), undefined);
    assert.equal(c.get('b', 2_000_000), undefined);
    assert.equal(c.size, 1, 'an expired entry is deleted when read');
    const none = new TokenCache(0, 60_000);
    none.set('a', prov, {}, 0);
    none.setDenied('a', 'bad_signature', 0);
    assert.equal(none.size, 0);
    assert.equal(none.getDenied('a', 0), undefined);
    c.clear();
    assert.equal(c.size, 0);
  });

  it('remembers a denial for at most 60 s or the cache TTL, bounded like the positive cache', () => {
    const c = new TokenCache(2, 10_000);
    c.setDenied('a', 'bad_signature', 0);
    assert.equal(c.getDenied('a', 9_999), 'bad_signature');
    assert.equal(c.getDenied('a', 10_000), undefined);
    const long = new TokenCache(2, 600_000);
    long.setDenied('a', 'bad_signature', 0);
    assert.equal(long.getDenied('a', 59_999), 'bad_signature');
    assert.equal(long.getDenied('a', 60_000), undefined);
    long.setDenied('x', 'bad_signature', 0);
    long.setDenied('y', 'malformed_token', 0);
    long.setDenied('z', 'wrong_audience', 0);
    assert.equal(long.getDenied('x', 1), undefined);
    assert.equal(long.getDenied('y', 1), 'malformed_token');
    assert.equal(long.getDenied('z', 1), 'wrong_audience');
    long.setDenied('w', 'bad_signature', 0);
    long.clear();
    assert.equal(long.getDenied('w', 1), undefined);
  });
});
