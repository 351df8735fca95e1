import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { hostStatuses, writeHosts } from './helpers.ts';

// Pebble's example EAB key (pebble-config-external-account-bindings.json).
const EAB_KID = 'kid-1';
const EAB_KEY = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';

const baseArgs = (
  stack: Stack,
  pebble: PebbleHandle,
  hostsFile: string,
  name: string,
  authority = pebble.directoryUrl,
): string[] => [
  `--hosts-file=${hostsFile}`,
  `--allowed-authorities=${authority}`,
  `--cert-dir=${stack.mkdir(`certs-${name}`)}`,
  `--ca-file=${pebble.caCertPath}`,
  '--backoff-initial=1s',
  '--backoff-max=2s',
  '--poll-interval=100ms',
  '--acme-retries=0',
];

const waitState = (acme: ServiceHandle, key: string, state: string) =>
  waitUntil(
    `${key} ${state}`,
    async () => {
      const h = (await hostStatuses(acme)).get(key);
      return h?.state === state ? h : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );

describe('acme protocol: external account binding', function () {
  const stack = new Stack('acme-eab').install();
  let pebble: PebbleHandle;
  let challenge: number;
  let hostsFile: string;

  before(async function () {
    this.timeout(60_000);
    challenge = await freePort();
    pebble = await stack.pebble({
      httpPort: challenge,
      config: { externalAccountBindingRequired: true, externalAccountMACKeys: { [EAB_KID]: EAB_KEY } },
    });
    hostsFile = join(stack.dir, 'hosts.yaml');
    writeHosts(hostsFile, [
      { name: 'eab', hostname: 'eab.proto.test', secret: 'eab-tls', authority: pebble.directoryUrl },
    ]);
  });

  it('without EAB the account cannot be created: Error with the CA reason', async function () {
    this.timeout(40_000);
    const acme = await stack.service('acme', {
      ports: { challenge },
      args: baseArgs(stack, pebble, hostsFile, 'no-eab'),
    });
    try {
      const err = await waitState(acme, 'default/eab', 'Error');
      assert.equal(err.phasePending, 'ACMEUserRegistered');
      assert.match(
        err.errorReason ?? '',
        /requires newAccount requests must include a value for the 'externalAccountBinding'/,
      );
    } finally {
      await acme.stop();
    }
  });

  it('with --eab-kid and --eab-hmac-key the account binds and the certificate is issued', async function () {
    this.timeout(40_000);
    const acme = await stack.service('acme', {
      ports: { challenge },
      args: [...baseArgs(stack, pebble, hostsFile, 'eab'), `--eab-kid=${EAB_KID}`],
      env: { EAB_HMAC_KEY: EAB_KEY },
    });
    try {
      await waitState(acme, 'default/eab', 'Ready');
      const config = await acme.admin('/config');
      assert.ok(!config.body.includes(EAB_KEY), 'the HMAC key is redacted');
    } finally {
      await acme.stop();
    }
  });
});

// ARI is tested against Pebble v2.10, which serves it (ari.test.ts); Debian's Pebble 2.4 has none.

describe('acme protocol: the CA cannot reach the challenge (no self-check)', function () {
  const stack = new Stack('acme-invalid').install();
  let acme: ServiceHandle;

  before(async function () {
    this.timeout(60_000);
    // Pebble validates on a port nobody listens on: every authorization becomes invalid.
    const pebble = await stack.pebble({ httpPort: await freePort() });
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeHosts(hostsFile, [
      { name: 'nope', hostname: 'nope.proto.test', secret: 'nope-tls', authority: pebble.directoryUrl },
    ]);
    acme = await stack.service('acme', { args: baseArgs(stack, pebble, hostsFile, 'invalid') });
  });

  it('reports the CA validation error and replaces the invalid order with a new one on retry', async function () {
    this.timeout(40_000);
    const err = await waitState(acme, 'default/nope', 'Error');
    assert.equal(err.phasePending, 'ACMECertificateChallenge');
    assert.match(
      err.errorReason ?? '',
      /^challenge for nope\.proto\.test failed: .*(connection refused|Connection refused|Connecting to)/i,
    );
    assert.equal(err.temporaryCertificate, true, 'the temporary certificate stays in place');
    await waitUntil(
      'a second order after the backoff',
      async () =>
        (await acme.metric('acme_request_duration_seconds_count', { op: 'new-order', status: '201' })) >= 2,
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    assert.ok((await acme.metric('acme_orders_total', { result: 'failed' })) >= 1);
  });
});
