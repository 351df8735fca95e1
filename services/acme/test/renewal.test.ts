import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { backoffDelay, formatDuration, renewalTime } from '../src/renewal.ts';

const DAY = 86_400_000;
const cert = { notBefore: Date.parse('2026-01-01T00:00:00Z'), notAfter: Date.parse('2026-04-01T00:00:00Z') };
const lifetime = cert.notAfter - cert.notBefore;

describe('acme renewal scheduling', () => {
  it('renews at 2/3 of the lifetime without jitter', () => {
    const at = renewalTime(cert, { fraction: 2 / 3, jitter: 0 }, 0.5);
    assert.equal(at, Math.floor(cert.notBefore + (lifetime * 2) / 3));
  });

  it('takes jitter off the renewal time, never adding to it', () => {
    const policy = { fraction: 2 / 3, jitter: 0.05 };
    const none = renewalTime(cert, policy, 0);
    const most = renewalTime(cert, policy, 0.999);
    assert.equal(none, Math.floor(cert.notBefore + (lifetime * 2) / 3));
    assert.ok(most < none && none - most <= lifetime * 0.05, `${none - most}`);
  });

  it('uses a uniform pick inside the ARI window when it is earlier than the lifetime policy', () => {
    const window = { start: cert.notBefore + 10 * DAY, end: cert.notBefore + 12 * DAY };
    assert.equal(renewalTime(cert, { fraction: 2 / 3, jitter: 0 }, 0.5, window), cert.notBefore + 11 * DAY);
    const late = { start: cert.notAfter - DAY, end: cert.notAfter };
    assert.equal(
      renewalTime(cert, { fraction: 2 / 3, jitter: 0 }, 0.5, late),
      Math.floor(cert.notBefore + (lifetime * 2) / 3),
    );
  });

  it('backs off exponentially from the initial delay up to the cap', () => {
    const policy = { initialMs: 300_000, maxMs: 86_400_000 };
    assert.deepEqual(
      [1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, policy)),
      [300_000, 600_000, 1_200_000, 2_400_000, 86_400_000, 86_400_000],
    );
  });

  it('waits at least the CA Retry-After, even beyond the cap', () => {
    const policy = { initialMs: 1000, maxMs: 10_000 };
    assert.equal(backoffDelay(1, policy, 3_600_000), 3_600_000);
    assert.equal(backoffDelay(3, policy, 100), 4000);
  });

  it('formats errorBackoff as Go durations', () => {
    assert.equal(formatDuration(300_000), '5m0s');
    assert.equal(formatDuration(86_400_000), '24h0m0s');
    assert.equal(formatDuration(1500), '2s');
    assert.equal(formatDuration(250), '250ms');
  });
  it('picks inside the ARI window with the random draw; an inverted window is ignored', () => {
    const policy = { fraction: 2 / 3, jitter: 0 };
    const window = { start: cert.notBefore + 10 * DAY, end: cert.notBefore + 12 * DAY };
    assert.equal(renewalTime(cert, policy, 0, window), window.start);
    assert.equal(renewalTime(cert, policy, 0.75, window), cert.notBefore + 11.5 * DAY);
    const instant = { start: cert.notBefore + 5 * DAY, end: cert.notBefore + 5 * DAY };
    assert.equal(renewalTime(cert, policy, 0.9, instant), instant.start, 'a zero-length window is a time');
    const inverted = { start: cert.notBefore + 12 * DAY, end: cert.notBefore + 10 * DAY };
    assert.equal(renewalTime(cert, policy, 0.5, inverted), Math.floor(cert.notBefore + (lifetime * 2) / 3));
    const fractional = { start: cert.notBefore + 0.4, end: cert.notBefore + 1.4 };
    assert.equal(
      renewalTime(cert, policy, 0.5, fractional),
      cert.notBefore,
      'whole milliseconds, rounded down',
    );
  });

  it('treats a certificate that ends before it starts as expired at notBefore', () => {
    const broken = { notBefore: cert.notAfter, notAfter: cert.notBefore };
    assert.equal(renewalTime(broken, { fraction: 2 / 3, jitter: 0.1 }, 0.5), broken.notBefore);
    assert.equal(renewalTime({ notBefore: 0, notAfter: 10 }, { fraction: 0.5, jitter: 0.1 }, 0.5), 4);
  });

  it('counts fewer than one failure as the first, and caps the exponent', () => {
    const policy = { initialMs: 1000, maxMs: Number.MAX_VALUE };
    assert.equal(backoffDelay(0, policy), 1000);
    assert.equal(backoffDelay(-3, policy), 1000);
    assert.equal(backoffDelay(41, policy), 1000 * 2 ** 40);
    assert.equal(backoffDelay(1000, policy), 1000 * 2 ** 40);
    assert.equal(backoffDelay(2, { initialMs: 1000, maxMs: 1500 }), 1500);
    assert.equal(backoffDelay(2, policy, undefined), 2000);
  });

  it('formats every unit boundary as Go does', () => {
    assert.equal(formatDuration(0), '0ms');
    assert.equal(formatDuration(999.4), '999ms');
    assert.equal(formatDuration(1000), '1s');
    assert.equal(formatDuration(59_499), '59s');
    assert.equal(formatDuration(59_500), '1m0s');
    assert.equal(formatDuration(61_000), '1m1s');
    assert.equal(formatDuration(3_600_000), '1h0m0s');
    assert.equal(formatDuration(3_661_000), '1h1m1s');
    assert.equal(formatDuration(7_260_000), '2h1m0s');
    assert.equal(formatDuration(90_061_000), '25h1m1s');
  });
});
