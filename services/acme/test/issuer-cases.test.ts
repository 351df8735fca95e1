import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import { type ParsedHost, parseHostsText } from '../src/host.ts';
import { Issuer, type IssuerOptions, SLOW_RETRY_FACTOR, accountId, retryPolicy } from '../src/issuer.ts';
import { MemoryChallengeStore, type StoredAccount } from '../src/stores.ts';
import {
  FakeCa,
  FakeClock,
  HookedStore,
  MemoryAccountStore,
  settle,
  silentLogger,
  withExists,
  withLock,
} from './fakes.ts';

const DAY = 86_400_000;
const MIN = 60_000;

const opts: IssuerOptions = {
  renewal: { fraction: 2 / 3, jitter: 0 },
  backoff: { initialMs: 5 * MIN, maxMs: 24 * 60 * MIN },
  maxConcurrent: 4,
  keyType: 'ecdsa-p256',
  temporaryValidityMs: 7 * DAY,
  challengeTtlMs: 10 * MIN,
  ari: false,
  maxSleepMs: 3_600_000,
};

function parse(text: string): ParsedHost[] {
  const r = parseHostsText(text, 'hosts.yaml', {
    namespace: 'default',
    authority: 'none',
    ambassadorIds: ['default'],
    allowedAuthorities: ['https://ca.example/dir'],
  });
  assert.equal(r.kind, 'ok');
  return r.kind === 'ok' ? [...r.hosts] : [];
}

function acmeHost(name: string, hostname: string, secret: string, annotations = ''): string {
  return (
    `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${name}${annotations ? `, annotations: {${annotations}}` : ''}}\n` +
    `spec:\n  hostname: ${hostname}\n  acmeProvider: {authority: 'https://ca.example/dir', email: ops@example.com}\n  tlsSecret: {name: ${secret}}\n`
  );
}

function setup(
  over: Partial<IssuerOptions> = {},
  certs = new HookedStore(),
  accounts = new MemoryAccountStore(),
) {
  const clock = new FakeClock();
  const ca = new FakeCa(clock);
  const orders: string[] = [];
  const issuer = new Issuer(
    {
      clock,
      random: () => 0,
      ca,
      certs,
      accounts,
      challenges: new MemoryChallengeStore(),
      logger: silentLogger,
      onOrder: (r) => orders.push(r),
    },
    { ...opts, ...over },
  );
  return { clock, ca, certs, accounts, issuer, orders };
}

const A = acmeHost('a', 'a.example.com', 'a-tls');

describe('acme issuer: planning branches', () => {
  it('retryPolicy slows only ERR_ACME_TLS, raising the maximum when it is below the slow start', () => {
    const base = { initialMs: 5 * MIN, maxMs: 30 * MIN };
    assert.deepEqual(retryPolicy('ERR_ACME_UNREACHABLE', base), base);
    assert.deepEqual(retryPolicy('ERR_ACME_TLS', base), { initialMs: 60 * MIN, maxMs: 60 * MIN });
    assert.deepEqual(retryPolicy('ERR_ACME_TLS', { initialMs: MIN, maxMs: DAY }), {
      initialMs: SLOW_RETRY_FACTOR * MIN,
      maxMs: DAY,
    });
  });

  it('accountId: the privateKeySecret, else authority--email, else the authority alone', () => {
    assert.equal(
      accountId({ authority: 'https://ca.example/dir', privateKeySecret: { namespace: 'ns', name: 'k' } }),
      'ns.k',
    );
    const withEmail = accountId({ authority: 'https://ca.example/dir', email: 'ops@example.com' });
    const without = accountId({ authority: 'https://ca.example/dir' });
    assert.ok(withEmail.startsWith(`${without}--`), withEmail);
    assert.notEqual(withEmail, without);
  });

  it('maps a non-ACME CA error to ERR_ACME_ORDER and persists the failure record', async () => {
    const { issuer, ca, certs, orders, clock } = setup();
    ca.outcomes.push({ kind: 'fail', error: new TypeError('socket hang up') as unknown as AcmeError });
    await issuer.setHosts(parse(A));
    await issuer.idle();
    const s = issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorCode, 'ERR_ACME_ORDER');
    assert.equal(s?.errorReason, 'socket hang up');
    assert.equal(s?.errorTimestamp, new Date(clock.now()).toISOString());
    assert.equal(s?.nextRenewal, new Date(clock.now() + 5 * MIN).toISOString());
    assert.equal(s?.temporaryCertificate, true);
    assert.equal(s?.notAfter, undefined, 'no notAfter for the temporary certificate');
    assert.deepEqual(orders, ['failed']);
    const f = certs.failures.get('default/a-tls');
    assert.equal(f?.code, 'ERR_ACME_ORDER');
    assert.equal(f?.failures, 1);
    assert.deepEqual(f?.names, ['a.example.com']);
  });

  it('waits 12 times longer after a CA TLS verification failure, and counts a rate limit as rate_limited', async () => {
    const { issuer, ca, orders, clock } = setup();
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_TLS', 'CA certificate untrusted') });
    await issuer.setHosts(parse(A));
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.errorBackoff, '1h0m0s');
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_RATE_LIMITED', 'too many') });
    clock.advance(60 * MIN);
    await settle();
    await issuer.idle();
    assert.deepEqual(orders, ['failed', 'rate_limited']);
    assert.equal(issuer.statuses()[0]?.errorCode, 'ERR_ACME_RATE_LIMITED');
    assert.equal(issuer.statuses()[0]?.errorBackoff, '10m0s');
  });

  it('orders nothing while the store refuses the write probe, and does not count it as an order', async () => {
    const certs = new HookedStore();
    certs.probeError = new Error('forbidden');
    const { issuer, ca, orders, clock } = setup({}, certs);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    const s = issuer.statuses()[0];
    assert.equal(s?.errorCode, 'ERR_STORE_UNWRITABLE');
    assert.match(s?.errorReason ?? '', /^certificate store: forbidden; no certificate is ordered/);
    assert.equal(ca.orders.length, 0);
    assert.deepEqual(orders, []);
    certs.probeError = undefined;
    clock.advance(5 * MIN);
    await settle();
    await issuer.idle();
    assert.equal(certs.probes, 2);
    assert.equal(ca.orders.length, 1);
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
    assert.equal(certs.failures.size, 0, 'failure record cleared after the success');
  });

  it('reports a store that cannot be read at load as ERR_STORE with the initial backoff', async () => {
    const certs = new HookedStore();
    certs.readError = new Error('EACCES');
    const { issuer, ca, clock } = setup({}, certs);
    await issuer.setHosts(parse(A));
    const s = issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorCode, 'ERR_STORE');
    assert.equal(s?.errorReason, 'certificate store: EACCES');
    assert.equal(s?.errorBackoff, '5m0s');
    assert.equal(s?.nextRenewal, new Date(clock.now() + 5 * MIN).toISOString());
    assert.deepEqual(issuer.unstored(), ['default/a-tls'], 'no pair stored yet');
    assert.equal(ca.orders.length, 0);
    await issuer.close();
  });

  it('reports a failed write of the issued certificate as ERR_STORE, keeping the temporary one', async () => {
    const certs = new HookedStore();
    const { issuer, ca } = setup({}, certs);
    ca.gate = new Promise((r) => setImmediate(r));
    await issuer.setHosts(parse(A));
    certs.writeError = new Error('disk full');
    await issuer.idle();
    const s = issuer.statuses()[0];
    assert.equal(s?.errorCode, 'ERR_STORE');
    assert.equal(s?.errorReason, 'certificate store: disk full');
    assert.equal(certs.items.get('default/a-tls')?.meta.temporary, true);
    assert.deepEqual(
      issuer.certificates().map((c) => [c.secret, c.temporary, c.renewAt]),
      [['default/a-tls', true, undefined]],
    );
  });

  it('reports an account store that cannot be read as ERR_STORE without ordering', async () => {
    const accounts = new MemoryAccountStore();
    accounts.load = async (_id: string): Promise<StoredAccount | undefined> => {
      throw new Error('EIO');
    };
    const { issuer, ca } = setup({}, new HookedStore(), accounts);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.errorCode, 'ERR_STORE');
    assert.equal(issuer.statuses()[0]?.errorReason, 'account store: EIO');
    assert.equal(ca.orders.length, 0);
  });

  it('takes and releases the issuing lock around an order', async () => {
    const certs = new HookedStore();
    withLock(certs);
    const { issuer, ca } = setup({}, certs);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    assert.equal(ca.orders.length, 1);
    assert.equal(certs.releases, 1);
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
  });

  it('reports a lock that cannot be taken as ERR_STORE', async () => {
    const certs = new HookedStore();
    withLock(certs);
    certs.lockResult = () => Promise.reject(new Error('EROFS'));
    const { issuer, ca } = setup({}, certs);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.errorCode, 'ERR_STORE');
    assert.equal(issuer.statuses()[0]?.errorReason, 'certificate store lock: EROFS');
    assert.equal(ca.orders.length, 0);
  });

  it('while another instance holds the lock, rechecks and adopts the certificate it stored', async () => {
    const certs = new HookedStore();
    withLock(certs);
    certs.lockResult = () => Promise.resolve({ kind: 'busy', holder: 'other-host:42' });
    const { issuer, ca, clock } = setup({ lockRecheckMs: 7000 }, certs);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    assert.equal(ca.orders.length, 0);
    const s = issuer.statuses()[0];
    assert.equal(s?.nextRenewal, new Date(clock.now() + 7000).toISOString());
    // The other instance stores a real certificate for exactly these names.
    const other = setup();
    await other.issuer.setHosts(parse(A));
    await other.issuer.idle();
    const real = other.certs.items.get('default/a-tls');
    assert.equal(real?.meta.temporary, false);
    certs.items.set('default/a-tls', real);
    clock.advance(7000);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 0, 'adopted, not ordered');
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
    assert.equal(issuer.statuses()[0]?.temporaryCertificate, false);
  });

  it('while another instance holds the lock, adopts its newer failure and its backoff', async () => {
    const certs = new HookedStore();
    withLock(certs);
    certs.lockResult = () => Promise.resolve({ kind: 'busy', holder: 'other' });
    const { issuer, ca, clock } = setup({ lockRecheckMs: 1000 }, certs);
    await issuer.setHosts(parse(A));
    await issuer.idle();
    certs.failures.set('default/a-tls', {
      names: ['a.example.com'],
      failures: 3,
      at: clock.now() + 500,
      backoffMs: 20 * MIN,
      reason: 'order invalid',
      code: 'ERR_ACME_ORDER',
    });
    clock.advance(1000);
    await settle();
    await issuer.idle();
    const s = issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorReason, 'order invalid');
    assert.equal(s?.errorBackoff, '20m0s');
    assert.equal(s?.nextRenewal, new Date(Date.parse('2026-01-01T00:00:00Z') + 500 + 20 * MIN).toISOString());
    assert.equal(ca.orders.length, 0);
  });

  it('an Error group retries at once when the retry annotation changes, not when it stays', async () => {
    const { issuer, ca } = setup();
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') });
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'invalid') });
    await issuer.setHosts(parse(acmeHost('a', 'a.example.com', 'a-tls', "acme.extsvc.dev/retry: '1'")));
    await issuer.idle();
    assert.equal(ca.orders.length, 1);
    await issuer.setHosts(parse(acmeHost('a', 'a.example.com', 'a-tls', "acme.extsvc.dev/retry: '1'")));
    await issuer.idle();
    assert.equal(ca.orders.length, 1, 'same token: backoff kept');
    await issuer.setHosts(parse(acmeHost('a', 'a.example.com', 'a-tls', "acme.extsvc.dev/retry: '2'")));
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2, 'new token: one retry now');
    assert.equal(issuer.statuses()[0]?.errorBackoff, '10m0s', 'failure count kept');
  });

  it('renew-before plans the renewal that long before notAfter, and a change replans it', async () => {
    const { issuer } = setup();
    await issuer.setHosts(
      parse(acmeHost('a', 'a.example.com', 'a-tls', 'acme.extsvc.dev/renew-before: 240h')),
    );
    await issuer.idle();
    const [c] = issuer.certificates();
    assert.equal(c?.renewAt, (c?.notAfter ?? 0) - 10 * DAY);
    await issuer.setHosts(
      parse(acmeHost('a', 'a.example.com', 'a-tls', 'acme.extsvc.dev/renew-before: 480h')),
    );
    const [d] = issuer.certificates();
    assert.equal(d?.renewAt, (d?.notAfter ?? 0) - 20 * DAY);
    await issuer.setHosts(
      parse(acmeHost('a', 'a.example.com', 'a-tls', 'acme.extsvc.dev/renew-before: 2400h')),
    );
    const [e] = issuer.certificates();
    assert.ok(
      (e?.renewAt ?? 0) > (e?.notAfter ?? 0) - 90 * DAY,
      'longer than the lifetime: the policy applies',
    );
    await issuer.close();
  });

  it('forgets removed groups and reorders when a stored certificate names other hosts', async () => {
    const { issuer, ca, certs } = setup();
    await issuer.setHosts(parse(A));
    await issuer.idle();
    await issuer.setHosts([]);
    assert.deepEqual(issuer.certificates(), []);
    assert.equal(certs.items.has('default/a-tls'), true, 'files kept');
    await issuer.setHosts(parse(A + '---\n' + acmeHost('b', 'b.example.com', 'a-tls')));
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2);
    assert.deepEqual([...(ca.orders[1]?.names ?? [])].sort(), ['a.example.com', 'b.example.com']);
    await issuer.close();
  });

  it('authority none: a missing or unreadable tlsSecret is an Error, another namespace is not probed', async () => {
    const certs = new HookedStore();
    withExists(certs);
    const probed: string[] = [];
    certs.existsResult = async (s) => {
      probed.push(`${s.namespace}/${s.name}`);
      if (s.name === 'gone') return false;
      if (s.name === 'locked') throw new Error('forbidden');
      return true;
    };
    const { issuer } = setup({}, certs);
    const none = (n: string, secret: string): string =>
      `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${n}}\nspec: {hostname: ${n}.example.com, tlsSecret: {name: ${secret}}}\n`;
    await issuer.setHosts(
      parse(
        [none('g', 'gone'), none('l', 'locked'), none('k', 'ok'), none('x', 'gone, namespace: other')].join(
          '---\n',
        ),
      ),
    );
    const by = new Map(issuer.statuses().map((s) => [s.key, s]));
    assert.equal(by.get('default/g')?.state, 'Error');
    assert.equal(by.get('default/g')?.errorReason, 'tlsSecret default/gone does not exist');
    assert.equal(by.get('default/l')?.errorReason, 'tlsSecret default/locked cannot be read: forbidden');
    assert.equal(by.get('default/k')?.state, 'Ready');
    assert.equal(by.get('default/k')?.tlsCertificateSource, 'Other');
    assert.equal(by.get('default/x')?.state, 'Ready', "another namespace's Secret is Emissary's to serve");
    assert.equal(by.get('default/x')?.tlsSecret, 'other/gone');
    assert.deepEqual(probed.sort(), ['default/gone', 'default/locked', 'default/ok']);
    await issuer.close();
  });
});
