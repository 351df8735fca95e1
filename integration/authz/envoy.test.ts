import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Stack, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { Issuer } from './issuer.ts';
import { writePolicy } from './policy.ts';

interface Echo {
  path: string;
  headers: Record<string, string>;
}

for (const mode of ['grpc', 'http'] as const) {
  describe(`authz through Envoy (${mode} mode)`, function () {
    const stack = new Stack(`authz-envoy-${mode}`).install();
    const issuer = new Issuer();
    let authz: ServiceHandle;
    let envoy: EnvoyHandle;
    let policyFile: string;

    before(async function () {
      this.timeout(60_000);
      await issuer.start();
      policyFile = writePolicy(stack.dir, issuer.issuer);
      authz = await stack.service('authz', {
        args: ['--policy-file', policyFile, '--http-path-prefix', '/extauth', '--policy-poll-ms', '200'],
      });
      const echo = await stack.echo();
      envoy = await stack.envoy({
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        AUTHZ_PATH_PREFIX: '/extauth',
        UPSTREAM_PORT: echo.port,
      });
      // The first tests need the issuer's keys: wait for them instead of racing the background fetch.
      await waitUntil(
        'issuer keys loaded',
        async () => (await authz.metric('authz_issuer_keys_loaded', { provider: 'main' })) === 1,
      );
    });
    after(() => issuer.stop());

    const get = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
      const res = await fetch(envoy.url(path), { method, headers });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text };
    };

    it('allows a valid token and sends identity headers upstream, stripping spoofed ones', async () => {
      const t = await issuer.token({ sub: 'alice' });
      const r = await get('/api/things?x=1', {
        authorization: `Bearer ${t}`,
        'x-user-id': 'mallory',
        'x-user-roles': 'admin',
      });
      assert.equal(r.status, 200, r.text);
      const echo = JSON.parse(r.text) as Echo;
      assert.equal(echo.path, '/api/things?x=1');
      assert.equal(echo.headers['x-user-id'], 'alice');
      assert.equal(echo.headers['x-user-roles'], undefined, 'a spoofed header without claim is removed');
    });

    it('sets nested claims as headers', async () => {
      const t = await issuer.token({ realm_access: { roles: ['a', 'b'] } });
      const r = await get('/api/x', { authorization: `Bearer ${t}` });
      assert.equal(r.status, 200);
      assert.equal((JSON.parse(r.text) as Echo).headers['x-user-roles'], 'a,b');
    });

    it('answers 401 with WWW-Authenticate and a JSON body for a missing or invalid token', async () => {
      const r = await get('/api/x');
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="extsvc"');
      assert.equal((JSON.parse(r.text) as { code: string }).code, 'missing_credentials');
      const expired = await issuer.token({ exp: Math.floor(Date.now() / 1000) - 3600 });
      const e = await get('/api/x', { authorization: `Bearer ${expired}` });
      assert.equal(e.status, 401);
      assert.match(e.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      assert.equal((JSON.parse(e.text) as { code: string }).code, 'token_expired');
      assert.ok(!e.text.includes(expired.split('.')[1] ?? '-'), 'the token is never echoed');
    });

    it('answers 403 insufficient_scope when a scope is missing', async () => {
      const r = await get('/admin/x', { authorization: `Bearer ${await issuer.token({ scope: 'read' })}` });
      assert.equal(r.status, 403);
      assert.match(r.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="admin"/);
      const ok = await get('/admin/x', {
        authorization: `Bearer ${await issuer.token({ scope: ['read', 'admin'] })}`,
      });
      assert.equal(ok.status, 200);
    });

    it('serves public paths, API keys, CORS preflights, and denies unmatched paths', async () => {
      assert.equal((await get('/public/a')).status, 200);
      assert.equal((await get('/elsewhere')).status, 403);
      const p = await get('/partner/x', { 'x-api-key': 'partner-key-1' });
      assert.equal(p.status, 200);
      assert.equal((JSON.parse(p.text) as Echo).headers['x-user-tenant'], 'acme');
      assert.equal((await get('/partner/x', { 'x-api-key': 'wrong' })).status, 401);
      const pre = await get(
        '/api/x',
        { origin: 'https://app.example', 'access-control-request-method': 'POST' },
        'OPTIONS',
      );
      assert.equal(pre.status, 200);
    });

    it('accepts every method', async () => {
      const t = await issuer.token();
      for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
        const r = await get('/api/m', { authorization: `Bearer ${t}` }, m);
        assert.equal(r.status, 200, `${m}: ${r.text}`);
      }
    });

    it('hot-reloads the policy and keeps the last good one on a bad reload', async () => {
      const original = readFileSync(policyFile, 'utf8');
      writeFileSync(policyFile, original.replace('pathPrefix: /public', 'pathPrefix: /open'));
      await waitUntil('reload', async () => (await get('/open/x')).status === 200, {
        timeoutMs: 5000,
        intervalMs: 100,
      });
      assert.equal((await get('/public/x')).status, 403);
      writeFileSync(policyFile, 'rules: [ { public: maybe } ]');
      await waitUntil(
        'failed reload counted',
        async () => (await authz.metric('authz_policy_reload_total', { result: 'error' })) >= 1,
        {
          timeoutMs: 5000,
          intervalMs: 100,
        },
      );
      assert.equal((await get('/open/x')).status, 200, 'the last good policy stays active');
      writeFileSync(policyFile, original);
      await waitUntil('restored', async () => (await get('/public/x')).status === 200, {
        timeoutMs: 5000,
        intervalMs: 100,
      });
    });

    it('exports decision, latency, JWKS and cache metrics', async () => {
      assert.ok(
        (await authz.metric('authz_decisions_total', { transport: mode, result: 'allow', rule: 'api' })) > 0,
      );
      assert.ok(
        (await authz.metric('authz_decisions_total', {
          transport: mode,
          result: 'deny',
          reason: 'token_expired',
        })) > 0,
      );
      assert.ok((await authz.metric('authz_check_duration_seconds_count', { transport: mode })) > 0);
      assert.ok((await authz.metric('authz_jwks_fetch_total', { issuer: issuer.issuer, result: 'ok' })) > 0);
      assert.ok((await authz.metric('authz_token_cache_total', { result: 'miss' })) > 0);
    });
  });
}
