import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { type HostStatusView, hostStatuses } from './helpers.ts';

// Issue 18 item 2 in file mode: whoever writes a Host must not reach another namespace's
// certificate, choose the CA of another Host's certificate, or make acme connect anywhere.
describe('acme hardening (file mode): tlsSecret namespace, provider conflicts, authority allowlist', function () {
  const stack = new Stack('acme-hardening').install();
  let pebble: PebbleHandle;
  let acme: ServiceHandle;
  let certDir: string;
  // Counts every TCP connection to the "authority" a Host names (an SSRF target).
  let trap: Server;
  let trapConnections = 0;
  let trapUrl: string;

  const host = (
    ns: string,
    name: string,
    hostname: string,
    tlsSecret: string,
    authority: string,
    email = 'ops@hard.test',
  ): string =>
    [
      'apiVersion: getambassador.io/v3alpha1',
      'kind: Host',
      `metadata: { name: ${name}, namespace: ${ns} }`,
      'spec:',
      `  hostname: ${hostname}`,
      `  acmeProvider: { authority: "${authority}", email: ${email} }`,
      `  tlsSecret: ${tlsSecret}`,
    ].join('\n');

  before(async function () {
    this.timeout(60_000);
    const challenge = await freePort();
    pebble = await stack.pebble({ httpPort: challenge });
    trap = createServer((s) => {
      trapConnections += 1;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
    trapUrl = `https://127.0.0.1:${(trap.address() as { port: number }).port}/dir`;
    certDir = stack.mkdir('certs');
    const hostsFile = join(stack.dir, 'hosts.yaml');
    const ca = pebble.directoryUrl;
    writeFileSync(
      hostsFile,
      [
        host('default', 'shop', 'shop.hard.test', '{ name: shop-tls }', ca),
        // The tenant names the victim's Secret in the victim's namespace.
        host('tenant', 'evil', 'evil.hard.test', '{ namespace: default, name: shop-tls }', ca),
        // An authority outside the allowlist: an internal address acme must never connect to.
        host('default', 'ssrf', 'ssrf.hard.test', '{ name: ssrf-tls }', trapUrl),
        // Two Hosts sharing a Secret with different accounts: no vote, both Error.
        host('default', 'split-a', 'split-a.hard.test', '{ name: split-tls }', ca, 'a@hard.test'),
        host('default', 'split-b', 'split-b.hard.test', '{ name: split-tls }', ca, 'b@hard.test'),
      ].join('\n---\n') + '\n',
    );
    acme = await stack.service('acme', {
      ports: { challenge },
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        `--allowed-authorities=${ca}`,
        '--backoff-initial=1s',
        '--backoff-max=2s',
        '--poll-interval=100ms',
        '--acme-retries=0',
      ],
    });
  });

  after(() => new Promise<void>((r) => (trap ? trap.close(() => r()) : r())));

  const settled = (): Promise<Map<string, HostStatusView>> =>
    waitUntil(
      'shop Ready and the others reported',
      async () => {
        const s = await hostStatuses(acme);
        return s.get('default/shop')?.state === 'Ready' && s.size === 5 ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

  it("a tenant's Host naming another namespace's tlsSecret is an Error naming the field; the victim's certificate keeps only its own name", async function () {
    this.timeout(40_000);
    const s = await settled();
    const evil = s.get('tenant/evil');
    assert.equal(evil?.state, 'Error');
    assert.equal(
      evil?.errorReason,
      'spec.tlsSecret.namespace "default" must be the Host\'s own namespace "tenant" (or be left out)',
    );
    const pem = readFileSync(join(certDir, 'default', 'shop-tls', 'tls.crt'), 'utf8');
    const leaf = new X509Certificate(pem);
    assert.equal(leaf.subjectAltName, 'DNS:shop.hard.test');
    assert.deepEqual(s.get('default/shop')?.names, ['shop.hard.test']);
    assert.equal(existsSync(join(certDir, 'tenant')), false, 'nothing written for the tenant');
  });

  it('an authority outside --allowed-authorities is an Error on the Host and is never contacted', async function () {
    this.timeout(40_000);
    const s = await settled();
    const ssrf = s.get('default/ssrf');
    assert.equal(ssrf?.state, 'Error');
    assert.equal(
      ssrf?.errorReason,
      `spec.acmeProvider.authority "${trapUrl}" is not in the operator's allowed authorities (--allowed-authorities); it is not contacted`,
    );
    assert.equal(trapConnections, 0);
    assert.equal(existsSync(join(certDir, 'default', 'ssrf-tls')), false);
  });

  it('Hosts sharing a tlsSecret with different acmeProviders are all an Error (no majority vote), nothing ordered', async function () {
    this.timeout(40_000);
    const s = await settled();
    for (const [k, other] of [
      ['default/split-a', 'default/split-b'],
      ['default/split-b', 'default/split-a'],
    ] as const) {
      assert.equal(s.get(k)?.state, 'Error', k);
      assert.equal(
        s.get(k)?.errorReason,
        `spec.acmeProvider (email) differs between the Hosts sharing tlsSecret default/split-tls (${other}); make them identical`,
      );
    }
    assert.equal(existsSync(join(certDir, 'default', 'split-tls')), false);
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 1, 'only shop was ordered');
  });
});
