import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '@extsvc/common/errors';
import { parsePolicy } from '../../src/policy.ts';
import { Sealer, parseKeyFile } from '../../src/signin/seal.ts';
import { joinCookies } from '../../src/grpc-check.ts';
import { cookieWithout } from '../../src/decision.ts';
import { checkCsrf, isNavigation, readCookie, safeReturnPath } from '../../src/signin/guard.ts';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems.map((p) => `${p.field}: ${p.message}`);
  }
  assert.fail('expected a ConfigError');
}

describe('signin: session cookie sealing', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);

  it('opens what it sealed, for the same cookie name only', () => {
    const s = new Sealer([k1]);
    const v = s.seal('sess', '{"sub":"alice"}');
    assert.match(v, /^[A-Za-z0-9_-]+$/);
    assert.equal(s.open('sess', v), '{"sub":"alice"}');
    assert.equal(s.open('sess_state', v), undefined, 'the cookie name is authenticated');
  });

  it('refuses every single-character change and truncation', () => {
    const s = new Sealer([k1]);
    const v = s.seal('sess', 'payload');
    for (let i = 0; i < v.length; i++) {
      const c = v[i] === 'A' ? 'B' : 'A';
      assert.equal(s.open('sess', `${v.slice(0, i)}${c}${v.slice(i + 1)}`), undefined, `position ${i}`);
    }
    assert.equal(s.open('sess', v.slice(0, -2)), undefined);
    assert.equal(s.open('sess', ''), undefined);
    assert.equal(s.open('sess', 'not base64!'), undefined);
  });

  it('rotates: the first key seals, every key opens, a removed key no longer opens', () => {
    const old = new Sealer([k1]).seal('sess', 'x');
    const rotated = new Sealer([k2, k1]);
    assert.equal(rotated.open('sess', old), 'x');
    assert.equal(new Sealer([k1]).open('sess', rotated.seal('sess', 'y')), undefined, 'new cookies use k2');
    assert.equal(new Sealer([k2]).open('sess', old), undefined);
  });

  it('encrypts: the plaintext is not in the cookie and two seals differ', () => {
    const s = new Sealer([k1]);
    const a = s.seal('sess', 'secret-refresh-token');
    assert.notEqual(a, s.seal('sess', 'secret-refresh-token'));
    assert.ok(!Buffer.from(a, 'base64url').toString('latin1').includes('secret-refresh-token'));
  });

  it('reads key files: base64 or hex lines, comments; refuses short keys without echoing them', () => {
    const keys = parseKeyFile(`# newest first\n${k2.toString('base64')}\n\n${k1.toString('hex')}\n`);
    assert.ok(Array.isArray(keys));
    assert.deepEqual(
      keys.map((k) => Buffer.from(k).toString('hex')),
      [k2.toString('hex'), k1.toString('hex')],
    );
    const short = parseKeyFile('c2hvcnQta2V5');
    assert.equal(short, 'line 1 is 9 bytes, want 32 (openssl rand -base64 32)');
    assert.equal(
      parseKeyFile('# nothing\n'),
      'holds no key (one base64 key of 32 bytes per line, the first seals)',
    );
  });
});

describe('signin: return path after sign-in (no open redirect)', () => {
  it('keeps local paths with their query', () => {
    assert.equal(safeReturnPath('/app/page?x=1&y=/z'), '/app/page?x=1&y=/z');
    assert.equal(safeReturnPath('/'), '/');
  });
  for (const attack of [
    'https://evil.example/x',
    'http:evil.example',
    '//evil.example/x',
    '/\\evil.example/x',
    '\\\\evil.example',
    '/%2F/evil.example',
    '/%5Cevil.example',
    '/\t/evil.example',
    '/\r\n//evil.example',
    'javascript:alert(1)',
    '',
    `/${'a'.repeat(3000)}`,
  ])
    it(`sends ${JSON.stringify(attack.slice(0, 40))} to /`, () => {
      assert.equal(safeReturnPath(attack), '/');
    });
});

describe('signin: navigation and cross-site checks', () => {
  it('treats GET/HEAD accepting text/html as a navigation, XHR and POST not', () => {
    assert.equal(isNavigation('GET', { accept: 'text/html,application/xhtml+xml;q=0.9' }), true);
    assert.equal(isNavigation('HEAD', { accept: 'text/html' }), true);
    assert.equal(isNavigation('GET', { accept: 'application/json' }), false);
    assert.equal(isNavigation('GET', { accept: '*/*' }), false);
    assert.equal(isNavigation('GET', {}), false);
    assert.equal(isNavigation('POST', { accept: 'text/html' }), false);
    assert.equal(isNavigation('GET', { accept: 'text/htmlx' }), false);
  });

  const origin = 'https://app.example';
  it('lets safe methods through', () => {
    assert.equal(checkCsrf('GET', { origin: 'https://evil.example' }, origin, undefined), 'ok');
  });
  it('needs a same-origin Origin, else Referer, for unsafe methods', () => {
    assert.equal(checkCsrf('POST', { origin }, origin, undefined), 'ok');
    assert.equal(checkCsrf('POST', { origin: 'https://evil.example' }, origin, undefined), 'cross_site');
    assert.equal(
      checkCsrf('POST', { origin: 'https://app.example.evil.example' }, origin, undefined),
      'cross_site',
    );
    assert.equal(checkCsrf('POST', { origin: 'http://app.example' }, origin, undefined), 'cross_site');
    assert.equal(checkCsrf('DELETE', { origin: 'null' }, origin, undefined), 'cross_site');
    assert.equal(checkCsrf('POST', { referer: 'https://app.example/form' }, origin, undefined), 'ok');
    assert.equal(
      checkCsrf('POST', { referer: 'https://evil.example/app.example' }, origin, undefined),
      'cross_site',
    );
    assert.equal(checkCsrf('PUT', {}, origin, undefined), 'no_origin');
  });
  it('accepts the configured CSRF header instead', () => {
    assert.equal(checkCsrf('POST', { 'x-requested-with': 'fetch' }, origin, 'x-requested-with'), 'ok');
    assert.equal(checkCsrf('POST', { 'x-requested-with': '' }, origin, 'x-requested-with'), 'no_origin');
  });
  it('reads a cookie from joined Cookie headers (; and ,)', () => {
    assert.equal(readCookie('a=1; s=xyz', 's'), 'xyz');
    assert.equal(readCookie('a=1,s=xyz', 's'), 'xyz');
    assert.equal(readCookie('s=; s=2', 's'), '2');
    assert.equal(readCookie(undefined, 's'), undefined);
  });
});

describe('signin: login block configuration', () => {
  const key = randomBytes(32).toString('base64');
  const env = { CLIENT_SECRET: 'the-client-secret', KEYS: key };
  const doc = (login: string, provider = 'issuer: https://idp.example') => `
providers:
  idp: { ${provider} }
login:
${login}
rules:
  - { name: app, jwt: { providers: [idp] } }
`;
  const ok = `  provider: idp
  clientId: web
  clientSecret: { env: CLIENT_SECRET }
  sessionKeys: { env: KEYS }`;

  it('parses a login block with defaults; openid is always first in the scope', () => {
    const p = parsePolicy(doc(`${ok}\n  scopes: [email, openid]`), 'p.yaml', env);
    const l = p.rules[0]?.login;
    assert.ok(l);
    assert.deepEqual(l.scopes, ['openid', 'email']);
    assert.equal(l.redirectPath, '/oauth2/callback');
    assert.equal(l.cookie.name, 'authz_session');
    assert.equal(l.cookie.secure, true);
    assert.equal(l.cookie.sameSite, 'lax');
    assert.equal(p.logins.length, 1);
  });

  it('applies the Edge Stack preset: paths and cookie names', () => {
    const p = parsePolicy(doc(`${ok}\n  edgeStack: { name: my-filter, namespace: web }`), 'p.yaml', env);
    const l = p.logins[0];
    assert.equal(l?.redirectPath, '/.ambassador/oauth2/redirection-endpoint');
    assert.equal(l?.logoutPath, '/.ambassador/oauth2/logout');
    assert.equal(l?.cookie.name, 'ambassador_session.my-filter.web');
  });

  it('reports every problem with file and field, never the secret', () => {
    const msgs = problems(() =>
      parsePolicy(
        doc(
          `  provider: nope\n  clientSecret: { value: inline-secret }\n  sessionKeys: { env: MISSING }\n  cookie: { sameSite: none, secure: false }\n  redirectPath: relative`,
        ),
        'p.yaml',
        env,
      ),
    );
    assert.deepEqual(msgs, [
      "p.yaml: login.provider: unknown provider 'nope'",
      'p.yaml: login.clientId: required',
      'p.yaml: login.clientSecret: must be {file: path} or {env: NAME} (no inline secrets in the policy file)',
      'p.yaml: login.cookie.sameSite: none requires secure: true',
      'p.yaml: login.sessionKeys.env: environment variable MISSING is not set',
      "p.yaml: login.redirectPath: must be a path starting with '/' (no query, no '//')",
    ]);
    assert.ok(!msgs.join('\n').includes('inline-secret'));
  });

  it('needs a discovery provider and a rule that accepts its tokens', () => {
    const msgs = problems(() =>
      parsePolicy(
        `
providers:
  idp: { issuer: https://idp.example, jwksUri: https://idp.example/jwks }
  other: { issuer: https://other.example }
rules:
  - name: app
    jwt: { providers: [other] }
    login: { provider: idp, clientId: web, clientSecret: { env: CLIENT_SECRET }, sessionKeys: { env: KEYS } }
  - name: open
    public: true
    login: { provider: other, clientId: web, clientSecret: { env: CLIENT_SECRET }, sessionKeys: { env: KEYS }, cookie: { name: b }, redirectPath: /cb2, logoutPath: /out2 }
`,
        'p.yaml',
        env,
      ),
    );
    assert.deepEqual(msgs, [
      "p.yaml: rules[0].login.provider: provider 'idp' must use issuer discovery (no jwks, jwksUri, jwksFile or hmacSecret)",
      "p.yaml: rules[0].login.provider: provider 'idp' is not among the rule's jwt providers",
      'p.yaml: rules[1].login: needs a jwt requirement (the session stands in for its bearer token)',
    ]);
  });

  it('refuses a key file with a short key', () => {
    const msgs = problems(() => parsePolicy(doc(ok), 'p.yaml', { ...env, KEYS: 'c2hvcnQ=' }));
    assert.deepEqual(msgs, [
      'p.yaml: login.sessionKeys: line 1 is 5 bytes, want 32 (openssl rand -base64 32)',
    ]);
  });
});

describe('signin: Cookie headers joined by Envoy', () => {
  it('turns the `,` join of two Cookie headers into `; ` and leaves other commas alone', () => {
    assert.equal(joinCookies('s=abc,other=1; more=2'), 's=abc; other=1; more=2');
    assert.equal(joinCookies('s=abc, other=1'), 's=abc; other=1');
    assert.equal(joinCookies('list=a,b; x=1'), 'list=a,b; x=1');
  });
  it('lets removeCredentials keep the cookies that followed the session cookie', () => {
    assert.equal(cookieWithout(joinCookies('s=abc,other=1; more=2'), 's'), 'other=1; more=2');
  });
});
