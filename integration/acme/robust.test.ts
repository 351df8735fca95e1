import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type Server as HttpServer,
} from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type EnvoyHandle, type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { readCertificate } from '../../services/acme/src/certs.ts';
import { DirectoryCertificateStore } from '../../services/acme/src/file-store.ts';
import {
  FaultProxy,
  type HostSpec,
  type HostStatusView,
  hostStatuses,
  tlsServe,
  writeHosts,
} from './helpers.ts';

// Issue 11: readiness that means something, names removed from a shared tlsSecret, a transient 404
// on a just-created authorization, errors that name their cause, and two instances on one
// directory. Real Pebble (behind the fault proxy where faults are injected), real Envoy, the service.

type Statuses = Map<string, HostStatusView>;
const statuses = (acme: ServiceHandle): Promise<Statuses> => hostStatuses(acme);
const waitHosts = <T>(
  what: string,
  acme: ServiceHandle,
  test: (h: Statuses) => T | undefined | false,
  timeoutMs = 30_000,
): Promise<T> =>
  waitUntil(
    what,
    async () => {
      const v = test(await statuses(acme));
      return v === false ? undefined : v;
    },
    { timeoutMs, intervalMs: 100 },
  );
/** A leaf for `name` signed by a throwaway CA (with the authority key identifier). */
function caSigned(dir: string, name: string): { chainPem: string; keyPem: string } {
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
  const p = (f: string): string => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
    '-days',
    '30',
    '-subj',
    '/CN=robust CA',
  );
  ossl('req', ...ec, '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', `/CN=${name}`);
  writeFileSync(p('ext.cnf'), `subjectAltName=DNS:${name}\nauthorityKeyIdentifier=keyid\n`);
  ossl(
    'x509',
    '-req',
    '-in',
    p('leaf.csr'),
    '-CA',
    p('ca.pem'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('leaf.pem'),
    '-days',
    '30',
    '-extfile',
    p('ext.cnf'),
  );
  return { chainPem: readFileSync(p('leaf.pem'), 'utf8'), keyPem: readFileSync(p('leaf.key'), 'utf8') };
}
const certNames = (path: string): readonly string[] => readCertificate(readFileSync(path, 'utf8')).names;

describe('acme robustness: readiness, Hosts file, shared tlsSecret, CA replica lag', function () {
  const stack = new Stack('acme-robust').install();
  let pebble: PebbleHandle;
  let proxy: FaultProxy;
  let acme: ServiceHandle;
  let envoy: EnvoyHandle | undefined;
  let certDir: string;
  let hostsFile: string;
  let httpPort: number;
  let challengePort: number;
  let authority: string;
  const spec = (name: string, secret = `${name}-tls`): HostSpec => ({
    name,
    hostname: `${name}.robust.test`,
    secret,
    authority,
  });
  const ensureEnvoy = async (): Promise<EnvoyHandle> => {
    await waitUntil('pair-tls sds.yaml', async () =>
      existsSync(join(certDir, 'default', 'pair-tls', 'sds.yaml')),
    );
    envoy ??= await stack.envoy({
      HTTP_PORT: httpPort,
      ACME_CHALLENGE_PORT: challengePort,
      TLS: true,
      CERT_DIR: certDir,
      TLS_SECRET: 'default/pair-tls',
    });
    return envoy;
  };
  // Set while the first load is held (the ARI directory GET of a stored certificate).
  let readyDuringLoad: { status: number; body: string } | undefined;

  before(async function () {
    this.timeout(60_000);
    httpPort = await freePort();
    challengePort = await freePort();
    pebble = await stack.pebble({ httpPort });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
    authority = await proxy.start();
    certDir = stack.mkdir('certs');
    hostsFile = join(stack.dir, 'hosts.yaml');
    // A stored certificate (CA-signed, so it has the authority key id ARI needs): its first load
    // asks the CA's directory for ARI, which the proxy holds.
    const now = Date.now();
    const cert = caSigned(stack.mkdir('stored-ca'), 'stored.robust.test');
    await new DirectoryCertificateStore(certDir).write(
      { namespace: 'default', name: 'stored-tls' },
      {
        ...cert,
        meta: { temporary: false, names: ['stored.robust.test'], issuedAt: new Date(now).toISOString() },
      },
    );
    writeHosts(hostsFile, [spec('stored')]);
  });
  after(async () => {
    await proxy.close();
  });

  it('is not ready while the Hosts are loading, and an edit made meanwhile is applied', async function () {
    this.timeout(60_000);
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    proxy.decide = (method, path) => (method === 'GET' && path === '/dir' ? { until: held } : undefined);
    acme = await stack.service('acme', {
      readyPath: '/healthz',
      ports: { challenge: challengePort },
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        `--allowed-authorities=${authority}`,
        '--backoff-initial=1s',
        '--backoff-max=2s',
        '--hosts-poll-interval=200ms',
        '--poll-interval=200ms',
        '--acme-retries=0',
      ],
    });
    // Positive signal: the first load is inside its CA request, the admin port already answers.
    await waitUntil('first load asks the directory', async () =>
      proxy.seen.some((r) => r.method === 'GET' && r.path === '/dir'),
    );
    readyDuringLoad = await acme.admin('/readyz');
    writeHosts(hostsFile, [
      spec('stored'),
      spec('late'),
      spec('pair-a', 'pair-tls'),
      spec('pair-b', 'pair-tls'),
    ]);
    release();
    proxy.decide = () => undefined;
    assert.equal(readyDuringLoad.status, 503, `readyz during the first load: ${readyDuringLoad.body}`);
    assert.match(readyDuringLoad.body, /hosts|certificates/i);
  });

  it('applies that edit: the Hosts added during the first load are loaded and issued', async function () {
    this.timeout(60_000);
    await waitHosts('late Host loaded', acme, (h) => h.has('default/late'), 20_000);
    await waitUntil('readyz 200', async () => (await acme.admin('/readyz')).status === 200);
    await ensureEnvoy();
    await waitHosts('late Ready', acme, (h) => h.get('default/late')?.state === 'Ready', 45_000);
  });

  it('reissues a shared tlsSecret without the name of a Host taken out of it', async function () {
    this.timeout(90_000);
    // Independent of the previous test: the watcher is running by now whatever the code.
    writeHosts(hostsFile, [
      spec('stored'),
      spec('late'),
      spec('pair-a', 'pair-tls'),
      spec('pair-b', 'pair-tls'),
    ]);
    // Envoy validates the challenges (whatever the previous tests did).
    const e = await ensureEnvoy();
    await waitHosts(
      'pair Hosts Ready',
      acme,
      (h) => h.get('default/pair-a')?.state === 'Ready' && h.get('default/pair-b')?.state === 'Ready',
      45_000,
    );

    const root = await pebble.roots();
    const crt = join(certDir, 'default', 'pair-tls', 'tls.crt');
    assert.deepEqual(certNames(crt), ['pair-a.robust.test', 'pair-b.robust.test']);
    await waitUntil('Envoy serves both names', async () => {
      const s = await tlsServe(e.httpsPort, 'pair-a.robust.test', root).catch(() => undefined);
      return s?.names.includes('pair-b.robust.test') === true;
    });
    writeHosts(hostsFile, [spec('stored'), spec('late'), spec('pair-a', 'pair-tls')]);
    await waitUntil(
      'pair-tls reissued for pair-a only',
      async () => certNames(crt).join(',') === 'pair-a.robust.test',
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const served = await waitUntil('Envoy serves the certificate without pair-b', async () => {
      const s = await tlsServe(e.httpsPort, 'pair-a.robust.test', root).catch(() => undefined);
      return s && !s.names.includes('pair-b') ? s : undefined;
    });
    assert.match(served.names, /pair-a\.robust\.test/);
    const h = await waitHosts('pair-a Ready', acme, (m) =>
      m.get('default/pair-a')?.state === 'Ready' ? m : undefined,
    );
    assert.deepEqual(h.get('default/pair-a')?.names, ['pair-a.robust.test']);
    assert.equal(h.has('default/pair-b'), false);
  });

  it('retries a transient 404 on a just-created authorization within the order (one order, no failure)', async function () {
    this.timeout(120_000);
    await ensureEnvoy();
    // Everything else settled first: the orders counted below are the new Host's.
    writeHosts(hostsFile, [spec('stored'), spec('late'), spec('pair-a', 'pair-tls')]);
    await waitHosts(
      'other Hosts Ready',
      acme,
      (h) => ['stored', 'late', 'pair-a'].every((n) => h.get(`default/${n}`)?.state === 'Ready'),
      60_000,
    );
    const ordersBefore = proxy.seen.filter(
      (r) => r.method === 'POST' && r.path.startsWith('/order-plz'),
    ).length;
    const failedBefore = await acme.metric('acme_orders_total', { result: 'failed' });
    let injected = 0;
    // A CA replica that has not seen the new authorization yet: 404 on its first read.
    proxy.decide = (method, path) => {
      if (method === 'POST' && path.startsWith('/authZ/') && injected === 0) {
        injected += 1;
        return {
          status: 404,
          headers: { 'content-type': 'application/problem+json' },
          body: JSON.stringify({ type: 'urn:ietf:params:acme:error:malformed', detail: 'Authz not found' }),
        };
      }
      return undefined;
    };
    writeHosts(hostsFile, [spec('stored'), spec('late'), spec('pair-a', 'pair-tls'), spec('lag')]);
    await waitHosts('lag Ready', acme, (h) => h.get('default/lag')?.state === 'Ready', 45_000);
    proxy.decide = () => undefined;
    assert.equal(injected, 1);
    const orders = proxy.seen.filter((r) => r.method === 'POST' && r.path.startsWith('/order-plz')).length;
    assert.equal(orders - ordersBefore, 1, 'one order: the 404 was retried inside it');
    assert.equal(await acme.metric('acme_orders_total', { result: 'failed' }), failedBefore);
  });

  it('stays not ready while a Host has no certificate stored, naming its tlsSecret', async function () {
    this.timeout(60_000);
    // A file where the secret's directory should be: neither the temporary nor a real pair can be written.
    const blocker = join(certDir, 'default', 'broken-tls');
    writeFileSync(blocker, 'not a directory\n');
    writeHosts(hostsFile, [
      spec('stored'),
      spec('late'),
      spec('pair-a', 'pair-tls'),
      spec('lag'),
      spec('broken'),
    ]);
    await waitHosts('broken Error', acme, (h) => h.get('default/broken')?.state === 'Error');
    const r = await waitUntil('readyz 503', async () => {
      const res = await acme.admin('/readyz');
      return res.status === 503 ? res : undefined;
    });
    assert.match(r.body, /default\/broken-tls/);
    rmSync(blocker);
    await waitUntil(
      'readyz 200 once broken-tls is stored',
      async () => (await acme.admin('/readyz')).status === 200,
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    assert.ok(existsSync(join(certDir, 'default', 'broken-tls', 'tls.crt')));
  });
  it('renews at the acme.extsvc.dev/renew-before of a Host (cert-manager renewBefore), and refuses a bad one', async function () {
    this.timeout(30_000);
    const withAnnotations = [
      spec('stored'),
      { ...spec('late'), annotations: { 'acme.extsvc.dev/renew-before': '720h' } },
      spec('pair-a', 'pair-tls'),
      { ...spec('bad'), annotations: { 'acme.extsvc.dev/renew-before': 'soon' } },
    ];
    writeHosts(hostsFile, withAnnotations);
    const h = await waitHosts('late renews 720h before notAfter', acme, (m) => {
      const late = m.get('default/late');
      if (!late?.notAfter || !late.nextRenewal) return undefined;
      return Date.parse(late.notAfter) - Date.parse(late.nextRenewal) === 720 * 3_600_000 ? m : undefined;
    });
    assert.equal(h.get('default/bad')?.state, 'Error');
    assert.match(h.get('default/bad')?.errorReason ?? '', /acme\.extsvc\.dev\/renew-before.*duration/);
  });
});

describe('acme robustness: CA errors name their cause and have their own retry policy', function () {
  const stack = new Stack('acme-robust-errors').install();
  let acme: ServiceHandle;
  let hang: TcpServer;
  let hostsFile: string;
  let specs: HostSpec[];
  const sockets = new Set<Socket>();

  before(async function () {
    this.timeout(60_000);
    const pebble = await stack.pebble({ httpPort: await freePort() });
    // Accepts connections and never answers (not even the TLS handshake).
    hang = createTcpServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const authorities = {
      tls: pebble.directoryUrl, // trusted only with --ca-file, which this instance lacks
      dns: 'https://acme-ca.invalid/dir', // RFC 2606: never resolves
      refused: `https://127.0.0.1:${await freePort()}/dir`,
      timeout: `https://127.0.0.1:${(hang.address() as AddressInfo).port}/dir`,
    };
    hostsFile = join(stack.dir, 'hosts.yaml');
    specs = Object.entries(authorities).map(([name, authority]) => ({
      name,
      hostname: `${name}.errors.test`,
      secret: `${name}-tls`,
      authority,
    }));
    writeHosts(hostsFile, specs);
    acme = await stack.service('acme', {
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${stack.mkdir('certs')}`,
        `--allowed-authorities=${Object.values(authorities).join(',')}`,
        '--acme-retries=0',
        '--acme-timeout=1s',
        '--backoff-initial=1m',
        '--backoff-max=1h',
        '--hosts-poll-interval=200ms',
      ],
    });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hang.close(() => r()));
  });

  it('TLS verification, DNS, refused connection and timeout each have their reason, code and backoff', async function () {
    this.timeout(60_000);
    const h = await waitHosts(
      'four Hosts in Error',
      acme,
      (m) =>
        ['tls', 'dns', 'refused', 'timeout'].every((n) => m.get(`default/${n}`)?.state === 'Error')
          ? m
          : undefined,
      45_000,
    );
    const s = (n: string) => h.get(`default/${n}`);
    assert.equal(s('tls')?.errorCode, 'ERR_ACME_TLS');
    assert.match(s('tls')?.errorReason ?? '', /TLS certificate failed verification.*--ca-file/);
    assert.equal(s('dns')?.errorCode, 'ERR_ACME_DNS');
    assert.match(s('dns')?.errorReason ?? '', /did not resolve.*acme-ca\.invalid/);
    assert.equal(s('refused')?.errorCode, 'ERR_ACME_REFUSED');
    assert.match(s('refused')?.errorReason ?? '', /connection refused/);
    assert.equal(s('timeout')?.errorCode, 'ERR_ACME_TIMEOUT');
    assert.match(s('timeout')?.errorReason ?? '', /no answer within the timeout/);
    // A certificate problem does not fix itself in minutes: its first retry waits 12× longer.
    assert.equal(s('tls')?.errorBackoff, '12m0s');
    for (const n of ['dns', 'refused', 'timeout']) assert.equal(s(n)?.errorBackoff, '1m0s', n);
    // /diag shows the code beside the reason.
    const diag = JSON.parse((await acme.admin('/diag.json')).body) as {
      sections: Array<{ title: string; columns?: string[]; rows?: unknown[][] }>;
    };
    const table = diag.sections.find((x) => x.title === 'Hosts');
    const col = (name: string): number => table?.columns?.indexOf(name) ?? -1;
    const row = table?.rows?.find((r) => r[col('host')] === 'default/tls');
    assert.equal(row?.[col('error code')], 'ERR_ACME_TLS');
    assert.equal(row?.[col('last error')], s('tls')?.errorReason);
  });
  it('a new acme.extsvc.dev/retry annotation value retries an Error Host at once, skipping its backoff', async function () {
    this.timeout(60_000);
    const before = (await statuses(acme)).get('default/refused');
    assert.equal(before?.state, 'Error');
    assert.equal(before?.errorBackoff, '1m0s');
    writeHosts(
      hostsFile,
      specs.map((h) =>
        h.name === 'refused' ? { ...h, annotations: { 'acme.extsvc.dev/retry': 'try-1' } } : h,
      ),
    );
    // Retried long before the minute of backoff: a new failure, counted (the backoff doubles).
    const after = await waitHosts(
      'refused retried',
      acme,
      (m) => {
        const h = m.get('default/refused');
        return h?.errorTimestamp !== before?.errorTimestamp && h?.state === 'Error' ? h : undefined;
      },
      20_000,
    );
    assert.equal(after.errorBackoff, '2m0s');
    assert.equal(after.errorCode, 'ERR_ACME_REFUSED');
    // The other Hosts keep their backoff.
    assert.equal((await statuses(acme)).get('default/timeout')?.errorBackoff, '1m0s');
  });
});

describe('acme robustness: two instances on one certificate directory order once', function () {
  const stack = new Stack('acme-robust-lock').install();
  let pebble: PebbleHandle;
  let proxy: FaultProxy;
  let forwarder: HttpServer;
  const challengePorts: number[] = [];

  before(async function () {
    this.timeout(30_000);
    const httpPort = await freePort();
    // Pebble validates through this forwarder: it asks each instance in turn (only the one that
    // ordered knows the token; the other answers 404).
    forwarder = createHttpServer((req, res) => {
      const tryPort = (i: number): void => {
        const port = challengePorts[i];
        if (port === undefined) {
          res.writeHead(404);
          res.end();
          return;
        }
        const out = httpRequest(
          { host: '127.0.0.1', port, path: req.url, method: 'GET', headers: req.headers, agent: false },
          (up) => {
            const body: Buffer[] = [];
            up.on('data', (c: Buffer) => body.push(c));
            up.on('end', () => {
              if (up.statusCode !== 200) return tryPort(i + 1);
              res.writeHead(200, { 'content-type': 'text/plain' });
              res.end(Buffer.concat(body));
            });
          },
        );
        out.on('error', () => tryPort(i + 1));
        out.end();
      };
      tryPort(0);
    });
    await new Promise<void>((r) => forwarder.listen(httpPort, '127.0.0.1', r));
    pebble = await stack.pebble({ httpPort });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
  });
  after(async () => {
    await proxy.close();
    forwarder.closeAllConnections();
    await new Promise<void>((r) => forwarder.close(() => r()));
  });

  it('exactly one order per certificate; both instances serve it; the lock is released', async function () {
    this.timeout(90_000);
    const authority = await proxy.start();
    const certDir = stack.mkdir('certs');
    const hostsFile = join(stack.dir, 'hosts.yaml');
    const names = ['one', 'two'];
    writeHosts(
      hostsFile,
      names.map((n) => ({ name: n, hostname: `${n}.lock.test`, secret: `${n}-tls`, authority })),
    );
    for (let i = 0; i < 2; i++) challengePorts.push(await freePort());
    const args = [
      `--hosts-file=${hostsFile}`,
      `--cert-dir=${certDir}`,
      `--ca-file=${pebble.caCertPath}`,
      `--allowed-authorities=${authority}`,
      '--backoff-initial=1s',
      '--poll-interval=200ms',
      '--acme-retries=0',
    ];
    // Both start at once on an empty directory (compose `scale: 2`).
    const [a, b] = await Promise.all(
      challengePorts.map((challenge) =>
        stack.service('acme', { readyPath: '/healthz', ports: { challenge }, args }),
      ),
    );
    for (const acme of [a, b] as ServiceHandle[])
      await waitHosts(
        'both Hosts Ready on this instance',
        acme,
        (h) => names.every((n) => h.get(`default/${n}`)?.state === 'Ready'),
        60_000,
      );
    const orders = proxy.seen.filter((r) => r.method === 'POST' && r.path.startsWith('/order-plz')).length;
    assert.equal(orders, names.length, 'one order per certificate across both instances');
    const [ha, hb] = await Promise.all([statuses(a as ServiceHandle), statuses(b as ServiceHandle)]);
    for (const n of names) {
      const stored = readCertificate(readFileSync(join(certDir, 'default', `${n}-tls`, 'tls.crt'), 'utf8'));
      assert.equal(ha.get(`default/${n}`)?.notAfter, new Date(stored.notAfter).toISOString());
      assert.equal(hb.get(`default/${n}`)?.notAfter, new Date(stored.notAfter).toISOString());
      assert.equal(existsSync(join(certDir, 'default', `.${n}-tls.lock`)), false);
    }
  });
});
