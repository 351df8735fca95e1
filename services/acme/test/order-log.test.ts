import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'mocha';
import { pino } from 'pino';
import type { AccountParams, ChallengeHooks } from '../src/ca.ts';
import { AcmeError } from '../src/errors.ts';
import { parseHostsText } from '../src/host.ts';
import { Issuer } from '../src/issuer.ts';
import { MemoryChallengeStore } from '../src/stores.ts';
import { FakeCa, FakeClock, MemoryAccountStore, MemoryCertificateStore } from './fakes.ts';

/** A fake CA that reports an order URL as acme-ca.ts does after new-order. */
class OrderUrlCa extends FakeCa {
  #n = 0;
  override order(req: {
    account: AccountParams & { accountUrl: string };
    names: readonly string[];
    keyPem: string;
    hooks: ChallengeHooks;
  }): Promise<string> {
    req.hooks.ordered?.(`https://ca.example/order/${++this.#n}`);
    return super.order(req);
  }
}

interface Line {
  msg: string;
  hosts?: string[];
  orderUrl?: string;
  tlsSecret?: string;
}

describe('acme order logs', () => {
  it('every line of an order names its Hosts, and the order URL once the CA created it', async () => {
    const lines: Line[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n'))
          if (l.trim() !== '') lines.push(JSON.parse(l) as Line);
        cb();
      },
    });
    const clock = new FakeClock();
    const ca = new OrderUrlCa(clock);
    ca.outcomes.push({ kind: 'fail', error: new AcmeError('ERR_ACME_ORDER', 'the CA said no') });
    const issuer = new Issuer(
      {
        clock,
        random: () => 0,
        ca,
        certs: new MemoryCertificateStore(),
        accounts: new MemoryAccountStore(),
        challenges: new MemoryChallengeStore(),
        logger: pino({ level: 'debug' }, sink),
      },
      {
        renewal: { fraction: 2 / 3, jitter: 0 },
        backoff: { initialMs: 60_000, maxMs: 60_000 },
        maxConcurrent: 1,
        keyType: 'ecdsa-p256',
        temporaryValidityMs: 86_400_000,
        challengeTtlMs: 60_000,
        ari: false,
        maxSleepMs: 3_600_000,
      },
    );
    const parsed = parseHostsText(
      `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: shop, namespace: team-a}\nspec:\n  hostname: shop.example.com\n  acmeProvider: {authority: 'https://ca.example/dir'}\n  tlsSecret: {name: shop-tls}\n`,
      'hosts.yaml',
      {
        namespace: 'default',
        authority: 'none',
        ambassadorIds: ['default'],
        allowedAuthorities: ['https://ca.example/dir'],
      },
    );
    assert.equal(parsed.kind, 'ok');
    if (parsed.kind !== 'ok') return;
    await issuer.setHosts([...parsed.hosts]);
    await issuer.idle();
    const failed = lines.find((l) => l.msg === 'certificate order failed');
    assert.ok(failed, 'the failed order is logged');
    assert.deepEqual(failed.hosts, ['team-a/shop']);
    assert.equal(failed.orderUrl, 'https://ca.example/order/1');
    const published = lines.find((l) => l.msg === 'HTTP-01 challenge published');
    assert.equal(published?.orderUrl, 'https://ca.example/order/1', 'challenge lines carry the order URL');
    assert.deepEqual(published.hosts, ['team-a/shop']);
    // The retry is a new order with its own URL; the line before the CA created it has the Host only.
    clock.advance(60_000);
    await issuer.idle();
    const issued = lines.find((l) => l.msg === 'certificate issued and stored');
    assert.ok(issued, 'the retry issued');
    assert.equal(issued.orderUrl, 'https://ca.example/order/2');
    assert.deepEqual(issued.hosts, ['team-a/shop']);
    const ordering = lines.filter((l) => l.msg === 'ordering certificate');
    assert.equal(ordering.length, 2);
    assert.ok(ordering.every((l) => l.hosts?.[0] === 'team-a/shop' && l.orderUrl === undefined));
    await issuer.close();
  });
});
