import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import type { RenewalInfo } from '../src/renewal.ts';
import type { SecretRef } from '../src/host.ts';
import type { FailureRecord } from '../src/stores.ts';
import {
  FakeCa,
  FakeClock,
  HookedStore,
  capturingLogger,
  parseTestHosts,
  settle,
  storedPair,
  testHost,
  testIssuer,
} from './fakes.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const A = parseTestHosts(testHost('a'));
const iso = (ms: number): string => new Date(ms).toISOString();

/** A clock whose time can jump (a suspended VM, an NTP step) without firing the timers in between. */
class JumpingClock extends FakeClock {
  offset = 0;
  override now(): number {
    return super.now() + this.offset;
  }
}

describe('acme issuer: scheduling', () => {
  it('wakes at least every --max-sleep, so a clock jump past the renewal time renews', async () => {
    const clock = new JumpingClock();
    const ca = new FakeCa(clock);
    const t = testIssuer({ maxSleepMs: HOUR }, { clock, ca });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(ca.orders.length, 1);
    clock.offset = 61 * DAY;
    clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    assert.equal(ca.orders.length, 2, 'renewed at the first wake-up after the jump');
    await t.issuer.close();
  });

  it('runs at most --max-concurrent-orders at once, and starts the next one as soon as one ends', async () => {
    const t = testIssuer({ maxConcurrent: 2 });
    let open: () => void = () => undefined;
    t.ca.gate = new Promise((r) => (open = r));
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b'), testHost('c')));
    await settle();
    assert.equal(t.issuer.running, 2);
    assert.equal(t.ca.orders.length, 2);
    const pending = t.issuer.statuses().filter((s) => s.state === 'Initial');
    assert.equal(pending.length, 1);
    assert.equal(pending[0]?.nextRenewal, iso(T0), 'the waiting one is due now');
    assert.equal(
      t.issuer.statuses().find((s) => s.state === 'Pending')?.nextRenewal,
      undefined,
      'no next renewal shown while ordering',
    );
    open();
    await t.issuer.idle();
    assert.equal(t.issuer.running, 0);
    assert.equal(t.ca.orders.length, 3);
    assert.equal(t.ca.maxRunning, 2);
    assert.deepEqual(
      t.issuer.statuses().map((s) => s.state),
      ['Ready', 'Ready', 'Ready'],
    );
    await t.issuer.close();
  });

  it('orders the group due first when only one may run', async () => {
    const certs = new HookedStore();
    // b's certificate is due in 1 h, a's in 2 h.
    certs.items.set('default/a-tls', storedPair(['a.example.com'], T0 - 60 * DAY + 2 * HOUR, 90 * DAY));
    certs.items.set('default/b-tls', storedPair(['b.example.com'], T0 - 60 * DAY + HOUR, 90 * DAY));
    const t = testIssuer({ maxConcurrent: 1 }, { certs });
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b')));
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    assert.deepEqual(
      t.ca.orders.map((o) => o.names),
      [['b.example.com']],
    );
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    assert.deepEqual(
      t.ca.orders.map((o) => o.names),
      [['b.example.com'], ['a.example.com']],
    );
    await t.issuer.close();
  });

  it('close stops scheduling: no timer left, an order ending afterwards plans nothing', async () => {
    const t = testIssuer();
    let open: () => void = () => undefined;
    t.ca.gate = new Promise((r) => (open = r));
    await t.issuer.setHosts(A);
    await settle();
    const closing = t.issuer.close(60_000);
    assert.equal(t.clock.pending, 0);
    open();
    await closing;
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready', 'the running order finished and stored');
    assert.equal(t.clock.pending, 0, 'no renewal timer after close');
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b')));
    await settle();
    assert.equal(t.ca.orders.length, 1, 'closed: a new group is not ordered');
  });

  it('close gives up on an order that does not end within the grace period', async () => {
    const t = testIssuer();
    t.ca.gate = new Promise(() => undefined);
    await t.issuer.setHosts(A);
    await settle();
    assert.equal(t.issuer.running, 1);
    await t.issuer.close(1);
    assert.equal(t.issuer.running, 1, 'still running: close returned after the grace period');
  });

  it('unstored lists a group until its stored pair is loaded', async () => {
    const certs = new HookedStore();
    let unblock: () => void = () => undefined;
    const blocked = new Promise<void>((r) => (unblock = r));
    const readFailure = certs.readFailure.bind(certs);
    certs.readFailure = async (s: SecretRef): Promise<FailureRecord | undefined> => {
      await blocked;
      return readFailure(s);
    };
    const t = testIssuer({}, { certs });
    const loading = t.issuer.setHosts(A);
    await settle();
    assert.equal(certs.items.get('default/a-tls')?.meta.temporary, true, 'pair written');
    assert.deepEqual(t.issuer.unstored(), ['default/a-tls'], 'not loaded yet');
    unblock();
    await loading;
    assert.deepEqual(t.issuer.unstored(), []);
    await t.issuer.close();
  });

  it('certificates(): none stored is temporary without dates; the temporary one has no renewal', async () => {
    const certs = new HookedStore();
    certs.readError = new Error('EACCES');
    const t = testIssuer({}, { certs });
    await t.issuer.setHosts(A);
    assert.deepEqual(t.issuer.certificates(), [{ secret: 'default/a-tls', temporary: true }]);
    await t.issuer.close();
    const u = testIssuer();
    u.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'x') });
    await u.issuer.setHosts(A);
    await u.issuer.idle();
    assert.deepEqual(u.issuer.certificates(), [
      { secret: 'default/a-tls', notAfter: T0 + 7 * DAY, temporary: true },
    ]);
    await u.issuer.close();
  });

  describe('renewal planning', () => {
    it('keeps the jitter of a certificate when it is replanned, draws a new one for a new certificate', async () => {
      const draws = [0.5, 0.25, 0.75, 0.1, 0.9];
      let i = 0;
      const t = testIssuer(
        { renewal: { fraction: 2 / 3, jitter: 0.03 } },
        { random: () => draws[i++ % draws.length] ?? 0 },
      );
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const c1 = t.issuer.certificates()[0];
      const lifetime = 90 * DAY;
      const jitterOf = (renewAt: number, notBefore: number): number =>
        (notBefore + (lifetime * 2) / 3 - renewAt) / (lifetime * 0.03);
      const j1 = jitterOf(c1?.renewAt ?? 0, T0);
      assert.ok(j1 > 0, `jittered: ${j1}`);
      // A renew-before longer than the lifetime replans by the policy: the same jitter.
      await t.issuer.setHosts(
        parseTestHosts(testHost('a', { annotations: 'acme.extsvc.dev/renew-before: 4000h' })),
      );
      assert.equal(t.issuer.certificates()[0]?.renewAt, c1?.renewAt);
      t.clock.advance(61 * DAY);
      await settle();
      await t.issuer.idle();
      const c2 = t.issuer.certificates()[0];
      assert.notEqual(jitterOf(c2?.renewAt ?? 0, T0 + 60 * DAY), j1, 'the renewed certificate draws its own');
      await t.issuer.close();
    });

    it('a renew-before change while only the temporary certificate exists plans nothing', async () => {
      const t = testIssuer();
      t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'x') });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      await t.issuer.setHosts(
        parseTestHosts(testHost('a', { annotations: 'acme.extsvc.dev/renew-before: 240h' })),
      );
      assert.equal(t.issuer.certificates()[0]?.renewAt, undefined);
      assert.equal(t.issuer.statuses()[0]?.nextRenewal, iso(T0 + 5 * MIN), 'still the retry time');
      await t.issuer.close();
    });
  });
});

describe('acme issuer: ARI renewalInfo polling', () => {
  const ari = { ari: true, ariPoll: { minMs: MIN, maxMs: HOUR } };

  it('polls per --ari-poll (the maximum without Retry-After), default once a day', async () => {
    const t = testIssuer(ari);
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.nextRenewalInfoCheck, iso(T0 + HOUR));
    const u = testIssuer({ ari: true });
    await u.issuer.setHosts(A);
    await u.issuer.idle();
    assert.equal(u.issuer.statuses()[0]?.nextRenewalInfoCheck, iso(T0 + DAY));
    await t.issuer.close();
    await u.issuer.close();
  });

  it('wakes for the renewalInfo request even when the next renewal is far and sleeps are long', async () => {
    const t = testIssuer({ ...ari, maxSleepMs: 100 * DAY });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const calls = t.ca.renewalInfoCalls.length;
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    assert.equal(t.ca.renewalInfoCalls.length, calls + 1);
    assert.equal(t.issuer.statuses()[0]?.nextRenewalInfoCheck, iso(T0 + 2 * HOUR));
    await t.issuer.close();
  });

  it('polls no renewalInfo with ARI off, nor for the temporary certificate', async () => {
    const off = testIssuer({ ari: false, ariPoll: { minMs: MIN, maxMs: HOUR } });
    await off.issuer.setHosts(A);
    await off.issuer.idle();
    off.clock.advance(3 * HOUR);
    await settle();
    assert.deepEqual(off.ca.renewalInfoCalls, []);
    assert.equal(off.issuer.statuses()[0]?.nextRenewalInfoCheck, undefined);
    await off.issuer.close();
    const tmp = testIssuer(ari);
    tmp.ca.defaultOutcome = { kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'x') };
    await tmp.issuer.setHosts(A);
    await tmp.issuer.idle();
    tmp.clock.advance(3 * HOUR);
    await settle();
    await tmp.issuer.idle();
    assert.deepEqual(tmp.ca.renewalInfoCalls, []);
    assert.equal(tmp.issuer.statuses()[0]?.nextRenewalInfoCheck, undefined);
    await tmp.issuer.close();
  });

  it('a failed request is logged, retried from the minimum doubling, or after its Retry-After', async () => {
    const { logger, lines } = capturingLogger();
    const t = testIssuer(ari, { logger });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const results: (Error | RenewalInfo | undefined)[] = [
      new Error('ECONNRESET'),
      new Error('ECONNRESET'),
      new AcmeError('ERR_ACME_RATE_LIMITED', 'slow down', { retryAfterMs: 20 * MIN }),
      undefined,
    ];
    t.ca.renewalInfo = async (_d, chain) => {
      t.ca.renewalInfoCalls.push(chain);
      const r = results.shift();
      if (r instanceof Error) throw r;
      return r;
    };
    const checks: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const at = Date.parse(t.issuer.statuses()[0]?.nextRenewalInfoCheck ?? '');
      t.clock.advance(at - t.clock.now());
      await settle();
      await t.issuer.idle();
      checks.push(t.issuer.statuses()[0]?.nextRenewalInfoCheck);
    }
    const h = T0 + HOUR;
    assert.deepEqual(checks, [iso(h + MIN), iso(h + 3 * MIN), iso(h + 23 * MIN), iso(h + 23 * MIN + HOUR)]);
    const warned = lines.filter((l) => l.msg === 'ARI renewalInfo failed');
    assert.deepEqual(
      warned.map((l) => [l.level, l.err, l.tlsSecret]),
      [
        [40, 'ECONNRESET', 'default/a-tls'],
        [40, 'ECONNRESET', 'default/a-tls'],
        [40, 'slow down', 'default/a-tls'],
      ],
    );
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready', 'never fatal');
    await t.issuer.close();
  });

  it('a window the CA drops returns the plan to the lifetime policy; a moved window is logged once', async () => {
    const { logger, lines } = capturingLogger();
    const t = testIssuer(ari, { logger });
    t.ca.window = { start: T0 + 30 * DAY, end: T0 + 30 * DAY };
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.nextRenewal, iso(T0 + 30 * DAY));
    const moved = () => lines.filter((l) => l.msg === 'ARI renewal window: planned renewal moved');
    assert.equal(moved().length, 1);
    assert.deepEqual(moved()[0]?.window, { start: iso(T0 + 30 * DAY), end: iso(T0 + 30 * DAY) });
    assert.equal(moved()[0]?.renewAt, iso(T0 + 30 * DAY));
    // Same window again: nothing moved, nothing logged.
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    assert.equal(moved().length, 1);
    t.ca.window = undefined;
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.renewalWindow, undefined);
    assert.equal(s?.nextRenewal, iso(T0 + 60 * DAY), 'back to 2/3 of the lifetime');
    await t.issuer.close();
  });

  it('with renew-before, an earlier ARI window still wins, a later one does not', async () => {
    const hosts = parseTestHosts(testHost('a', { annotations: 'acme.extsvc.dev/renew-before: 480h' }));
    const early = testIssuer(ari);
    early.ca.window = { start: T0 + 10 * DAY, end: T0 + 10 * DAY };
    await early.issuer.setHosts(hosts);
    await early.issuer.idle();
    assert.equal(early.issuer.certificates()[0]?.renewAt, T0 + 10 * DAY);
    const late = testIssuer(ari);
    late.ca.window = { start: T0 + 80 * DAY, end: T0 + 80 * DAY };
    await late.issuer.setHosts(hosts);
    await late.issuer.idle();
    assert.equal(late.issuer.certificates()[0]?.renewAt, T0 + 70 * DAY, 'notAfter − 20 days');
    await early.issuer.close();
    await late.issuer.close();
  });

  it('polls for one group while another one orders (not bounded by the order concurrency)', async () => {
    const certs = new HookedStore();
    certs.items.set('default/a-tls', storedPair(['a.example.com'], T0, 90 * DAY));
    const t = testIssuer({ ...ari, maxConcurrent: 1 }, { certs });
    t.ca.gate = new Promise(() => undefined);
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b')));
    await settle();
    assert.equal(t.issuer.running, 1, 'b is ordering');
    const calls = t.ca.renewalInfoCalls.length;
    t.clock.advance(HOUR);
    await settle();
    assert.equal(t.ca.renewalInfoCalls.length, calls + 1, "a's window asked for meanwhile");
    await t.issuer.close(1);
  });
});
