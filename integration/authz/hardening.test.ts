import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Settings } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { AuthzClient } from './client.ts';
import { Issuer } from './issuer.ts';
import { writePolicy } from './policy.ts';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { freePort, waitUntil } from '../harness/proc.ts';
import { ROOT, Stack, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';

interface Echo {
  path: string;
  headers: Record<string, string | undefined>;
}

/** Runs authz expecting a configuration error: exit 2 and one line on stderr. */
function configError(args: readonly string[]): string {
  const r = spawnSync(process.execPath, [join(ROOT, 'services/authz/src/main.ts'), ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, LOG_LEVEL: 'silent', ADMIN_PORT: '0', GRPC_PORT: '0', HTTP_PORT: '0' },
  });
  assert.equal(r.status, 2, `expected exit 2, got ${String(r.status)}: ${r.stderr}`);
  return r.stderr;
}

const API_KEY_POLICY = `realm: hardening
apiKeys:
  partners:
    keys: [ { name: acme, value: partner-key-1, claims: { tenant: acme } } ]
identity:
  headers: { x-user-id: '{{ sub }}', x-tenant: '{{ tenant }}' }
rules:
  - { name: partner, match: { pathPrefix: /partner }, apiKey: partners }
`;

describe('authz hardening: identity headers in HTTP mode (issue 18 item 3)', function () {
  const stack = new Stack('authz-hardening-http').install();
  let policy: string;
  let echoPort: number;

  before(async () => {
    policy = join(stack.dir, 'tenant.yaml');
    writeFileSync(policy, API_KEY_POLICY);
    echoPort = (await stack.echo()).port;
  });

  it('refuses at start a policy setting a header the HTTP-mode Envoy does not deliver (x-tenant)', () => {
    const err = configError(['--policy-file', policy]);
    assert.equal(err.trim().split('\n').length, 1, err);
    assert.match(err, /identity\.headers\.x-tenant: HTTP mode cannot deliver 'x-tenant' upstream/);
    assert.match(err, /--http-upstream-headers \(HTTP_UPSTREAM_HEADERS\)/);
  });

  it('through Envoy http_service: a client-sent identity header never reaches the upstream, authz value wins', async function () {
    this.timeout(60_000);
    // The same policy with the tenant in the x-user-* family the shipped template delivers.
    const deliverable = join(stack.dir, 'user-tenant.yaml');
    writeFileSync(deliverable, API_KEY_POLICY.replace('x-tenant:', 'x-user-tenant:'));
    const authz = await stack.service('authz', {
      args: ['--policy-file', deliverable, '--http-path-prefix', '/extauth'],
      env: { LOG_LEVEL: 'warn' },
    });
    const envoy = await stack.envoy({
      AUTHZ_GRPC: false,
      AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
      AUTHZ_PATH_PREFIX: '/extauth',
      UPSTREAM_PORT: echoPort,
    });
    const res = await fetch(envoy.url('/partner/x'), {
      headers: { 'x-api-key': 'partner-key-1', 'x-user-tenant': 'evil', 'x-tenant': 'evil' },
    });
    assert.equal(res.status, 200);
    const echo = (await res.json()) as Echo;
    assert.equal(echo.headers['x-user-tenant'], 'acme');
    assert.equal(echo.headers['x-user-id'], 'acme');
    await stopEnvoy(envoy);
  });

  it('gRPC only (--http-enabled=false): the policy is accepted and authz overwrites the client x-tenant', async function () {
    this.timeout(60_000);
    const authz = await stack.service('authz', {
      args: ['--policy-file', policy, '--http-enabled=false'],
      env: { LOG_LEVEL: 'warn' },
    });
    const envoy = await stack.envoy({ AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0, UPSTREAM_PORT: echoPort });
    const res = await fetch(envoy.url('/partner/x'), {
      headers: { 'x-api-key': 'partner-key-1', 'x-tenant': 'evil' },
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as Echo).headers['x-tenant'], 'acme');
    await assert.rejects(fetch(`http://127.0.0.1:${authz.ports.http}/partner/x`), 'no HTTP listener');
    await stopEnvoy(envoy);
  });

  it('declared deliverable with --http-upstream-headers: the HTTP answer sets x-tenant', async function () {
    this.timeout(30_000);
    const authz: ServiceHandle = await stack.service('authz', {
      args: ['--policy-file', policy, '--http-upstream-headers', 'x-user-*,x-tenant'],
      env: { LOG_LEVEL: 'warn' },
    });
    const res = await fetch(`http://127.0.0.1:${authz.ports.http}/partner/x`, {
      headers: { 'x-api-key': 'partner-key-1', 'x-tenant': 'evil' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tenant'), 'acme');
    await authz.stop();
  });
});

/** A GET with the request target exactly as given (fetch would normalise dot segments). */
function rawGet(
  port: number,
  target: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path: target, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    r.end();
  });
}

const PATH_POLICY = `realm: hardening
rules:
  - { name: no-admin, match: { pathPrefix: /public/admin }, deny: true }
  - { name: public, match: { pathPrefix: /public }, public: true }
  - { name: api, match: { pathPrefix: /api }, apiKey: { sets: [partners] } }
apiKeys:
  partners:
    keys: [ { name: acme, value: partner-key-1 } ]
`;

for (const mode of ['grpc', 'http'] as const)
  describe(`authz hardening: ';' path parameters through Envoy, ${mode} mode (issue 18 item 4)`, function () {
    const stack = new Stack(`authz-hardening-path-${mode}`).install();
    let envoy: EnvoyHandle;

    before(async function () {
      this.timeout(60_000);
      const policy = join(stack.dir, 'path.yaml');
      writeFileSync(policy, PATH_POLICY);
      const authz = await stack.service('authz', {
        args: ['--policy-file', policy, '--http-path-prefix', '/extauth'],
        env: { LOG_LEVEL: 'warn' },
      });
      envoy = await stack.envoy({
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        AUTHZ_PATH_PREFIX: '/extauth',
        UPSTREAM_PORT: (await stack.echo()).port,
      });
    });

    it('a dot segment with a path parameter neither reaches a protected path nor dodges a deny rule', async () => {
      // Percent-encoded: Envoy decodes %2e but keeps `..;` as a segment, authz refuses it.
      for (const target of ['/public/%2e%2e;/api/x', '/public/%2e;/admin']) {
        const r = await rawGet(envoy.httpPort, target);
        assert.equal(r.status, 400, `${target}: ${r.status} ${r.body}`);
        assert.equal((JSON.parse(r.body) as { code: string }).code, 'ambiguous_path');
      }
      // Literal: Envoy's own normalisation may already resolve it; either way never the public rule.
      for (const target of ['/public/..;/api/x', '/public/.;x/admin']) {
        const r = await rawGet(envoy.httpPort, target);
        assert.ok([400, 401, 403].includes(r.status), `${target}: ${r.status} ${r.body}`);
      }
    });

    it('path parameters are removed before matching (servlet semantics)', async () => {
      assert.equal((await rawGet(envoy.httpPort, '/public/admin;jsessionid=1')).status, 403);
      assert.equal((await rawGet(envoy.httpPort, '/api;x=1/y')).status, 401);
      assert.equal(
        (await rawGet(envoy.httpPort, '/api;x=1/y', { 'x-api-key': 'partner-key-1' })).status,
        200,
      );
      const ok = await rawGet(envoy.httpPort, '/public/page;lang=en');
      assert.equal(ok.status, 200);
      assert.equal(
        (JSON.parse(ok.body) as Echo).path,
        '/public/page;lang=en',
        'the upstream gets the path as sent',
      );
    });
  });

const HMAC = 'an-hmac-secret-that-is-32-bytes-long!';

for (const mode of ['grpc', 'http'] as const)
  describe(`authz hardening: credentials, fail-open and reserved prefixes, ${mode} mode (issue 18 item 9)`, function () {
    const stack = new Stack(`authz-hardening-cred-${mode}`).install();
    let envoy: EnvoyHandle;
    const sources =
      mode === 'grpc' ? '[ { cookie: session }, { query: access_token } ]' : '[ { cookie: session } ]';

    before(async function () {
      this.timeout(60_000);
      const policy = join(stack.dir, 'cred.yaml');
      writeFileSync(
        policy,
        `realm: hardening
providers:
  legacy: { issuer: legacy, hmacSecret: { value: ${HMAC} }, tokenSources: ${sources} }
  down:
    issuer: https://down.example
    jwksUri: http://127.0.0.1:${await freePort()}/jwks
    keyCache: { allowHttp: true, timeout: 300ms, failedRetry: 100ms }
reservedHeaderPrefixes: [x-auth-]
identity: { removeCredentials: true, headers: { x-user-id: '{{ sub }}' } }
rules:
  - { name: down, match: { pathPrefix: /down }, jwt: { providers: [down] } }
  - { name: legacy, match: { pathPrefix: /legacy }, jwt: { providers: [legacy] } }
  - { name: public, match: { pathPrefix: /public }, public: true }
`,
      );
      const authz = await stack.service('authz', {
        // A query-string token can only be removed over gRPC: HTTP mode refuses that policy.
        args: [
          '--policy-file',
          policy,
          '--http-path-prefix',
          '/extauth',
          `--http-enabled=${mode === 'http'}`,
        ],
        env: { LOG_LEVEL: 'warn' },
      });
      envoy = await stack.envoy({
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_FAILURE_MODE_ALLOW: true,
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        AUTHZ_PATH_PREFIX: '/extauth',
        UPSTREAM_PORT: (await stack.echo()).port,
      });
    });

    it('failure_mode_allow: a forged token naming an issuer whose keys never loaded is denied, not let through', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const forged = await new SignJWT({ iss: 'https://down.example', sub: 'root' })
        .setProtectedHeader({ alg: 'ES256', kid: 'x' })
        .setExpirationTime('5m')
        .sign(privateKey);
      const r = await rawGet(envoy.httpPort, '/down/x', { authorization: `Bearer ${forged}` });
      assert.equal(r.status, 401, r.body);
      assert.equal((JSON.parse(r.body) as { code: string }).code, 'keys_unavailable');
    });

    it('removeCredentials: a cookie token never reaches the upstream (other cookies stay in gRPC mode)', async () => {
      const tok = await hmacToken();
      const r = await rawGet(envoy.httpPort, '/legacy/x', { cookie: `a=1; session=${tok}; b=2` });
      assert.equal(r.status, 200, r.body);
      const echo = JSON.parse(r.body) as Echo;
      assert.equal(echo.headers['x-user-id'], 'bob');
      // HTTP mode: Envoy does not copy `cookie` from the answer, so the whole header goes (README).
      assert.equal(echo.headers['cookie'], mode === 'grpc' ? 'a=1; b=2' : undefined);
    });

    if (mode === 'grpc')
      it('removeCredentials: a query-string token never reaches the upstream', async () => {
        const tok = await hmacToken();
        const r = await rawGet(envoy.httpPort, `/legacy/x?keep=1&access_token=${tok}`);
        assert.equal(r.status, 200, r.body);
        assert.equal((JSON.parse(r.body) as Echo).path, '/legacy/x?keep=1');
      });

    it('reservedHeaderPrefixes: client-sent x-auth-* headers are stripped', async () => {
      const r = await rawGet(envoy.httpPort, '/public/x', { 'x-auth-role': 'admin', 'x-auth-user': 'root' });
      assert.equal(r.status, 200, r.body);
      const echo = JSON.parse(r.body) as Echo;
      assert.equal(echo.headers['x-auth-role'], undefined);
      assert.equal(echo.headers['x-auth-user'], undefined);
    });
  });

describe('authz hardening: bounded Check requests (issue 18 item 11)', function () {
  const stack = new Stack('authz-hardening-bounds').install();
  let authz: ServiceHandle;
  let client: AuthzClient;

  before(async function () {
    this.timeout(30_000);
    const policy = join(stack.dir, 'bounds.yaml');
    writeFileSync(policy, PATH_POLICY);
    authz = await stack.service('authz', { args: ['--policy-file', policy], env: { LOG_LEVEL: 'warn' } });
    client = new AuthzClient(authz.ports.grpc ?? 0);
  });
  after(() => client.close());

  const many = (n: number): Record<string, string> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v']));

  it('denies a Check with more headers than any Envoy sends (431), not an RPC error', async () => {
    const r = await client.checkHttp(many(5000), '/public/x');
    assert.ok(r.ok, `RPC error ${r.ok ? '' : r.code}`);
    assert.equal(r.res.denied_response?.status?.code, 'RequestHeaderFieldsTooLarge');
    assert.equal(
      (JSON.parse(r.res.denied_response?.body ?? '{}') as { code: string }).code,
      'too_many_headers',
    );
    const ok = await client.checkHttp(many(50), '/public/x');
    assert.ok(ok.ok && ok.res.status?.code === 0, 'a normal request still passes');
  });

  it('denies too many context extensions (400)', async () => {
    const ctx = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, 'v']));
    const r = await client.checkHttp({}, '/public/x', 'GET', ctx);
    assert.ok(r.ok);
    assert.equal((JSON.parse(r.res.denied_response?.body ?? '{}') as { code: string }).code, 'bad_request');
  });

  it('refuses a CheckRequest above the receive limit at once (RESOURCE_EXHAUSTED) and caps concurrent streams', async () => {
    const big = await client.checkHttp({ 'x-big': 'a'.repeat(2 * 1024 * 1024) }, '/public/x');
    assert.deepEqual(big, { ok: false, code: 8 });
    const session = connect(`http://127.0.0.1:${authz.ports.grpc}`);
    try {
      const settings = await new Promise<Settings>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      assert.equal(settings.maxConcurrentStreams, 1000);
    } finally {
      session.close();
    }
  });

  it('HTTP mode: sees every header (no silent cut at 2000) and denies too many with 431', async () => {
    const headers = Object.entries(many(2500))
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = netConnect(authz.ports.http ?? 0, '127.0.0.1', () =>
        sock.end(`GET /public/x HTTP/1.1\r\nhost: a\r\n${headers}connection: close\r\n\r\n`),
      );
      let data = '';
      sock.on('data', (c: Buffer) => (data += c.toString()));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 431 /);
    assert.match(answer, /too_many_headers/);
  });
});

describe('authz: HTTP checks without the configured path prefix (issue 10 item 4)', function () {
  const stack = new Stack('authz-hardening-prefix').install();

  it('answers a clear deny, logs the expected prefix once, and counts it on /metrics and /diag', async function () {
    this.timeout(60_000);
    const policy = join(stack.dir, 'prefix.yaml');
    writeFileSync(policy, PATH_POLICY);
    const authz = await stack.service('authz', {
      args: ['--policy-file', policy, '--http-path-prefix', '/extauth'],
      env: { LOG_LEVEL: 'warn' },
    });
    // Envoy configured with another path_prefix than authz: every check arrives without /extauth.
    const envoy = await stack.envoy({
      AUTHZ_GRPC: false,
      AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
      AUTHZ_PATH_PREFIX: '/auth',
      UPSTREAM_PORT: (await stack.echo()).port,
    });
    for (let i = 0; i < 3; i++) {
      const r = await rawGet(envoy.httpPort, '/public/x?access_token=secret-in-query');
      assert.equal(r.status, 403, r.body);
      assert.equal((JSON.parse(r.body) as { code: string }).code, 'path_prefix_mismatch');
    }
    await waitUntil('the log line', async () => /path prefix '\/extauth'/.test(authz.proc.logs()));
    const lines = authz.proc
      .logs()
      .split('\n')
      .filter((l) => l.includes('without the path prefix'));
    assert.equal(lines.length, 1, 'logged once, not per request');
    assert.match(lines[0] ?? '', /"expectedPrefix":"\/extauth"/);
    assert.ok(!authz.proc.logs().includes('secret-in-query'));
    assert.equal(
      await authz.metric('authz_decisions_total', { transport: 'http', reason: 'path_prefix_mismatch' }),
      3,
    );
    const diag = await authz.admin('/diag.json');
    assert.match(diag.body, /HTTP checks without the prefix \(denied\)/);
    assert.match(diag.body, /3, last [^"]+ \(path began \/auth\)/);
    // With the prefix, the same request is decided by the policy.
    const direct = await fetch(`http://127.0.0.1:${authz.ports.http}/extauth/public/x`);
    assert.equal(direct.status, 200);
  });
});

describe('authz: providers whose keys were never obtained (issue 17 item 4)', function () {
  const stack = new Stack('authz-hardening-keys').install();
  const issuer = new Issuer();
  before(() => issuer.start());
  after(() => issuer.stop());

  interface Ready {
    status: string;
    components: Record<string, { ready: boolean; detail?: string }>;
  }

  it('shows on /readyz (not failing by default), in a metric and on /diag; --require-issuer-keys fails readiness until they load', async function () {
    this.timeout(60_000);
    issuer.mode.down = 'status';
    const policy = writePolicy(stack.dir, issuer.issuer);
    const relaxed = await stack.service('authz', {
      args: ['--policy-file', policy],
      env: { LOG_LEVEL: 'warn' },
    });
    await waitUntil(
      'a failed fetch',
      async () => (await relaxed.metric('authz_jwks_fetch_total', { result: 'error' })) >= 1,
    );
    const r = await relaxed.admin('/readyz');
    assert.equal(r.status, 200, r.body);
    const comp = (JSON.parse(r.body) as Ready).components['issuer-keys'];
    assert.equal(comp?.ready, true);
    assert.match(comp?.detail ?? '', /keys never obtained .*: main, huge, slow/);
    assert.equal(await relaxed.metric('authz_issuer_keys_loaded', { provider: 'main' }), 0);
    const diag = JSON.parse((await relaxed.admin('/diag.json')).body) as unknown;
    assert.match(JSON.stringify(diag), /"main","http:\/\/127\.0\.0\.1:\d+","discovery [^"]+","error"/);

    const strict = await stack.service('authz', {
      args: ['--policy-file', policy, '--require-issuer-keys'],
      env: { LOG_LEVEL: 'warn' },
      readyPath: '/healthz',
    });
    await waitUntil(
      'a failed fetch',
      async () => (await strict.metric('authz_jwks_fetch_total', { result: 'error' })) >= 1,
    );
    const down = await strict.admin('/readyz');
    assert.equal(down.status, 503);
    assert.equal((JSON.parse(down.body) as Ready).components['issuer-keys']?.ready, false);
    issuer.mode.down = false;
    // huge and slow never load; a strict deployment lists only providers it can reach.
    const reachable = join(stack.mkdir('reachable'), 'only-main.yaml');
    writeFileSync(
      reachable,
      `providers:\n  main: { issuer: ${issuer.issuer}, keyCache: { failedRetry: 200ms } }\nrules: [ { jwt: true } ]\n`,
    );
    const recovering = await stack.service('authz', {
      args: ['--policy-file', reachable, '--require-issuer-keys'],
      env: { LOG_LEVEL: 'warn' },
      readyPath: '/healthz',
    });
    await waitUntil(
      'ready once the keys are loaded',
      async () => (await recovering.admin('/readyz')).status === 200,
    );
    assert.equal(await recovering.metric('authz_issuer_keys_loaded', { provider: 'main' }), 1);
  });
});

for (const mode of ['grpc', 'http'] as const)
  describe(`authz: optional JWT through Envoy, ${mode} mode (issue 17 item 3)`, function () {
    const stack = new Stack(`authz-optional-${mode}`).install();
    let envoy: EnvoyHandle;

    before(async function () {
      this.timeout(60_000);
      const policy = join(stack.dir, 'optional.yaml');
      writeFileSync(
        policy,
        `providers:
  legacy: { issuer: legacy, hmacSecret: { value: ${HMAC} } }
identity: { headers: { x-user-id: '{{ sub }}' } }
rules:
  - { name: maybe, match: { pathPrefix: /maybe }, jwt: { optional: true } }
`,
      );
      const authz = await stack.service('authz', {
        args: ['--policy-file', policy, '--http-path-prefix', '/extauth'],
        env: { LOG_LEVEL: 'warn' },
      });
      envoy = await stack.envoy({
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        AUTHZ_PATH_PREFIX: '/extauth',
        UPSTREAM_PORT: (await stack.echo()).port,
      });
    });

    it('no token passes as anonymous (spoofed identity stripped), a bad token is refused, a good one identifies', async () => {
      const anon = await rawGet(envoy.httpPort, '/maybe/x', { 'x-user-id': 'root' });
      assert.equal(anon.status, 200, anon.body);
      assert.equal((JSON.parse(anon.body) as Echo).headers['x-user-id'], undefined);
      const bad = await rawGet(envoy.httpPort, '/maybe/x', { authorization: 'Bearer not.a.token' });
      assert.equal(bad.status, 401, bad.body);
      const good = await rawGet(envoy.httpPort, '/maybe/x', { authorization: `Bearer ${await hmacToken()}` });
      assert.equal(good.status, 200, good.body);
      assert.equal((JSON.parse(good.body) as Echo).headers['x-user-id'], 'bob');
    });
  });

function hmacToken(): Promise<string> {
  return new SignJWT({ iss: 'legacy', sub: 'bob' })
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(HMAC));
}

async function stopEnvoy(e: EnvoyHandle): Promise<void> {
  await e.stop();
}
