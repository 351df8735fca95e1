import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import { decide, type AuthRequest, type Decision } from '../src/decision.ts';
import { parsePolicy, type Policy } from '../src/policy.ts';
import { TokenCache } from '../src/verifier.ts';

const HMAC = 'an-hmac-secret-that-is-32-bytes-long!';
const OTHER = 'a-second-hmac-secret-of-32-bytes-or-more';

const POLICY = `
providers:
  legacy:
    issuer: legacy
    hmacSecret: { value: ${HMAC} }
    tokenSources: [ { header: x-token }, { cookie: session }, { query: access_token } ]
  partner:
    issuer: partner
    hmacSecret: { value: ${OTHER} }
apiKeys:
  keys: { keys: [ { name: k1, value: key-one-value } ] }
identity: { removeCredentials: true }
rules:
  - name: legacy
    match: { pathPrefix: /legacy }
    jwt: { providers: [legacy] }
  - name: either
    match: { pathPrefix: /either }
    anyOf: [ { jwt: { providers: [partner] } }, { apiKey: keys } ]
  - name: keep
    match: { pathPrefix: /keep }
    identity: { removeCredentials: false }
    jwt: { providers: [legacy] }
`;

describe('authz removeCredentials: every credential source of the rule', () => {
  // Parsed in each test, not once at load: a mutation run reaches the policy code through the test.
  const policy = (): Policy => parsePolicy(POLICY, 'rc.yaml');
  const deps = { keyStores: new Map(), cache: new TokenCache(100, 300_000), now: () => Date.now() };
  const hs = (iss: string, sub: string, secret = HMAC): Promise<string> =>
    new SignJWT({ iss, sub, exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(secret));
  const req = (path: string, headers: Record<string, string>): AuthRequest => ({
    method: 'GET',
    host: 'app.test',
    path,
    headers,
    contextExtensions: {},
  });
  const allowed = (d: Decision): Extract<Decision, { kind: 'allow' }> => {
    assert.equal(d.kind, 'allow', JSON.stringify(d));
    return d;
  };

  it('removes a second token in another source of the same provider (cookie, query), not only the one used', async () => {
    const used = await hs('legacy', 'alice');
    const second = await hs('legacy', 'admin');
    const d = allowed(
      await decide(
        policy(),
        req(`/legacy?a=1&access%5Ftoken=${second}`, { 'x-token': used, cookie: `a=1; session=${second}` }),
        deps,
      ),
    );
    assert.ok(d.removeHeaders.includes('x-token'));
    assert.deepEqual(
      Object.fromEntries(d.headers)['cookie'],
      'a=1',
      'the session cookie must not reach the upstream',
    );
    assert.deepEqual([...d.removeQuery].sort(), ['access%5Ftoken', 'access_token']);
  });

  it('removes the token of an anyOf branch that did not decide (bearer beside a valid API key)', async () => {
    const d = allowed(
      await decide(
        policy(),
        req('/either', {
          'x-api-key': 'key-one-value',
          authorization: `Bearer ${await hs('partner', 'p', 'wrong-secret-wrong-secret-wrong-secret')}`,
        }),
        deps,
      ),
    );
    assert.equal(d.reason, 'api_key');
    assert.ok(d.removeHeaders.includes('x-api-key'));
    assert.ok(
      d.removeHeaders.includes('authorization'),
      'an unused bearer token must not reach the upstream',
    );
  });

  it('leaves headers that are not credential sources, and everything when removeCredentials is off', async () => {
    const d = allowed(
      await decide(
        policy(),
        req('/legacy', { 'x-token': await hs('legacy', 'a'), authorization: 'Basic dTpw' }),
        deps,
      ),
    );
    assert.ok(!d.removeHeaders.includes('authorization'), 'Authorization is not a source of provider legacy');
    assert.deepEqual(d.removeQuery, []);
    const keep = allowed(
      await decide(policy(), req('/keep', { 'x-token': await hs('legacy', 'a'), cookie: 'session=x' }), deps),
    );
    assert.deepEqual(keep.removeHeaders, []);
    assert.deepEqual(keep.headers, []);
  });
});
