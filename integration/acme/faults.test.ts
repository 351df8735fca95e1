import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import { freePort, waitUntil } from '../harness/proc.ts';
import { type EnvoyHandle, type PebbleHandle, type ServiceHandle, Stack } from '../harness/stack.ts';
import { keyMatchesChain, readCertificate } from '../../services/acme/src/certs.ts';
import { FaultProxy, type HostSpec, hostStatuses, writeHosts } from './helpers.ts';

// Faults against real Pebble (behind a fault-injecting HTTPS proxy) and a real Envoy.
describe('acme faults: rate limits, restarts, CA and challenge outages', function () {
  const stack = new Stack('acme-faults').install();
  let pebble: PebbleHandle;
  let proxy: FaultProxy;
  let acme: ServiceHandle;
  let envoy: EnvoyHandle;
  let certDir: string;
  let hostsFile: string;
  let httpPort: number;
  let authority: string;
  const hosts: HostSpec[] = [];
  const addHost = (name: string): void => {
    hosts.push({ name, hostname: `${name}.faults.test`, secret: `${name}-tls`, authority });
    writeHosts(hostsFile, hosts);
  };
  const waitState = (key: string, state: string, timeoutMs = 30_000) =>
    waitUntil(
      `${key} ${state}`,
      async () => {
        const h = (await hostStatuses(acme)).get(key);
        return h?.state === state ? h : undefined;
      },
      { timeoutMs, intervalMs: 100 },
    );
  const serial = (name: string): string =>
    readCertificate(readFileSync(join(certDir, 'default', `${name}-tls`, 'tls.crt'), 'utf8')).serial;
  const startEnvoy = (): Promise<EnvoyHandle> =>
    stack.envoy({ HTTP_PORT: httpPort, ACME_CHALLENGE_PORT: acme.ports.challenge as number });

  before(async function () {
    this.timeout(90_000);
    httpPort = await freePort();
    // 15 % of nonces rejected: badNonce is retried transparently by every step below.
    pebble = await stack.pebble({ httpPort, env: { PEBBLE_WFE_NONCEREJECT: '15' } });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
    authority = await proxy.start();
    certDir = stack.mkdir('certs');
    hostsFile = join(stack.dir, 'hosts.yaml');
    addHost('first');
    acme = await stack.service('acme', {
      args: [
        `--hosts-file=${hostsFile}`,
        `--cert-dir=${certDir}`,
        `--ca-file=${pebble.caCertPath}`,
        `--allowed-authorities=${authority}`,
        '--backoff-initial=1s',
        '--backoff-max=3s',
        '--hosts-poll-interval=200ms',
        '--poll-interval=200ms',
        '--acme-retries=0',
        '--acme-timeout=5s',
        `--self-check-address=127.0.0.1:${httpPort}`,
        '--self-check-attempts=20',
      ],
    });
    envoy = await startEnvoy();
    await waitState('default/first', 'Ready').catch((err: unknown) => {
      stack.printLogs();
      throw err;
    });
  });
  after(async () => {
    await proxy.close();
  });

  it('a 429 rateLimited with Retry-After ends the attempt; the next waits at least Retry-After', async function () {
    this.timeout(40_000);
    let limited = 0;
    proxy.decide = (method, path) => {
      if (method === 'POST' && path.startsWith('/order-plz') && limited === 0) {
        limited += 1;
        return {
          status: 429,
          headers: { 'content-type': 'application/problem+json', 'retry-after': '3' },
          body: JSON.stringify({
            type: 'urn:ietf:params:acme:error:rateLimited',
            detail: 'too many new orders',
          }),
        };
      }
      return undefined;
    };
    const before = proxy.seen.length;
    addHost('limited');
    const err = await waitState('default/limited', 'Error');
    assert.match(
      err.errorReason ?? '',
      /rate limited by the CA \(new-order\): too many new orders; retry after 3s/,
    );
    assert.equal(err.errorBackoff, '3s');
    await waitState('default/limited', 'Ready');
    const orders = proxy.seen
      .slice(before)
      .filter((r) => r.method === 'POST' && r.path.startsWith('/order-plz'));
    // Every later new-order POST (badNonce retries repeat it) comes after the Retry-After.
    assert.ok(orders.length >= 2, `${orders.length} new-order requests`);
    for (const o of orders.slice(1)) {
      const gap = o.at - (orders[0]?.at ?? 0);
      assert.ok(gap >= 2900, `a new-order ${gap} ms after the rate-limited one`);
    }
    assert.equal(await acme.metric('acme_orders_total', { result: 'rate_limited' }), 1);
    proxy.decide = () => undefined;
  });

  it('acme killed mid-order restarts cleanly: no broken files, the order completes, valid certs are not reissued', async function () {
    this.timeout(60_000);
    let delayed = false;
    proxy.decide = (method, path) => {
      if (method === 'POST' && path.startsWith('/finalize-order/') && !delayed) {
        delayed = true;
        return { delayMs: 4000 };
      }
      return undefined;
    };
    addHost('mid');
    await waitUntil('finalize in flight', () => delayed, { timeoutMs: 20_000, intervalMs: 50 });
    const firstSerial = serial('first');
    await acme.kill();
    // The temporary pair is in place and consistent while nobody runs.
    const dir = join(certDir, 'default', 'mid-tls');
    const tmpPair = {
      crt: readFileSync(join(dir, 'tls.crt'), 'utf8'),
      key: readFileSync(join(dir, 'tls.key'), 'utf8'),
    };
    assert.ok(keyMatchesChain(tmpPair.crt, tmpPair.key));
    await acme.restart();
    const ready = await waitState('default/mid', 'Ready');
    assert.equal(ready.temporaryCertificate, false);
    const crt = readFileSync(join(dir, 'tls.crt'), 'utf8');
    assert.ok(keyMatchesChain(crt, readFileSync(join(dir, 'tls.key'), 'utf8')));
    assert.deepEqual(readCertificate(crt).names, ['mid.faults.test']);
    const entries = readdirSync(dir).filter((e) => e.startsWith('..') || e.includes('tmp'));
    assert.equal(entries.length, 2, `only ..data and one version: ${entries.join(', ')}`);
    // The restarted process counts its own requests: one order created (mid), none for the valid
    // certificates (badNonce answers are 400s and not counted here).
    assert.equal(
      await acme.metric('acme_request_duration_seconds_count', { op: 'new-order', status: '201' }),
      1,
    );
    assert.equal(await acme.metric('acme_orders_total', { result: 'issued' }), 1);
    assert.equal(serial('first'), firstSerial, 'valid stored certificate not reissued');
  });

  it('Pebble down: Error with the reason, existing certificates untouched; back: Ready again', async function () {
    this.timeout(60_000);
    const firstSerial = serial('first');
    await pebble.stop();
    addHost('outage');
    const err = await waitState('default/outage', 'Error');
    assert.match(err.errorReason ?? '', /ACME server (unreachable|error 502)/);
    assert.equal(serial('first'), firstSerial);
    assert.equal((await hostStatuses(acme)).get('default/first')?.state, 'Ready');
    // A fresh Pebble forgot the account: acme registers again and carries on.
    await pebble.restart();
    const ok = await waitState('default/outage', 'Ready', 30_000);
    assert.equal(ok.temporaryCertificate, false);
    assert.ok((await acme.metric('acme_orders_total', { result: 'failed' })) >= 1);
  });

  it('challenge unreachable: the self-check fails before the CA is asked; recovers when the route is back', async function () {
    this.timeout(60_000);
    await envoy.stop();
    const before = proxy.seen.length;
    addHost('unreach');
    const err = await waitState('default/unreach', 'Error', 40_000);
    assert.match(
      err.errorReason ?? '',
      /^self-check of http:\/\/unreach\.faults\.test\/\.well-known\/acme-challenge\/<token> through 127\.0\.0\.1:\d+ failed after 20 attempts/,
    );
    assert.equal(
      proxy.seen.slice(before).filter((r) => r.path.startsWith('/chalZ/')).length,
      0,
      'no challenge was submitted to the CA',
    );
    envoy = await startEnvoy();
    await waitState('default/unreach', 'Ready', 40_000);
  });
});
