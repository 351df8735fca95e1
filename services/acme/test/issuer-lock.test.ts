import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { StoredCertificate } from '../src/stores.ts';
import {
  HookedStore,
  capturingLogger,
  parseTestHosts,
  settle,
  storedPair,
  testHost,
  testIssuer,
  withLock,
} from './fakes.ts';

const MIN = 60_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const A = parseTestHosts(testHost('a'));
const NAMES = ['a.example.com'];
const iso = (ms: number): string => new Date(ms).toISOString();

/** A store with an issuing lock whose taking runs `onLock` first (another instance acting meanwhile). */
function lockedStore(onLock?: (s: HookedStore) => void): HookedStore {
  const certs = new HookedStore();
  withLock(certs);
  if (onLock) {
    certs.lockResult = async () => {
      onLock(certs);
      return { kind: 'held', release: async () => void (certs.releases += 1) };
    };
  }
  return certs;
}

describe('acme issuer: the issuing lock shared by instances (file mode)', () => {
  it('takes the lock for 15 minutes by default, or --lock-ttl', async () => {
    for (const [over, ttl] of [
      [{}, 15 * MIN],
      [{ lockTtlMs: 90_000 }, 90_000],
    ] as const) {
      const certs = lockedStore();
      const t = testIssuer(over, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.deepEqual(certs.locks, [{ secret: 'default/a-tls', ttlMs: ttl }]);
      await t.issuer.close();
    }
  });

  it('releases the lock once the certificate is stored, before the Host turns Ready', async () => {
    const certs = new HookedStore();
    withLock(certs);
    const seen: { state: string | undefined; stored: boolean }[] = [];
    const t = testIssuer({ ari: true }, { certs });
    certs.lockResult = async () => ({
      kind: 'held',
      release: async () => {
        certs.releases += 1;
        seen.push({
          state: t.issuer.statuses()[0]?.state,
          stored: certs.items.get('default/a-tls')?.meta.temporary === false,
        });
      },
    });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(seen, [{ state: 'Pending', stored: true }]);
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
    assert.equal(certs.releases, 1);
    await t.issuer.close();
  });

  it('a lock that cannot be released is logged; the certificate is still Ready', async () => {
    const certs = lockedStore();
    certs.releaseError = new Error('EPERM');
    const { logger, lines } = capturingLogger();
    const t = testIssuer({}, { certs, logger });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
    const warn = lines.find((l) => l.msg === 'cannot release the issuing lock (it expires by itself)');
    assert.equal(warn?.err, 'EPERM');
    assert.equal(warn?.level, 40);
    await t.issuer.close();
  });

  describe('busy: another instance is ordering', () => {
    it('on the first issue: stays Pending, rechecks every 2 s by default, orders nothing', async () => {
      const certs = new HookedStore();
      withLock(certs);
      certs.lockResult = () => Promise.resolve({ kind: 'busy', holder: 'node-b:4242' });
      const { logger, lines } = capturingLogger();
      const t = testIssuer({}, { certs, logger });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Pending');
      assert.equal(s?.nextRenewal, iso(T0 + 2000));
      const waiting = lines.find(
        (l) => l.msg === 'another instance is ordering this certificate: waiting for it',
      );
      assert.equal(waiting?.holder, 'node-b:4242');
      t.clock.advance(1999);
      await settle();
      assert.equal(certs.locks.length, 1);
      t.clock.advance(1);
      await settle();
      await t.issuer.idle();
      assert.equal(certs.locks.length, 2, 'asked again after 2 s');
      assert.equal(t.ca.orders.length, 0);
      await t.issuer.close();
    });

    it('at renewal time: the valid certificate stays Ready (phases NA) while it waits', async () => {
      const certs = lockedStore();
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const renewAt = t.issuer.certificates()[0]?.renewAt ?? 0;
      certs.lockResult = () => Promise.resolve({ kind: 'busy', holder: 'node-b:1' });
      const states: string[] = [];
      t.issuer.onChange(() => states.push(t.issuer.statuses()[0]?.state ?? ''));
      t.clock.advance(renewAt - T0);
      await settle();
      await t.issuer.idle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Ready');
      assert.equal(s?.phaseCompleted, 'NA');
      assert.equal(s?.phasePending, 'NA');
      assert.equal(s?.nextRenewal, iso(renewAt + 2000));
      assert.equal(states.at(-1), 'Ready');
      assert.equal(t.ca.orders.length, 1, 'no second order');
      await t.issuer.close();
    });
  });

  describe('held: what another instance stored while we waited for the lock', () => {
    const adopts = async (pair: (now: number) => StoredCertificate) => {
      const certs = lockedStore((s) => s.items.set('default/a-tls', pair(T0)));
      const t = testIssuer({ ari: true }, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      return t;
    };

    it('a newer valid certificate for exactly these names is used: no order, lock released, Ready', async () => {
      const pair = storedPair(NAMES, T0 - DAY, 90 * DAY);
      const t = await adopts(() => pair);
      assert.equal(t.ca.orders.length, 0);
      assert.equal((t.certs as HookedStore).releases, 1);
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Ready');
      assert.equal(s?.phasePending, 'NA');
      assert.equal(s?.temporaryCertificate, false);
      assert.equal(s?.notAfter, iso(T0 + 89 * DAY));
      assert.deepEqual(t.ca.renewalInfoCalls, [pair.chainPem], 'its ARI window asked for');
      // Its renewal replaces it (same CA).
      t.clock.advance(60 * DAY);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(t.ca.orders[0]?.replaces, pair.chainPem);
      await t.issuer.close();
    });

    it('a pair without its authority is used, but its renewal sends no replaces', async () => {
      const pair = storedPair(NAMES, T0 - DAY, 90 * DAY, null);
      const t = await adopts(() => pair);
      assert.equal(t.ca.orders.length, 0);
      t.clock.advance(60 * DAY);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(t.ca.orders[0]?.replaces, undefined);
      await t.issuer.close();
    });

    const ordersAnyway: [string, () => StoredCertificate][] = [
      [
        'temporary',
        () => ({
          ...storedPair(NAMES, T0, 7 * DAY),
          meta: { temporary: true, names: NAMES, issuedAt: iso(T0) },
        }),
      ],
      ['expired', () => storedPair(NAMES, T0 - 91 * DAY, 90 * DAY)],
      ['past its renewal time', () => storedPair(NAMES, T0 - 80 * DAY, 90 * DAY)],
      ['for other names', () => storedPair(['a.example.com', 'b.example.com'], T0, 90 * DAY)],
      [
        'with a key that does not match',
        () => ({ ...storedPair(NAMES, T0, 90 * DAY), keyPem: storedPair(NAMES, T0, DAY).keyPem }),
      ],
    ];
    for (const [what, pair] of ordersAnyway) {
      it(`a stored certificate ${what} is not used: ordered`, async () => {
        const t = await adopts(pair);
        assert.equal(t.ca.orders.length, 1);
        assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
        assert.equal((t.certs as HookedStore).releases, 1);
        await t.issuer.close();
      });
    }

    it('our own certificate at its renewal time is renewed (the same serial is not "newer")', async () => {
      const certs = lockedStore();
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      t.clock.advance(60 * DAY);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 2);
      await t.issuer.close();
    });

    it("another instance's newer failure still backing off: adopted without ordering, lock released first", async () => {
      const certs = lockedStore((s) =>
        s.failures.set('default/a-tls', {
          names: NAMES,
          failures: 2,
          at: T0,
          backoffMs: 10 * MIN,
          reason: 'order invalid',
          code: 'ERR_ACME_ORDER',
        }),
      );
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 0);
      assert.equal(certs.releases, 1);
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Error');
      assert.equal(s?.errorReason, 'order invalid');
      assert.equal(s?.errorCode, 'ERR_ACME_ORDER');
      assert.equal(s?.phasePending, 'ACMECertificateChallenge');
      assert.equal(s?.phaseCompleted, 'DefaultsFilled');
      assert.equal(s?.nextRenewal, iso(T0 + 10 * MIN));
      await t.issuer.close();
    });

    const notAdopted: [string, (now: number) => object][] = [
      ['whose backoff has ended', (now) => ({ at: now - 10 * MIN, backoffMs: 10 * MIN })],
      ['for other names', (now) => ({ at: now, names: ['b.example.com'] })],
    ];
    for (const [what, rec] of notAdopted) {
      it(`a failure record ${what} does not stop the order`, async () => {
        const certs = lockedStore((s) =>
          s.failures.set('default/a-tls', {
            names: NAMES,
            failures: 2,
            at: T0,
            backoffMs: 10 * MIN,
            reason: 'order invalid',
            code: 'ERR_ACME_ORDER',
            ...rec(T0),
          }),
        );
        const t = testIssuer({}, { certs });
        await t.issuer.setHosts(A);
        await t.issuer.idle();
        assert.equal(t.ca.orders.length, 1);
        assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
        await t.issuer.close();
      });
    }

    it('a failure record no newer than our own last error is ours: the retry orders', async () => {
      const certs = lockedStore();
      const t = testIssuer({}, { certs });
      t.ca.outcomes.push({
        kind: 'fail',
        error: new (await import('../src/errors.ts')).AcmeError('ERR_ACME_ORDER', 'x'),
      });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.issuer.statuses()[0]?.state, 'Error');
      // Same timestamp as our error, a backoff that would still run: not another instance's news.
      certs.failures.set('default/a-tls', { ...certs.failures.get('default/a-tls')!, backoffMs: DAY });
      t.clock.advance(5 * MIN);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 2);
      assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
      await t.issuer.close();
    });
  });
});
