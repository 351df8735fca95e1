import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Stack } from '../harness/stack.ts';
import {
  adminUrl,
  getText,
  hmacToken,
  postJson,
  SECRETS,
  startAcme,
  startAuthz,
  startRatelimit,
  type AcmeFixture,
  type AuthzFixture,
  type RatelimitFixture,
} from './fixtures.ts';

/** Lines of a PEM body (the base64 of the key), each long enough to be unique. */
const pemLines = (pem: string): string[] =>
  pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));

/** Pieces of a JWT that must never be shown: the whole token, its payload and its signature. */
const tokenParts = (t: string): string[] => [t, ...t.split('.').slice(1)];

function assertAbsent(what: string, body: string, secrets: ReadonlyArray<readonly [string, string]>): void {
  for (const [name, value] of secrets)
    assert.ok(!body.includes(value), `${what} shows ${name} (${value.slice(0, 12)}…)`);
  assert.ok(!/PRIVATE KEY/.test(body), `${what} shows a PEM private key`);
}

describe('diagnostics redaction: secrets, keys and tokens never appear in /diag or /diag.json', function () {
  this.timeout(90_000);
  const stack = new Stack('diag-redaction').install();
  let authz: AuthzFixture;
  let rl: RatelimitFixture;
  let acme: AcmeFixture;
  const authzSecrets: Array<readonly [string, string]> = [
    ['the HMAC secret', SECRETS.hmac],
    ['the API key', SECRETS.apiKey],
    ['the API key hash (hex)', createHash('sha256').update(SECRETS.apiKey).digest('hex')],
    ['the API key hash (base64)', createHash('sha256').update(SECRETS.apiKey).digest('base64')],
    ['the session cookie', SECRETS.cookie],
    ['the query token', SECRETS.query],
  ];

  before(async function () {
    this.timeout(90_000);
    [authz, rl, acme] = await Promise.all([startAuthz(stack), startRatelimit(stack), startAcme(stack)]);
    const hs = await hmacToken({ sub: 'redaction-user' });
    const es = await authz.issuer.token({ sub: 'remote-redaction' });
    authzSecrets.push(
      ...tokenParts(hs).map((p, i) => [`the HMAC token (part ${i})`, p] as const),
      ...tokenParts(es).map((p, i) => [`the ES256 token (part ${i})`, p] as const),
      ['the issuer private key', String(authz.issuer.privateJwk?.d)],
    );
    // Real traffic carrying every credential: allowed, denied and malformed.
    assert.equal(await authz.check('/api/a', { authorization: `Bearer ${hs}` }), 200);
    assert.equal(await authz.check('/api/b', { authorization: `Bearer ${es}` }), 200);
    assert.equal(await authz.check('/partner/c', { 'x-api-key': SECRETS.apiKey }), 200);
    assert.equal(await authz.check('/partner/d', { 'x-api-key': `${SECRETS.apiKey}-wrong` }), 401);
    assert.equal(await authz.check('/api/e', { cookie: `session=${SECRETS.cookie}; theme=dark` }), 401);
    assert.equal(await authz.check(`/api/f?access_token=${SECRETS.query}&x=1`), 401);
    assert.equal(await authz.check(`/api/g?access_token=${es}`), 200);
    // The test form, with the same credentials (its answers are checked too).
    for (const [path, headers] of [
      ['/api/form', `authorization: Bearer ${hs}\ncookie: session=${SECRETS.cookie}`],
      ['/partner/form', `x-api-key: ${SECRETS.apiKey}`],
      [`/api/form?access_token=${SECRETS.query}`, ''],
    ] as const) {
      const r = await postJson(adminUrl(authz.svc, '/diag/authz/test'), { method: 'GET', path, headers });
      assert.equal(r.status, 200, r.text);
      assertAbsent(`the test form answer for ${path}`, r.text, authzSecrets);
    }
    assert.equal(await rl.hit('diag', [['key2', 'redaction']]), 200);
  });
  after(() => authz?.issuer.stop());

  it('authz: /diag and /diag.json show rules, providers, key names and decisions, but no secret', async () => {
    for (const path of ['/diag', '/diag.json']) {
      const r = await getText(adminUrl(authz.svc, path));
      assert.equal(r.status, 200);
      assertAbsent(`authz ${path}`, r.body, authzSecrets);
      for (const shown of ['partner-one', 'diag-hmac', authz.issuer.url, 'invalid_api_key', '/api/f'])
        assert.ok(r.body.includes(shown), `authz ${path} lacks ${shown}`);
    }
  });

  it('ratelimit: the Redis password is neither in the URL nor anywhere else', async () => {
    const secrets = [['the Redis password', SECRETS.redis]] as const;
    for (const path of ['/diag', '/diag.json']) {
      const r = await getText(adminUrl(rl.svc, path));
      assert.equal(r.status, 200);
      assertAbsent(`ratelimit ${path}`, r.body, secrets);
      assert.ok(r.body.includes(`127.0.0.1:${rl.redis.port}`), `ratelimit ${path} lacks the Redis address`);
      assert.ok(r.body.includes('(redacted)'), `ratelimit ${path} does not say what it redacted`);
    }
    const lookup = await postJson(adminUrl(rl.svc, '/diag/ratelimit/lookup'), {
      domain: 'diag',
      descriptor: 'key2=redaction',
    });
    assertAbsent('the lookup answer', lookup.text, secrets);
  });

  it('acme: no certificate key, account key or EAB key; the account URL is shown', async () => {
    const secrets: Array<readonly [string, string]> = [
      ['the EAB HMAC key', SECRETS.eab],
      ...pemLines(acme.certKeyPem).map((l) => ['the certificate key', l] as const),
      ...pemLines(acme.accountKeyPem).map((l) => ['the account key', l] as const),
    ];
    for (const path of ['/diag', '/diag.json']) {
      const r = await getText(adminUrl(acme.svc, path));
      assert.equal(r.status, 200);
      assertAbsent(`acme ${path}`, r.body, secrets);
      assert.ok(r.body.includes(acme.accountUrl), `acme ${path} lacks the account URL`);
    }
  });

  it('the redacted /config views of authz, ratelimit and acme agree', async () => {
    assertAbsent('authz /config', (await authz.svc.admin('/config')).body, authzSecrets);
    assertAbsent('ratelimit /config', (await rl.svc.admin('/config')).body, [
      ['the Redis password', SECRETS.redis],
    ]);
    assertAbsent('acme /config', (await acme.svc.admin('/config')).body, [['the EAB HMAC key', SECRETS.eab]]);
  });
});
