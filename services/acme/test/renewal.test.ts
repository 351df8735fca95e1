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
});
