import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import { HookedStore, parseTestHosts, settle, testHost, testIssuer } from './fakes.ts';

const MIN = 60_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const A = parseTestHosts(testHost('a'));
const fail = (code: ConstructorParameters<typeof AcmeError>[0], msg = 'refused', retryAfterMs?: number) => ({
  kind: 'fail' as const,
  error: new AcmeError(code, msg, retryAfterMs !== undefined ? { retryAfterMs } : {}),
});
const iso = (ms: number): string => new Date(ms).toISOString();

describe('acme issuer: backoff and failure records (README: Renewal, failures, backoff)', () => {
  it('doubles the backoff per consecutive failure and records each failure with its count, time and reason', async () => {
    const t = testIssuer();
    t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'), fail('ERR_ACME_ORDER', 'order invalid'));
    t.ca.outcomes.push(fail('ERR_ACME_UNREACHABLE', 'ACME server error 503'));
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const seen: { backoff: string | undefined; next: string | undefined; at: string | undefined }[] = [];
    for (const wait of [5 * MIN, 10 * MIN, 20 * MIN]) {
      const s = t.issuer.statuses()[0];
      seen.push({ backoff: s?.errorBackoff, next: s?.nextRenewal, at: s?.errorTimestamp });
      // One millisecond early: nothing is ordered yet.
      const before = t.ca.orders.length;
      t.clock.advance(wait - 1);
      await settle();
      assert.equal(t.ca.orders.length, before, `no order before the ${wait / MIN} min backoff ends`);
      t.clock.advance(1);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, before + 1);
    }
    assert.deepEqual(seen, [
      { backoff: '5m0s', next: iso(T0 + 5 * MIN), at: iso(T0) },
      { backoff: '10m0s', next: iso(T0 + 15 * MIN), at: iso(T0 + 5 * MIN) },
      { backoff: '20m0s', next: iso(T0 + 35 * MIN), at: iso(T0 + 15 * MIN) },
    ]);
    // The third failure's record; the fourth attempt succeeded and cleared it.
    assert.deepEqual(t.certs instanceof HookedStore ? t.certs.failureWrites.slice(0, 3) : [], [
      {
        names: ['a.example.com'],
        failures: 1,
        at: T0,
        backoffMs: 5 * MIN,
        reason: 'order invalid',
        code: 'ERR_ACME_ORDER',
      },
      {
        names: ['a.example.com'],
        failures: 2,
        at: T0 + 5 * MIN,
        backoffMs: 10 * MIN,
        reason: 'order invalid',
        code: 'ERR_ACME_ORDER',
      },
      {
        names: ['a.example.com'],
        failures: 3,
        at: T0 + 15 * MIN,
        backoffMs: 20 * MIN,
        reason: 'ACME server error 503',
        code: 'ERR_ACME_UNREACHABLE',
      },
    ]);
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
    assert.equal(t.issuer.statuses()[0]?.errorReason, undefined, 'no error shown once Ready');
    assert.deepEqual((t.certs as HookedStore).failureWrites.slice(3), [undefined], 'record cleared once');
    await t.issuer.close();
  });

  it('waits at least the CA Retry-After when it is longer than the exponential delay, and the delay when shorter', async () => {
    const t = testIssuer();
    t.ca.outcomes.push(fail('ERR_ACME_RATE_LIMITED', 'rate limited', 3 * MIN));
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.errorBackoff, '5m0s', 'Retry-After 3 min < 5 min backoff');
    t.ca.outcomes.push(fail('ERR_ACME_RATE_LIMITED', 'rate limited', 45 * MIN));
    t.clock.advance(5 * MIN);
    await settle();
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.errorBackoff, '45m0s', 'Retry-After 45 min > 10 min backoff');
    assert.deepEqual(
      t.orders.map((o) => o.result),
      ['rate_limited', 'rate_limited'],
    );
    await t.issuer.close();
  });

  it('counts every failure but a refused store probe as an order, with its duration', async () => {
    const t = testIssuer();
    // The CA takes 90 s (on the fake clock) to answer.
    const order = t.ca.order.bind(t.ca);
    t.ca.order = async (req) => {
      t.clock.advance(90_000);
      return order(req);
    };
    t.ca.outcomes.push(fail('ERR_SELF_CHECK', 'token not reachable'));
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    t.clock.advance(5 * MIN);
    await settle();
    await t.issuer.idle();
    assert.deepEqual(t.orders, [
      { result: 'failed', ms: 90_000 },
      { result: 'issued', ms: 90_000 },
    ]);
    await t.issuer.close();
  });

  it('a success without earlier failures writes no failure record', async () => {
    const t = testIssuer();
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
    assert.deepEqual((t.certs as HookedStore).failureWrites, []);
    await t.issuer.close();
  });

  it('a failure record that cannot be written leaves the Host in Error with its backoff', async () => {
    const certs = new HookedStore();
    certs.writeFailureError = new Error('EROFS');
    const t = testIssuer({}, { certs });
    t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'));
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorReason, 'order invalid');
    assert.equal(s?.errorBackoff, '5m0s');
    assert.deepEqual(
      t.orders.map((o) => o.result),
      ['failed'],
    );
    await t.issuer.close();
  });

  describe('a restart keeps the backoff (failure record)', () => {
    const record = {
      names: ['a.example.com'],
      failures: 3,
      at: T0 - 5 * MIN,
      backoffMs: 20 * MIN,
      reason: 'rate limited by the CA (new-order): too many',
      code: 'ERR_ACME_RATE_LIMITED',
    };

    it('adopts the stored failure: Error with its reason, code and backoff, next attempt when it ends', async () => {
      const certs = new HookedStore();
      certs.failures.set('default/a-tls', record);
      const t = testIssuer({}, { certs });
      t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'again'));
      await t.issuer.setHosts(A);
      await settle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Error');
      assert.equal(s?.phasePending, 'ACMECertificateChallenge');
      assert.equal(s?.errorReason, record.reason);
      assert.equal(s?.errorCode, 'ERR_ACME_RATE_LIMITED');
      assert.equal(s?.errorTimestamp, iso(record.at));
      assert.equal(s?.errorBackoff, '20m0s');
      assert.equal(s?.nextRenewal, iso(T0 + 15 * MIN));
      assert.equal(t.ca.orders.length, 0);
      t.clock.advance(15 * MIN - 1);
      await settle();
      assert.equal(t.ca.orders.length, 0, 'not before the stored backoff ends');
      t.clock.advance(1);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '40m0s', 'the fourth failure in a row');
      await t.issuer.close();
    });

    it('ignores a record for other names, and one it cannot read', async () => {
      for (const setUp of [
        (c: HookedStore) => void c.failures.set('default/a-tls', { ...record, names: ['b.example.com'] }),
        (c: HookedStore) => {
          c.failures.set('default/a-tls', record);
          c.readFailureError = new Error('EIO');
        },
      ]) {
        const certs = new HookedStore();
        setUp(certs);
        const t = testIssuer({}, { certs });
        await t.issuer.setHosts(A);
        await settle();
        await t.issuer.idle();
        assert.equal(t.ca.orders.length, 1, 'ordered at once');
        assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
        await t.issuer.close();
      }
    });

    it('ignores the record when the stored certificate is valid (Ready, nothing to retry)', async () => {
      const first = testIssuer();
      await first.issuer.setHosts(A);
      await first.issuer.idle();
      const certs = new HookedStore();
      certs.items.set('default/a-tls', first.certs.items.get('default/a-tls')!);
      certs.failures.set('default/a-tls', record);
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      const s = t.issuer.statuses()[0];
      assert.equal(s?.state, 'Ready');
      assert.equal(s?.errorReason, undefined);
      assert.equal(s?.phasePending, 'NA');
      assert.equal(t.ca.orders.length, 0);
      await t.issuer.close();
      await first.issuer.close();
    });

    it('a store that cannot be read at load counts as the first failure', async () => {
      const certs = new HookedStore();
      certs.readError = new Error('EACCES');
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '5m0s');
      certs.readError = undefined;
      t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'));
      t.clock.advance(5 * MIN);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '10m0s', 'second failure in a row');
      await t.issuer.close();
    });
  });

  describe('a spec change bypasses the backoff, the retry annotation skips it once', () => {
    const failing = async () => {
      const t = testIssuer();
      t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'), fail('ERR_ACME_ORDER', 'order invalid'));
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      t.clock.advance(5 * MIN);
      await settle();
      await t.issuer.idle();
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '10m0s');
      return t;
    };

    it('a provider change (e-mail) orders at once and starts the backoff afresh', async () => {
      const t = await failing();
      t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'));
      await t.issuer.setHosts(
        parseTestHosts(testHost('a').replace('email: ops@example.com', 'email: admin@example.com')),
      );
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 3);
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '5m0s', 'count reset by the change');
      await t.issuer.close();
    });

    it('an unchanged spec keeps the backoff; a new retry token while not in Error changes nothing', async () => {
      const t = await failing();
      await t.issuer.setHosts(parseTestHosts(testHost('a')));
      await settle();
      assert.equal(t.ca.orders.length, 2, 'same spec: still backing off');
      assert.equal(t.issuer.statuses()[0]?.errorReason, 'order invalid', 'the error is kept');
      t.clock.advance(10 * MIN);
      await settle();
      await t.issuer.idle();
      assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
      const renewAt = t.issuer.certificates()[0]?.renewAt;
      await t.issuer.setHosts(parseTestHosts(testHost('a', { annotations: "acme.extsvc.dev/retry: '7'" })));
      await settle();
      assert.equal(t.ca.orders.length, 3, 'Ready: a retry token orders nothing');
      assert.equal(t.issuer.certificates()[0]?.renewAt, renewAt);
      await t.issuer.close();
    });

    it('the retry token and a spec change together: the change resets the count', async () => {
      const t = await failing();
      t.ca.outcomes.push(fail('ERR_ACME_ORDER', 'order invalid'));
      await t.issuer.setHosts(
        parseTestHosts(
          testHost('a', { annotations: "acme.extsvc.dev/retry: '1'" }).replace(
            'email: ops@example.com',
            'email: admin@example.com',
          ),
        ),
      );
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 3);
      assert.equal(t.issuer.statuses()[0]?.errorBackoff, '5m0s');
      await t.issuer.close();
    });
  });
});
