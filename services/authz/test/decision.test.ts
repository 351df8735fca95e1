import { describe, it, before } from 'mocha';
import assert from 'node:assert/strict';
import { createHash, createPublicKey } from 'node:crypto';
import { SignJWT, exportJWK, importJWK, type CryptoKey } from 'jose';
import { cookieWithout, decide, type AuthRequest, type Decision } from '../src/decision.ts';
import { KeyStore } from '../src/keys.ts';
import { parsePolicy, type Policy } from '../src/policy.ts';
import { TokenCache } from '../src/verifier.ts';
import { Clock, FakeFetcher, makeKey, sign, silent, type TestKey } from './helpers.ts';

const ISS = 'https://issuer.test';
const JWKS = `${ISS}/jwks`;
const HMAC = 'an-hmac-secret-that-is-32-bytes-long!';
const API_KEY = 'partner-key-1';

const POLICY = `
realm: test
providers:
  corp:
    issuer: ${ISS}
    audiences: [api]
    jwksUri: ${JWKS}
  legacy:
    issuer: legacy
    hmacSecret: { value: ${HMAC} }
    tokenSources: [ { header: x-token }, { query: access_token }, { cookie: session } ]
apiKeys:
  partners:
    keys:
      - { name: acme, sha256: ${createHash('sha256').update(API_KEY).digest('hex')}, claims: { tenant: acme } }
identity:
  headers: { x-user-id: '{{ sub }}', x-user-roles: '{{ realm_access.roles }}', x-tenant: '{{ tenant }}' }
  payloadHeader: x-jwt-payload
rules:
  - name: health
    match: { path: /healthz }
    public: true
  - name: blocked
    match: { pathPrefix: /blocked }
    deny: true
  - name: admin
    match: { host: admin.example.com }
    identity: { removeCredentials: true }
    jwt:
      providers: [corp]
      scopes: [admin]
      claims: [ { claim: realm_access.roles, oneOf: [root, admin] }, { claim: email, regex: '.*@example\\.com' } ]
  - name: legacy
    match: { pathPrefix: /legacy }
    jwt: { providers: [legacy] }
  - name: partner
    match: { pathPrefix: /partner }
    anyOf: [ { jwt: { providers: [corp] } }, { apiKey: partners } ]
  - name: both
    match: { pathPrefix: /both }
    allOf: [ { jwt: { providers: [corp] } }, { apiKey: { sets: [partners], claims: [ { claim: tenant, equals: acme } ] } } ]
  - name: scoped
    match: { pathPrefix: /scoped }
    jwt: { providers: [corp], scopes: read write }
  - name: narrowed
    match: { pathPrefix: /narrowed }
    jwt: { providers: [corp], audiences: [admin-api] }
  - name: maybe
    match: { pathPrefix: /maybe }
    jwt: { providers: [corp], optional: true }
  - name: api
    match: { pathPrefix: /api, methods: [GET, POST] }
    cors: { allowPreflight: true }
    jwt: { providers: [corp] }
policies:
  internal:
    rules:
      - { name: open, public: true }
`;

describe('decide', () => {
  let key: TestKey;
  let rsa: TestKey;
  let policy: Policy;
  const fetcher = new FakeFetcher();
  const clock = new Clock();
  let store: KeyStore;
  let cache: TokenCache;
  let deps: Parameters<typeof decide>[2];
  let cacheHits = 0;

  before(async () => {
    key = await makeKey('ES256', 'k1');
    rsa = await makeKey('RS256', 'r1');
    fetcher.routes.set(JWKS, () => ({ json: { keys: [key.jwk, rsa.jwk] }, maxAgeSec: 300 }));
    policy = parsePolicy(POLICY, 'test.yaml');
    store = new KeyStore(policy.providers.get('corp') as never, {
      fetch: fetcher.fetch,
      now: clock.now,
      logger: silent,
    });
    cache = new TokenCache(100, 300_000);
    deps = {
      keyStores: new Map([['corp', store]]),
      cache,
      now: clock.now,
      onCache: (hit) => {
        if (hit) cacheHits++;
      },
    };
  });
  after(() => store.close());

  const req = (over: Partial<AuthRequest> = {}): AuthRequest => ({
    method: 'GET',
    host: 'app.example.com',
    path: '/api/things',
    headers: {},
    contextExtensions: {},
    ...over,
  });
  const nowSec = () => Math.floor(clock.t / 1000);
  const good = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, k = key) =>
    sign(k, { iss: ISS, aud: 'api', sub: 'alice', ...claims }, header, nowSec());
  const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });
  const run = (r: AuthRequest): Promise<Decision> => decide(policy, r, deps);
  function denied(d: Decision, status: number, code: string): void {
    assert.equal(d.kind, 'deny', JSON.stringify(d));
    if (d.kind !== 'deny') return;
    assert.equal(d.status, status);
    assert.equal(d.reason, code);
    assert.equal((JSON.parse(d.body) as { code: string }).code, code);
  }

  it('allows a public rule and strips reserved identity headers', async () => {
    const d = await run(req({ path: '/healthz', headers: { 'x-user-id': 'mallory' } }));
    assert.equal(d.kind, 'allow');
    if (d.kind !== 'allow') return;
    assert.deepEqual(d.headers, []);
    assert.deepEqual([...d.removeHeaders].sort(), ['x-jwt-payload', 'x-tenant', 'x-user-id', 'x-user-roles']);
  });

  it('denies by default (no matching rule) and on deny rules with 403', async () => {
    denied(await run(req({ path: '/nothing' })), 403, 'no_matching_rule');
    denied(await run(req({ path: '/blocked/x' })), 403, 'policy_deny');
    denied(await run(req({ path: '/api/x', method: 'DELETE' })), 403, 'no_matching_rule');
    denied(await run(req({ path: '/healthz/../blocked' })), 403, 'policy_deny');
  });

  it('answers 401 with a Bearer challenge without error code when the token is missing', async () => {
    const d = await run(req());
    denied(d, 401, 'missing_credentials');
    assert.ok(d.kind === 'deny');
    assert.deepEqual(
      d.headers.find(([k]) => k === 'www-authenticate'),
      ['www-authenticate', 'Bearer realm="test"'],
    );
    assert.deepEqual(
      await run(req({ headers: { authorization: 'Basic dXNlcjpwYXNz' } })).then((x) => x.reason),
      'missing_credentials',
    );
  });

  it('allows a valid ES256 token and sets identity headers, payload and metadata', async () => {
    const t = await good({ realm_access: { roles: ['a', 'b'] } });
    const d = await run(req({ headers: { ...bearer(t), 'x-tenant': 'spoofed' } }));
    assert.equal(d.kind, 'allow', JSON.stringify(d));
    if (d.kind !== 'allow') return;
    const h = Object.fromEntries(d.headers);
    assert.equal(h['x-user-id'], 'alice');
    assert.equal(h['x-user-roles'], 'a,b');
    const payload = JSON.parse(Buffer.from(h['x-jwt-payload'] ?? '', 'base64url').toString()) as {
      sub: string;
    };
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(
      d.removeHeaders,
      ['x-tenant'],
      'a claim-less identity header is removed, never left spoofable',
    );
    assert.deepEqual(d.metadata, { policy: 'default', rule: 'api', auth: 'jwt', sub: 'alice', iss: ISS });
  });

  it('caches verified tokens and re-checks exp on a hit', async () => {
    const t = await good({ exp: nowSec() + 120 });
    const hits = cacheHits;
    assert.equal((await run(req({ headers: bearer(t) }))).kind, 'allow');
    assert.equal((await run(req({ headers: bearer(t) }))).kind, 'allow');
    assert.equal(cacheHits, hits + 1);
    clock.advance(200_000);
    denied(await run(req({ headers: bearer(t) })), 401, 'token_expired');
    clock.advance(-200_000);
  });

  it('rejects alg none, HS256 signed with the RSA public key, and algorithms outside the allow-list', async () => {
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const payload = { iss: ISS, aud: 'api', sub: 'x', exp: nowSec() + 60 };
    denied(
      await run(req({ headers: bearer(`${enc({ alg: 'none' })}.${enc(payload)}.`) })),
      401,
      'malformed_token',
    );
    denied(
      await run(req({ headers: bearer(`${enc({ alg: 'none' })}.${enc(payload)}.x`) })),
      401,
      'alg_not_allowed',
    );
    const pem = createPublicKey({ key: rsa.jwk, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    const forged = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256', kid: 'r1' })
      .sign(new TextEncoder().encode(pem as string));
    denied(await run(req({ headers: bearer(forged) })), 401, 'alg_not_allowed');
  });

  it('rejects expired, not-yet-valid, future-iat, wrong iss/aud and missing exp', async () => {
    const s = nowSec();
    denied(await run(req({ headers: bearer(await good({ exp: s - 120 })) })), 401, 'token_expired');
    assert.equal(
      (await run(req({ headers: bearer(await good({ exp: s - 30 })) }))).kind,
      'allow',
      'within 60 s skew',
    );
    denied(await run(req({ headers: bearer(await good({ nbf: s + 300 })) })), 401, 'token_not_yet_valid');
    denied(await run(req({ headers: bearer(await good({ iat: s + 300 })) })), 401, 'token_issued_in_future');
    denied(await run(req({ headers: bearer(await good({ aud: 'other' })) })), 401, 'wrong_audience');
    denied(
      await run(req({ headers: bearer(await good({ iss: 'https://unknown' })) })),
      401,
      'unknown_issuer',
    );
    const noExp = await new SignJWT({ iss: ISS, aud: 'api', sub: 'x' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .sign(key.privateKey);
    denied(await run(req({ headers: bearer(noExp) })), 401, 'missing_claim');
    const d = await run(req({ headers: bearer(await good({ exp: s - 120 })) }));
    assert.ok(d.kind === 'deny');
    assert.match(
      String(d.headers.find(([k]) => k === 'www-authenticate')?.[1]),
      /^Bearer realm="test", error="invalid_token"/,
    );
  });

  it('rejects crit, bad signatures, malformed and oversized tokens without leaking the token', async () => {
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${enc({ alg: 'ES256', kid: 'k1', crit: ['x-custom'], 'x-custom': 1 })}.${enc({ iss: ISS, aud: 'api', exp: nowSec() + 60 })}`;
    const sig = await crypto.subtle.sign(
      { name: 'ECDSA', hash: 'SHA-256' },
      key.privateKey,
      new TextEncoder().encode(input),
    );
    denied(
      await run(req({ headers: bearer(`${input}.${Buffer.from(sig).toString('base64url')}`) })),
      401,
      'unsupported_token',
    );
    const t = await good();
    const tampered = t.slice(0, -4) + (t.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    denied(await run(req({ headers: bearer(tampered) })), 401, 'bad_signature');
    denied(await run(req({ headers: bearer('a.b') })), 401, 'malformed_token');
    denied(await run(req({ headers: bearer('!!!.###.$$$') })), 401, 'malformed_token');
    const big = await good({ pad: 'x'.repeat(9000) });
    const d = await run(req({ headers: bearer(big) }));
    denied(d, 401, 'token_too_large');
    assert.ok(d.kind === 'deny' && !d.body.includes(big.slice(0, 20)));
  });

  it('denies an unconfigured issuer and an unknown kid without extra fetches', async () => {
    const before = fetcher.calls.length;
    const other = await makeKey('ES256', 'zz');
    for (let i = 0; i < 20; i++) {
      denied(
        await run(req({ headers: bearer(await sign(other, { iss: `https://evil/${i}`, aud: 'api' })) })),
        401,
        'unknown_issuer',
      );
    }
    assert.equal(fetcher.calls.length, before);
    for (let i = 0; i < 20; i++) {
      denied(await run(req({ headers: bearer(await good({}, { kid: `bogus-${i}` })) })), 401, 'unknown_kid');
    }
    assert.ok(fetcher.calls.length <= before + 1, 'at most one refetch per cooldown');
  });

  it('checks scopes (string or array) and claim matchers with 403 insufficient_scope', async () => {
    const admin = (claims: Record<string, unknown>) =>
      good({ email: 'a@example.com', realm_access: { roles: ['admin'] }, ...claims }).then((t) =>
        run(req({ host: 'admin.example.com:443', headers: bearer(t) })),
      );
    assert.equal((await admin({ scope: 'read admin' })).kind, 'allow');
    assert.equal((await admin({ scp: ['admin'] })).kind, 'allow');
    const d = await admin({ scope: 'read' });
    denied(d, 403, 'insufficient_scope');
    assert.ok(d.kind === 'deny');
    assert.equal(
      d.headers.find(([k]) => k === 'www-authenticate')?.[1],
      'Bearer realm="test", error="insufficient_scope", scope="admin"',
    );
    denied(await admin({ scope: 'admin', realm_access: { roles: ['user'] } }), 403, 'claim_mismatch');
    denied(await admin({ scope: 'admin', email: 'a@evil.com' }), 403, 'claim_mismatch');
  });

  it('requires every listed scope, not just one of them', async () => {
    const scoped = (scope: unknown) =>
      good({ scope }).then((t) => run(req({ path: '/scoped/x', headers: bearer(t) })));
    denied(await scoped('read'), 403, 'insufficient_scope');
    denied(await scoped('write'), 403, 'insufficient_scope');
    denied(await scoped(['write', 'admin']), 403, 'insufficient_scope');
    assert.equal((await scoped('write read')).kind, 'allow');
    assert.equal((await scoped(['read', 'write'])).kind, 'allow');
  });

  it('applies rule-level audiences on top of the provider audiences', async () => {
    const narrowed = (aud: unknown) =>
      good({ aud }).then((t) => run(req({ path: '/narrowed/x', headers: bearer(t) })));
    // Accepted by the provider (aud api) but not by the rule, which narrows to admin-api.
    denied(await narrowed('api'), 401, 'wrong_audience');
    denied(await narrowed(['api', 'other']), 401, 'wrong_audience');
    assert.equal((await narrowed(['api', 'admin-api'])).kind, 'allow');
    // The same token passes a rule without audiences of its own.
    assert.equal((await good({ aud: 'api' }).then((t) => run(req({ headers: bearer(t) })))).kind, 'allow');
  });

  it('resolves path parameters like servlet containers and refuses dot segments carrying them', async () => {
    // Exact /healthz rule: a path parameter does not make it a different path.
    assert.equal((await run(req({ path: '/healthz;jsessionid=1' }))).kind, 'allow');
    denied(await run(req({ path: '/blocked;x=1/y' })), 403, 'policy_deny');
    // `/healthz/%2e%2e;/api/x`: Tomcat serves /api/x, other upstreams a literal segment: refused either way.
    for (const path of ['/healthz/%2e%2e;/api/x', '/healthz/..;/blocked', '/blocked/%2e;/x', '/api/.;x/y'])
      denied(await run(req({ path })), 400, 'ambiguous_path');
  });

  it('removes a query-string or cookie token upstream when removeCredentials is set', async () => {
    const p2 = parsePolicy(
      [
        'providers:',
        `  legacy: { issuer: legacy, hmacSecret: { value: ${HMAC} }, tokenSources: [ { query: access_token }, { cookie: session } ] }`,
        'identity: { removeCredentials: true }',
        'rules: [ { jwt: true } ]',
      ].join('\n'),
      'rc.yaml',
    );
    const hs = await new SignJWT({ iss: 'legacy', sub: 'bob', exp: nowSec() + 60 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(HMAC));
    const q = await decide(p2, req({ path: `/x?a=1&access_token=${hs}` }), deps);
    assert.ok(q.kind === 'allow');
    assert.deepEqual(q.removeQuery, ['access_token']);
    const c = await decide(p2, req({ headers: { cookie: `a=1; session=${hs}; b=2` } }), deps);
    assert.ok(c.kind === 'allow');
    assert.deepEqual(c.headers, [['cookie', 'a=1; b=2']]);
    assert.deepEqual(c.removeQuery, []);
    const only = await decide(p2, req({ headers: { cookie: `session=${hs}` } }), deps);
    assert.ok(only.kind === 'allow');
    assert.deepEqual(only.headers, []);
    assert.ok(only.removeHeaders.includes('cookie'));
    assert.equal(cookieWithout(`x=1, session=${hs}; y=2`, 'session'), 'y=2');
  });

  it('strips every client header of a reserved prefix unless this decision sets it', async () => {
    const p2 = parsePolicy(
      "reservedHeaderPrefixes: [x-auth-]\nidentity: { headers: { x-auth-user: '{{ sub }}' } }\nrules: [ { apiKey: s } ]\napiKeys: { s: { keys: [ { name: k, value: v1 } ] } }",
      'rp.yaml',
    );
    const d = await decide(
      p2,
      req({
        headers: { 'x-api-key': 'v1', 'x-auth-role': 'admin', 'x-auth-user': 'mallory', 'x-authz': 'a' },
      }),
      deps,
    );
    assert.ok(d.kind === 'allow');
    assert.deepEqual(d.headers, [['x-auth-user', 'k']]);
    assert.ok(d.removeHeaders.includes('x-auth-role'));
    assert.ok(!d.removeHeaders.includes('x-auth-user'));
    assert.ok(!d.removeHeaders.includes('x-authz'));
  });

  it('optional JWT: no token passes as anonymous, a present but invalid token is refused', async () => {
    const anon = await run(req({ path: '/maybe/x', headers: { 'x-user-id': 'mallory' } }));
    assert.ok(anon.kind === 'allow');
    assert.equal(anon.reason, 'anonymous');
    assert.deepEqual(anon.headers, []);
    assert.ok(anon.removeHeaders.includes('x-user-id'), 'a spoofed identity header is still stripped');
    const ok = await run(req({ path: '/maybe/x', headers: bearer(await good()) }));
    assert.ok(ok.kind === 'allow');
    assert.equal(Object.fromEntries(ok.headers)['x-user-id'], 'alice');
    denied(await run(req({ path: '/maybe/x', headers: bearer('not-a-token') })), 401, 'malformed_token');
    const expired = await good({ exp: nowSec() - 3600 });
    denied(await run(req({ path: '/maybe/x', headers: bearer(expired) })), 401, 'token_expired');
    denied(
      await run(req({ path: '/maybe/x', headers: bearer(await good({ aud: 'x' })) })),
      401,
      'wrong_audience',
    );
  });

  it('removes the credential header when removeCredentials is set', async () => {
    const t = await good({ scope: 'admin', email: 'a@example.com', realm_access: { roles: ['root'] } });
    const d = await run(req({ host: 'admin.example.com', headers: bearer(t) }));
    assert.ok(d.kind === 'allow');
    assert.ok(d.removeHeaders.includes('authorization'));
  });

  it('verifies HS256 with a configured secret from a header, a query parameter and a cookie', async () => {
    const hs = await new SignJWT({ iss: 'legacy', sub: 'bob', exp: nowSec() + 60 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(HMAC));
    assert.equal((await run(req({ path: '/legacy', headers: { 'x-token': hs } }))).kind, 'allow');
    assert.equal((await run(req({ path: `/legacy?a=1&access_token=${hs}` }))).kind, 'allow');
    assert.equal(
      (await run(req({ path: '/legacy', headers: { cookie: `a=b; session=${hs}` } }))).kind,
      'allow',
    );
    const wrong = await new SignJWT({ iss: 'legacy', exp: nowSec() + 60 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    denied(await run(req({ path: '/legacy', headers: { 'x-token': wrong } })), 401, 'bad_signature');
  });

  it('accepts API keys (hashed, with claims) in anyOf, and needs both in allOf', async () => {
    const d = await run(req({ path: '/partner', headers: { 'x-api-key': API_KEY } }));
    assert.ok(d.kind === 'allow');
    assert.equal(Object.fromEntries(d.headers)['x-tenant'], 'acme');
    assert.equal(d.metadata['api_key'], 'acme');
    denied(await run(req({ path: '/partner', headers: { 'x-api-key': 'nope' } })), 401, 'invalid_api_key');
    denied(await run(req({ path: '/partner' })), 401, 'missing_credentials');
    const t = await good();
    denied(await run(req({ path: '/both', headers: bearer(t) })), 401, 'missing_credentials');
    const both = await run(req({ path: '/both', headers: { ...bearer(t), 'x-api-key': API_KEY } }));
    assert.ok(both.kind === 'allow');
    assert.equal(Object.fromEntries(both.headers)['x-user-id'], 'alice');
    assert.equal(Object.fromEntries(both.headers)['x-tenant'], 'acme');
  });

  it('allows CORS preflights per rule without credentials', async () => {
    const pre = { origin: 'https://app', 'access-control-request-method': 'POST' };
    const d = await run(req({ method: 'OPTIONS', headers: pre }));
    assert.equal(d.kind === 'allow' && d.reason, 'cors_preflight');
    // A rule without allowPreflight evaluates the preflight like any request.
    denied(await run(req({ method: 'OPTIONS', path: '/partner', headers: pre })), 401, 'missing_credentials');
  });

  it('selects a named policy or rule from context_extensions', async () => {
    assert.equal(
      (await run(req({ path: '/nothing', contextExtensions: { policy: 'internal' } }))).kind,
      'allow',
    );
    denied(await run(req({ contextExtensions: { policy: 'missing' } })), 403, 'unknown_policy');
    denied(await run(req({ path: '/api', contextExtensions: { rule: 'blocked' } })), 403, 'policy_deny');
  });

  it('denies a token whose issuer keys were never obtainable; an error only with keysUnavailable: error', async () => {
    const run2 = async (extra: string): Promise<Decision> => {
      const p2 = parsePolicy(
        `providers: { o: { issuer: "${ISS}", jwksUri: "${ISS}/down"${extra} } }\nrules: [ { jwt: true } ]`,
        'o.yaml',
      );
      const s2 = new KeyStore(p2.providers.get('o') as never, {
        fetch: new FakeFetcher().fetch,
        now: clock.now,
        logger: silent,
      });
      try {
        return await decide(p2, req({ headers: bearer(await good()) }), {
          ...deps,
          keyStores: new Map([['o', s2]]),
        });
      } finally {
        s2.close();
      }
    };
    // Any client can name this issuer: never Envoy's failure mode by default.
    denied(await run2(''), 401, 'keys_unavailable');
    assert.equal((await run2(', keysUnavailable: error')).kind, 'error');
  });

  it('imports a published key only as a public key', async () => {
    // Sanity check on the fixture: what the JWKS publishes has no private part.
    assert.equal('d' in key.jwk, false);
    const imported = await importJWK(key.jwk, 'ES256');
    assert.ok(imported);
    assert.equal('d' in (await exportJWK(imported as CryptoKey)), false);
  });
});

describe('TokenCache', () => {
  it('never outlives the token, evicts the oldest entry, and remembers permanent failures briefly', () => {
    const c = new TokenCache(2, 60_000);
    const p = {} as never;
    c.set('a', p, { exp: 100 }, 50_000);
    assert.ok(c.get('a', 99_000));
    assert.equal(c.get('a', 100_000), undefined, 'gone at exp');
    c.set('b', p, {}, 0);
    c.set('c', p, {}, 0);
    c.set('d', p, {}, 0);
    assert.equal(c.get('b', 1), undefined, 'oldest evicted at capacity');
    assert.ok(c.get('d', 1));
    assert.equal(c.get('d', 60_001), undefined, 'bounded by the max TTL');
    c.setDenied('x', 'bad_signature', 0);
    assert.equal(c.getDenied('x', 59_999), 'bad_signature');
    assert.equal(c.getDenied('x', 60_000), undefined);
  });
});
