import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { FaultProxy, hostStatuses, writeHosts } from './helpers.ts';
import { PEBBLE2_CONFIG, pebble2Bin, setRenewalInfo } from './pebble2/pebble2.ts';

// ARI (RFC 9773) against a CA that serves it: Pebble v2.10 built from the Go module proxy. The
// window is the CA's own (Pebble: 2/3 of the lifetime ± 1 day) and the CA moves it through its
// management interface; Pebble answers every renewalInfo with Retry-After: 21600, which
// --ari-poll-max clamps to 2 s here.
describe('acme ARI against Pebble v2.10: the window follows the CA, renewals send replaces', function () {
  const stack = new Stack('acme-ari2').install();
  let pebble: PebbleHandle;
  let acme: ServiceHandle;
  let certDir: string;

  before(async function () {
    this.timeout(180_000);
    const bin = pebble2Bin();
    const challenge = await freePort();
    pebble = await stack.pebble({ httpPort: challenge, bin, config: PEBBLE2_CONFIG });
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeFileSync(
      hostsFile,
      [
        'apiVersion: getambassador.io/v3alpha1',
        'kind: Host',
        'metadata: { name: ari }',
        'spec:',
        '  hostname: ari.ari2.test',
        `  acmeProvider: { authority: "${pebble.directoryUrl}", email: ops@example.com }`,
        '  tlsSecret: { name: ari-tls }',
        '',
      ].join('\n'),
    );
    certDir = stack.mkdir('certs');
    acme = await stack.service('acme', {
      ports: { challenge },
      args: [
        `--hosts-file=${hostsFile}`,
        `--allowed-authorities=${pebble.directoryUrl}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        // Pebble picks a random profile for an order that names none.
        '--default-profile=classic',
        '--ari-poll-min=500ms',
        '--ari-poll-max=2s',
        '--backoff-initial=1s',
        '--backoff-max=2s',
        '--poll-interval=100ms',
        '--acme-retries=0',
      ],
    });
  });

  it("plans the renewal in Pebble's own window, moves it when the CA moves the window, renews then with replaces", async function () {
    this.timeout(60_000);
    const ready = await waitUntil(
      'Ready with a renewal window',
      async () => {
        const h = (await hostStatuses(acme)).get('default/ari');
        return h?.state === 'Ready' && h.renewalWindow !== undefined ? h : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const leafPem = readFileSync(join(certDir, 'default', 'ari-tls', 'tls.crt'), 'utf8');
    const leaf = new X509Certificate(leafPem);
    const notBefore = Date.parse(leaf.validFrom);
    const notAfter = Date.parse(leaf.validTo);
    // Pebble's window for a 90-day classic certificate: 60 days after issue ± 1 day.
    const window = ready.renewalWindow ?? { start: '', end: '' };
    assert.ok(
      Date.parse(window.start) > notBefore + 58 * 86_400_000 &&
        Date.parse(window.end) < notBefore + 62 * 86_400_000,
      `Pebble's own window ${JSON.stringify(window)} (notBefore ${leaf.validFrom})`,
    );
    // The earlier of a pick in that window and 2/3 of the lifetime less up to 2 % of it (1.8 days).
    const planned = Date.parse(ready.nextRenewal ?? '');
    assert.ok(
      planned >= notBefore + 58 * 86_400_000 && planned <= Date.parse(window.end) && planned < notAfter,
      `plan ${ready.nextRenewal}`,
    );
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 1);

    // The CA moves the window (an incident): renew within seconds. No restart, no Host change.
    const start = Date.now() + 8000;
    const moved = { start, end: start + 2000 };
    await setRenewalInfo(pebble, leafPem, moved);
    const replanned = await waitUntil(
      'the planned renewal moved into the new window',
      async () => {
        const h = (await hostStatuses(acme)).get('default/ari');
        const at = Date.parse(h?.nextRenewal ?? '');
        return h?.renewalWindow?.start === new Date(moved.start).toISOString() ? { h, at } : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    assert.ok(
      replanned.at >= Math.floor(moved.start / 1000) * 1000 && replanned.at <= moved.end,
      `next renewal ${replanned.h.nextRenewal} lies in the moved window`,
    );
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 1, 'not renewed yet');

    await waitUntil(
      'renewed at the moved window',
      async () => (await acme.metric('acme_orders_total', { result: 'issued' })) >= 2,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const renewed = new X509Certificate(readFileSync(join(certDir, 'default', 'ari-tls', 'tls.crt'), 'utf8'));
    assert.notEqual(renewed.serialNumber, leaf.serialNumber);
    // Pebble accepted the order as the ARI replacement of the first one (wfe.go validateReplacementOrder).
    const replacement = await waitUntil(
      'Pebble logs the replacement',
      () =>
        pebble
          .proc()
          .lines()
          .find((l) => /ARI: order "[^"]+" is a replacement of "[^"]+"/.test(l)),
      { timeoutMs: 5000, intervalMs: 100 },
    );
    assert.match(replacement, /is a replacement of/);
    const after = (await hostStatuses(acme)).get('default/ari');
    assert.equal(after?.state, 'Ready');
    assert.equal(after?.profile, 'classic');
  });
});

// What Pebble cannot be made to do: answer renewalInfo with 429 and a Retry-After. The fault proxy
// sits in front of Pebble v2.10 and refuses the first two renewalInfo requests.
describe('acme ARI against Pebble v2.10 behind the fault proxy: renewalInfo 429 with Retry-After', function () {
  const stack = new Stack('acme-ari2-429').install();
  let proxy: FaultProxy;
  let acme: ServiceHandle;
  const isAri = (method: string, path: string): boolean => method === 'GET' && /\/renewalInfo\/./.test(path);

  before(async function () {
    this.timeout(180_000);
    const bin = pebble2Bin();
    const challenge = await freePort();
    const pebble = await stack.pebble({ httpPort: challenge, bin, config: PEBBLE2_CONFIG });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
    const authority = await proxy.start();
    let refused = 0;
    proxy.decide = (method, path) => {
      if (!isAri(method, path) || refused >= 2) return undefined;
      refused += 1;
      return {
        status: 429,
        headers: { 'content-type': 'application/problem+json', 'retry-after': '2' },
        body: JSON.stringify({ type: 'urn:ietf:params:acme:error:rateLimited', detail: 'slow down' }),
      };
    };
    const hostsFile = join(stack.dir, 'hosts.yaml');
    writeHosts(hostsFile, [{ name: 'ari', hostname: 'ari.ari429.test', secret: 'ari-tls', authority }]);
    acme = await stack.service('acme', {
      ports: { challenge },
      args: [
        `--hosts-file=${hostsFile}`,
        `--allowed-authorities=${authority}`,
        `--cert-dir=${stack.mkdir('certs')}`,
        `--ca-file=${pebble.caCertPath}`,
        '--default-profile=classic',
        '--ari-poll-min=200ms',
        '--ari-poll-max=5s',
        '--backoff-initial=1s',
        '--backoff-max=2s',
        '--poll-interval=100ms',
        '--acme-retries=0',
      ],
    });
  });
  after(() => proxy.close());

  it("stays Ready on the lifetime plan, waits the 429's Retry-After, then takes the CA's window", async function () {
    this.timeout(60_000);
    const withWindow = await waitUntil(
      "Ready with Pebble's window after two refusals",
      async () => {
        const h = (await hostStatuses(acme)).get('default/ari');
        return h?.state === 'Ready' && h.renewalWindow !== undefined ? h : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    assert.ok(Date.parse(withWindow.nextRenewal ?? '') > Date.now() + 30 * 86_400_000, 'renewal weeks away');
    const asks = proxy.seen.filter((r) => isAri(r.method, r.path));
    assert.ok(asks.length >= 3, `two refused renewalInfo requests and one answered (${asks.length})`);
    // Retry-After: 2 s, less at most a tenth of jitter; the backoff alone would have been 200 ms, 400 ms.
    for (const i of [1, 2]) {
      const gap = (asks[i]?.at ?? 0) - (asks[i - 1]?.at ?? 0);
      assert.ok(gap >= 1800, `request ${i + 1} came ${gap} ms after the 429 (Retry-After: 2)`);
    }
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 1, 'no order because of ARI');
  });
});
