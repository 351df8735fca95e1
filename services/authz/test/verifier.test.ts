import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { KeyStore } from '../src/keys.ts';
import { DEFAULT_CACHE, type Provider } from '../src/policy.ts';
import { TokenCache, verifyToken } from '../src/verifier.ts';
import { Clock, FakeFetcher, makeKey, sign, silent } from './helpers.ts';

const ISS = 'https://issuer.test';

describe('authz/verifier token cache', () => {
  it('a cached token is refused once older than the provider maxLifetime (as jose maxTokenAge)', async () => {
    const key = await makeKey('ES256', 'k1');
    const clock = new Clock();
    const provider: Provider = {
      name: 'p',
      issuer: ISS,
      audiences: [],
      algorithms: ['ES256'],
      clockSkewSec: 10,
      requireExp: true,
      maxTokenBytes: 8192,
      maxLifetimeSec: 60,
      sources: [],
      keys: { kind: 'inline', jwks: { keys: [key.jwk] } },
      hmacSecret: undefined,
      cache: DEFAULT_CACHE,
      keysUnavailable: 'deny',
    };
    const store = new KeyStore(provider, { fetch: new FakeFetcher().fetch, now: clock.now, logger: silent });
    const cache = new TokenCache(100, 3_600_000);
    let hits = 0;
    const deps = {
      keyStores: new Map([[provider.name, store]]),
      cache,
      now: clock.now,
      onCache: (hit: boolean) => void (hit && hits++),
    };
    const nowSec = Math.floor(clock.t / 1000);
    const token = await sign(key, { iss: ISS, sub: 'alice', exp: nowSec + 3600 }, {}, nowSec);
    assert.equal((await verifyToken(token, [provider], deps)).kind, 'ok');
    clock.advance(30_000);
    assert.equal((await verifyToken(token, [provider], deps)).kind, 'ok');
    assert.equal(hits, 1, 'the second check was a cache hit');
    clock.advance(45_000); // iat + 75 s > 60 s max lifetime + 10 s skew, exp still an hour away
    const r = await verifyToken(token, [provider], deps);
    assert.deepEqual(r, { kind: 'invalid', reason: 'token_too_old' });
    assert.equal(hits, 2, 'refused from the cache entry, not by a fresh verification');
  });
});
