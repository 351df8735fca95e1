import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { AcmeError } from '../src/errors.ts';
import { type ParsedHost, parseHostsText } from '../src/host.ts';
import { Issuer, type IssuerOptions, accountId, accountKeyId } from '../src/issuer.ts';
import { MemoryChallengeStore } from '../src/stores.ts';
import {
  FakeCa,
  FakeClock,
  MemoryAccountStore,
  MemoryCertificateStore,
  settle,
  silentLogger,
  testIssuerOptions,
} from './fakes.ts';

const DAY = 86_400_000;
const MIN = 60_000;

const opts: IssuerOptions = testIssuerOptions({ ari: true });

function hostsYaml(specs: { name: string; hostname: string; secret: string }[]): ParsedHost[] {
  const text = specs
    .map(
      (s) =>
        `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${s.name}}\nspec:\n  hostname: ${s.hostname}\n  acmeProvider: {authority: 'https://ca.example/dir', email: ops@example.com}\n  tlsSecret: {name: ${s.secret}}\n`,
    )
    .join('---\n');
  const r = parseHostsText(text, 'hosts.yaml', {
    namespace: 'default',
    authority: 'none',
    ambassadorIds: ['default'],
    allowedAuthorities: ['https://ca.example/dir'],
  });
  assert.equal(r.kind, 'ok');
  return r.kind === 'ok' ? [...r.hosts] : [];
}

function setup(over: Partial<IssuerOptions> = {}) {
  const clock = new FakeClock();
  const ca = new FakeCa(clock);
  const certs = new MemoryCertificateStore();
  const accounts = new MemoryAccountStore();
  const challenges = new MemoryChallengeStore();
  const orders: string[] = [];
  const issuer = new Issuer(
    {
      clock,
      random: () => 0,
      ca,
      certs,
      accounts,
      challenges,
      logger: silentLogger,
      onOrder: (r) => orders.push(r),
    },
    { ...opts, ...over },
  );
  return { clock, ca, certs, accounts, challenges, issuer, orders };
}

const one = [{ name: 'a', hostname: 'a.example.com', secret: 'a-tls' }];

describe('acme issuer', () => {
  it('writes a temporary certificate, then issues and reports Ready with notAfter and next renewal', async () => {
    const { issuer, certs, ca, clock, orders } = setup();
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(certs.writes, 2, 'temporary then issued');
    const stored = certs.items.get('default/a-tls');
    assert.equal(stored?.meta.temporary, false);
    assert.equal(ca.orders.length, 1);
    assert.deepEqual(orders, ['issued']);
    const [s] = issuer.statuses();
    assert.equal(s?.state, 'Ready');
    assert.equal(s?.phaseCompleted, 'NA');
    assert.equal(s?.notAfter, new Date(Math.floor((clock.now() + 90 * DAY) / 1000) * 1000).toISOString());
    assert.equal(s?.nextRenewal, new Date(Math.floor(clock.now() / 1000) * 1000 + 60 * DAY).toISOString());
    await issuer.close();
  });

  it('serves the challenge token only while the order is pending', async () => {
    const { issuer, ca, challenges, clock } = setup();
    let release!: () => void;
    ca.gate = new Promise((r) => (release = r));
    await issuer.setHosts(hostsYaml(one));
    await settle();
    assert.equal(ca.presented.length, 1);
    const token = ca.presented[0] as string;
    assert.equal((await challenges.get(token, clock.now()))?.name, 'a.example.com');
    assert.equal(issuer.statuses()[0]?.state, 'Pending');
    assert.equal(issuer.statuses()[0]?.phasePending, 'ACMECertificateChallenge');
    release();
    await issuer.idle();
    assert.equal(await challenges.get(token, clock.now()), undefined);
    await issuer.close();
  });

  it('renews by itself at 2/3 of the lifetime (injected clock)', async () => {
    const { issuer, ca, clock } = setup();
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(ca.orders.length, 1);
    clock.advance(59 * DAY);
    await settle();
    assert.equal(ca.orders.length, 1, 'not before the renewal time');
    clock.advance(1 * DAY);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2);
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
    await issuer.close();
  });

  it('does not reissue a valid stored certificate after a restart', async () => {
    const first = setup();
    await first.issuer.setHosts(hostsYaml(one));
    await first.issuer.idle();
    await first.issuer.close();
    const second = new Issuer(
      {
        clock: first.clock,
        random: () => 0,
        ca: first.ca,
        certs: first.certs,
        accounts: first.accounts,
        challenges: new MemoryChallengeStore(),
        logger: silentLogger,
      },
      opts,
    );
    await second.setHosts(hostsYaml(one));
    await second.idle();
    assert.equal(first.ca.orders.length, 1);
    assert.equal(second.statuses()[0]?.state, 'Ready');
    assert.equal(first.ca.accounts.length, 1, 'account registered once');
    await second.close();
  });

  it('creates the account key once and reuses the stored account URL', async () => {
    const { issuer, ca, accounts, clock } = setup();
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    clock.advance(60 * DAY);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2);
    assert.equal(ca.accounts.length, 1);
    const id = accountId({ authority: 'https://ca.example/dir', email: 'ops@example.com' });
    assert.equal(accounts.items.get(id)?.accountUrl, 'https://ca.example/acct/1');
    await issuer.close();
  });

  it('creates one account key and registers once when groups sharing the account order at once', async () => {
    const { issuer, ca, accounts } = setup({ maxConcurrent: 4 });
    const specs = Array.from({ length: 4 }, (_, i) => ({
      name: `h${i}`,
      hostname: `h${i}.example.com`,
      secret: `s${i}`,
    }));
    await issuer.setHosts(hostsYaml(specs));
    await settle();
    await issuer.idle();
    assert.equal(ca.accounts.length, 1);
    assert.equal(new Set(ca.orders.map((o) => o.accountUrl)).size, 1);
    const [stored] = [...accounts.items.values()];
    assert.equal(stored?.keyId, accountKeyId(stored?.keyPem ?? ''));
    assert.ok(issuer.statuses().every((s) => s.state === 'Ready'));
    await issuer.close();
  });

  it('does not use a stored account URL that was registered with another key', async () => {
    const { issuer, ca, accounts } = setup();
    const id = accountId({ authority: 'https://ca.example/dir', email: 'ops@example.com' });
    const { generatePrivateKey } = await import('../src/certs.ts');
    await accounts.save(id, {
      keyPem: generatePrivateKey('ecdsa-p256'),
      accountUrl: 'https://ca.example/acct/other',
      directoryUrl: 'https://ca.example/dir',
      keyId: 'not-this-key',
    });
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(ca.accounts.length, 1, 'looked up / registered again');
    assert.equal(ca.orders[0]?.accountUrl, 'https://ca.example/acct/1');
    await issuer.close();
  });

  it('registers again once when the CA no longer knows the account', async () => {
    const { issuer, ca } = setup();
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ACCOUNT', 'account unknown to the CA') });
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(ca.accounts.length, 2);
    assert.equal(ca.orders[1]?.accountUrl, 'https://ca.example/acct/2');
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
    await issuer.close();
  });

  it('backs off per group on failure with errorReason and errorBackoff, keeping the old certificate', async () => {
    const { issuer, ca, clock, certs, orders } = setup();
    const fail = (): void =>
      void ca.outcomes.push({
        kind: 'fail',
        error: new AcmeError('ERR_ACME_UNREACHABLE', 'ACME server unreachable'),
      });
    fail();
    fail();
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    let s = issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorReason, 'ACME server unreachable');
    assert.equal(s?.errorBackoff, '5m0s');
    assert.equal(s?.phasePending, 'ACMECertificateChallenge');
    assert.equal(certs.items.get('default/a-tls')?.meta.temporary, true, 'temporary certificate untouched');
    clock.advance(5 * MIN - 1);
    await settle();
    assert.equal(ca.orders.length, 1, 'no retry before the backoff');
    clock.advance(1);
    await settle();
    await issuer.idle();
    s = issuer.statuses()[0];
    assert.equal(s?.errorBackoff, '10m0s');
    clock.advance(10 * MIN);
    await settle();
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.state, 'Ready');
    assert.deepEqual(orders, ['failed', 'failed', 'issued']);
    await issuer.close();
  });

  it('keeps the backoff across a restart, and clears it after a success', async () => {
    const first = setup();
    first.ca.outcomes.push({
      kind: 'fail',
      error: new AcmeError('ERR_ACME_UNREACHABLE', 'ACME server unreachable'),
    });
    await first.issuer.setHosts(hostsYaml(one));
    await first.issuer.idle();
    await first.issuer.close();
    assert.equal(first.certs.failures.get('default/a-tls')?.failures, 1);
    const second = new Issuer(
      {
        clock: first.clock,
        random: () => 0,
        ca: first.ca,
        certs: first.certs,
        accounts: first.accounts,
        challenges: new MemoryChallengeStore(),
        logger: silentLogger,
      },
      opts,
    );
    await second.setHosts(hostsYaml(one));
    await settle();
    assert.equal(first.ca.orders.length, 1, 'no order before the backoff ends');
    assert.equal(second.statuses()[0]?.state, 'Error');
    assert.equal(second.statuses()[0]?.errorReason, 'ACME server unreachable');
    first.clock.advance(5 * MIN);
    await settle();
    await second.idle();
    assert.equal(second.statuses()[0]?.state, 'Ready');
    assert.equal(first.certs.failures.size, 0);
    await second.close();
  });

  it('caps the backoff', async () => {
    const { issuer, ca, clock } = setup({ backoff: { initialMs: MIN, maxMs: 4 * MIN } });
    ca.defaultOutcome = { kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'challenge failed') };
    await issuer.setHosts(hostsYaml(one));
    const seen: (string | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      await settle();
      await issuer.idle();
      seen.push(issuer.statuses()[0]?.errorBackoff);
      clock.advance(4 * MIN);
    }
    assert.deepEqual(seen, ['1m0s', '2m0s', '4m0s', '4m0s', '4m0s']);
    await issuer.close();
  });

  it('honours a rate limit Retry-After beyond the exponential delay', async () => {
    const { issuer, ca, orders } = setup();
    ca.outcomes.push({
      kind: 'fail',
      error: new AcmeError('ERR_ACME_RATE_LIMITED', 'rate limited by the CA', {
        retryAfterMs: 2 * 3_600_000,
      }),
    });
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.errorBackoff, '2h0m0s');
    assert.deepEqual(orders, ['rate_limited']);
    await issuer.close();
  });

  it('refuses an issued chain that does not match the key and stores nothing', async () => {
    const { issuer, ca, certs } = setup();
    ca.outcomes.push({ kind: 'wrong-key', lifetimeMs: 90 * DAY });
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    const s = issuer.statuses()[0];
    assert.equal(s?.state, 'Error');
    assert.equal(s?.errorReason, 'the certificate does not match the private key');
    assert.equal(certs.writes, 1, 'only the temporary certificate');
    await issuer.close();
  });

  it('bounds the number of concurrent orders', async () => {
    const { issuer, ca } = setup({ maxConcurrent: 2 });
    let release!: () => void;
    ca.gate = new Promise((r) => (release = r));
    const specs = Array.from({ length: 6 }, (_, i) => ({
      name: `h${i}`,
      hostname: `h${i}.example.com`,
      secret: `s${i}`,
    }));
    await issuer.setHosts(hostsYaml(specs));
    await settle();
    assert.equal(issuer.running, 2);
    release();
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 6, JSON.stringify(issuer.statuses()));
    assert.equal(ca.maxRunning, 2);
    assert.ok(
      issuer.statuses().every((s) => s.state === 'Ready'),
      JSON.stringify(issuer.statuses().map((s) => [s.state, s.errorReason])),
    );
    await issuer.close();
  });

  it('reissues when the names of a tlsSecret change, bypassing the backoff', async () => {
    const { issuer, ca } = setup();
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    await issuer.setHosts(hostsYaml([...one, { name: 'b', hostname: 'b.example.com', secret: 'a-tls' }]));
    await settle();
    await issuer.idle();
    assert.deepEqual(ca.orders[1]?.names, ['a.example.com', 'b.example.com']);
    assert.deepEqual(
      issuer.statuses().map((s) => s.state),
      ['Ready', 'Ready'],
    );
    await issuer.close();
  });

  it('renews inside the ARI window when the CA suggests an earlier time', async () => {
    const { issuer, ca, clock } = setup();
    const start = clock.now();
    ca.window = { start: start + 10 * DAY, end: start + 10 * DAY };
    await issuer.setHosts(hostsYaml(one));
    await issuer.idle();
    assert.equal(issuer.statuses()[0]?.nextRenewal, new Date(start + 10 * DAY).toISOString());
    await issuer.close();
  });

  it('reports invalid Hosts as Error and authority none as Ready, without ordering for them', async () => {
    const { issuer, ca } = setup();
    const r = parseHostsText(
      'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: w}\nspec: {hostname: "*.example.com", acmeProvider: {authority: "https://ca.example/dir"}, tlsSecret: {name: w}}\n---\n' +
        'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: n}\nspec: {hostname: n.example.com}\n',
      'hosts.yaml',
      {
        namespace: 'default',
        authority: 'none',
        ambassadorIds: ['default'],
        allowedAuthorities: ['https://ca.example/dir'],
      },
    );
    assert.equal(r.kind, 'ok');
    await issuer.setHosts(r.kind === 'ok' ? r.hosts : []);
    await issuer.idle();
    assert.deepEqual(
      issuer.statuses().map((s) => [s.key, s.state, s.tlsCertificateSource]),
      [
        ['default/w', 'Error', 'Unknown'],
        ['default/n', 'Ready', 'None'],
      ],
    );
    assert.equal(ca.orders.length, 0);
    await issuer.close();
  });
});
