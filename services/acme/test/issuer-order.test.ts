import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { Attributes } from '@opentelemetry/api';
import type { TraceSpan, Tracing } from '@extsvc/common/otel';
import type { AccountParams, ChallengeHooks, ChallengeToSolve } from '../src/ca.ts';
import { generatePrivateKey } from '../src/certs.ts';
import { AcmeError } from '../src/errors.ts';
import { accountId, accountKeyId } from '../src/issuer.ts';
import {
  FakeCa,
  FakeClock,
  HookedStore,
  MemoryAccountStore,
  capturingLogger,
  parseTestHosts,
  settle,
  storedPair,
  testHost,
  testIssuer,
} from './fakes.ts';

const MIN = 60_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const A = parseTestHosts(testHost('a'));
const DIR = 'https://ca.example/dir';
const iso = (ms: number): string => new Date(ms).toISOString();

type OrderReq = Parameters<FakeCa['order']>[0];

/** A CA that reports its order URL and runs the self-check after publishing, as acme-ca.ts does. */
class HookingCa extends FakeCa {
  override order(req: OrderReq): Promise<string> {
    req.hooks.ordered?.(`https://ca.example/order/${this.orders.length + 1}`);
    const hooks: ChallengeHooks = {
      ...req.hooks,
      present: async (c: ChallengeToSolve) => {
        await req.hooks.present(c);
        // A failed self-check ends the attempt; the token is removed as acme-ca.ts does.
        await req.hooks.selfCheck?.(c).catch(async (err: unknown) => {
          await req.hooks.remove(c);
          throw err;
        });
      },
    };
    return super.order({ ...req, hooks });
  }
}

interface SpanRecord {
  name: string;
  attrs: Attributes;
  failed?: string;
  ended: boolean;
}

/** Records the spans the issuer starts (no exporter). */
class RecordingTracing implements Tracing {
  readonly spans: SpanRecord[] = [];
  startServer(): TraceSpan {
    throw new Error('not used by the issuer');
  }
  startChild(name: string, _kind: 0 | 1 | 2, attrs: Attributes = {}): TraceSpan {
    const rec: SpanRecord = { name, attrs: { ...attrs }, ended: false };
    this.spans.push(rec);
    return {
      traceId: '0'.repeat(32),
      spanId: '0'.repeat(16),
      setAttributes: (a) => void Object.assign(rec.attrs, a),
      fail: (m) => void (rec.failed = m),
      end: () => void (rec.ended = true),
    };
  }
  run<T>(_span: TraceSpan, fn: () => T): T {
    return fn();
  }
  async shutdown(): Promise<void> {}
}

describe('acme issuer: one order, step by step', () => {
  it('walks the Edge Stack phases to Ready and stores the pair with its names, CA and issue time', async () => {
    const t = testIssuer();
    const seen: string[] = [];
    t.issuer.onChange(() => {
      const s = t.issuer.statuses()[0];
      const row = `${s?.state} ${s?.phaseCompleted}→${s?.phasePending}`;
      if (seen.at(-1) !== row) seen.push(row);
    });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(seen, [
      'Initial NA→DefaultsFilled',
      'Pending DefaultsFilled→ACMEUserPrivateKeyCreated',
      'Pending ACMEUserPrivateKeyCreated→ACMEUserRegistered',
      'Pending ACMEUserRegistered→ACMECertificateChallenge',
      'Ready NA→NA',
    ]);
    assert.deepEqual(t.certs.items.get('default/a-tls')?.meta, {
      temporary: false,
      names: ['a.example.com'],
      authority: DIR,
      issuedAt: iso(T0),
    });
    await t.issuer.close();
  });

  it('an unsubscribed listener hears nothing more', async () => {
    const t = testIssuer();
    let calls = 0;
    const off = t.issuer.onChange(() => (calls += 1));
    off();
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.equal(calls, 0);
    await t.issuer.close();
  });

  describe('on failure, phasePending is the phase that failed (README table)', () => {
    const cases: [string, (t: ReturnType<typeof testIssuer>) => void, string, string, string][] = [
      [
        'a refused write probe',
        (t) => void ((t.certs as HookedStore).probeError = new Error('forbidden')),
        'ERR_STORE_UNWRITABLE',
        'DefaultsFilled',
        'ACMEUserPrivateKeyCreated',
      ],
      [
        'an unreadable account store',
        (t) => void (t.accounts.load = () => Promise.reject(new Error('EIO'))),
        'ERR_STORE',
        'DefaultsFilled',
        'ACMEUserPrivateKeyCreated',
      ],
      [
        'a failed registration',
        (t) =>
          void (t.ca.account = () =>
            Promise.reject(
              new AcmeError('ERR_ACME_REFUSED', 'POST https://ca.example/new-acct: ECONNREFUSED'),
            )),
        'ERR_ACME_REFUSED',
        'ACMEUserPrivateKeyCreated',
        'ACMEUserRegistered',
      ],
      [
        'an invalid order',
        (t) => void t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') }),
        'ERR_ACME_ORDER',
        'ACMEUserRegistered',
        'ACMECertificateChallenge',
      ],
    ];
    for (const [what, arrange, code, completed, pending] of cases) {
      it(`${what}: ${code}, pending ${pending}`, async () => {
        const t = testIssuer();
        arrange(t);
        await t.issuer.setHosts(A);
        await t.issuer.idle();
        const s = t.issuer.statuses()[0];
        assert.equal(s?.state, 'Error');
        assert.equal(s?.errorCode, code);
        assert.equal(s?.phaseCompleted, completed);
        assert.equal(s?.phasePending, pending);
        await t.issuer.close();
      });
    }
  });

  describe('an account the CA does not know (ERR_ACME_ACCOUNT): pending ACMEUserRegistered', () => {
    const unknown = () => ({
      kind: 'fail' as const,
      error: new AcmeError('ERR_ACME_ACCOUNT', 'account unknown to the CA: gone'),
    });

    it('when registering again fails', async () => {
      const t = testIssuer();
      t.ca.outcomes.push(unknown());
      const account = t.ca.account.bind(t.ca);
      let n = 0;
      t.ca.account = (a) =>
        ++n === 1
          ? account(a)
          : Promise.reject(new AcmeError('ERR_ACME_UNREACHABLE', 'ACME server error 503'));
      await t.issuer.setHosts(parseTestHosts(testHost('a')));
      await t.issuer.idle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.errorCode, 'ERR_ACME_UNREACHABLE');
      assert.equal(s?.phaseCompleted, 'ACMEUserPrivateKeyCreated');
      assert.equal(s?.phasePending, 'ACMEUserRegistered');
      await t.issuer.close();
    });

    it('when the CA still does not know the new registration', async () => {
      const t = testIssuer();
      t.ca.outcomes.push(unknown(), unknown());
      await t.issuer.setHosts(parseTestHosts(testHost('a')));
      await t.issuer.idle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.errorCode, 'ERR_ACME_ACCOUNT');
      assert.equal(s?.phaseCompleted, 'ACMEUserPrivateKeyCreated');
      assert.equal(s?.phasePending, 'ACMEUserRegistered');
      assert.equal(t.ca.accounts.length, 2, 'registered again once, not more');
      await t.issuer.close();
    });

    it('another error of the order after registering again is pending at the challenge', async () => {
      const t = testIssuer();
      t.ca.outcomes.push(unknown(), { kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') });
      await t.issuer.setHosts(parseTestHosts(testHost('a')));
      await t.issuer.idle();
      const s = t.issuer.statuses()[0];
      assert.equal(s?.errorCode, 'ERR_ACME_ORDER');
      assert.equal(s?.phaseCompleted, 'ACMEUserRegistered');
      assert.equal(s?.phasePending, 'ACMECertificateChallenge');
      await t.issuer.close();
    });
  });

  describe('the ACME account', () => {
    it('registers with the e-mail and stores the URL with its CA and key id; a Host without e-mail sends none', async () => {
      const t = testIssuer();
      await t.issuer.setHosts(
        parseTestHosts(testHost('a'), testHost('b').replace(', email: ops@example.com', '')),
      );
      await t.issuer.idle();
      const byEmail = new Map(t.ca.accounts.map((a) => [a.email ?? '(none)', a]));
      assert.deepEqual([...byEmail.keys()].sort(), ['(none)', 'ops@example.com']);
      assert.equal('email' in (byEmail.get('(none)') as AccountParams), false);
      assert.equal(byEmail.get('ops@example.com')?.directoryUrl, DIR);
      const id = accountId({ authority: DIR, email: 'ops@example.com' });
      const saved = t.accounts.items.get(id);
      assert.equal(saved?.directoryUrl, DIR);
      assert.equal(saved?.keyId, accountKeyId(saved?.keyPem ?? ''));
      assert.match(saved?.accountUrl ?? '', /^https:\/\/ca\.example\/acct\/\d$/);
      await t.issuer.close();
    });

    it('reuses a stored URL without a key id (older account.json) for the same CA', async () => {
      const accounts = new MemoryAccountStore();
      const id = accountId({ authority: DIR, email: 'ops@example.com' });
      accounts.items.set(id, {
        keyPem: generatePrivateKey('ecdsa-p256'),
        accountUrl: 'https://ca.example/acct/77',
        directoryUrl: DIR,
      });
      const t = testIssuer({}, { accounts });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.ca.accounts.length, 0);
      assert.equal(t.ca.orders[0]?.accountUrl, 'https://ca.example/acct/77');
      await t.issuer.close();
    });

    it('registers again when the stored URL belongs to another CA, keeping the key', async () => {
      const accounts = new MemoryAccountStore();
      const id = accountId({ authority: DIR, email: 'ops@example.com' });
      const keyPem = generatePrivateKey('ecdsa-p256');
      accounts.items.set(id, {
        keyPem,
        accountUrl: 'https://other-ca.example/acct/1',
        directoryUrl: 'https://other-ca.example/dir',
      });
      const t = testIssuer({}, { accounts });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.equal(t.ca.accounts.length, 1);
      assert.equal(t.ca.accounts[0]?.keyPem, keyPem);
      assert.equal(t.ca.orders[0]?.accountUrl, 'https://ca.example/acct/1');
      assert.equal(t.accounts.items.get(id)?.directoryUrl, DIR);
      await t.issuer.close();
    });

    for (const [what, error] of [
      ['a non-ACME error', new TypeError('socket hang up')],
      ['another ACME error', new AcmeError('ERR_ACME_ORDER', 'invalid')],
    ] as const) {
      it(`does not register again after ${what}`, async () => {
        const t = testIssuer();
        t.ca.outcomes.push({ kind: 'fail', error: error as AcmeError });
        await t.issuer.setHosts(A);
        await t.issuer.idle();
        assert.equal(t.ca.accounts.length, 1);
        assert.equal(t.ca.orders.length, 1);
        assert.equal(t.issuer.statuses()[0]?.state, 'Error');
        await t.issuer.close();
      });
    }

    it('after the CA lost the account: registers again, orders with the new URL, logs it', async () => {
      const { logger, lines } = capturingLogger();
      const t = testIssuer({}, { logger });
      t.ca.outcomes.push({
        kind: 'fail',
        error: new AcmeError('ERR_ACME_ACCOUNT', 'account unknown to the CA'),
      });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.deepEqual(
        t.ca.orders.map((o) => o.accountUrl),
        ['https://ca.example/acct/1', 'https://ca.example/acct/2'],
      );
      assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
      const id = accountId({ authority: DIR, email: 'ops@example.com' });
      assert.ok(
        lines.some((l) => l.msg === 'account unknown to the CA: registering again' && l.account === id),
      );
      assert.deepEqual(
        lines.filter((l) => l.msg === 'ACME account registered').map((l) => l.accountUrl),
        ['https://ca.example/acct/1', 'https://ca.example/acct/2'],
      );
      assert.ok(lines.some((l) => l.msg === 'ACME account key created' && l.account === id));
      await t.issuer.close();
    });
  });

  it('refuses an issued chain for other names (ERR_CERT_INVALID) and keeps the temporary certificate', async () => {
    const t = testIssuer();
    t.ca.outcomes.push({ kind: 'issue', lifetimeMs: 90 * DAY, names: ['b.example.com'] });
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.errorCode, 'ERR_CERT_INVALID');
    assert.equal(s?.temporaryCertificate, true);
    assert.equal(t.certs.items.get('default/a-tls')?.meta.temporary, true);
    await t.issuer.close();
  });

  it('publishes each token until the challenge TTL at most, and removes it after the order', async () => {
    const clock = new FakeClock();
    const ca = new FakeCa(clock);
    let release: () => void = () => undefined;
    ca.gate = new Promise((r) => (release = r));
    const t = testIssuer({ challengeTtlMs: 3 * MIN }, { clock, ca });
    await t.issuer.setHosts(A);
    await settle();
    const token = ca.presented[0] ?? '';
    assert.equal((await t.challenges.get(token, T0 + 3 * MIN - 1))?.name, 'a.example.com');
    assert.equal((await t.challenges.get(token, T0 + 3 * MIN - 1))?.keyAuthorization, `${token}.thumb`);
    assert.equal(await t.challenges.get(token, T0 + 3 * MIN), undefined, 'expired at the TTL');
    release();
    await t.issuer.idle();
    assert.equal(t.challenges.size, 0);
    await t.issuer.close();
  });

  it('a self-check failure is the order error (the CA is not asked to validate)', async () => {
    const clock = new FakeClock();
    const ca = new HookingCa(clock);
    const checked: string[] = [];
    const t = testIssuer(
      {},
      {
        clock,
        ca,
        selfCheck: async (c) => {
          checked.push(c.name);
          throw new AcmeError('ERR_SELF_CHECK', `GET http://${c.name}/.well-known/acme-challenge/…: 404`);
        },
      },
    );
    await t.issuer.setHosts(A);
    await t.issuer.idle();
    assert.deepEqual(checked, ['a.example.com']);
    assert.equal(t.issuer.statuses()[0]?.errorCode, 'ERR_SELF_CHECK');
    assert.equal(t.challenges.size, 0, 'token removed');
    await t.issuer.close();
  });

  describe('tracing: one acme order span per order, one acme challenge span per challenge', () => {
    it('a successful order: the Hosts, names, CA, order URL and state Ready; the challenge span ended', async () => {
      const clock = new FakeClock();
      const tracing = new RecordingTracing();
      const t = testIssuer({}, { clock, ca: new HookingCa(clock), tracing });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      assert.deepEqual(tracing.spans, [
        {
          name: 'acme order',
          attrs: {
            'acme.tls_secret': 'default/a-tls',
            'acme.hosts': ['default/a'],
            'acme.names': ['a.example.com'],
            'acme.authority': DIR,
            'acme.order_url': 'https://ca.example/order/1',
            'acme.state': 'Ready',
          },
          ended: true,
        },
        { name: 'acme challenge', attrs: { 'acme.identifier': 'a.example.com' }, ended: true },
      ]);
      await t.issuer.close();
    });

    it('a failed order is marked with its code, a failed self-check on its challenge span', async () => {
      const clock = new FakeClock();
      const tracing = new RecordingTracing();
      const t = testIssuer(
        {},
        {
          clock,
          ca: new HookingCa(clock),
          tracing,
          selfCheck: () => Promise.reject(new AcmeError('ERR_SELF_CHECK', 'not reachable')),
        },
      );
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const [order, challenge] = tracing.spans;
      assert.equal(order?.failed, 'ERR_SELF_CHECK');
      assert.equal(order?.attrs['acme.state'], 'Error');
      assert.equal(order?.ended, true);
      assert.equal(challenge?.failed, 'ERR_SELF_CHECK');
      assert.equal(challenge?.ended, true);
      await t.issuer.close();
    });
  });

  describe('logs (operators grep them: README "Logs are JSON on stdout")', () => {
    it('names why it orders: temporary, renewal time, names changed, expired, no certificate', async () => {
      const { logger, lines } = capturingLogger();
      const certs = new HookedStore();
      const t = testIssuer({}, { logger, certs });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      t.clock.advance(60 * DAY);
      await settle();
      await t.issuer.idle();
      await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b', { secret: 'a-tls' })));
      await settle();
      await t.issuer.idle();
      await t.issuer.close();
      // A restart on an expired stored pair, then one whose store could not be read.
      const expired = new HookedStore();
      expired.items.set('default/a-tls', storedPair(['a.example.com'], T0 - 100 * DAY, 90 * DAY));
      const u = testIssuer({}, { logger, certs: expired });
      await u.issuer.setHosts(A);
      await u.issuer.idle();
      await u.issuer.close();
      const unreadable = new HookedStore();
      unreadable.readError = new Error('EACCES');
      const v = testIssuer({}, { logger, certs: unreadable });
      await v.issuer.setHosts(A);
      unreadable.readError = undefined;
      v.clock.advance(5 * MIN);
      await settle();
      await v.issuer.idle();
      await v.issuer.close();
      assert.deepEqual(
        lines.filter((l) => l.msg === 'ordering certificate').map((l) => l.reason),
        ['temporary certificate', 'renewal time reached', 'names changed', 'expired', 'no certificate'],
      );
      const cannot = lines.find((l) => l.msg === 'cannot read or write the stored certificate');
      assert.equal(cannot?.err, 'EACCES');
      assert.equal(cannot?.level, 50);
      const tmp = lines.find((l) => l.msg === 'temporary self-signed certificate written');
      assert.deepEqual(tmp?.names, ['a.example.com']);
      assert.equal(tmp?.tlsSecret, 'default/a-tls');
    });

    it('an issued certificate: names, notAfter, profile, replacement and renewal time', async () => {
      const { logger, lines } = capturingLogger();
      const t = testIssuer({ defaultProfile: 'tlsserver' }, { logger });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      const issued = lines.find((l) => l.msg === 'certificate issued and stored');
      const c = t.issuer.certificates()[0];
      assert.deepEqual(
        { ...issued, level: undefined, time: undefined, pid: undefined, hostname: undefined },
        {
          ...issued,
          level: undefined,
          time: undefined,
          pid: undefined,
          hostname: undefined,
          names: ['a.example.com'],
          notAfter: iso(T0 + 90 * DAY),
          profile: 'tlsserver',
          replacement: false,
          renewAt: iso(c?.renewAt ?? 0),
          tlsSecret: 'default/a-tls',
          hosts: ['default/a'],
        },
      );
      const withoutProfile = capturingLogger();
      const u = testIssuer({}, { logger: withoutProfile.logger });
      await u.issuer.setHosts(A);
      await u.issuer.idle();
      const line = withoutProfile.lines.find((l) => l.msg === 'certificate issued and stored');
      assert.equal(line !== undefined && 'profile' in line, false);
      await t.issuer.close();
      await u.issuer.close();
    });

    it('a failed order: code, reason, failures, backoff and whether a valid certificate was serving', async () => {
      const { logger, lines } = capturingLogger();
      const t = testIssuer({}, { logger });
      t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_TIMEOUT', 'no answer within 30s') });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      t.clock.advance(5 * MIN);
      await settle();
      await t.issuer.idle();
      t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_TIMEOUT', 'no answer within 30s') });
      t.clock.advance(60 * DAY);
      await settle();
      await t.issuer.idle();
      const failed = lines.filter((l) => l.msg === 'certificate order failed');
      assert.deepEqual(
        failed.map((l) => [l.level, l.code, l.reason, l.failures, l.backoff, l.wasReady]),
        [
          [40, 'ERR_ACME_TIMEOUT', 'no answer within 30s', 1, '5m0s', false],
          [40, 'ERR_ACME_TIMEOUT', 'no answer within 30s', 1, '5m0s', true],
        ],
      );
      await t.issuer.close();
    });

    it('a retry asked by annotation is logged', async () => {
      const { logger, lines } = capturingLogger();
      const t = testIssuer({}, { logger });
      t.ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') });
      await t.issuer.setHosts(A);
      await t.issuer.idle();
      await t.issuer.setHosts(parseTestHosts(testHost('a', { annotations: "acme.extsvc.dev/retry: 'x'" })));
      await settle();
      await t.issuer.idle();
      const line = lines.find((l) => l.msg === 'retry requested by annotation: retrying now');
      assert.equal(line?.tlsSecret, 'default/a-tls');
      assert.equal(t.issuer.statuses()[0]?.state, 'Ready');
      await t.issuer.close();
    });
  });
});
