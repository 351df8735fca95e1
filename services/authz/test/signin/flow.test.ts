import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '@extsvc/common/logger';
import { parsePolicy } from '../../src/policy.ts';
import { Signin, type SigninEvent } from '../../src/signin/flow.ts';

describe('signin: endpoints without a browser (loopback discovery)', () => {
  let server: Server;
  let issuer = '';
  before(async () => {
    server = createServer((req, res) => {
      const doc = JSON.stringify({
        issuer,
        authorization_endpoint: `${issuer}/auth`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        end_session_endpoint: `${issuer}/logout`,
      });
      res.writeHead(req.url === '/.well-known/openid-configuration' ? 200 : 404, {
        'content-type': 'application/json',
      });
      res.end(doc);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const setup = (login: string) => {
    const env = { SECRET: 'the-client-secret', KEYS: randomBytes(32).toString('base64') };
    const policy = parsePolicy(
      `providers: { idp: { issuer: ${issuer} } }
login: { provider: idp, clientId: web, clientSecret: { env: SECRET }, sessionKeys: { env: KEYS }, ${login} }
rules: [ { name: app, jwt: { providers: [idp] } } ]`,
      'p.yaml',
      env,
    );
    const events: SigninEvent[] = [];
    const signin = new Signin({
      now: Date.now,
      logger: createLogger({ service: 'authz', level: 'silent' }),
      providers: policy.providers,
      verifyIdToken: () => Promise.resolve({ kind: 'invalid', reason: 'bad_signature' }),
      onEvent: (e) => events.push(e),
    });
    const l = policy.logins[0];
    assert.ok(l);
    return { signin, l, events };
  };
  const req = (method: string, path: string, headers: Record<string, string> = {}) => ({
    method,
    host: 'app.example',
    path,
    headers: { 'x-forwarded-proto': 'https', ...headers },
  });

  it('Edge Stack preset: POST logout from the same origin clears the session and returns via post-logout-redirect', async () => {
    const { signin, l, events } = setup('edgeStack: { name: f, namespace: ns }, postLogoutRedirect: /bye');
    assert.ok(signin.isEndpoint(l, '/.ambassador/oauth2/redirection-endpoint'));
    assert.ok(signin.isEndpoint(l, '/.ambassador/oauth2/post-logout-redirect'));
    const out = await signin.endpoint(
      l,
      req('POST', '/.ambassador/oauth2/logout', { origin: 'https://app.example' }),
      '/.ambassador/oauth2/logout',
    );
    assert.equal(out.status, 302);
    const loc = new URL(out.headers.find(([k]) => k === 'location')?.[1] ?? '');
    assert.equal(`${loc.origin}${loc.pathname}`, `${issuer}/logout`);
    assert.equal(
      loc.searchParams.get('post_logout_redirect_uri'),
      'https://app.example/.ambassador/oauth2/post-logout-redirect',
    );
    assert.ok(out.headers.some(([k, v]) => k === 'set-cookie' && v.startsWith('ambassador_session.f.ns=;')));
    const back = await signin.endpoint(
      l,
      req('GET', '/.ambassador/oauth2/post-logout-redirect'),
      '/.ambassador/oauth2/post-logout-redirect',
    );
    assert.deepEqual(
      back.headers.find(([k]) => k === 'location'),
      ['location', 'https://app.example/bye'],
    );
    assert.deepEqual(
      events.map((e) => e.kind),
      ['logout'],
    );
  });

  it('refuses a cross-site logout and answers a GET logout 405 with a page that POSTs', async () => {
    const { signin, l, events } = setup('edgeStack: { name: f, namespace: ns }');
    const cross = await signin.endpoint(
      l,
      req('POST', '/.ambassador/oauth2/logout', { origin: 'https://evil.example' }),
      '/.ambassador/oauth2/logout',
    );
    assert.equal(cross.status, 403);
    const get = await signin.endpoint(
      l,
      req('GET', '/.ambassador/oauth2/logout'),
      '/.ambassador/oauth2/logout',
    );
    assert.equal(get.status, 405);
    assert.match(get.body, /<form method="post" action="\/\.ambassador\/oauth2\/logout">/);
    assert.deepEqual(
      events.map((e) => (e.kind === 'failure' ? e.reason : e.kind)),
      ['csrf'],
    );
  });

  it('sends a navigation to the authorization endpoint with PKCE S256, state, nonce and openid', async () => {
    const { signin, l } = setup('scopes: [email]');
    const out = await signin.startLogin(l, req('GET', '/app?x=1', { accept: 'text/html' }), false);
    assert.equal(out.status, 302);
    const loc = new URL(out.headers.find(([k]) => k === 'location')?.[1] ?? '');
    assert.equal(loc.searchParams.get('redirect_uri'), 'https://app.example/oauth2/callback');
    assert.equal(loc.searchParams.get('scope'), 'openid email');
    assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
    assert.match(loc.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    const cookie = out.headers.find(([k]) => k === 'set-cookie')?.[1] ?? '';
    assert.match(
      cookie,
      /^authz_session_state=[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Lax; Secure; Max-Age=600$/,
    );
    assert.ok(!cookie.includes(loc.searchParams.get('state') ?? '-'), 'the state is sealed, not readable');
  });
});
