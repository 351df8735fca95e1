import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type EnvoyHandle, type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { hostStatuses, tlsServe, writeHosts } from './helpers.ts';

// Real Pebble validates HTTP-01 through the real Envoy's HTTP listener routed to acme; Envoy's HTTPS
// listener serves what acme stored, and serves the renewed certificate without a restart.
describe('acme: issue through Envoy, serve over TLS, renew by itself', function () {
  const stack = new Stack('acme-issue').install();
  let pebble: PebbleHandle;
  let acme: ServiceHandle;
  let envoy: EnvoyHandle;
  let certDir: string;
  let hostsFile: string;
  const secretDir = (): string => join(certDir, 'default', 'site-tls');

  before(async function () {
    this.timeout(90_000);
    const httpPort = await freePort();
    // 40 s certificates: renewal at 2/3 comes by itself within the suite.
    pebble = await stack.pebble({ httpPort, config: { certificateValidityPeriod: 40 } });
    certDir = stack.mkdir('certs');
    hostsFile = join(stack.dir, 'hosts.yaml');
    const authority = pebble.directoryUrl;
    writeHosts(hostsFile, [
      { name: 'site-a', hostname: 'a.site.test', secret: 'site-tls', authority },
      { name: 'site-b', hostname: 'b.site.test', secret: 'site-tls', authority },
      { name: 'wild', hostname: '*.site.test', secret: 'wild-tls', authority },
      { name: 'nosecret', hostname: 'c.site.test', authority },
      { name: 'badauth', hostname: 'd.site.test', secret: 'd-tls', authority: 'http://127.0.0.1:1/dir' },
    ]);
    acme = await stack.service('acme', {
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        `--allowed-authorities=${authority}`,
        '--backoff-initial=1s',
        '--backoff-max=4s',
        '--renew-jitter=0',
        '--hosts-poll-interval=200ms',
        '--poll-interval=200ms',
        // The self-check goes through Envoy as Pebble does; it also bridges Envoy's start.
        `--self-check-address=127.0.0.1:${httpPort}`,
        '--self-check-attempts=20',
      ],
    });
    envoy = await stack.envoy({
      HTTP_PORT: httpPort,
      ACME_CHALLENGE_PORT: acme.ports.challenge as number,
      TLS: true,
      CERT_DIR: certDir,
      TLS_SECRET: 'default/site-tls',
    });
  });

  it('issues one certificate for the Hosts sharing a tlsSecret and reports them Ready', async function () {
    this.timeout(60_000);
    // Three Ready Hosts: site-a and site-b (one certificate), and nosecret, which names no tlsSecret
    // and gets its own certificate in Edge Stack's default Secret (its hostname).
    const hosts = await waitUntil(
      'site Hosts Ready',
      async () => {
        const h = await hostStatuses(acme);
        return h.get('default/site-a')?.state === 'Ready' &&
          h.get('default/site-b')?.state === 'Ready' &&
          h.get('default/nosecret')?.state === 'Ready'
          ? h
          : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 200 },
    );
    const a = hosts.get('default/site-a');
    assert.deepEqual(a?.names, ['a.site.test', 'b.site.test']);
    assert.equal(a?.temporaryCertificate, false);
    assert.ok(a?.notAfter && a.nextRenewal && Date.parse(a.nextRenewal) < Date.parse(a.notAfter));
    const chain = readFileSync(join(secretDir(), 'tls.crt'), 'utf8');
    const leaf = new X509Certificate(chain);
    assert.match(leaf.subjectAltName ?? '', /DNS:a\.site\.test/);
    assert.match(leaf.subjectAltName ?? '', /DNS:b\.site\.test/);
    assert.equal(await acme.metric('acme_hosts', { state: 'Ready' }), 3);
    const c = new X509Certificate(readFileSync(join(certDir, 'default', 'c.site.test', 'tls.crt'), 'utf8'));
    assert.equal(c.subjectAltName, 'DNS:c.site.test');
    assert.deepEqual(hosts.get('default/nosecret')?.names, ['c.site.test']);
    assert.ok((await acme.metric('acme_orders_total', { result: 'issued' })) >= 1);
    assert.ok(
      (await acme.metric('acme_request_duration_seconds_count', { op: 'new-order', status: '201' })) >= 1,
    );
    const notAfter = await acme.metric('acme_certificate_not_after_timestamp_seconds', {
      secret: 'default/site-tls',
      temporary: 'false',
    });
    assert.equal(notAfter * 1000, Date.parse(leaf.validTo));
  });

  it('keeps invalid and wildcard Hosts in Error beside the valid ones', async () => {
    const hosts = await hostStatuses(acme);
    assert.equal(hosts.get('default/wild')?.state, 'Error');
    assert.match(
      hosts.get('default/wild')?.errorReason ?? '',
      /wildcard hostname "\*\.site\.test" cannot be validated with HTTP-01/,
    );
    // No tlsSecret: Edge Stack's default name (the hostname), not an Error.
    assert.equal(hosts.get('default/nosecret')?.tlsSecret, 'default/c.site.test');
    assert.equal(hosts.get('default/nosecret')?.state, 'Ready');
    assert.match(hosts.get('default/badauth')?.errorReason ?? '', /must be an https:\/\/ ACME directory URL/);
    assert.equal(await acme.metric('acme_hosts', { state: 'Error' }), 2);
  });

  it("serves the certificate on Envoy's HTTPS listener, verified against Pebble's root", async function () {
    this.timeout(30_000);
    const root = await pebble.roots();
    const stored = new X509Certificate(readFileSync(join(secretDir(), 'tls.crt'), 'utf8'));
    const served = await waitUntil(
      'Envoy serves the issued certificate',
      async () => {
        const s = await tlsServe(envoy.httpsPort, 'b.site.test', root).catch(() => undefined);
        return s && s.serial === stored.serialNumber.toUpperCase() ? s : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    assert.match(served.names, /b\.site\.test/);
  });

  it('answers challenge paths only for pending tokens (404 otherwise, through Envoy)', async () => {
    const r = await fetch(envoy.url('/.well-known/acme-challenge/not-a-token'), {
      headers: { host: 'a.site.test' },
    });
    assert.equal(r.status, 404);
    assert.ok((await acme.metric('acme_challenge_requests_total', { result: 'served' })) >= 1);
  });

  it('stores keys and accounts with restrictive permissions and no temporary leftovers', () => {
    assert.equal(statSync(join(secretDir(), 'tls.key')).mode & 0o777, 0o600);
    const accounts = readdirSync(join(certDir, '_accounts'));
    assert.equal(accounts.length, 1);
    const acct = join(certDir, '_accounts', accounts[0] as string);
    assert.equal(statSync(join(acct, 'user.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(acct, 'account.json')).mode & 0o777, 0o600);
    assert.deepEqual(
      readdirSync(secretDir()).filter((e) => e.includes('tmp')),
      [],
    );
  });

  it('renews by itself and Envoy serves the new certificate without a restart', async function () {
    this.timeout(60_000);
    const root = await pebble.roots();
    const before = await tlsServe(envoy.httpsPort, 'a.site.test', root);
    const updatesBefore =
      (await envoy.stats()).get(
        'listener.127.0.0.1_' + envoy.httpsPort + '.server_ssl_socket_factory.ssl_context_update_by_sds',
      ) ?? 0;
    const after = await waitUntil(
      'a renewed certificate served by Envoy',
      async () => {
        const s = await tlsServe(envoy.httpsPort, 'a.site.test', root).catch(() => undefined);
        return s && s.serial !== before.serial ? s : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 500 },
    );
    const stored = new X509Certificate(readFileSync(join(secretDir(), 'tls.crt'), 'utf8'));
    assert.equal(after.serial, stored.serialNumber.toUpperCase());
    const updatesAfter =
      (await envoy.stats()).get(
        'listener.127.0.0.1_' + envoy.httpsPort + '.server_ssl_socket_factory.ssl_context_update_by_sds',
      ) ?? 0;
    assert.ok(updatesAfter > updatesBefore, `ssl_context_update_by_sds ${updatesBefore} -> ${updatesAfter}`);
    assert.ok((await acme.metric('acme_orders_total', { result: 'issued' })) >= 2);
    assert.equal(envoy.proc.exitStatus, undefined, 'Envoy was not restarted');
  });

  it('picks up a new Host from the watched file without a restart', async function () {
    this.timeout(45_000);
    writeHosts(hostsFile, [
      { name: 'site-a', hostname: 'a.site.test', secret: 'site-tls', authority: pebble.directoryUrl },
      { name: 'site-b', hostname: 'b.site.test', secret: 'site-tls', authority: pebble.directoryUrl },
      { name: 'late', hostname: 'late.site.test', secret: 'late-tls', authority: pebble.directoryUrl },
    ]);
    const late = await waitUntil(
      'late Host Ready',
      async () => {
        const h = (await hostStatuses(acme)).get('default/late');
        return h?.state === 'Ready' ? h : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.deepEqual(late.names, ['late.site.test']);
    const leaf = new X509Certificate(readFileSync(join(certDir, 'default', 'late-tls', 'tls.crt'), 'utf8'));
    assert.match(leaf.subjectAltName ?? '', /DNS:late\.site\.test/);
    assert.equal((await hostStatuses(acme)).has('default/wild'), false, 'removed Hosts are gone');
  });
});
