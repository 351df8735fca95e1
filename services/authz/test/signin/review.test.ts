import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decide, type AuthRequest, type Decision, type DecisionDeps } from '../../src/decision.ts';
import { parsePolicy } from '../../src/policy.ts';
import { ConfigError } from '@extsvc/common/errors';
import { TokenCache } from '../../src/verifier.ts';
import { joinCookies } from '../../src/grpc-check.ts';
import { readCookie } from '../../src/signin/guard.ts';
import { Signin, isLoopbackHost, type SigninEvent } from '../../src/signin/flow.ts';
import { Sealer } from '../../src/signin/seal.ts';
import { createLogger } from '@extsvc/common/logger';

const env = { SECRET: 'the-client-secret', KEYS: randomBytes(32).toString('base64') };
const deps: DecisionDeps = { keyStores: new Map(), cache: new TokenCache(10, 1000), now: () => Date.now() };
const req = (path: string, headers: Record<string, string>): AuthRequest => ({
  method: 'GET',
  host: 'app.example',
  path,
  headers,
  contextExtensions: {},
});

/** The Cookie header the upstream gets: rewritten, removed, or the client's as sent. */
function upstreamCookie(d: Decision, sent: string): string | undefined {
  assert.equal(d.kind, 'allow', JSON.stringify(d));
  if (d.kind !== 'allow') return undefined;
  const set = d.headers.find(([k]) => k === 'cookie');
  if (set) return set[1];
  return d.removeHeaders.includes('cookie') ? undefined : sent;
}

describe('signin review: the sign-in cookies never reach an upstream (M2)', () => {
  const policy = (removeCredentials: boolean) =>
    parsePolicy(
      `providers: { idp: { issuer: https://idp.example } }
login: { provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS } }
apiKeys: { partners: { keys: [ { name: p1, value: the-key } ] } }
identity: { removeCredentials: ${removeCredentials} }
rules:
  - { name: open, match: { pathPrefix: /public }, public: true, login: false }
  - { name: keys, match: { pathPrefix: /partner }, apiKey: partners, login: false }
  - { name: app, match: { pathPrefix: / }, jwt: { providers: [idp] } }
`,
      'p.yaml',
      env,
    );
  const sent = 'pref=dark; authz_session=SEALED; authz_session_state=STATE; lang=en';

  for (const rc of [true, false])
    it(`strips authz_session and authz_session_state on public and API-key rules, keeps the others (removeCredentials: ${rc})`, async () => {
      const p = policy(rc);
      const pub = await decide(p, req('/public/x', { cookie: sent }), deps);
      assert.equal(upstreamCookie(pub, sent), 'pref=dark; lang=en');
      const key = await decide(p, req('/partner/x', { cookie: sent, 'x-api-key': 'the-key' }), deps);
      assert.equal(upstreamCookie(key, sent), 'pref=dark; lang=en');
    });

  it('removes the Cookie header when only sign-in cookies were in it, and leaves it alone without them', async () => {
    const p = policy(false);
    const only = 'authz_session=SEALED';
    assert.equal(upstreamCookie(await decide(p, req('/public/x', { cookie: only }), deps), only), undefined);
    const other = 'pref=dark; authz_session_x=1';
    const d = await decide(p, req('/public/x', { cookie: other }), deps);
    assert.equal(upstreamCookie(d, other), other);
    assert.ok(d.kind === 'allow' && !d.removeHeaders.includes('cookie') && d.headers.length === 0);
  });
});

describe('signin review: a planted second session cookie is refused (L4)', () => {
  it('reads no session when the cookie name appears twice, also through a comma inside one value', () => {
    assert.equal(readCookie('pref=x,authz_session=ATTACKER; authz_session=REAL', 'authz_session'), undefined);
    assert.equal(
      readCookie(joinCookies('pref=x,authz_session=ATTACKER; authz_session=REAL'), 'authz_session'),
      undefined,
    );
    assert.equal(readCookie('authz_session=A; authz_session=B', 'authz_session'), undefined);
    assert.equal(readCookie('pref=x; authz_session=REAL', 'authz_session'), 'REAL');
    // Two HTTP/1 Cookie headers joined by Envoy: one session cookie is still read.
    assert.equal(readCookie(joinCookies('authz_session=REAL,other=1; more=2'), 'authz_session'), 'REAL');
  });

  it('answers a request with two session cookies 400 and clears the cookie, without using either', async () => {
    const policy = parsePolicy(
      `providers: { idp: { issuer: https://idp.example } }
login: { provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS } }
rules: [ { name: app, jwt: { providers: [idp] } } ]`,
      'p.yaml',
      env,
    );
    const l = policy.logins[0];
    assert.ok(l);
    const events: SigninEvent[] = [];
    const signin = new Signin({
      now: () => Date.now(),
      logger: createLogger({ service: 'authz', level: 'silent' }),
      providers: policy.providers,
      verifyIdToken: () => Promise.reject(new Error('not called')),
      onEvent: (e) => events.push(e),
    });
    const sealer = new Sealer(l.sessionKeys.map((k) => Buffer.from(k, 'base64url')));
    const now = Math.floor(Date.now() / 1000);
    const seal = (sub: string) =>
      sealer.seal('authz_session', JSON.stringify({ p: 'idp', c: { sub }, e: now + 600, m: now + 3600 }));
    const one = await signin.session(l, req('/', { cookie: `authz_session=${seal('alice')}` }));
    assert.equal(one.kind, 'valid');
    const s = await signin.session(
      l,
      req('/', { cookie: `pref=x,authz_session=${seal('attacker')}; authz_session=${seal('alice')}` }),
    );
    assert.equal(s.kind, 'answer', JSON.stringify(s));
    if (s.kind !== 'answer') return;
    assert.equal(s.answer.status, 400);
    assert.ok(s.answer.headers.some(([k, v]) => k === 'set-cookie' && /^authz_session=;.*Max-Age=0/.test(v)));
    assert.ok(events.some((e) => e.kind === 'failure' && e.reason === 'cookie_duplicate'));
  });
});

describe('signin review: only real loopback hosts may use http without allowHttp (L6)', () => {
  it('refuses names that merely start like a loopback address; accepts 127/8, ::1 and localhost', () => {
    for (const h of [
      '127.0.0.1.nip.io',
      '127.evil.example',
      'localhost.evil.example',
      '128.0.0.1',
      '[::2]',
      '10.0.0.1',
      '',
    ])
      assert.equal(isLoopbackHost(h), false, h);
    for (const h of ['localhost', '127.0.0.1', '127.8.9.10', '[::1]', '::1'])
      assert.equal(isLoopbackHost(h), true, h);
  });
});

describe('signin review: two login blocks may not share a callback or logout path (L8)', () => {
  const block = (extra = '') =>
    `{ provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS }${extra} }`;
  const load = (a: string, b: string) =>
    parsePolicy(
      `providers: { idp: { issuer: https://idp.example } }
rules:
  - { name: one, match: { pathPrefix: /one }, jwt: { providers: [idp] }, login: ${a} }
  - { name: two, match: { pathPrefix: /two }, jwt: { providers: [idp] }, login: ${b} }`,
      'p.yaml',
      env,
    );
  const problemsOf = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => `${p.field}: ${p.message}`);
    }
    return [];
  };

  it('refuses the default paths twice, naming both blocks and the field', () => {
    assert.deepEqual(
      problemsOf(() => load(block(', cookie: { name: a }'), block(', cookie: { name: b }'))),
      [
        "p.yaml: rules[1].login.redirectPath: '/oauth2/callback' is already the path of rules[0].login.redirectPath: give each login block its own",
        "p.yaml: rules[1].login.logoutPath: '/oauth2/logout' is already the path of rules[0].login.logoutPath: give each login block its own",
      ],
    );
  });

  it("refuses one block's callback as another's logout, and an absolute redirectPath with the same path", () => {
    assert.deepEqual(
      problemsOf(() =>
        load(
          block(', cookie: { name: a }, redirectPath: /cb, logoutPath: /out'),
          block(', cookie: { name: b }, redirectPath: "https://app.example/out", logoutPath: /out2'),
        ),
      ),
      [
        "p.yaml: rules[1].login.redirectPath: '/out' is already the path of rules[0].login.logoutPath: give each login block its own",
      ],
    );
  });

  it('accepts distinct paths, and the same block shared by several rules', () => {
    assert.deepEqual(
      problemsOf(() =>
        load(
          block(', cookie: { name: a }'),
          block(', cookie: { name: b }, redirectPath: /cb2, logoutPath: /out2'),
        ),
      ),
      [],
    );
    const shared = parsePolicy(
      `providers: { idp: { issuer: https://idp.example } }
login: ${block()}
rules:
  - { name: one, match: { pathPrefix: /one }, jwt: { providers: [idp] } }
  - { name: two, match: { pathPrefix: /two }, jwt: { providers: [idp] } }
policies:
  other: { rules: [ { name: three, jwt: { providers: [idp] }, login: ${block(', cookie: { name: c }')} } ] }`,
      'p.yaml',
      env,
    );
    assert.equal(shared.logins.length, 2, 'another named policy may use the same paths');
  });
});

describe('signin review: logout only by a same-origin POST (L1)', () => {
  const policy = parsePolicy(
    `providers: { idp: { issuer: http://127.0.0.1:1 } }
login: { provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS }, timeout: 2s }
rules: [ { name: app, jwt: { providers: [idp] } } ]`,
    'p.yaml',
    env,
  );
  const l = policy.logins[0];
  const events: SigninEvent[] = [];
  const signin = new Signin({
    now: () => Date.now(),
    logger: createLogger({ service: 'authz', level: 'silent' }),
    providers: policy.providers,
    verifyIdToken: () => Promise.reject(new Error('not called')),
    onEvent: (e) => events.push(e),
  });
  const logout = (method: string, headers: Record<string, string>) => {
    assert.ok(l);
    return signin.endpoint(
      l,
      { ...req('/oauth2/logout', { 'x-forwarded-proto': 'https', ...headers }), method },
      '/oauth2/logout',
    );
  };
  const clears = (a: { headers: ReadonlyArray<readonly [string, string]> }) =>
    a.headers.some(([k, v]) => k === 'set-cookie' && v.startsWith('authz_session=;'));

  it('answers a cross-site GET (an <img>, a link) 405 with a same-origin form, and clears nothing', async () => {
    const get = await logout('GET', { referer: 'https://evil.example/' });
    assert.equal(get.status, 405);
    assert.equal(clears(get), false);
    assert.ok(get.headers.some(([k, v]) => k === 'allow' && v === 'POST'));
    assert.match(get.body, /<form method="post" action="\/oauth2\/logout"><button type="submit">/);
    assert.equal((await logout('DELETE', { origin: 'https://app.example' })).status, 405);
    assert.deepEqual(events, []);
  });

  it('refuses a POST that is cross-site or names no origin; logs out on a same-origin POST', async () => {
    const cross = await logout('POST', { origin: 'https://evil.example' });
    assert.equal(cross.status, 403);
    assert.equal(clears(cross), false);
    assert.equal((await logout('POST', {})).status, 403);
    const ok = await logout('POST', { origin: 'https://app.example' });
    assert.equal(ok.status, 302);
    assert.ok(clears(ok));
    assert.ok(events.some((e) => e.kind === 'logout'));
  });
});
