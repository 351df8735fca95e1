import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { readDirectory } from '../src/acme-ca.ts';
import { type ParsedHost, parseHostsText, rejectProviderConflicts } from '../src/host.ts';
import { Issuer, type IssuerOptions } from '../src/issuer.ts';
import { DEFAULT_ARI_POLL, ariPollDelay, renewalTime } from '../src/renewal.ts';
import { MemoryChallengeStore } from '../src/stores.ts';
import {
  FakeCa,
  FakeClock,
  MemoryAccountStore,
  MemoryCertificateStore,
  settle,
  silentLogger,
} from './fakes.ts';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const MIN = 60_000;

const opts: IssuerOptions = {
  renewal: { fraction: 2 / 3, jitter: 0 },
  backoff: { initialMs: 5 * MIN, maxMs: 24 * HOUR },
  maxConcurrent: 4,
  keyType: 'ecdsa-p256',
  temporaryValidityMs: 7 * DAY,
  challengeTtlMs: 10 * MIN,
  ari: true,
  ariPoll: { minMs: MIN, maxMs: HOUR },
  maxSleepMs: HOUR,
};

const defaults = {
  namespace: 'default',
  authority: 'none',
  ambassadorIds: ['default'],
  allowedAuthorities: ['https://ca.example/dir'],
};

function host(
  name: string,
  extra: { annotations?: string; provider?: string; secret?: string } = {},
): string {
  return [
    'apiVersion: getambassador.io/v3alpha1',
    'kind: Host',
    `metadata: {name: ${name}${extra.annotations !== undefined ? `, annotations: {${extra.annotations}}` : ''}}`,
    'spec:',
    `  hostname: ${name}.example.com`,
    `  acmeProvider: {authority: 'https://ca.example/dir', email: ops@example.com${extra.provider ?? ''}}`,
    `  tlsSecret: {name: ${extra.secret ?? `${name}-tls`}}`,
  ].join('\n');
}

function parse(...docs: string[]): ParsedHost[] {
  const r = parseHostsText(docs.join('\n---\n'), 'hosts.yaml', defaults);
  assert.equal(r.kind, 'ok');
  return r.kind === 'ok' ? [...r.hosts] : [];
}

function setup(over: Partial<IssuerOptions> = {}) {
  const clock = new FakeClock();
  const ca = new FakeCa(clock);
  const issuer = new Issuer(
    {
      clock,
      random: () => 0,
      ca,
      certs: new MemoryCertificateStore(),
      accounts: new MemoryAccountStore(),
      challenges: new MemoryChallengeStore(),
      logger: silentLogger,
    },
    { ...opts, ...over },
  );
  return { clock, ca, issuer };
}

describe('acme ARI polling (RFC 9773 Retry-After)', () => {
  const policy = { minMs: 1000, maxMs: 2000 };

  it("clamps the CA's Retry-After to the bounds and uses the maximum when it sent none", () => {
    assert.equal(ariPollDelay(policy, 0, 21_600_000), 2000, "Pebble's 6 h is capped");
    assert.equal(ariPollDelay(policy, 0, 10), 1000, 'a tiny Retry-After is raised to the minimum');
    assert.equal(ariPollDelay(policy, 0, 1500), 1500);
    assert.equal(ariPollDelay(policy, 0), 2000);
    assert.equal(ariPollDelay(DEFAULT_ARI_POLL, 0, 21_600_000), 21_600_000, 'inside the defaults as sent');
  });

  it('takes up to a tenth off at random, never below the minimum', () => {
    assert.equal(ariPollDelay({ minMs: 100, maxMs: 10_000 }, 0.5, 10_000), 9500);
    assert.equal(ariPollDelay({ minMs: 100, maxMs: 10_000 }, 0.999, 10_000), 9001);
    assert.equal(ariPollDelay(policy, 0.999, 10), 1000);
  });

  it('after failed requests backs off from the minimum, doubling, capped at the maximum', () => {
    const p = { minMs: 1000, maxMs: 5000 };
    assert.equal(ariPollDelay(p, 0, undefined, 1), 1000);
    assert.equal(ariPollDelay(p, 0, 3000, 1), 3000, "a 429's Retry-After is honoured");
    assert.equal(ariPollDelay(p, 0, 60_000, 1), 5000, 'within the maximum');
    assert.equal(ariPollDelay(p, 0, undefined, 2), 2000);
    assert.equal(ariPollDelay(p, 0, undefined, 3), 4000);
    assert.equal(ariPollDelay(p, 0, undefined, 9), 5000);
  });
});

describe('acme renewal math for six-day certificates', () => {
  const sixDays = { notBefore: 0, notAfter: 6 * DAY };

  it('renews at 2/3 of the lifetime with the jitter scaled to the lifetime (hours, not days)', () => {
    const policy = { fraction: 2 / 3, jitter: 0.02 };
    assert.equal(renewalTime(sixDays, policy, 0), 4 * DAY);
    // 2 % of six days is 2.88 h: the latest jitter takes less than three hours off.
    assert.equal(renewalTime(sixDays, policy, 0.999), Math.floor(4 * DAY - 6 * DAY * 0.02 * 0.999));
    assert.ok(renewalTime(sixDays, policy, 0.999) > 4 * DAY - 3 * HOUR);
  });

  it('inside the CA window when it is earlier, never later than 2/3 (two days of margin kept)', () => {
    const policy = { fraction: 2 / 3, jitter: 0 };
    // Pebble's default window for a six-day certificate: 2/3 of the lifetime ± 1 day.
    const pebble = { start: 3 * DAY, end: 5 * DAY };
    assert.equal(renewalTime(sixDays, policy, 0.25, pebble), 3.5 * DAY);
    assert.equal(renewalTime(sixDays, policy, 0.9, pebble), 4 * DAY);
    assert.ok(renewalTime(sixDays, policy, 0.99, pebble) <= sixDays.notAfter - 2 * DAY);
  });
});

describe('acme directory: renewalInfo and meta.profiles', () => {
  it('reads the ARI URL and the advertised profile names', () => {
    const d = readDirectory(
      {
        newOrder: 'https://ca/order',
        renewalInfo: 'https://ca/ari',
        meta: { profiles: { shortlived: 'six days', classic: 'ninety days' } },
      },
      5,
    );
    assert.deepEqual(d, { at: 5, renewalInfo: 'https://ca/ari', profiles: ['classic', 'shortlived'] });
    assert.deepEqual(readDirectory({ meta: {} }, 1), { at: 1, profiles: [] });
    assert.deepEqual(readDirectory({ meta: { profiles: ['x'] } }, 1), { at: 1, profiles: [] });
    assert.deepEqual(readDirectory(null, 1), { at: 1, profiles: [] });
  });
});

describe('acme Host certificate profile', () => {
  it('reads the acme.extsvc.dev/profile annotation and spec.acmeProvider.profile', () => {
    const [a, b, c] = parse(
      host('a', { annotations: "'acme.extsvc.dev/profile': shortlived" }),
      host('b', { provider: ', profile: tlsserver' }),
      host('c'),
    );
    assert.equal(a?.kind === 'acme' ? a.acme?.profile : a?.kind, 'shortlived');
    assert.equal(b?.kind === 'acme' ? b.acme?.profile : b?.kind, 'tlsserver');
    assert.equal(c?.kind === 'acme' ? c.acme?.profile : c?.kind, undefined);
  });

  it('rejects a malformed profile name and two different profiles on one Host, naming the field', () => {
    const [a, b, c] = parse(
      host('a', { annotations: "'acme.extsvc.dev/profile': 'bad name'" }),
      host('b', { provider: ", profile: '../x'" }),
      host('c', { annotations: "'acme.extsvc.dev/profile': shortlived", provider: ', profile: classic' }),
    );
    assert.equal(
      a?.kind === 'invalid' ? a.reason : a?.kind,
      'metadata.annotations["acme.extsvc.dev/profile"] must be a profile name (letters, digits, . _ -)',
    );
    assert.equal(
      b?.kind === 'invalid' ? b.reason : b?.kind,
      'spec.acmeProvider.profile must be a profile name (letters, digits, . _ -)',
    );
    assert.match(
      c?.kind === 'invalid' ? c.reason : '',
      /"shortlived" and spec\.acmeProvider\.profile "classic" differ/,
    );
  });

  it('Hosts sharing a tlsSecret with different profiles are all an Error naming profile', () => {
    const hosts = rejectProviderConflicts(
      parse(
        host('a', { secret: 'shared', annotations: "'acme.extsvc.dev/profile': shortlived" }),
        host('b', { secret: 'shared' }),
      ),
    );
    assert.deepEqual(
      hosts.map((h) => (h.kind === 'invalid' ? h.reason : h.kind)),
      [
        'spec.acmeProvider (profile) differs between the Hosts sharing tlsSecret default/shared (default/b); make them identical',
        'spec.acmeProvider (profile) differs between the Hosts sharing tlsSecret default/shared (default/a); make them identical',
      ],
    );
  });
});

describe('acme issuer: ARI that follows the CA, replaces, profiles', () => {
  it('asks again after the bounded Retry-After and moves the planned renewal when the CA moves the window', async () => {
    const { issuer, ca, clock } = setup();
    const t0 = clock.now();
    ca.window = { start: t0 + 50 * DAY, end: t0 + 51 * DAY, retryAfterMs: 6 * HOUR };
    await issuer.setHosts(parse(host('a')));
    await issuer.idle();
    let s = issuer.statuses()[0];
    assert.equal(s?.nextRenewal, new Date(t0 + 50 * DAY).toISOString());
    assert.equal(
      s?.nextRenewalInfoCheck,
      new Date(t0 + HOUR).toISOString(),
      '6 h clamped to the 1 h maximum',
    );
    assert.deepEqual(s?.renewalWindow, {
      start: new Date(t0 + 50 * DAY).toISOString(),
      end: new Date(t0 + 51 * DAY).toISOString(),
    });
    const calls = ca.renewalInfoCalls.length;
    // The CA moves the window (an incident): renew within the next two hours.
    ca.window = { start: t0 + 2 * HOUR, end: t0 + 3 * HOUR, retryAfterMs: 6 * HOUR };
    clock.advance(HOUR);
    await settle();
    await issuer.idle();
    assert.equal(ca.renewalInfoCalls.length, calls + 1, 'one more renewalInfo request, no restart');
    s = issuer.statuses()[0];
    assert.equal(s?.nextRenewal, new Date(t0 + 2 * HOUR).toISOString(), 'the plan followed the window');
    assert.equal(ca.orders.length, 1);
    ca.window = { start: t0 + 60 * DAY, end: t0 + 61 * DAY };
    clock.advance(HOUR);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2, 'renewed at the moved window');
    await issuer.close();
  });

  it('sends the replaced chain with a renewal order from the same CA, none with the first order', async () => {
    const { issuer, ca, clock } = setup();
    ca.defaultOutcome = { kind: 'issue', lifetimeMs: 6 * DAY };
    await issuer.setHosts(parse(host('a')));
    await issuer.idle();
    const first = ca.renewalInfoCalls.at(-1);
    assert.ok(first?.includes('BEGIN CERTIFICATE'));
    assert.equal(ca.orders[0]?.replaces, undefined, 'nothing to replace: the stored one was temporary');
    clock.advance(4 * DAY);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2);
    assert.equal(ca.orders[1]?.replaces, first, 'the renewal names the chain it replaces');
    await issuer.close();
  });

  it('sends no replaces with ARI off', async () => {
    const { issuer, ca, clock } = setup({ ari: false });
    ca.defaultOutcome = { kind: 'issue', lifetimeMs: 6 * DAY };
    await issuer.setHosts(parse(host('a')));
    await issuer.idle();
    clock.advance(4 * DAY);
    await settle();
    await issuer.idle();
    assert.equal(ca.orders.length, 2);
    assert.equal(ca.orders[1]?.replaces, undefined);
    assert.equal(ca.renewalInfoCalls.length, 0);
    await issuer.close();
  });

  it("asks for the Host's profile, else the default profile, and shows it in the status", async () => {
    const { issuer, ca } = setup({ defaultProfile: 'classic' });
    await issuer.setHosts(
      parse(host('a', { annotations: "'acme.extsvc.dev/profile': shortlived" }), host('b')),
    );
    await issuer.idle();
    const byName = new Map(ca.orders.map((o) => [o.names[0], o.profile]));
    assert.equal(byName.get('a.example.com'), 'shortlived');
    assert.equal(byName.get('b.example.com'), 'classic');
    assert.deepEqual(
      issuer.statuses().map((s) => s.profile),
      ['shortlived', 'classic'],
    );
    await issuer.close();
  });
});
