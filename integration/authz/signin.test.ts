import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchBrowser } from '../harness/browser.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { Sealer } from '../../services/authz/src/signin/seal.ts';
import { TestIdp } from './signin-idp.ts';

interface Echo {
  path: string;
  headers: Record<string, string>;
}

const CLIENT_SECRET = `client-secret-${randomBytes(12).toString('hex')}`;
const SESSION_KEY = randomBytes(32);
const COOKIE = 'app_session';
const LOGIN = 'login';

/** Writes the sign-in policy: every path needs a session or a bearer token of the IdP. */
function writeSigninPolicy(dir: string, issuer: string): string {
  writeFileSync(join(dir, 'client-secret'), `${CLIENT_SECRET}\n`);
  writeFileSync(join(dir, 'session-keys'), `# newest first\n${SESSION_KEY.toString('base64')}\n`);
  const file = join(dir, 'policy.yaml');
  writeFileSync(
    file,
    `realm: extsvc
providers:
  idp:
    issuer: ${issuer}
    audiences: [api]
login:
  provider: idp
  clientId: web
  clientSecret: { file: client-secret }
  scopes: [email, profile, offline_access]
  cookie: { name: ${COOKIE}, secure: false }
  sessionKeys: { file: session-keys }
  refreshBefore: 58s
  csrfHeader: x-requested-with
  postLogoutRedirect: /public/bye
identity:
  headers: { x-user-id: '{{ sub }}', x-user-email: '{{ email }}' }
  removeCredentials: true
rules:
  - { name: public, match: { pathPrefix: /public }, public: true, login: false }
  - { name: app, match: { pathPrefix: / }, jwt: { providers: [idp] } }
`,
  );
  return file;
}

for (const mode of ['grpc', 'http'] as const) {
  describe(`browser sign-in through Envoy (${mode} mode)`, function () {
    const stack = new Stack(`authz-signin-${mode}`).install();
    let idp: TestIdp;
    let authz: ServiceHandle;
    let browser: Browser;
    let closeBrowser: () => Promise<void>;
    let base: string;
    const callbacks: string[] = [];

    before(async function () {
      this.timeout(90_000);
      const envoyPort = await freePort();
      base = `http://localhost:${envoyPort}`;
      idp = new TestIdp({
        clientId: 'web',
        clientSecret: CLIENT_SECRET,
        redirectUris: [`${base}/oauth2/callback`],
        postLogoutRedirectUris: [`${base}/public/bye`],
        // 60 s tokens with refreshBefore 58 s: a session is due for refresh 2 s after sign-in.
        tokenTtlSec: 60,
      });
      await idp.start();
      const policyFile = writeSigninPolicy(stack.dir, idp.issuer);
      authz = await stack.service('authz', {
        args: ['--policy-file', policyFile, '--http-path-prefix', '/extauth', '--log-level', 'debug'],
      });
      const echo = await stack.echo();
      await stack.envoy({
        HTTP_PORT: envoyPort,
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        AUTHZ_PATH_PREFIX: '/extauth',
        AUTHZ_TIMEOUT: '5s',
        UPSTREAM_PORT: echo.port,
      });
      await waitUntil(
        'issuer keys loaded',
        async () => (await authz.metric('authz_issuer_keys_loaded', { provider: 'idp' })) === 1,
      );
      const b = await launchBrowser();
      browser = b.browser;
      closeBrowser = () => b.close();
    });
    after(async () => {
      await closeBrowser?.();
      await idp?.stop();
    });

    const newContext = async (): Promise<{ ctx: BrowserContext; page: Page }> => {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      page.on('request', (r) => {
        if (r.url().startsWith(`${base}/oauth2/callback`)) callbacks.push(r.url());
      });
      return { ctx, page };
    };

    /** Fills the IdP's login form and returns the echo the upstream answered. */
    const signIn = async (page: Page, path: string): Promise<Echo> => {
      await page.goto(`${base}${path}`);
      await page.waitForSelector('input[name="login"]');
      assert.ok(page.url().startsWith(idp.issuer), `sent to the IdP, at ${page.url()}`);
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'any');
      await Promise.all([
        page.waitForURL((u) => u.toString().startsWith(base)),
        page.click('button[type="submit"]'),
      ]);
      await page.waitForLoadState('load');
      return JSON.parse((await page.textContent('body')) ?? '{}') as Echo;
    };

    const sessionCookie = async (ctx: BrowserContext): Promise<string | undefined> =>
      (await ctx.cookies(base)).find((c) => c.name === COOKIE)?.value;

    const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
      fetch(`${base}${path}`, { method, headers, redirect: 'manual' });

    it('signs a browser in through the IdP and sends identity headers upstream, without the session cookie', async function () {
      this.timeout(30_000);
      const { ctx, page } = await newContext();
      const echo = await signIn(page, '/app/page?x=1');
      assert.equal(echo.path, '/app/page?x=1', 'back at the original URL');
      assert.equal(echo.headers['x-user-id'], 'alice');
      assert.equal(echo.headers['x-user-email'], 'alice@example.test');
      assert.ok(
        !(echo.headers['cookie'] ?? '').includes(COOKIE),
        'the session cookie never reaches the upstream',
      );
      const cookie = await sessionCookie(ctx);
      assert.ok(cookie, 'a session cookie was set');
      // The same session works for plain requests (a second replica with the same keys would read it too).
      const r = await get('/api/data', { cookie: `${COOKIE}=${cookie}`, accept: 'application/json' });
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as Echo).headers['x-user-id'], 'alice');
      assert.equal(await authz.metric('authz_login_sessions_total', { login: LOGIN }), 1);
      await ctx.close();
    });

    it('answers XHR/API requests without a session 401 and navigations 302 to the IdP with PKCE, state and nonce', async () => {
      const api = await get('/api/data', { accept: 'application/json' });
      assert.equal(api.status, 401);
      assert.match(api.headers.get('www-authenticate') ?? '', /^Bearer/);
      const nav = await get('/app', { accept: 'text/html,application/xhtml+xml' });
      assert.equal(nav.status, 302);
      const loc = new URL(nav.headers.get('location') ?? '');
      assert.equal(loc.origin, idp.issuer);
      assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
      assert.ok((loc.searchParams.get('state') ?? '').length >= 32);
      assert.ok((loc.searchParams.get('nonce') ?? '').length >= 32);
      assert.equal(loc.searchParams.get('redirect_uri'), `${base}/oauth2/callback`);
      assert.match(loc.searchParams.get('scope') ?? '', /^openid /);
      const setCookie = nav.headers.getSetCookie().join('\n');
      assert.match(setCookie, new RegExp(`${COOKIE}_state=[A-Za-z0-9_-]+; Path=/; HttpOnly; SameSite=Lax`));
    });

    it('refuses a replayed authorization code, a state mismatch and a wrong issuer at the callback', async function () {
      this.timeout(30_000);
      const used = callbacks.at(-1);
      assert.ok(used, 'a callback URL was seen');
      const start = await get('/app', { accept: 'text/html' });
      const state = /app_session_state=([^;]+)/.exec(start.headers.getSetCookie().join('\n'))?.[1] ?? '';
      const loc = new URL(start.headers.get('location') ?? '');
      const code = new URL(used).searchParams.get('code') ?? '';
      const cb = async (params: Record<string, string>): Promise<{ status: number; reason: string }> => {
        const r = await get(`/oauth2/callback?${new URLSearchParams(params).toString()}`, {
          cookie: `${COOKIE}_state=${state}`,
          accept: 'text/html',
        });
        const body = (await r.json()) as { reason: string };
        return { status: r.status, reason: body.reason };
      };
      const s = loc.searchParams.get('state') ?? '';
      assert.deepEqual(await cb({ code, state: 'other-state', iss: idp.issuer }), {
        status: 403,
        reason: 'state_mismatch',
      });
      assert.deepEqual(await cb({ code, state: s, iss: 'http://evil.example' }), {
        status: 403,
        reason: 'wrong_issuer',
      });
      assert.deepEqual(await cb({ code, state: s, iss: idp.issuer }), {
        status: 403,
        reason: 'code_rejected',
      });
      const noState = await get(`/oauth2/callback?code=${code}&state=${s}`, { accept: 'text/html' });
      assert.equal(noState.status, 403);
      for (const reason of ['state_mismatch', 'wrong_issuer', 'code_rejected', 'state_missing'])
        assert.ok((await authz.metric('authz_login_failures_total', { login: LOGIN, reason })) >= 1, reason);
    });

    it('sends a tampered or expired session back to sign in and refuses a cross-site POST', async function () {
      this.timeout(30_000);
      const sealer = new Sealer([SESSION_KEY]);
      const now = Math.floor(Date.now() / 1000);
      const expired = sealer.seal(
        COOKIE,
        JSON.stringify({ p: 'idp', c: { sub: 'alice' }, e: now - 10, m: now - 5 }),
      );
      const valid = sealer.seal(
        COOKIE,
        JSON.stringify({ p: 'idp', c: { sub: 'bob' }, e: now + 600, m: now + 3600 }),
      );
      const tampered = `${valid.slice(0, 20)}${valid[20] === 'A' ? 'B' : 'A'}${valid.slice(21)}`;
      for (const [name, value] of [
        ['expired', expired],
        ['tampered', tampered],
      ] as const) {
        const r = await get('/app', { cookie: `${COOKIE}=${value}`, accept: 'text/html' });
        assert.equal(r.status, 302, name);
        assert.ok((r.headers.get('location') ?? '').startsWith(idp.issuer), name);
        if (mode === 'grpc')
          assert.match(
            r.headers.getSetCookie().join('\n'),
            new RegExp(`${COOKIE}=; Path=/`),
            `${name}: cleared`,
          );
      }
      assert.ok(
        (await authz.metric('authz_login_failures_total', { login: LOGIN, reason: 'session_expired' })) >= 1,
      );
      assert.ok(
        (await authz.metric('authz_login_failures_total', { login: LOGIN, reason: 'session_invalid' })) >= 1,
      );
      const ok = await get('/app', { cookie: `${COOKIE}=${valid}`, accept: 'text/html' });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as Echo).headers['x-user-id'], 'bob');
      const cross = await get(
        '/app/delete',
        { cookie: `${COOKIE}=${valid}`, origin: 'https://evil.example' },
        'POST',
      );
      assert.equal(cross.status, 403);
      assert.equal(((await cross.json()) as { code: string }).code, 'csrf');
      const same = await get('/app/delete', { cookie: `${COOKIE}=${valid}`, origin: base }, 'POST');
      assert.equal(same.status, 200);
      const header = await get(
        '/app/delete',
        { cookie: `${COOKIE}=${valid}`, 'x-requested-with': 'fetch' },
        'POST',
      );
      // HTTP mode: the CSRF header reaches authz only when Envoy's allowed_headers lists it (this template does not).
      assert.equal(header.status, mode === 'grpc' ? 200 : 403);
    });

    it('reads the session from the first of two HTTP/1 Cookie headers (joined per RFC 6265)', async () => {
      const sealer = new Sealer([SESSION_KEY]);
      const now = Math.floor(Date.now() / 1000);
      const valid = sealer.seal(
        COOKIE,
        JSON.stringify({ p: 'idp', c: { sub: 'carol' }, e: now + 600, m: now + 3600 }),
      );
      const port = Number(new URL(base).port);
      const raw = await new Promise<string>((resolve, reject) => {
        const sock = connect(port, '127.0.0.1');
        let out = '';
        sock.on('data', (d: Buffer) => (out += d.toString('utf8')));
        sock.on('end', () => resolve(out));
        sock.on('error', reject);
        sock.write(
          `GET /app/two HTTP/1.1\r\nHost: ${new URL(base).host}\r\nAccept: application/json\r\n` +
            `Cookie: ${COOKIE}=${valid}\r\nCookie: other=1; more=2\r\nConnection: close\r\n\r\n`,
        );
      });
      assert.match(raw, /^HTTP\/1\.1 200/, raw.slice(0, 200));
      const echo = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Echo;
      assert.equal(echo.headers['x-user-id'], 'carol');
      // removeCredentials: the session cookie is gone upstream, the others stay (gRPC). HTTP mode drops the
      // whole Cookie header unless `cookie` is an allowed upstream header (the README says so).
      if (mode === 'grpc') assert.equal(echo.headers['cookie'], 'other=1; more=2');
      else assert.equal(echo.headers['cookie'], undefined);
    });

    it('never forwards the session or state cookie upstream, on a public `login: false` rule too', async () => {
      const res = await get('/public/cookies', {
        accept: 'application/json',
        cookie: `pref=1; ${COOKIE}=sealed-session; ${COOKIE}_state=sealed-state; lang=en`,
      });
      assert.equal(res.status, 200);
      const echo = (await res.json()) as Echo;
      // gRPC mode rewrites the Cookie header; HTTP mode removes it whole unless `cookie` is an allowed
      // upstream header of Envoy's http_service (the README says so).
      if (mode === 'grpc') assert.equal(echo.headers['cookie'], 'pref=1; lang=en');
      else assert.equal(echo.headers['cookie'], undefined);
    });

    it('never sends the browser to another host after sign-in (//evil, /\\evil)', async function () {
      this.timeout(30_000);
      const { ctx, page } = await newContext();
      // Chromium and Envoy normalise these targets before authz sees them; wherever they end up, the
      // browser stays on this host (unit tests cover the targets authz itself refuses).
      const echo = await signIn(page, '//evil.example/x');
      assert.equal(new URL(page.url()).host, new URL(base).host);
      assert.ok(!echo.path.startsWith('//'), echo.path);
      await ctx.clearCookies();
      const echo2 = await signIn(page, '/\\evil.example/y');
      assert.equal(new URL(page.url()).host, new URL(base).host);
      assert.ok(!echo2.path.startsWith('//') && !echo2.path.startsWith('/\\'), echo2.path);
      await ctx.close();
    });

    it('refreshes the session with the refresh token before the tokens expire', async function () {
      this.timeout(40_000);
      const { ctx, page } = await newContext();
      await signIn(page, '/app/r');
      const first = await sessionCookie(ctx);
      const before = await authz.metric('authz_login_refresh_total', { login: LOGIN, result: 'ok' });
      // Due 2 s after sign-in: reload until authz refreshed it (a positive signal, not a sleep).
      await waitUntil(
        'session refreshed',
        async () => {
          await page.goto(`${base}/app/r`);
          return (await authz.metric('authz_login_refresh_total', { login: LOGIN, result: 'ok' })) > before;
        },
        { timeoutMs: 20_000, intervalMs: 500 },
      );
      await page.goto(`${base}/app/r2`);
      const echo = JSON.parse((await page.textContent('body')) ?? '{}') as Echo;
      assert.equal(echo.headers['x-user-id'], 'alice');
      assert.notEqual(await sessionCookie(ctx), first, 'the browser got the refreshed cookie');
      await ctx.close();
    });

    it('logs out by a same-origin POST (a GET gets its form): clears the session and signs out at the IdP (RP-initiated logout)', async function () {
      this.timeout(30_000);
      const { ctx, page } = await newContext();
      await signIn(page, '/app/l');
      // A GET (a link, or a cross-site <img>) does not log out: it gets a page whose button POSTs.
      const page405 = await page.goto(`${base}/oauth2/logout`);
      assert.equal(page405?.status(), 405);
      assert.ok(await sessionCookie(ctx), 'a GET leaves the session alone');
      await Promise.all([
        page.waitForURL((u) => u.toString().startsWith(idp.issuer)),
        page.click('button[type="submit"]'),
      ]);
      // oidc-provider asks to confirm the logout.
      await page.waitForSelector('button[autofocus], button[type="submit"]');
      await Promise.all([
        page.waitForURL(`${base}/public/bye`),
        page.click('button[autofocus], button[type="submit"]'),
      ]);
      assert.equal(await sessionCookie(ctx), undefined, 'the session cookie is gone');
      assert.ok((await authz.metric('authz_login_logouts_total', { login: LOGIN })) >= 1);
      await ctx.close();
    });

    it('fails the callback cleanly when the IdP is down, and keeps every secret out of logs, /config, /diag and /metrics', async function () {
      this.timeout(30_000);
      const { ctx, page } = await newContext();
      await page.goto(`${base}/app/down`);
      await page.waitForSelector('input[name="login"]');
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'any');
      idp.downAfterRedirectTo(`${base}/oauth2/callback`);
      await Promise.all([
        page.waitForURL((u) => u.toString().startsWith(base)),
        page.click('button[type="submit"]'),
      ]);
      const text = (await page.textContent('body')) ?? '';
      assert.equal((JSON.parse(text || '{}') as { reason?: string }).reason, 'idp_unavailable', text);
      await ctx.close();
      await idp.start();

      const diag = (await authz.admin('/diag')).body;
      assert.match(diag, /Browser sign-in/);
      assert.match(diag, /idp_unavailable: 1/);
      const pages = [
        diag,
        (await authz.admin('/diag.json')).body,
        (await authz.admin('/config')).body,
        await authz.metrics(),
        authz.proc.logs(),
      ].join('\n');
      const secrets = [
        CLIENT_SECRET,
        SESSION_KEY.toString('base64'),
        SESSION_KEY.toString('base64url'),
        ...callbacks.map((u) => new URL(u).searchParams.get('code') ?? '-'),
      ];
      for (const s of secrets) assert.ok(!pages.includes(s), 'a secret leaked');
      assert.ok(!readFileSync(join(stack.dir, 'policy.yaml'), 'utf8').includes(CLIENT_SECRET));
    });
  });
}
