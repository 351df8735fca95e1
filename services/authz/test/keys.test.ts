import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { KeyStore } from '../src/keys.ts';
import { DEFAULT_CACHE, type Provider } from '../src/policy.ts';
import { Clock, FakeFetcher, makeKey, silent } from './helpers.ts';

const ISS = 'https://issuer.test';
const DISC = `${ISS}/.well-known/openid-configuration`;
const JWKS = 'https://issuer.test/jwks';

function provider(over: Partial<Provider> = {}): Provider {
  return {
    name: 'p',
    issuer: ISS,
    audiences: [],
    algorithms: ['ES256'],
    clockSkewSec: 60,
    requireExp: true,
    maxTokenBytes: 8192,
    maxLifetimeSec: undefined,
    sources: [],
    keys: { kind: 'discovery', url: DISC },
    hmacSecret: undefined,
    cache: { ...DEFAULT_CACHE, cooldownMs: 30_000, failedRetryMs: 1000 },
    keysUnavailable: 'deny',
    ...over,
  };
}

async function setup(over: Partial<Provider> = {}) {
  const k1 = await makeKey('ES256', 'k1');
  const k2 = await makeKey('ES256', 'k2');
  const f = new FakeFetcher();
  const clock = new Clock();
  let keys = [k1.jwk];
  let maxAgeSec: number | undefined;
  let down = false;
  f.routes.set(DISC, () => {
    if (down) throw new Error('down');
    return { json: { issuer: ISS, jwks_uri: JWKS }, maxAgeSec: undefined };
  });
  f.routes.set(JWKS, () => {
    if (down) throw new Error('down');
    return { json: { keys }, maxAgeSec };
  });
  const fetches: string[] = [];
  const store = new KeyStore(provider(over), {
    fetch: f.fetch,
    now: clock.now,
    logger: silent,
    onFetch: (_i, r) => fetches.push(r),
  });
  return {
    store,
    f,
    clock,
    fetches,
    k2,
    setKeys: (k: typeof keys) => (keys = k),
    setMaxAge: (s: number | undefined) => (maxAgeSec = s),
    setDown: (d: boolean) => (down = d),
  };
}

describe('KeyStore', () => {
  it('loads keys through discovery and serves them without refetching', async () => {
    const t = await setup();
    await t.store.start();
    assert.equal((await t.store.lookup('k1')).kind, 'keys');
    assert.equal((await t.store.lookup('k1')).kind, 'keys');
    assert.equal(t.f.count(JWKS), 1);
    assert.deepEqual(t.fetches, ['ok', 'ok']);
    t.store.close();
  });

  it('refetches an unknown kid at most once per cooldown, coalescing concurrent lookups', async () => {
    const t = await setup();
    await t.store.start();
    t.clock.advance(31_000);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => t.store.lookup(`bogus-${i}`)));
    assert.ok(results.every((r) => r.kind === 'unknown_kid'));
    assert.equal(t.f.count(JWKS), 2, 'one refetch for the whole flood');
    for (let i = 0; i < 100; i++) assert.equal((await t.store.lookup(`more-${i}`)).kind, 'unknown_kid');
    assert.equal(t.f.count(JWKS), 2, 'no refetch inside the cooldown');
    // A rotated-in key is picked up after the cooldown.
    t.setKeys([t.k2.jwk]);
    t.clock.advance(31_000);
    assert.equal((await t.store.lookup('k2')).kind, 'keys');
    assert.equal(t.f.count(JWKS), 3);
    t.store.close();
  });

  it('counts the cooldown on attempts, so a flood during an outage costs no fetches', async () => {
    const t = await setup();
    await t.store.start();
    t.setDown(true);
    t.clock.advance(31_000);
    assert.equal((await t.store.lookup('x1')).kind, 'unknown_kid');
    const before = t.f.calls.length;
    for (let i = 0; i < 100; i++) await t.store.lookup(`y${i}`);
    assert.equal(t.f.calls.length, before);
    assert.equal((await t.store.lookup('k1')).kind, 'keys', 'known keys keep working');
    t.store.close();
  });

  it('bounds the cache age by Cache-Control within [minAge, maxAge] and serves stale keys on failure', async () => {
    const t = await setup();
    t.setMaxAge(1); // below minAge (60 s): clamped up
    await t.store.start();
    t.clock.advance(30_000);
    assert.equal((await t.store.lookup('k1')).kind, 'keys');
    assert.equal(t.f.count(JWKS), 1, 'still fresh at 30 s thanks to minAge');
    t.setDown(true);
    t.clock.advance(3_600_000);
    assert.equal((await t.store.lookup('k1')).kind, 'keys', 'stale but within maxStale');
    assert.equal(t.store.status().stale, true);
    t.clock.advance(DEFAULT_CACHE.maxStaleMs);
    assert.equal((await t.store.lookup('k1')).kind, 'expired');
    t.setDown(false);
    t.clock.advance(2000);
    assert.equal((await t.store.lookup('k1')).kind, 'keys', 'recovers when the issuer is back');
    t.store.close();
  });

  it('is unavailable when keys were never obtained, retrying at most once per failedRetry', async () => {
    const t = await setup();
    t.setDown(true);
    await t.store.start();
    assert.equal((await t.store.lookup('k1')).kind, 'unavailable');
    const n = t.f.calls.length;
    for (let i = 0; i < 20; i++) assert.equal((await t.store.lookup('k1')).kind, 'unavailable');
    assert.equal(t.f.calls.length, n);
    t.setDown(false);
    t.clock.advance(1001);
    assert.equal((await t.store.lookup('k1')).kind, 'keys');
    t.store.close();
  });

  it('rejects a discovery document for another issuer or a non-https jwks_uri', async () => {
    const t = await setup();
    t.f.routes.set(DISC, () => ({ json: { issuer: 'https://evil', jwks_uri: JWKS }, maxAgeSec: undefined }));
    await t.store.start();
    assert.equal((await t.store.lookup('k1')).kind, 'unavailable');
    assert.deepEqual(t.fetches, ['invalid']);
    t.f.routes.set(DISC, () => ({
      json: { issuer: ISS, jwks_uri: 'http://10.0.0.1/jwks' },
      maxAgeSec: undefined,
    }));
    t.clock.advance(2000);
    assert.equal((await t.store.lookup('k1')).kind, 'unavailable');
    assert.equal(t.f.count(JWKS), 0);
    t.store.close();
  });

  it('follows an http jwks_uri on loopback only from a discovery document on loopback', async () => {
    const t = await setup();
    t.f.routes.set(DISC, () => ({
      json: { issuer: ISS, jwks_uri: 'http://127.0.0.1:9/jwks' },
      maxAgeSec: undefined,
    }));
    await t.store.start();
    assert.equal((await t.store.lookup('k1')).kind, 'unavailable');
    assert.deepEqual(t.fetches, ['invalid']);
    assert.equal(t.f.count('http://127.0.0.1:9/jwks'), 0, 'no request to the local port');
    t.store.close();
    // A loopback issuer (tests, sidecars) may use a loopback http jwks_uri.
    const localDisc = 'http://127.0.0.1:8/.well-known/openid-configuration';
    const local = await setup({ issuer: ISS, keys: { kind: 'discovery', url: localDisc } });
    const k = await makeKey('ES256', 'k1');
    local.f.routes.set(localDisc, () => ({
      json: { issuer: ISS, jwks_uri: 'http://127.0.0.1:8/jwks' },
      maxAgeSec: undefined,
    }));
    local.f.routes.set('http://127.0.0.1:8/jwks', () => ({ json: { keys: [k.jwk] }, maxAgeSec: undefined }));
    await local.store.start();
    assert.equal((await local.store.lookup('k1')).kind, 'keys');
    local.store.close();
  });

  it('never keeps private or symmetric members of a JWKS', async () => {
    const t = await setup();
    t.setKeys([{ kty: 'oct', k: 'c2VjcmV0', kid: 'k1' }]);
    await t.store.start();
    assert.equal((await t.store.lookup('k1')).kind, 'unknown_kid');
    t.store.close();
  });

  it('serves inline keys with no network', async () => {
    const k = await makeKey('ES256', 'in');
    const f = new FakeFetcher();
    const store = new KeyStore(provider({ keys: { kind: 'inline', jwks: { keys: [k.jwk] } } }), {
      fetch: f.fetch,
      now: Date.now,
      logger: silent,
    });
    await store.start();
    assert.equal((await store.lookup('in')).kind, 'keys');
    assert.equal((await store.lookup('other')).kind, 'unknown_kid');
    assert.equal(f.calls.length, 0);
    store.close();
  });
});
