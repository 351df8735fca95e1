import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { HealthState } from '@extsvc/common/health';
import { acmeDiagSections, registerAcmeDiag, safeUrl } from '../src/diag.ts';
import { parseHostsText, type ParsedHost } from '../src/host.ts';
import { accountId, type HostStatus } from '../src/issuer.ts';
import type { AccountStore, StoredAccount } from '../src/stores.ts';

const CA = 'https://ca.example/dir';
const KEY_PEM =
  '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUNITTESTKEYMATERIAL\n-----END PRIVATE KEY-----\n';

function hosts(): readonly ParsedHost[] {
  const doc = (name: string, hostname: string, email: string): string =>
    `apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: { name: ${name} }
spec:
  hostname: ${hostname}
  acmeProvider: { authority: "${CA}", email: ${email} }
  tlsSecret: { name: ${name}-tls }`;
  const r = parseHostsText(
    [
      doc('a', 'a.example.com', 'ops@example.com'),
      doc('b', 'b.example.com', 'ops@example.com'),
      doc('c', 'c.example.com', 'dev@example.com'),
    ].join('\n---\n'),
    'hosts.yaml',
    { namespace: 'default', authority: CA, ambassadorIds: ['default'], allowedAuthorities: [CA] },
  );
  assert.equal(r.kind, 'ok');
  return r.kind === 'ok' ? r.hosts : [];
}

const STATUSES: HostStatus[] = [
  {
    key: 'default/b',
    hostname: 'b.example.com',
    tlsSecret: 'default/b-tls',
    state: 'Error',
    phaseCompleted: 'ACMEUserRegistered',
    phasePending: 'ACMECertificateChallenge',
    tlsCertificateSource: 'ACME',
    errorReason: 'challenge failed: 404',
    errorTimestamp: '2026-01-01T00:00:00.000Z',
    errorBackoff: '10m0s',
    nextRenewal: '2026-01-01T00:10:00.000Z',
    names: ['b.example.com'],
    temporaryCertificate: true,
  },
  {
    key: 'default/a',
    hostname: 'a.example.com',
    tlsSecret: 'default/a-tls',
    state: 'Ready',
    phaseCompleted: 'NA',
    phasePending: 'NA',
    tlsCertificateSource: 'ACME',
    notAfter: '2026-03-01T00:00:00.000Z',
    nextRenewal: '2026-02-10T00:00:00.000Z',
    names: ['a.example.com'],
    temporaryCertificate: false,
  },
];

class Accounts implements AccountStore {
  readonly items = new Map<string, StoredAccount>();
  async load(id: string): Promise<StoredAccount | undefined> {
    if (id.includes('dev')) throw new Error('permission denied');
    return this.items.get(id);
  }
  async save(id: string, account: StoredAccount): Promise<void> {
    this.items.set(id, account);
  }
}

describe('acme/diag', () => {
  it('hides URL credentials', () => {
    assert.equal(safeUrl('https://u:p@ca.example/dir?x=1'), 'https://ca.example/dir');
  });

  it('lists every Host sorted with state, renewal, error and backoff, and the accounts per authority', async () => {
    const accounts = new Accounts();
    await accounts.save(accountId({ authority: CA, email: 'ops@example.com' }), {
      keyPem: KEY_PEM,
      accountUrl: 'https://ca.example/acct/1',
    });
    const sections = await acmeDiagSections({
      statuses: () => STATUSES,
      hosts,
      accounts,
      running: () => 1,
      settings: [['hosts file', 'hosts.yaml']],
    });
    const json = JSON.stringify(sections);
    assert.ok(!json.includes('UNITTESTKEYMATERIAL') && !json.includes('PRIVATE KEY'));
    const issuer = sections.find((s) => s.title === 'Issuer');
    assert.ok(issuer?.kind === 'kv');
    assert.deepEqual(
      issuer.entries.filter(([k]) => ['Ready', 'Error', 'orders running', 'hosts file'].includes(k)),
      [
        ['Ready', 1],
        ['Error', 1],
        ['orders running', 1],
        ['hosts file', 'hosts.yaml'],
      ],
    );
    const table = sections.find((s) => s.title === 'Hosts');
    assert.ok(table?.kind === 'table');
    const col = (name: string): number => table.columns.indexOf(name);
    assert.deepEqual(
      table.rows.map((r) => [
        r[col('host')],
        r[col('state')],
        r[col('notAfter')],
        r[col('next renewal')],
        r[col('backoff')],
      ]),
      [
        ['default/a', 'Ready', '2026-03-01T00:00:00.000Z', '2026-02-10T00:00:00.000Z', ''],
        ['default/b', 'Error', 'temporary', '2026-01-01T00:10:00.000Z', '10m0s'],
      ],
    );
    assert.equal(table.rows[1]?.[col('last error')], 'challenge failed: 404');
    const acc = sections.find((s) => s.title === 'Accounts');
    assert.ok(acc?.kind === 'table');
    assert.deepEqual(
      acc.rows.map((r) => [r[1], r[3], r[4], r[5]]),
      [
        ['dev@example.com', 'error', 'permission denied', 'default/c'],
        ['ops@example.com', 'registered', 'https://ca.example/acct/1', 'default/a, default/b'],
      ],
    );
  });

  it('serves a page without any control', async () => {
    const app = Fastify();
    try {
      registerAcmeDiag(app, {
        service: 'acme',
        version: '0.0.0',
        health: new HealthState(),
        source: { statuses: () => STATUSES, hosts },
      });
      const page = await app.inject({ method: 'GET', url: '/diag' });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /default\/a/);
      assert.doesNotMatch(page.body, /<(form|button|input|select|textarea)\b/);
      const doc = (await app.inject({ method: 'GET', url: '/diag.json' })).json<{
        sections: Array<{ title: string }>;
      }>();
      assert.deepEqual(
        doc.sections.map((s) => s.title),
        ['Issuer', 'Hosts', 'Accounts'],
      );
    } finally {
      await app.close();
    }
  });
});
