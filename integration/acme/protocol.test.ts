import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { FaultProxy, hostStatuses, writeHosts } from './helpers.ts';

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

describe('acme protocol: ARI renewal window (RFC 9773) from the directory', function () {
  const stack = new Stack('acme-ari').install();
  let proxy: FaultProxy;
  let acme: ServiceHandle;
  /** The suggested windows the proxy served (ms since the epoch). */
  const windows: Array<{ start: number; end: number }> = [];

  before(async function () {
    this.timeout(60_000);
    const challenge = await freePort();
    // Pebble's default validity is 5 years: without ARI the next renewal would be years away.
    const pebble = await stack.pebble({ httpPort: challenge });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
    const authority = await proxy.start();
    const origin = new URL(authority).origin;
    proxy.decide = (method, path) => {
      if (method === 'GET' && path === '/dir') {
        const dir = {
          newNonce: `${origin}/nonce-plz`,
          newAccount: `${origin}/sign-me-up`,
          newOrder: `${origin}/order-plz`,
          revokeCert: `${origin}/revoke-cert`,
          keyChange: `${origin}/rollover-account-key`,
          renewalInfo: `${origin}/renewal-info`,
          meta: { termsOfService: 'data:text/plain,test' },
        };
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(dir) };
      }
      if (method === 'GET' && path.startsWith('/renewal-info/')) {
        const now = Date.now();
        windows.push({ start: now + 3000, end: now + 4000 });
        const body = {
          suggestedWindow: {
            start: new Date(now + 3000).toISOString(),
            end: new Date(now + 4000).toISOString(),
          },
        };
        return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
      }
      return undefined;
    };
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeHosts(hostsFile, [{ name: 'ari', hostname: 'ari.proto.test', secret: 'ari-tls', authority }]);
    acme = await stack.service('acme', {
      ports: { challenge },
      args: baseArgs(stack, pebble, hostsFile, 'ari', authority),
    });
  });
  after(() => proxy.close());

  it('schedules the renewal inside the suggested window and renews then', async function () {
    this.timeout(40_000);
    const ready = await waitState(acme, 'default/ari', 'Ready');
    const next = Date.parse(ready.nextRenewal ?? '');
    const notAfter = Date.parse(ready.notAfter ?? '');
    assert.ok(notAfter - Date.now() > 365 * 86_400_000, 'a long-lived certificate');
    // Inside a window the CA suggested (compared with the served windows, not with the test's clock).
    assert.ok(
      windows.some((w) => next >= Math.floor(w.start / 1000) * 1000 && next <= w.end),
      `next renewal ${ready.nextRenewal} lies in a served window ${JSON.stringify(windows)}`,
    );
    await waitUntil(
      'renewed by ARI',
      async () => (await acme.metric('acme_orders_total', { result: 'issued' })) >= 2,
      {
        timeoutMs: 20_000,
        intervalMs: 200,
      },
    );
  });
});

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
