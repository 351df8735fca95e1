import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { type HostStatusView, hostStatuses } from './helpers.ts';
import { PEBBLE2_CONFIG, PROFILE_VALIDITY, pebble2Bin } from './pebble2/pebble2.ts';

const DAY = 86_400_000;

// Certificate profiles against Pebble v2.10 configured with classic (90 days), shortlived (6 days)
// and tlsserver (10 days here, to tell it from classic).
describe('acme certificate profiles against Pebble v2.10', function () {
  const stack = new Stack('acme-profile').install();
  let pebble: PebbleHandle;
  let acme: ServiceHandle;
  let certDir: string;

  const host = (name: string, extra: { annotation?: string; profile?: string }): string =>
    [
      'apiVersion: getambassador.io/v3alpha1',
      'kind: Host',
      'metadata:',
      `  name: ${name}`,
      ...(extra.annotation !== undefined
        ? ['  annotations:', `    acme.extsvc.dev/profile: ${extra.annotation}`]
        : []),
      'spec:',
      `  hostname: ${name}.profile.test`,
      '  acmeProvider:',
      `    authority: "${pebble.directoryUrl}"`,
      ...(extra.profile !== undefined ? [`    profile: ${extra.profile}`] : []),
      `  tlsSecret: { name: ${name}-tls }`,
    ].join('\n');

  const leaf = (name: string): X509Certificate =>
    new X509Certificate(readFileSync(join(certDir, 'default', `${name}-tls`, 'tls.crt'), 'utf8'));

  before(async function () {
    this.timeout(180_000);
    const bin = pebble2Bin();
    const challenge = await freePort();
    pebble = await stack.pebble({ httpPort: challenge, bin, config: PEBBLE2_CONFIG });
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeFileSync(
      hostsFile,
      `${[
        host('short', { annotation: 'shortlived' }),
        host('server', { profile: 'tlsserver' }),
        host('plain', {}),
        host('nosuch', { annotation: 'nosuch' }),
      ].join('\n---\n')}\n`,
    );
    certDir = stack.mkdir('certs');
    acme = await stack.service('acme', {
      ports: { challenge },
      args: [
        `--hosts-file=${hostsFile}`,
        `--allowed-authorities=${pebble.directoryUrl}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        '--default-profile=classic',
        '--backoff-initial=1h',
        '--backoff-max=2h',
        '--poll-interval=100ms',
        '--acme-retries=0',
      ],
    });
  });

  const settled = (): Promise<Map<string, HostStatusView>> =>
    waitUntil(
      'every Host Ready or Error',
      async () => {
        const all = await hostStatuses(acme);
        return [...all.values()].every((h) => h.state === 'Ready' || h.state === 'Error') && all.size === 4
          ? all
          : undefined;
      },
      { timeoutMs: 40_000, intervalMs: 200 },
    );

  it('a shortlived Host gets a six-day certificate and plans its renewal in time (CA window or 2/3)', async function () {
    this.timeout(60_000);
    const short = (await settled()).get('default/short');
    assert.equal(short?.state, 'Ready', short?.errorReason);
    assert.equal(short.profile, 'shortlived');
    const cert = leaf('short');
    const notBefore = Date.parse(cert.validFrom);
    const notAfter = Date.parse(cert.validTo);
    // Pebble: notAfter = notBefore + validity - 1 s.
    assert.ok(
      Math.abs(notAfter - notBefore - PROFILE_VALIDITY.shortlived * 1000) <= 1000,
      `six days: ${cert.validFrom} .. ${cert.validTo}`,
    );
    // Pebble's window (2/3 of six days ± 1 day) and the 2/3 rule: between day 3 and day 4, leaving
    // at least two days before expiry (not weeks of margin as for 90 days, not after expiry).
    const planned = Date.parse(short.nextRenewal ?? '');
    assert.ok(
      planned >= notBefore + 3 * DAY - 1000 && planned <= notBefore + 4 * DAY,
      `renewal ${short.nextRenewal} between day 3 and day 4 of ${cert.validFrom}`,
    );
    assert.ok(short.renewalWindow !== undefined, "Pebble's ARI window was read");
  });

  it("spec.acmeProvider.profile and --default-profile choose the CA's profile (validity tells)", async function () {
    this.timeout(60_000);
    const all = await settled();
    assert.equal(all.get('default/server')?.profile, 'tlsserver');
    assert.equal(all.get('default/plain')?.profile, 'classic');
    const lifetime = (name: string): number => {
      const c = leaf(name);
      return Math.round((Date.parse(c.validTo) - Date.parse(c.validFrom)) / 1000);
    };
    assert.ok(
      Math.abs(lifetime('server') - PROFILE_VALIDITY.tlsserver) <= 1,
      `tlsserver ${lifetime('server')} s`,
    );
    assert.ok(Math.abs(lifetime('plain') - PROFILE_VALIDITY.classic) <= 1, `classic ${lifetime('plain')} s`);
  });

  it('a profile the directory does not advertise is a clear Error on that Host, and no order is placed', async function () {
    this.timeout(60_000);
    const bad = (await settled()).get('default/nosuch');
    assert.equal(bad?.state, 'Error');
    assert.equal(
      bad.errorReason,
      `certificate profile "nosuch" is not offered by ${pebble.directoryUrl} (its directory advertises: classic, shortlived, tlsserver)`,
    );
    assert.equal(bad.temporaryCertificate, true, 'the temporary certificate stays');
    // Three Hosts issued with three newOrder requests: the refused profile never reached the CA.
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 3);
    assert.equal(
      pebble
        .proc()
        .lines()
        .filter((l) => l.includes('POST /order-plz')).length,
      3,
      "Pebble's log of newOrder requests",
    );
  });
});
