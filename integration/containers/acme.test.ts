// The acme image (services/acme/Dockerfile) with Pebble and pebble-challtestsrv containers on one network,
// started by testcontainers: acme orders a certificate for a Host file, Pebble validates HTTP-01 against the
// acme container's challenge port, and the certificate acme writes chains to Pebble's intermediate.
// Skipped, with one line, when no engine answers.
import { strict as assert } from 'node:assert';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import {
  GenericContainer,
  Network,
  Wait,
  type StartedNetwork,
  type StartedTestContainer,
} from 'testcontainers';
import { waitUntil } from '../harness/proc.ts';
import {
  containerUid,
  ensureImages,
  requireEngine,
  ROOT,
  serviceContainer,
  stopAll,
} from '../harness/containers.ts';

const NAME = 'tc.example.test';
const CERT_DIR = '/var/lib/extsvc/certs'; // the image's volume

const HOSTS = `apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: { name: tc, namespace: default }
spec:
  hostname: ${NAME}
  acmeProvider: { authority: 'https://pebble:14000/dir', email: admin@example.test }
  tlsSecret: { name: tc-tls }
`;

/** Pebble's own HTTPS: the test-only certificate of deploy/compose/pebble; HTTP-01 on acme's port 8089. */
const PEBBLE_CONFIG = JSON.stringify({
  pebble: {
    listenAddress: '0.0.0.0:14000',
    managementListenAddress: '0.0.0.0:15000',
    certificate: '/config/pebble.pem',
    privateKey: '/config/pebble.key',
    httpPort: 8089,
    tlsPort: 5001,
    ocspResponderURL: '',
    externalAccountBindingRequired: false,
  },
});

function getTls(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: 'pebble', ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('container: the extsvc-acme image with Pebble containers (testcontainers)', function () {
  const pebbleCa = readFileSync(join(ROOT, 'deploy/compose/pebble/ca.pem'), 'utf8');
  let network: StartedNetwork | undefined;
  let chall: StartedTestContainer | undefined;
  let pebble: StartedTestContainer | undefined;
  let acme: StartedTestContainer | undefined;

  before(async function () {
    this.timeout(45 * 60_000); // a cold machine builds the images first
    await requireEngine(this);
    const images = await ensureImages();
    network = await new Network().start();
    acme = await serviceContainer(images.acme, {
      adminPort: 8090,
      env: {
        HOSTS_FILE: '/config/hosts.yaml',
        ACME_CA_FILE: '/config/ca.pem',
        ALLOWED_AUTHORITIES: 'https://pebble:14000/dir',
        BACKOFF_INITIAL: '1s',
      },
      files: [
        { content: HOSTS, target: '/config/hosts.yaml' },
        { source: join(ROOT, 'deploy/compose/pebble/ca.pem'), target: '/config/ca.pem' },
      ],
      network,
      aliases: ['acme'],
    }).start();
    // pebble-challtestsrv is Pebble's DNS: every name resolves to the acme container.
    chall = await new GenericContainer(images.challtestsrv)
      .withCommand(['-defaultIPv6', '', '-defaultIPv4', acme.getIpAddress(network.getName())])
      .withNetwork(network)
      .withNetworkAliases('challtestsrv')
      .withWaitStrategy(Wait.forLogMessage(/Starting management server/))
      .start();
    pebble = await new GenericContainer(images.pebble)
      .withCommand(['-config', '/config/pebble-config.json', '-dnsserver', 'challtestsrv:8053'])
      .withEnvironment({ PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' })
      .withCopyContentToContainer([{ content: PEBBLE_CONFIG, target: '/config/pebble-config.json' }])
      .withCopyFilesToContainer([
        { source: join(ROOT, 'deploy/compose/pebble/pebble.pem'), target: '/config/pebble.pem' },
        { source: join(ROOT, 'deploy/compose/pebble/pebble.key'), target: '/config/pebble.key' },
      ])
      .withNetwork(network)
      .withNetworkAliases('pebble')
      .withExposedPorts(14000, 15000)
      .withWaitStrategy(Wait.forLogMessage(/Listening on: 0\.0\.0\.0:14000/))
      .start();
  });

  after(async function () {
    this.timeout(60_000);
    await stopAll([acme, pebble, chall], network);
  });

  it('runs as a non-root user', async () => {
    assert.notEqual(await containerUid(acme!), 0);
  });

  it('issues the Host certificate from Pebble and writes it to the certificate volume', async function () {
    this.timeout(4 * 60_000);
    const admin = `http://127.0.0.1:${acme!.getMappedPort(8090)}`;
    await waitUntil(
      'the Host Ready in acme /hosts',
      async () => {
        const body = (await (await fetch(`${admin}/hosts`)).json()) as { hosts: Array<{ state: string }> };
        return body.hosts.length === 1 && body.hosts[0]!.state === 'Ready';
      },
      { timeoutMs: 3 * 60_000, intervalMs: 1000 },
    );
    const crt = await acme!.exec(['cat', `${CERT_DIR}/default/tc-tls/tls.crt`]);
    assert.equal(crt.exitCode, 0, crt.output);
    const leaf = new X509Certificate(crt.output);
    assert.match(leaf.subjectAltName ?? '', new RegExp(`DNS:${NAME.replace(/\./g, '\\.')}`));
    const mgmt = pebble!.getMappedPort(15000);
    const intermediate = await getTls(mgmt, '/intermediates/0', pebbleCa);
    assert.equal(intermediate.status, 200);
    assert.ok(leaf.checkIssued(new X509Certificate(intermediate.body)), 'issued by Pebble');
    assert.ok(leaf.verify(new X509Certificate(intermediate.body).publicKey), 'signed by Pebble');
  });
});
