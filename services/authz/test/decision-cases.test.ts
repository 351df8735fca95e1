import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import {
  cookieWithout,
  decide,
  extractToken,
  matchClaim,
  queryKeysNamed,
  tokenScopes,
  type AuthRequest,
  type Decision,
} from '../src/decision.ts';
import { KeyStore } from '../src/keys.ts';
import { parsePolicy, type Policy, type TokenSource } from '../src/policy.ts';
import { TokenCache } from '../src/verifier.ts';
import { FakeFetcher, makeKey, sign, silent } from './helpers.ts';

// Decision cases the mutation run (issue 13) found unasserted: each test pins down a behaviour
// through the public functions (the exact deny body, which credential is read, which one goes).

const HMAC = 'an-hmac-secret-that-is-32-bytes-long!';
const SID = 'a-second-hmac-secret-of-32-bytes-or-more';

const POLICY = `
realm: cases
providers:
  h: { issuer: h, hmacSecret: { value: ${HMAC} }, tokenSources: [ bearer, { cookie: session } ] }
  s: { issuer: s, hmacSecret: { value: ${SID} }, tokenSources: [ { cookie: sid } ] }
apiKeys:
  pre: { header: x-key, prefix: 'Key ', keys: [ { name: k1, value: key-one-value, claims: { tier: gold } } ] }
identity: { headers: { x-user: '{{ sub }}' } }
reservedHeaderPrefixes: [x-auth-, x-user-]
rules:
  - { name: aud, match: { pathPrefix: /aud }, jwt: { providers: [h], audiences: [svc] } }
  - { name: claim, match: { pathPrefix: /claim }, jwt: { providers: [h], claims: [ { claim: role, equals: admin } ] } }
  - { name: scoped, match: { pathPrefix: /scoped }, jwt: { providers: [h], scopes: [read, write] } }
  - { name: key, match: { pathPrefix: /key }, apiKey: { sets: [pre], claims: [ { claim: tier, equals: gold } ] } }
  - { name: silver, match: { pathPrefix: /silver }, apiKey: { sets: [pre], claims: [ { claim: tier, equals: silver } ] } }
  - { name: either, match: { pathPrefix: /either }, anyOf: [ { apiKey: pre }, { jwt: { providers: [h] } } ] }
  - { name: all-public, match: { pathPrefix: /allpub }, allOf: [ { public: true }, { public: true } ] }
  - { name: jwt-public, match: { pathPrefix: /jwtpub }, allOf: [ { jwt: { providers: [h] } }, { public: true } ] }
  - name: strip-all
    match: { pathPrefix: /strip }
    identity: { removeCredentials: true }
    allOf: [ { jwt: { providers: [h] } }, { jwt: { providers: [s] } } ]
  - { name: open-rc, match: { pathPrefix: /open }, identity: { removeCredentials: true }, public: true }
  - { name: maybe-rc, match: { pathPrefix: /maybe }, identity: { removeCredentials: true }, jwt: { providers: [h], optional: true } }
  - { name: gone, match: { pathPrefix: /gone }, deny: { status: 404 } }
  - { name: blocked, match: { pathPrefix: /blocked }, deny: true }
  - name: cors-any
    match: { pathPrefix: /any-cors }
    cors: { allowPreflight: true }
    jwt: { providers: [h] }
  - name: cors
    match: { pathPrefix: /cors, methods: [POST], hosts: [a.test, b.test] }
    cors: { allowPreflight: true }
    identity: { removeCredentials: true }
    jwt: { providers: [h] }
`;

describe('authz decision cases (mutation findings)', () => {
  // Parsed in each test, not once at load: a mutation run reaches the policy code through the test.
  const policy = (): Policy => parsePolicy(POLICY, 'cases.yaml');
  const deps = { keyStores: new Map(), cache: new TokenCache(100, 300_000), now: () => Date.now() };
  const token = (claims: Record<string, unknown>, secret = HMAC): Promise<string> =>
    new SignJWT({ iss: 'h', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600, ...claims })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(secret));
  const req = (
    path: string,
    headers: Record<string, string> = {},
    over: Partial<AuthRequest> = {},
  ): AuthRequest => ({
    method: 'GET',
    host: 'a.test',
    path,
    headers,
    contextExtensions: {},
    ...over,
  });
  const run = (r: AuthRequest): Promise<Decision> => decide(policy(), r, deps);
  const allowed = (d: Decision): Extract<Decision, { kind: 'allow' }> => {
    assert.equal(d.kind, 'allow', JSON.stringify(d));
    return d;
  };
  /** The whole client-facing deny: status, body and challenge. */
  function deny(d: Decision, status: number, error: string, code: string, challenge?: string): void {
    assert.equal(d.kind, 'deny', JSON.stringify(d));
    if (d.kind !== 'deny') return;
    assert.equal(d.status, status);
    assert.equal(d.reason, code);
    const body = JSON.parse(d.body) as Record<string, unknown>;
    assert.equal(body['status'], status);
    assert.equal(body['error'], error);
    assert.equal(body['code'], code);
    assert.equal(Object.fromEntries(d.headers)['www-authenticate'], challenge);
  }

  it('rule audiences: a single string aud that is listed passes, another is wrong_audience', async () => {
    assert.equal(
      allowed(await run(req('/aud', { authorization: `Bearer ${await token({ aud: 'svc' })}` }))).reason,
      'jwt',
    );
    deny(
      await run(req('/aud', { authorization: `Bearer ${await token({ aud: ['other', 'x'] })}` })),
      401,
      'invalid_token',
      'wrong_audience',
      'Bearer realm="cases", error="invalid_token", error_description="The access token audience is not accepted"',
    );
  });

  it('claim_mismatch and insufficient_scope are 403 with the scope in the challenge only for scopes', async () => {
    deny(
      await run(req('/claim', { authorization: `Bearer ${await token({ role: ['user', 'admin2'] })}` })),
      403,
      'insufficient_scope',
      'claim_mismatch',
      'Bearer realm="cases", error="insufficient_scope"',
    );
    allowed(
      await run(req('/claim', { authorization: `Bearer ${await token({ role: ['user', 'admin'] })}` })),
    );
    deny(
      await run(req('/scoped', { authorization: `Bearer ${await token({ scope: 'read' })}` })),
      403,
      'insufficient_scope',
      'insufficient_scope',
      'Bearer realm="cases", error="insufficient_scope", scope="read write"',
    );
    allowed(
      await run(req('/scoped', { authorization: `Bearer ${await token({ scp: ['write', 'read'] })}` })),
    );
  });

  it('API keys with a prefix: prefix case-insensitive, key trimmed, claims checked, missing key unauthorized', async () => {
    assert.equal(allowed(await run(req('/key', { 'x-key': 'key  key-one-value ' }))).reason, 'api_key');
    deny(
      await run(req('/key', { 'x-key': 'key-one-value' })),
      401,
      'unauthorized',
      'missing_credentials',
      'ApiKey realm="cases"',
    );
    deny(
      await run(req('/key', { 'x-key': 'Key wrong' })),
      401,
      'invalid_key',
      'invalid_api_key',
      'ApiKey realm="cases", error="invalid_key", error_description="The API key is invalid"',
    );
    deny(
      await run(req('/silver', { 'x-key': 'Key key-one-value' })),
      403,
      'insufficient_scope',
      'claim_mismatch',
    );
  });

  it('anyOf: a later branch that allows wins over an earlier deny about presented credentials', async () => {
    const d = allowed(
      await run(req('/either', { 'x-key': 'Key wrong', authorization: `Bearer ${await token({})}` })),
    );
    assert.equal(d.reason, 'jwt');
    assert.deepEqual(d.headers, [['x-user', 'alice']]);
  });

  it('allOf: the reason is the last non-public branch, public when all are public', async () => {
    assert.equal(allowed(await run(req('/allpub'))).reason, 'public');
    assert.equal(
      allowed(await run(req('/jwtpub', { authorization: `Bearer ${await token({})}` }))).reason,
      'jwt',
    );
  });

  it('removeCredentials with two cookie providers drops both cookies; public and anonymous allows work', async () => {
    const t1 = await token({});
    const t2 = await token({ iss: 's' }, SID);
    const d = allowed(await run(req('/strip', { cookie: `session=${t1}; sid=${t2}` })));
    assert.equal(Object.fromEntries(d.headers)['cookie'], undefined);
    assert.ok(d.removeHeaders.includes('cookie'));
    const kept = allowed(await run(req('/strip', { cookie: `a=1; session=${t1}; sid=${t2}; b=2` })));
    assert.equal(Object.fromEntries(kept.headers)['cookie'], 'a=1; b=2');
    const open = allowed(await run(req('/open', { cookie: 'a=1' })));
    assert.equal(open.reason, 'public');
    assert.deepEqual(open.headers, []);
    const anon = allowed(await run(req('/maybe')));
    assert.equal(anon.reason, 'anonymous');
    assert.deepEqual(anon.removeQuery, []);
  });

  it('deny bodies: custom status, policy deny, no rule, unknown rule, too many headers or extensions', async () => {
    deny(await run(req('/gone')), 404, 'access_denied', 'policy_deny');
    deny(await run(req('/blocked')), 403, 'access_denied', 'policy_deny');
    const none = await run(req('/nothing'));
    deny(none, 403, 'access_denied', 'no_matching_rule');
    assert.equal(none.rule, '-');
    deny(
      await run(req('/aud', {}, { contextExtensions: { rule: 'nope' } })),
      403,
      'access_denied',
      'unknown_policy',
    );
    const many = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`x-h${i}`, 'v']));
    deny(await run(req('/open', many)), 431, 'invalid_request', 'too_many_headers');
    const ext = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    deny(await run(req('/open', {}, { contextExtensions: ext })), 400, 'invalid_request', 'bad_request');
    deny(await run(req('/open/..;/x')), 400, 'invalid_request', 'ambiguous_path');
  });

  it('CORS preflight: needs Origin and the requested method (trimmed, any case); hosts any of the list', async () => {
    const pre = { origin: 'https://a.test', 'access-control-request-method': ' post ' };
    const d = allowed(await run(req('/cors', pre, { method: 'OPTIONS', host: 'b.test' })));
    assert.equal(d.reason, 'cors_preflight');
    deny(
      await run(req('/cors', { 'access-control-request-method': 'POST' }, { method: 'OPTIONS' })),
      403,
      'access_denied',
      'no_matching_rule',
    );
    deny(
      await run(req('/cors', { origin: 'https://a.test' }, { method: 'OPTIONS' })),
      403,
      'access_denied',
      'no_matching_rule',
    );
    deny(await run(req('/elsewhere', pre, { method: 'OPTIONS' })), 403, 'access_denied', 'no_matching_rule');
    deny(
      await run(req('/cors', {}, { method: 'POST', host: 'b.test' })),
      401,
      'unauthorized',
      'missing_credentials',
      'Bearer realm="cases"',
    );
  });

  it('only an OPTIONS request with Origin and Access-Control-Request-Method is a preflight', async () => {
    const pre = { origin: 'https://a.test', 'access-control-request-method': 'POST' };
    deny(
      await run(req('/cors', pre, { method: 'POST' })),
      401,
      'unauthorized',
      'missing_credentials',
      'Bearer realm="cases"',
    );
    deny(
      await run(req('/any-cors', { origin: 'https://a.test' }, { method: 'OPTIONS' })),
      401,
      'unauthorized',
      'missing_credentials',
      'Bearer realm="cases"',
    );
    assert.equal(allowed(await run(req('/any-cors', pre, { method: 'OPTIONS' }))).reason, 'cors_preflight');
  });

  it('accepts exactly the most headers and context extensions allowed', async () => {
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`x-h${i}`, 'v']));
    assert.equal(allowed(await run(req('/open', many))).reason, 'public');
    const ext = Object.fromEntries(Array.from({ length: 63 }, (_, i) => [`k${i}`, 'v']));
    assert.equal(
      allowed(await run(req('/open', {}, { contextExtensions: { ...ext, rule: 'open-rc' } }))).reason,
      'public',
    );
  });

  it('strips client headers of every reserved prefix', async () => {
    const d = allowed(await run(req('/open', { 'x-user-role': 'admin', 'x-auth-a': '1', 'x-other': '1' })));
    assert.ok(d.removeHeaders.includes('x-user-role'));
    assert.ok(d.removeHeaders.includes('x-auth-a'));
    assert.ok(!d.removeHeaders.includes('x-other'));
  });

  it('keys that were never obtainable: an error decision with its reason under keysUnavailable: error', async () => {
    const p2 = parsePolicy(
      'providers: { o: { issuer: "https://o.test", jwksUri: "https://o.test/down", keysUnavailable: error } }\nrules: [ { name: r, anyOf: [ { apiKey: k }, { jwt: true } ] } ]\napiKeys: { k: { keys: [ { name: a, value: v } ] } }',
      'o.yaml',
    );
    const store = new KeyStore(p2.providers.get('o') as never, {
      fetch: new FakeFetcher().fetch,
      now: Date.now,
      logger: silent,
    });
    try {
      const t = await sign(await makeKey('ES256', 'k'), { iss: 'https://o.test', sub: 'x' });
      const d = await decide(p2, req('/', { authorization: `Bearer ${t}` }), {
        ...deps,
        keyStores: new Map([['o', store]]),
      });
      assert.deepEqual(d, { kind: 'error', reason: 'keys_unavailable', rule: 'r' });
    } finally {
      store.close();
    }
  });
});

describe('authz token extraction and helpers', () => {
  const header = (name: string, prefix = ''): TokenSource => ({ kind: 'header', name, prefix });
  const query = (name: string): TokenSource => ({ kind: 'query', name });
  const cookie = (name: string): TokenSource => ({ kind: 'cookie', name });
  const get = (headers: Record<string, string>, sources: TokenSource[], q = ''): string | undefined =>
    extractToken({ method: 'GET', host: 'h', path: '/', headers, contextExtensions: {} }, sources, q)?.token;

  it('headers: trimmed, blank skipped, prefix required and the token after it trimmed', () => {
    assert.equal(get({ 'x-t': '  tok  ' }, [header('x-t')]), 'tok');
    assert.equal(get({ 'x-t': '   ', 'x-u': 'u' }, [header('x-t'), header('x-u')]), 'u');
    assert.equal(get({ authorization: 'Basic dTpw' }, [header('authorization', 'bearer ')]), undefined);
    assert.equal(get({ authorization: 'BEARER    tok' }, [header('authorization', 'bearer ')]), 'tok');
  });

  it('query: a key without value or an empty value is no token; values are form-decoded, bad escapes kept', () => {
    assert.equal(get({}, [query('t')], 't'), undefined);
    assert.equal(get({}, [query('t')], 't=&x=1'), undefined);
    assert.equal(get({}, [query('a')], 'b=1&a=tok'), 'tok');
    assert.equal(get({}, [query('t')], 'x=1&t=a+b%2Fc'), 'a b/c');
    assert.equal(get({}, [query('t')], 't=%E0%A4%A'), '%E0%A4%A');
  });

  it('cookies: any separator spacing, names trimmed, quotes removed only around the whole value', () => {
    assert.equal(get({ 'x-t': 'h' }, [cookie('s'), header('x-t')]), 'h');
    assert.equal(get({ cookie: 'a=1;s=tok' }, [cookie('s')]), 'tok');
    assert.equal(get({ cookie: 'a=1,s=tok' }, [cookie('s')]), 'tok');
    assert.equal(get({ cookie: 'a=1; s =  tok ' }, [cookie('s')]), 'tok');
    assert.equal(get({ cookie: 's="tok"' }, [cookie('s')]), 'tok');
    assert.equal(get({ cookie: 's=x"y"' }, [cookie('s')]), 'x"y"');
    assert.equal(get({ cookie: 's="a"b' }, [cookie('s')]), '"a"b');
    assert.equal(get({ cookie: 'sx; s=; s2=t' }, [cookie('s')]), undefined);
  });

  it('cookieWithout keeps every other cookie whatever the separators', () => {
    assert.equal(cookieWithout('a=1; ; s=x; ', 's'), 'a=1');
    assert.equal(cookieWithout('a=1;s=x;b=2', 's'), 'a=1; b=2');
    assert.equal(cookieWithout('a=1; b=2,s=x', 's'), 'a=1');
    assert.equal(cookieWithout('a=1; s =x', 's'), 'a=1');
    assert.equal(cookieWithout('s=x', 's'), undefined);
  });

  it('queryKeysNamed: the name itself plus every spelling on the wire, with or without a value', () => {
    assert.deepEqual(queryKeysNamed('', 'access_token'), ['access_token']);
    assert.deepEqual(queryKeysNamed('a=1&access%5Ftoken=x&access%5ftoken', 'access_token'), [
      'access_token',
      'access%5Ftoken',
      'access%5ftoken',
    ]);
  });

  it('tokenScopes skips empty pieces and non-strings; matchClaim accepts any array element', () => {
    assert.deepEqual([...tokenScopes({ scope: ' a  b ', scp: ['c', 1, null] })].sort(), ['a', 'b', 'c']);
    const claims = { roles: ['user', 'admin'], email: ['x@y.z', 'a@example.com'] };
    assert.equal(matchClaim({ kind: 'equals', claim: 'roles', value: 'admin' }, claims), true);
    assert.equal(matchClaim({ kind: 'equals', claim: 'roles', value: 'root' }, claims), false);
    assert.equal(matchClaim({ kind: 'oneOf', claim: 'roles', values: ['admin', 'root'] }, claims), true);
    assert.equal(matchClaim({ kind: 'oneOf', claim: 'roles', values: ['root'] }, claims), false);
    assert.equal(matchClaim({ kind: 'regex', claim: 'email', regex: /@example\.com$/ }, claims), true);
    assert.equal(matchClaim({ kind: 'regex', claim: 'email', regex: /@other$/ }, claims), false);
    assert.equal(matchClaim({ kind: 'equals', claim: 'missing', value: 'x' }, claims), false);
  });
});
