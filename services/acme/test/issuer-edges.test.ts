import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import type { ParsedHost } from '../src/host.ts';
import { Issuer } from '../src/issuer.ts';
import type { CertificateStore, StoredCertificate } from '../src/stores.ts';
import {
  HookedStore,
  capturingLogger,
  parseTestHosts,
  settle,
  storedPair,
  testHost,
  testIssuer,
  testIssuerOptions,
  withExists,
  withLock,
} from './fakes.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const A = parseTestHosts(testHost('a'));
/** Two Hosts sharing one tlsSecret: one certificate for two names. */
const AB = parseTestHosts(testHost('a', { secret: 'ab-tls' }), testHost('b', { secret: 'ab-tls' }));
const iso = (ms: number): string => new Date(ms).toISOString();
const fail = (code: ConstructorParameters<typeof AcmeError>[0] = 'ERR_ACME_ORDER') => ({
  kind: 'fail' as const,
  error: new AcmeError(code, 'refused'),
});

/** A store with only the required methods (no failure records, lock, probe or existence check). */
class PlainStore implements CertificateStore {
  readonly items = new Map<string, StoredCertificate>();
  async read(s: { namespace: string; name: string }): Promise<StoredCertificate | undefined> {
    return this.items.get(`${s.namespace}/${s.name}`);
  }
  async write(s: { namespace: string; name: string }, c: StoredCertificate): Promise<void> {
    this.items.set(`${s.namespace}/${s.name}`, c);
  }
}

describe('acme issuer: edges of planning and state', () => {
  it('a store without the optional hooks: issues, fails and retries all the same', async () => {
    const certs = new PlainStore();
    const t = testIssuer({}, { certs: certs as unknown as HookedStore });
    t.ca.outcomes.push(fail());
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.state, 'Error');
    t.clock.advance(5 * MIN);
    await settle();
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
    assert.equal(certs.items.get('default/a-tls')?.meta.temporary, false);
    await t.issuer.close();
  });

  it('a new Issuer has no statuses, certificates or timers before its Hosts are set', () => {
    const t = testIssuer();
    assert.deepEqual(t.issuer.statuses(), []);
    assert.deepEqual(t.issuer.certificates(), []);
    assert.deepEqual(t.issuer.unstored(), []);
    assert.equal(t.clock.pending, 0);
  });

  it('Hosts that need nothing plan no wake-up; listeners hear of every new Host set', async () => {
    const t = testIssuer();
    let heard = 0;
    t.issuer.onChange(() => (heard += 1));
    await t.issuer.setHosts(
      parseTestHosts(
        'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: n}\nspec: {hostname: n.example.com}\n',
      ),
    );
    assert.equal(heard, 1);
    assert.equal(t.clock.pending, 0, 'no timer');
    await t.issuer.close();
  });

  it('a listener hears the Error of a failed order', async () => {
    const t = testIssuer();
    t.ca.outcomes.push(fail());
    const states: string[] = [];
    t.issuer.onChange(() => states.push(t.issuer.statuses()[0]?.state ?? ''));
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(states.at(-1), 'Error');
    await t.issuer.close();
  });

  it('does not spin while all order slots are busy and another group waits', async () => {
    const t = testIssuer({ maxConcurrent: 1 });
    let open: () => void = () => undefined;
    t.ca.gate = new Promise((r) => (open = r));
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b')));
    await settle();
    // A zero-delay wake-up loop would never let advance() return.
    t.clock.advance(10 * MIN);
    await settle();
    assert.equal(t.ca.orders.length, 1);
    open();
    await t.issuer.idle();
    assert.equal(t.ca.orders.length, 2, 'the waiting group ran when the slot freed');
    await t.issuer.close();
  });

  it('wakes for a renewal due before the next renewalInfo request', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: 70 * DAY, maxMs: 70 * DAY }, maxSleepMs: 100 * DAY });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(t.issuer.statuses()[0]?.nextRenewalInfoCheck, iso(T0 + 70 * DAY));
    t.clock.advance(60 * DAY);
    await settle();
    await t.issuer.idle();
    assert.equal(t.ca.orders.length, 2, 'renewed at 2/3, not at the renewalInfo request');
    await t.issuer.close();
  });

  it('wakes for the earliest renewalInfo request of several certificates', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: HOUR, maxMs: HOUR }, maxSleepMs: 100 * DAY });
    await t.issuer.setHosts(parseTestHosts(testHost('b')));
    await t.issuer.idle();
    t.clock.advance(30 * MIN);
    await t.issuer.setHosts(parseTestHosts(testHost('b'), testHost('a')));
    await t.issuer.idle();
    const calls = t.ca.renewalInfoCalls.length;
    t.clock.advance(30 * MIN);
    await settle();
    await t.issuer.idle();
    assert.equal(t.ca.renewalInfoCalls.length, calls + 1, "b's request, due first");
    await t.issuer.close();
  });

  it('asks for one renewalInfo at a time per certificate, none while the certificate is ordered', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: MIN, maxMs: MIN } });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    let answer: () => void = () => undefined;
    let asked = 0;
    t.ca.renewalInfo = async (_d, chain) => {
      t.ca.renewalInfoCalls.push(chain);
      asked += 1;
      await new Promise<void>((r) => (answer = r));
      return undefined;
    };
    t.clock.advance(MIN);
    await settle();
    assert.equal(asked, 1);
    let idled = false;
    const idle = t.issuer.idle().then(() => (idled = true));
    // Past --max-sleep: the scheduler wakes while the request is pending.
    t.clock.advance(2 * HOUR);
    await settle();
    assert.equal(asked, 1, 'no second request while the first is pending');
    assert.equal(idled, false, 'idle() waits for the pending request');
    answer();
    await idle;
    // The certificate is being renewed: no renewalInfo for it meanwhile.
    t.ca.renewalInfo = async () => {
      asked += 1;
      return undefined;
    };
    let open: () => void = () => undefined;
    t.ca.gate = new Promise((r) => (open = r));
    t.clock.advance(60 * DAY);
    await settle();
    assert.equal(t.issuer.running, 1);
    const during = asked;
    t.clock.advance(2 * HOUR);
    await settle();
    assert.equal(asked, during);
    open();
    await t.issuer.idle();
    assert.equal(asked, during + 1, 'asked for the new certificate once it was stored');
    await t.issuer.close();
  });

  it('an ARI failure that arrives after a renewal replaced the certificate is ignored', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: MIN, maxMs: HOUR } });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    let refuse: (e: Error) => void = () => undefined;
    let asked = 0;
    t.ca.renewalInfo = async (_d, chain) => {
      t.ca.renewalInfoCalls.push(chain);
      asked += 1;
      if (asked === 1) return new Promise((_r, reject) => (refuse = reject));
      return undefined;
    };
    t.clock.advance(HOUR);
    await settle();
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b', { secret: 'a-tls' })));
    await settle();
    refuse(new Error('ECONNRESET'));
    await t.issuer.idle();
    assert.equal(
      t.issuer.statuses()[0]?.nextRenewalInfoCheck,
      iso(T0 + 2 * HOUR),
      'planned by the new certificate',
    );
    await t.issuer.close();
  });

  describe('window moves', () => {
    it('logs and notifies when the window end alone moves the plan; not when the plan stays', async () => {
      const { logger, lines } = capturingLogger();
      const t = testIssuer(
        { ari: true, ariPoll: { minMs: HOUR, maxMs: HOUR } },
        { logger, random: () => 0.5 },
      );
      t.ca.window = { start: T0 + 20 * DAY, end: T0 + 30 * DAY };
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const moved = () => lines.filter((l) => l.msg === 'ARI renewal window: planned renewal moved').length;
      assert.equal(moved(), 1);
      let heard = 0;
      t.issuer.onChange(() => (heard += 1));
      t.ca.window = { start: T0 + 20 * DAY, end: T0 + 22 * DAY };
      t.clock.advance(HOUR);
      await settle();
      await t.issuer.idle();
      assert.equal(moved(), 2);
      assert.ok(heard > 0);
      // A window after 2/3 of the lifetime moves, but the plan stays at 2/3 (minus jitter): nothing logged.
      t.ca.window = { start: T0 + 80 * DAY, end: T0 + 85 * DAY };
      t.clock.advance(HOUR);
      await settle();
      await t.issuer.idle();
      t.ca.window = { start: T0 + 81 * DAY, end: T0 + 86 * DAY };
      t.clock.advance(HOUR);
      await settle();
      await t.issuer.idle();
      assert.equal(moved(), 3, 'only the move back to the lifetime plan');
      await t.issuer.close();
    });
  });

  describe('restart: what is stored decides', () => {
    it('a stored temporary pair is reissued at once', async () => {
      const first = testIssuer();
      first.ca.outcomes.push(fail());
      await first.issuer.setHosts(A);
      await first.issuer.idle();
      const certs = new HookedStore();
      certs.items.set('default/a-tls', first.certs.items.get('default/a-tls')!);
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      assert.equal(t.issuer.statuses()[0]?.temporaryCertificate, true);
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(certs.writes, 1, 'the temporary pair was not written again');
      await t.issuer.close();
      await first.issuer.close();
    });

    it('a stored pair that expires right now is reissued', async () => {
      const certs = new HookedStore();
      certs.items.set('default/a-tls', storedPair(['a.example.com'], T0 - 90 * DAY, 90 * DAY));
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      await t.issuer.close();
    });

    it('a valid stored pair: Ready at once (phases NA), its window asked for with ARI only', async () => {
      for (const ari of [true, false]) {
        const certs = new HookedStore();
        certs.items.set('default/a-tls', storedPair(['a.example.com'], T0, 90 * DAY));
        const t = testIssuer({ ari }, { certs });
        await t.issuer.setHosts(A);
        const s = t.issuer.statuses()[0];
        assert.deepEqual([s?.state, s?.phaseCompleted, s?.phasePending], ['Ready', 'NA', 'NA']);
        assert.equal(t.ca.renewalInfoCalls.length, ari ? 1 : 0);
        await t.issuer.close();
      }
    });

    it('renewal replaces a stored certificate of the same CA only (another CA, or none recorded: a plain order)', async () => {
      for (const [authority, replaces] of [
        ['https://ca.example/dir', true],
        ['https://other-ca.example/dir', false],
        [null, false],
      ] as const) {
        const certs = new HookedStore();
        const pair = storedPair(['a.example.com'], T0, 90 * DAY, authority);
        certs.items.set('default/a-tls', pair);
        const t = testIssuer({ ari: true }, { certs });
        await t.issuer.setHosts(A);
        t.clock.advance(60 * DAY);
        await settle();
        await t.issuer.idle();
        assert.equal(t.ca.orders.length, 1);
        assert.equal(t.ca.orders[0]?.replaces, replaces ? pair.chainPem : undefined, String(authority));
        await t.issuer.close();
      }
    });

    it('a failure record of a two-name certificate is adopted (the names compared as a list)', async () => {
      const certs = new HookedStore();
      certs.failures.set('default/ab-tls', {
        names: ['a.example.com', 'b.example.com'],
        failures: 1,
        at: T0,
        backoffMs: 5 * MIN,
        reason: 'order invalid',
        code: 'ERR_ACME_ORDER',
      });
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(AB);
      await settle();
      assert.equal(t.issuer.statuses()[0]?.state, 'Error');
      assert.equal(t.ca.orders.length, 0);
      // The same two Hosts again: no spec change, the backoff stays.
      await t.issuer.setHosts(AB);
      await settle();
      assert.equal(t.ca.orders.length, 0);
      await t.issuer.close();
    });
  });

  describe('names of a shared tlsSecret', () => {
    it('a Host taken out of a shared tlsSecret is reissued without its name', async () => {
      const t = testIssuer();
      await t.issuer.setHosts(AB);
      await t.issuer.idle();
      await t.issuer.setHosts(parseTestHosts(testHost('a', { secret: 'ab-tls' })));
      await settle();
      await t.issuer.idle();
      assert.deepEqual(t.ca.orders.at(-1)?.names, ['a.example.com']);
      assert.equal(t.ca.orders.length, 2);
      await t.issuer.close();
    });

    it('a name replaced by another (same count) is reissued', async () => {
      const t = testIssuer();
      await t.issuer.setHosts(AB);
      await t.issuer.idle();
      await t.issuer.setHosts(
        parseTestHosts(testHost('a', { secret: 'ab-tls' }), testHost('c', { secret: 'ab-tls' })),
      );
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 2);
      assert.deepEqual(t.ca.orders.at(-1)?.names, ['a.example.com', 'c.example.com']);
      await t.issuer.close();
    });
  });

  it('renew-before equal to the lifetime: the default policy applies', async () => {
    const t = testIssuer();
    await t.issuer.setHosts(
      parseTestHosts(testHost('a', { annotations: 'acme.extsvc.dev/renew-before: 2160h' })),
    );
    await t.issuer.idle();
    assert.equal(t.issuer.certificates()[0]?.renewAt, T0 + 60 * DAY);
    await t.issuer.close();
  });

  it('a renew-before change on a group whose store could not be read does not fail the update', async () => {
    const certs = new HookedStore();
    certs.readError = new Error('EACCES');
    const t = testIssuer({}, { certs });
    await t.issuer.setHosts(A);
    await t.issuer.setHosts(
      parseTestHosts(testHost('a', { annotations: 'acme.extsvc.dev/renew-before: 240h' })),
    );
    const s = t.issuer.statuses()[0];
    assert.equal(s?.errorCode, 'ERR_STORE');
    assert.equal(s?.temporaryCertificate, false, 'nothing stored: not the temporary certificate either');
    assert.equal(s?.notAfter, undefined);
    await t.issuer.close();
  });

  it('removing the retry annotation of an Error Host does not retry', async () => {
    const t = testIssuer();
    t.ca.outcomes.push(fail());
    await t.issuer.setHosts(parseTestHosts(testHost('a', { annotations: "acme.extsvc.dev/retry: '1'" })));
    await t.issuer.idle();
    await t.issuer.setHosts(A);
    await settle();
    assert.equal(t.ca.orders.length, 1);
    assert.equal(t.issuer.statuses()[0]?.state, 'Error');
    await t.issuer.close();
  });

  it('a new retry token while Ready logs no retry', async () => {
    const { logger, lines } = capturingLogger();
    const t = testIssuer({}, { logger });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    await t.issuer.setHosts(parseTestHosts(testHost('a', { annotations: "acme.extsvc.dev/retry: '2'" })));
    assert.equal(lines.filter((l) => l.msg === 'retry requested by annotation: retrying now').length, 0);
    await t.issuer.close();
  });

  it('ACME Hosts are not probed for existence (only authority none ones)', async () => {
    const certs = new HookedStore();
    withExists(certs);
    const probed: string[] = [];
    certs.existsResult = async (s) => {
      probed.push(s.name);
      return true;
    };
    const t = testIssuer({}, { certs });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(probed, []);
    await t.issuer.close();
  });

  it('while retrying, the Host is Pending without the previous error fields', async () => {
    const t = testIssuer();
    t.ca.outcomes.push(fail());
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    let open: () => void = () => undefined;
    t.ca.gate = new Promise((r) => (open = r));
    t.clock.advance(5 * MIN);
    await settle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.state, 'Pending');
    assert.equal(s?.errorReason, undefined);
    assert.equal(s?.errorCode, undefined);
    open();
    await t.issuer.idle();
    await t.issuer.close();
  });

  it('an invalid Host without a hostname has no hostname field', async () => {
    const t = testIssuer();
    const h: ParsedHost = {
      kind: 'invalid',
      key: 'default/x',
      namespace: 'default',
      name: 'x',
      reason: 'spec.hostname is required',
      origin: { file: 'hosts.yaml', index: 0 },
    };
    await t.issuer.setHosts([h]);
    assert.equal('hostname' in (t.issuer.statuses()[0] ?? {}), false);
    await t.issuer.close();
  });

  describe('the issuing lock, more', () => {
    it('a failed order releases the lock', async () => {
      const certs = new HookedStore();
      withLock(certs);
      const t = testIssuer({}, { certs });
      t.ca.outcomes.push(fail());
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.issuer.statuses()[0]?.state, 'Error');
      assert.equal(certs.releases, 1);
      await t.issuer.close();
    });

    it('a group whose store could not be read at load orders under the lock once it can', async () => {
      const certs = new HookedStore();
      withLock(certs);
      certs.readError = new Error('EACCES');
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(A);
      certs.readError = undefined;
      t.clock.advance(5 * MIN);
      await settle();
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 1);
      assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
      await t.issuer.close();
    });

    it('using a certificate stored by another instance is logged with its serial', async () => {
      const { logger, lines } = capturingLogger();
      const certs = new HookedStore();
      withLock(certs);
      const pair = storedPair(['a.example.com'], T0, 90 * DAY);
      certs.lockResult = async () => {
        certs.items.set('default/a-tls', pair);
        return { kind: 'held', release: async () => undefined };
      };
      const t = testIssuer({}, { certs, logger });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const line = lines.find((l) => l.msg === 'certificate stored by another instance: using it');
      assert.equal(typeof line?.serial, 'string');
      assert.ok(String(line?.serial).length > 0);
      await t.issuer.close();
    });

    it('adopts a two-name failure record of another instance', async () => {
      const certs = new HookedStore();
      withLock(certs);
      certs.lockResult = async () => {
        certs.failures.set('default/ab-tls', {
          names: ['a.example.com', 'b.example.com'],
          failures: 1,
          at: T0,
          backoffMs: 5 * MIN,
          reason: 'order invalid',
          code: 'ERR_ACME_ORDER',
        });
        return { kind: 'held', release: async () => undefined };
      };
      const t = testIssuer({}, { certs });
      await t.issuer.setHosts(AB);
      await t.issuer.idle();
      assert.equal(t.ca.orders.length, 0);
      assert.equal(t.issuer.statuses()[0]?.errorReason, 'order invalid');
      await t.issuer.close();
    });
  });

  it('challenge publication and removal are logged (debug) with the identifier', async () => {
    const { logger, lines } = capturingLogger();
    const t = testIssuer({}, { logger });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(
      lines.filter((l) => l.msg.startsWith('HTTP-01 challenge')).map((l) => [l.level, l.msg, l.identifier]),
      [
        [20, 'HTTP-01 challenge published', 'a.example.com'],
        [20, 'HTTP-01 challenge removed', 'a.example.com'],
      ],
    );
    await t.issuer.close();
  });

  it('the account key id is the SHA-256 of the public key (base64url)', async () => {
    const t = testIssuer();
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const [saved] = [...t.accounts.items.values()];
    assert.match(saved?.keyId ?? '', /^[A-Za-z0-9_-]{43}$/);
    await t.issuer.close();
  });

  it('with ARI on, a group whose store could not be read is an Error, not a failed update', async () => {
    const certs = new HookedStore();
    certs.readError = new Error('EACCES');
    const t = testIssuer({ ari: true }, { certs });
    await t.issuer.setHosts(A);
    assert.equal(t.issuer.statuses()[0]?.errorCode, 'ERR_STORE');
    assert.deepEqual(t.ca.renewalInfoCalls, []);
    await t.issuer.close();
  });

  it('a store without failure records still reports the failed order', async () => {
    const t = testIssuer({}, { certs: new PlainStore() as unknown as HookedStore });
    t.ca.outcomes.push(fail());
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(
      t.orders.map((o) => o.result),
      ['failed'],
    );
    await t.issuer.close();
  });

  it('a renewal that replaces the stored certificate is logged as a replacement', async () => {
    const { logger, lines } = capturingLogger();
    const t = testIssuer({ ari: true }, { logger });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    t.clock.advance(60 * DAY);
    await settle();
    await t.issuer.idle();
    assert.deepEqual(
      lines.filter((l) => l.msg === 'certificate issued and stored').map((l) => l.replacement),
      [false, true],
    );
    await t.issuer.close();
  });

  it('adopting what another instance stored asks no renewalInfo with ARI off; phases NA', async () => {
    const certs = new HookedStore();
    withLock(certs);
    certs.lockResult = async () => {
      certs.items.set('default/a-tls', storedPair(['a.example.com'], T0, 90 * DAY));
      return { kind: 'held', release: async () => undefined };
    };
    const t = testIssuer({ ari: false }, { certs });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.deepEqual([s?.state, s?.phaseCompleted, s?.phasePending], ['Ready', 'NA', 'NA']);
    assert.deepEqual(t.ca.renewalInfoCalls, []);
    await t.issuer.close();
  });

  it('an Issuer built directly takes the options as given', () => {
    const i = new Issuer({} as never, testIssuerOptions());
    assert.deepEqual(i.statuses(), []);
    assert.equal(i.running, 0);
  });
});
