import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import type { ParsedHost } from '../src/host.ts';
import {
  MemoryCertificateStore,
  parseTestHosts,
  settle,
  testHost,
  testIssuer,
  withExists,
  HookedStore,
} from './fakes.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString();

const none = (name: string, secret?: string): string =>
  `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec: {hostname: ${name}.example.com${secret !== undefined ? `, tlsSecret: {name: ${secret}}` : ''}}\n`;

describe('acme issuer: /hosts status of each Host (README "State you can see")', () => {
  it('a Ready ACME Host: exactly the certificate facts, no error fields', async () => {
    const t = testIssuer();
    await t.issuer.setHosts(parseTestHosts(testHost('a')));
    await t.issuer.idle();
    assert.deepEqual(t.issuer.statuses(), [
      {
        key: 'default/a',
        hostname: 'a.example.com',
        tlsSecret: 'default/a-tls',
        state: 'Ready',
        phaseCompleted: 'NA',
        phasePending: 'NA',
        tlsCertificateSource: 'ACME',
        notAfter: iso(T0 + 90 * DAY),
        nextRenewal: iso(T0 + 60 * DAY),
        names: ['a.example.com'],
        temporaryCertificate: false,
      },
    ]);
    await t.issuer.close();
  });

  it('an ACME Host in Error: reason, code, time, backoff and retry time, on the temporary certificate', async () => {
    const t = testIssuer();
    t.ca.outcomes.push({
      kind: 'fail',
      error: new AcmeError('ERR_ACME_DNS', 'GET https://ca.example/dir: ENOTFOUND'),
    });
    await t.issuer.setHosts(parseTestHosts(testHost('a')));
    await t.issuer.idle();
    assert.deepEqual(t.issuer.statuses(), [
      {
        key: 'default/a',
        hostname: 'a.example.com',
        tlsSecret: 'default/a-tls',
        state: 'Error',
        phaseCompleted: 'ACMEUserRegistered',
        phasePending: 'ACMECertificateChallenge',
        tlsCertificateSource: 'ACME',
        errorReason: 'GET https://ca.example/dir: ENOTFOUND',
        errorCode: 'ERR_ACME_DNS',
        errorTimestamp: iso(T0),
        errorBackoff: '5m0s',
        nextRenewal: iso(T0 + 5 * MIN),
        names: ['a.example.com'],
        temporaryCertificate: true,
      },
    ]);
    await t.issuer.close();
  });

  it('a failed renewal keeps serving: Error with the valid notAfter', async () => {
    const t = testIssuer();
    await t.issuer.setHosts(parseTestHosts(testHost('a')));
    await t.issuer.idle();
    t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') });
    t.clock.advance(60 * DAY);
    await settle();
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.notAfter, iso(T0 + 90 * DAY));
    assert.equal(s?.temporaryCertificate, false);
    assert.equal(s?.nextRenewal, iso(T0 + 60 * DAY + 5 * MIN));
    await t.issuer.close();
  });

  it('with ARI and a profile: the profile, the CA window and the next renewalInfo request', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: MIN, maxMs: HOUR } });
    t.ca.window = { start: T0 + 40 * DAY, end: T0 + 40 * DAY };
    await t.issuer.setHosts(parseTestHosts(testHost('a', { provider: ', profile: shortlived' })));
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.profile, 'shortlived');
    assert.deepEqual(s?.renewalWindow, { start: iso(T0 + 40 * DAY), end: iso(T0 + 40 * DAY) });
    assert.equal(s?.nextRenewalInfoCheck, iso(T0 + HOUR));
    assert.equal(s?.nextRenewal, iso(T0 + 40 * DAY));
    await t.issuer.close();
  });

  it('an invalid Host: Error, DefaultsFilled pending, source Unknown, its reason; no hostname when it had none', async () => {
    const t = testIssuer();
    const hosts: ParsedHost[] = [
      {
        kind: 'invalid',
        key: 'default/w',
        namespace: 'default',
        name: 'w',
        hostname: '*.example.com',
        reason: 'wildcard hostname',
        origin: { file: 'hosts.yaml', index: 0 },
      },
      {
        kind: 'invalid',
        key: 'default/e',
        namespace: 'default',
        name: 'e',
        hostname: '',
        reason: 'spec.hostname is required',
        origin: { file: 'hosts.yaml', index: 1 },
      },
    ];
    await t.issuer.setHosts(hosts);
    assert.deepEqual(t.issuer.statuses(), [
      {
        key: 'default/w',
        hostname: '*.example.com',
        state: 'Error',
        phaseCompleted: 'NA',
        phasePending: 'DefaultsFilled',
        tlsCertificateSource: 'Unknown',
        errorReason: 'wildcard hostname',
      },
      {
        key: 'default/e',
        state: 'Error',
        phaseCompleted: 'NA',
        phasePending: 'DefaultsFilled',
        tlsCertificateSource: 'Unknown',
        errorReason: 'spec.hostname is required',
      },
    ]);
    await t.issuer.close();
  });

  it('authority none: Ready with source None without a tlsSecret, Other with one that exists', async () => {
    const certs = new HookedStore();
    withExists(certs);
    const t = testIssuer({}, { certs });
    await t.issuer.setHosts(parseTestHosts(none('n'), none('o', 'o-tls')));
    assert.deepEqual(t.issuer.statuses(), [
      {
        key: 'default/n',
        hostname: 'n.example.com',
        state: 'Ready',
        phaseCompleted: 'NA',
        phasePending: 'NA',
        tlsCertificateSource: 'None',
      },
      {
        key: 'default/o',
        hostname: 'o.example.com',
        tlsSecret: 'default/o-tls',
        state: 'Ready',
        phaseCompleted: 'NA',
        phasePending: 'NA',
        tlsCertificateSource: 'Other',
      },
    ]);
    await t.issuer.close();
  });

  it('authority none on a store without an existence check: reads the Secret instead', async () => {
    const certs = new MemoryCertificateStore();
    const donor = testIssuer();
    await donor.issuer.setHosts(parseTestHosts(testHost('a')));
    await donor.issuer.idle();
    certs.items.set('default/have', donor.certs.items.get('default/a-tls')!);
    const failing = new MemoryCertificateStore();
    failing.read = () => Promise.reject(new Error('EACCES'));
    for (const [store, want] of [
      [certs, { have: 'Ready', gone: 'tlsSecret default/gone does not exist' }],
      [
        failing,
        {
          have: 'tlsSecret default/have cannot be read: EACCES',
          gone: 'tlsSecret default/gone cannot be read: EACCES',
        },
      ],
    ] as const) {
      const t = testIssuer({}, { certs: store });
      await t.issuer.setHosts(parseTestHosts(none('h', 'have'), none('g', 'gone')));
      const by = new Map(t.issuer.statuses().map((s) => [s.key, s.errorReason ?? s.state]));
      assert.equal(by.get('default/h'), want.have);
      assert.equal(by.get('default/g'), want.gone);
      await t.issuer.close();
    }
    await donor.issuer.close();
  });
});
