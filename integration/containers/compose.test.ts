// docker-compose.yml for real: the whole file (with `--profile pebble`) up on a Docker engine, the README's
// curl lines through the Envoy container, a certificate from the Pebble container served on 8443, then
// everything torn down. Skipped, with one line, when no engine answers.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { composeCommand, ensureImages, requireEngine, ROOT, run } from '../harness/containers.ts';

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

/** GET over TLS with SNI `servername`, trusting only `ca`; rejects when the chain does not verify. */
function tlsGet(
  port: number,
  path: string,
  servername: string,
  ca: string,
): Promise<Answer & { issuer: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername, ca, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      const issuer = String((res.socket as TLSSocket).getPeerCertificate().issuer?.CN ?? '');
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        resolve({
          status: res.statusCode ?? 0,
          headers,
          body: Buffer.concat(chunks).toString('utf8'),
          issuer,
        });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('docker compose: docker-compose.yml up, curl through the Envoy container, Pebble certificate, down', function () {
  const project = `extsvc-test-${process.pid}`;
  const net = 16 + (process.pid % 200); // a /24 of its own, so that two runs on one engine do not collide
  const ports = { http: 0, https: 0, admin: 0, pebble: 0, pebbleMgmt: 0 };
  let compose: (args: string[]) => Promise<string>;
  let up = false;

  const get = async (path: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(`http://127.0.0.1:${ports.http}${path}`, { headers });
    return { status: res.status, headers: res.headers, body: await res.text() };
  };

  before(async function () {
    this.timeout(45 * 60_000); // a cold machine builds the base images and the compose CLI first
    await requireEngine(this);
    const images = await ensureImages();
    const cmd = await composeCommand();
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    const env = {
      ENVOY_HTTP_PORT: String(ports.http),
      ENVOY_HTTPS_PORT: String(ports.https),
      ENVOY_ADMIN_PORT: String(ports.admin),
      PEBBLE_PORT: String(ports.pebble),
      PEBBLE_MANAGEMENT_PORT: String(ports.pebbleMgmt),
      EXTSVC_SUBNET: `172.30.${net}.0/24`,
      EXTSVC_ENVOY_IP: `172.30.${net}.10`,
      ACME_BACKOFF_INITIAL: '2s', // acme may ask before Pebble or Envoy listen: retry soon
    };
    const [bin, ...pre] = cmd;
    compose = (args) =>
      run(
        bin!,
        // the local base images (if any), then the Pebble profile's acme settings, as the README says
        [
          ...pre,
          '--env-file',
          images.envFile,
          '--env-file',
          'deploy/compose/pebble/pebble.env',
          '-p',
          project,
        ].concat(['--profile', 'pebble', ...args]),
        { env },
      );
    up = true; // from here on, `after` tears down whatever part came up
    try {
      await compose(['up', '--detach', '--no-build', '--wait', '--wait-timeout', '300']);
    } catch (err) {
      process.stdout.write(await compose(['logs', '--no-color', '--tail', '30']).catch(String));
      throw err;
    }
    await waitUntil(
      'Envoy admin /ready',
      async () => (await fetch(`http://127.0.0.1:${ports.admin}/ready`)).status === 200,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    // Envoy opens its gRPC connections to authz and ratelimit on the first requests; on a busy machine those
    // can exceed the filters' timeouts (ext_authz 0.5 s: 503; ratelimit 0.1 s: allowed without RateLimit
    // headers). Wait until one request has gone through both.
    await waitUntil(
      'a first request through ext_authz and ratelimit',
      async () => {
        const res = await get('/public/hello');
        return res.status === 200 && res.headers.get('ratelimit-limit') !== null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  });

  after(async function () {
    this.timeout(5 * 60_000);
    if (!up) return;
    await compose(['down', '--volumes', '--remove-orphans', '--timeout', '10']);
  });

  it('runs authz, ratelimit and acme as non-root, read-only, healthy', async () => {
    for (const s of ['authz', 'ratelimit', 'acme']) {
      const id = (await compose(['ps', '--quiet', s])).trim();
      assert.ok(id, `${s} container`);
      const [user, readOnly, health] = (
        await run('docker', [
          'inspect',
          '-f',
          '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Health.Status}}',
          id,
        ])
      )
        .trim()
        .split(' ');
      assert.equal(user, 'node', `${s} user`);
      assert.equal(readOnly, 'true', `${s} read-only root`);
      assert.equal(health, 'healthy', `${s} HEALTHCHECK`);
      const uid = (await run('docker', ['exec', id, 'id', '-u'])).trim();
      assert.notEqual(uid, '0', `${s} uid`);
      await assert.rejects(run('docker', ['exec', id, 'touch', '/app/x']), /Read-only file system/);
    }
  });

  it('curl -i localhost:8000/public/hello: 200 from the upstream with RateLimit headers', async () => {
    const res = await get('/public/hello');
    assert.equal(res.status, 200, res.body);
    assert.equal((JSON.parse(res.body) as { path: string }).path, '/public/hello');
    assert.equal(res.headers.get('ratelimit-limit'), '600'); // deploy/compose/ratelimit/config.yaml
    assert.match(res.headers.get('ratelimit-remaining') ?? '', /^\d+$/);
  });

  it('curl -i localhost:8000/api/hello: 401 without credentials', async () => {
    const res = await get('/api/hello');
    assert.equal(res.status, 401, res.body);
  });

  it("curl -i -H 'x-api-key: demo-key' localhost:8000/api/hello: 200 with the demo key", async () => {
    const res = await get('/api/hello', { 'x-api-key': 'demo-key' });
    assert.equal(res.status, 200, res.body);
    const echoed = JSON.parse(res.body) as { path: string; headers: Record<string, string> };
    assert.equal(echoed.path, '/api/hello');
    const wrong = await get('/api/hello', { 'x-api-key': 'not-the-key' });
    assert.equal(wrong.status, 401, wrong.body);
  });

  it('429 after the limit: x-client-id is limited to 10 a minute', async () => {
    const client = { 'x-client-id': `compose-${process.pid}`, 'x-api-key': 'demo-key' };
    for (let i = 1; i <= 10; i++) assert.equal((await get('/api/hello', client)).status, 200, `request ${i}`);
    const over = await get('/api/hello', client);
    assert.equal(over.status, 429, over.body);
    assert.equal(over.headers.get('ratelimit-remaining'), '0');
  });

  it('curl -i localhost:8000/.well-known/acme-challenge/x: 404 from acme (no pending challenge)', async () => {
    const res = await get('/.well-known/acme-challenge/x');
    // The upstream would answer 200 and authz 401/403 (default deny): 404 is acme's.
    assert.equal(res.status, 404, res.body);
  });

  it('--profile pebble: acme gets a certificate from Pebble, the Envoy container serves it on 8443 (401 without credentials there too)', async function () {
    this.timeout(5 * 60_000);
    const pebbleCa = readFileSync(join(ROOT, 'deploy/compose/pebble/ca.pem'), 'utf8');
    // The root that signs Pebble's certificates is generated at Pebble's start: its management API has it.
    const root = await waitUntil(
      'Pebble root',
      async () => {
        const res = await tlsGet(ports.pebbleMgmt, '/roots/0', 'pebble', pebbleCa);
        return res.status === 200 ? res.body : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // Until then Envoy serves acme's temporary self-signed certificate, which does not verify against it.
    const served = await waitUntil(
      'a Pebble certificate on Envoy 8443',
      () => tlsGet(ports.https, '/public/hello', 'example.test', root).catch(() => undefined),
      { timeoutMs: 4 * 60_000, intervalMs: 1000 },
    );
    assert.equal(served.status, 200, served.body);
    assert.match(served.issuer, /Pebble/i);
    assert.equal((JSON.parse(served.body) as { path: string }).path, '/public/hello');
    // The HTTPS listener carries ext_authz and ratelimit as the HTTP one does.
    const anon = await tlsGet(ports.https, '/api/hello', 'example.test', root);
    assert.equal(anon.status, 401, anon.body);
    assert.match(served.headers.get('ratelimit-limit') ?? '', /^\d+$/);
  });

  it('down --volumes leaves no container, network or volume of the project', async function () {
    this.timeout(3 * 60_000);
    await compose(['down', '--volumes', '--remove-orphans', '--timeout', '10']);
    up = false;
    const label = `label=com.docker.compose.project=${project}`;
    assert.equal((await run('docker', ['ps', '--all', '--quiet', '--filter', label])).trim(), '');
    assert.equal((await run('docker', ['network', 'ls', '--quiet', '--filter', label])).trim(), '');
    assert.equal((await run('docker', ['volume', 'ls', '--quiet', '--filter', label])).trim(), '');
  });
});
