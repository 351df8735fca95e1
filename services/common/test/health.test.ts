import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { HealthState } from '../src/health.ts';

describe('common/health', () => {
  it('is serving only when every component is ready and not draining', () => {
    const h = new HealthState();
    const seen: boolean[] = [];
    h.onChange((s) => seen.push(s));
    assert.equal(h.serving, true);
    h.set('redis', false, 'connecting');
    assert.equal(h.serving, false);
    assert.deepEqual(h.snapshot().components['redis'], { ready: false, detail: 'connecting' });
    h.set('redis', true);
    h.set('config', true);
    assert.equal(h.serving, true);
    h.drain();
    assert.equal(h.serving, false);
    h.set('redis', true);
    assert.equal(h.serving, false, 'draining is final');
    assert.deepEqual(seen, [false, true, false]);
  });
});
