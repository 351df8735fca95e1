import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { parseHostsText } from '../src/host.ts';
import { Issuer, LOAD_CONCURRENCY } from '../src/issuer.ts';
import type { SecretRef } from '../src/host.ts';
import type { StoredCertificate } from '../src/stores.ts';
import { MemoryChallengeStore } from '../src/stores.ts';
import { FakeCa, FakeClock, MemoryAccountStore, MemoryCertificateStore, silentLogger } from './fakes.ts';

/** A store whose reads take a turn of the event loop and count how many are in flight. */
class CountingStore extends MemoryCertificateStore {
  inFlight = 0;
  maxInFlight = 0;
  override async read(s: SecretRef): Promise<StoredCertificate | undefined> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setImmediate(r));
    this.inFlight -= 1;
    return super.read(s);
  }
}

describe('acme issuer: loading stored certificates', () => {
  it(`reads at most ${LOAD_CONCURRENCY} stored certificates at once, and every Host gets its pair`, async () => {
    const n = 3 * LOAD_CONCURRENCY + 5;
    const text = Array.from(
      { length: n },
      (_, i) =>
        `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h${i}}\nspec:\n  hostname: h${i}.example.com\n  acmeProvider: {authority: 'https://ca.example/dir', email: ops@example.com}\n  tlsSecret: {name: h${i}-tls}\n`,
    ).join('---\n');
    const parsed = parseHostsText(text, 'hosts.yaml', {
      namespace: 'default',
      authority: 'none',
      ambassadorIds: ['default'],
      allowedAuthorities: ['https://ca.example/dir'],
    });
    assert.equal(parsed.kind, 'ok');
    if (parsed.kind !== 'ok') return;
    const clock = new FakeClock();
    const certs = new CountingStore();
    const issuer = new Issuer(
      {
        clock,
        random: () => 0,
        ca: new FakeCa(clock),
        certs,
        accounts: new MemoryAccountStore(),
        challenges: new MemoryChallengeStore(),
        logger: silentLogger,
      },
      {
        renewal: { fraction: 2 / 3, jitter: 0 },
        backoff: { initialMs: 300_000, maxMs: 86_400_000 },
        maxConcurrent: 1,
        keyType: 'ecdsa-p256',
        temporaryValidityMs: 86_400_000,
        challengeTtlMs: 600_000,
        ari: false,
        maxSleepMs: 3_600_000,
      },
    );
    try {
      await issuer.setHosts(parsed.hosts);
      assert.equal(certs.maxInFlight, LOAD_CONCURRENCY);
      // Each Host was loaded: a temporary pair is written for every one that had none.
      for (let i = 0; i < n; i++) assert.ok(certs.items.has(`default/h${i}-tls`), `h${i}-tls`);
      assert.equal(issuer.statuses().length, n);
    } finally {
      await issuer.close();
    }
  });
});
