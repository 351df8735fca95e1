import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { waitUntil } from '../harness/proc.ts';
import { Stack, ROOT, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';
import { fakeCertDir, type FakeCertDir } from './tls-fixture.ts';

// Every listener the shipped template renders that routes to the upstream must carry ext_authz, the
// ratelimit filter and the request hardening (issue 18, finding 1: the HTTPS listener had only the
// router, so an unauthenticated request and an over-limit client reached the upstream over TLS).
// The services run on the configuration docker-compose ships (deploy/compose/), as a user gets it.

const TLS_SECRET = 'default/example-tls';
const DEMO_KEY = 'demo-key';

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One request without any client-side normalisation (the path goes on the wire as written). */
function send(url: URL, headers: Record<string, string>, certs: FakeCertDir): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const opts = { method: 'GET', host: url.hostname, port: url.port, path: url.pathname, headers };
    const req =
      url.protocol === 'https:'
        ? httpsRequest({ ...opts, ca: certs.certPem, servername: 'example.test' })
        : httpRequest(opts);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

for (const mode of ['grpc', 'http'] as const) {
  describe(`envoy template (${mode} ext_authz): every listener carries auth, rate limiting and hardening`, function () {
    const stack = new Stack(`listeners-${mode}`).install();
    let authz: ServiceHandle;
    let envoy: EnvoyHandle;
    let upstream: { port: number; readonly requests: number };
    let certs: FakeCertDir;

    before(async function () {
      this.timeout(90_000);
      certs = fakeCertDir(TLS_SECRET);
      let ratelimit: ServiceHandle;
      [authz, ratelimit, upstream] = await Promise.all([
        stack.service('authz', {
          args: [
            `--policy-file=${join(ROOT, 'deploy', 'compose', 'authz', 'policy.yaml')}`,
            '--http-path-prefix=/extauth',
          ],
        }),
        stack.service('ratelimit', {
          args: [`--config-dir=${join(ROOT, 'deploy', 'compose', 'ratelimit')}`],
        }),
        stack.echo(),
      ]);
      envoy = await stack.envoy({
        AUTHZ_GRPC: mode === 'grpc',
        AUTHZ_PATH_PREFIX: '/extauth',
        AUTHZ_GRPC_PORT: authz.ports.grpc as number,
        AUTHZ_HTTP_PORT: authz.ports.http as number,
        RATELIMIT_GRPC_PORT: ratelimit.ports.grpc as number,
        UPSTREAM_PORT: upstream.port,
        TLS: true,
        CERT_DIR: certs.dir,
        TLS_SECRET,
      });
      // Envoy opens its gRPC connections on the first request; on a loaded machine that first Check can
      // exceed the 0.5 s ext_authz timeout (503). Wait until a public request goes through on each listener.
      for (const port of [envoy.httpPort, envoy.httpsPort]) {
        const scheme = port === envoy.httpPort ? 'http' : 'https';
        await waitUntil(
          `${scheme} listener answers through authz and ratelimit`,
          async () =>
            (await send(new URL(`${scheme}://127.0.0.1:${port}/public/warm`), {}, certs)).status === 200,
          { timeoutMs: 30_000 },
        );
      }
    });
    after(() => {
      if (certs) rmSync(certs.dir, { recursive: true, force: true });
    });

    for (const listener of ['http', 'https'] as const) {
      const url = (path: string): URL =>
        new URL(
          listener === 'http'
            ? `http://127.0.0.1:${envoy.httpPort}${path}`
            : `https://127.0.0.1:${envoy.httpsPort}${path}`,
        );

      it(`${listener}: no credentials and a spoofed x-user-id get 401; the upstream is not reached`, async () => {
        const checksBefore = await authz.metric('authz_check_total');
        const before = upstream.requests;
        const res = await send(url('/api/hello'), { 'x-user-id': 'admin' }, certs);
        assert.equal(res.status, 401, res.body);
        assert.equal(upstream.requests, before);
        assert.equal(
          (await authz.metric('authz_check_total')) - checksBefore,
          1,
          'authz decided the request',
        );
      });

      it(`${listener}: the demo key gets 200 and the upstream sees authz's x-user-id, not the client's`, async () => {
        const res = await send(url('/api/hello'), { 'x-api-key': DEMO_KEY, 'x-user-id': 'admin' }, certs);
        assert.equal(res.status, 200, res.body);
        const echoed = JSON.parse(res.body) as { headers: Record<string, string> };
        assert.ok(echoed.headers['x-user-id'], 'authz set x-user-id');
        assert.notEqual(echoed.headers['x-user-id'], 'admin');
      });

      it(`${listener}: a client over its limit gets 429 from the ratelimit filter`, async () => {
        // client_id allows 10 per minute; a minute boundary inside the loop resets the count once, so a
        // 429 must come within 21 requests whatever the clock.
        const client = `${mode}-${listener}-${process.pid}`;
        const statuses: number[] = [];
        while (statuses.length < 21 && !statuses.includes(429)) {
          statuses.push((await send(url('/public/hello'), { 'x-client-id': client }, certs)).status);
        }
        assert.ok(statuses.includes(429), `no 429 in ${statuses.join(',')}`);
        assert.equal(statuses[0], 200);
      });

      it(`${listener}: encoded dot segments are resolved before routing and authz`, async () => {
        const open = await send(url('/public/x/%2e%2e/y'), {}, certs);
        assert.equal(open.status, 200, open.body);
        assert.equal((JSON.parse(open.body) as { path: string }).path, '/public/y');
        const dodge = await send(url('/public/%2e%2e/api/hello'), {}, certs);
        assert.equal(dodge.status, 401, dodge.body);
      });

      it(`${listener}: a header name with an underscore (x_user_id) is refused with 400`, async () => {
        const before = upstream.requests;
        const res = await send(url('/public/hello'), { x_user_id: 'admin' }, certs);
        assert.equal(res.status, 400);
        assert.equal(upstream.requests, before);
      });
    }
  });
}
