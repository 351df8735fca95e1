import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { systemClock } from '../src/issuer.ts';
import { parseTestHosts, settle, testHost, testIssuer } from './fakes.ts';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');

describe('acme issuer: clocks and races', () => {
  it('systemClock: the real time; a delay beyond the timer range is capped, not fired at once', async () => {
    const before = Date.now();
    const now = systemClock.now();
    assert.ok(now >= before && now <= Date.now());
    const fired: string[] = [];
    // Node fires a delay above 2^31-1 ms after 1 ms: capped, it waits (and is cancelled below).
    const far = systemClock.setTimeout(() => fired.push('far'), 2 ** 31);
    const cancelled = systemClock.setTimeout(() => fired.push('cancelled'), 1);
    cancelled.cancel();
    await new Promise<void>((resolve) =>
      systemClock.setTimeout(() => {
        fired.push('near');
        resolve();
      }, 20),
    );
    far.cancel();
    assert.deepEqual(fired, ['near']);
  });

  it('an ARI answer that arrives after a renewal replaced the certificate is ignored', async () => {
    const t = testIssuer({ ari: true, ariPoll: { minMs: HOUR, maxMs: HOUR } });
    await t.issuer.setHosts(parseTestHosts(testHost('a')));
    await t.issuer.idle();
    let answer: (w: { start: number; end: number }) => void = () => undefined;
    let asked = 0;
    t.ca.renewalInfo = async (_d, chain) => {
      t.ca.renewalInfoCalls.push(chain);
      asked += 1;
      if (asked === 1) return new Promise((r) => (answer = r));
      return undefined;
    };
    t.clock.advance(HOUR);
    await settle();
    assert.equal(asked, 1, 'renewalInfo pending');
    // A second name: the certificate is reissued while the request is pending.
    await t.issuer.setHosts(parseTestHosts(testHost('a'), testHost('b', { secret: 'a-tls' })));
    await settle();
    await new Promise((r) => setImmediate(r));
    assert.equal(t.ca.orders.length, 2);
    answer({ start: T0 + 2 * DAY, end: T0 + 2 * DAY });
    await t.issuer.idle();
    const s = t.issuer.statuses()[0];
    assert.equal(s?.renewalWindow, undefined, 'the old certificate’s window is not applied to the new one');
    assert.equal(s?.nextRenewal, new Date(T0 + HOUR + 60 * DAY).toISOString());
    await t.issuer.close();
  });
});
