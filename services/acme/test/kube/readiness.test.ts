import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { SecretRef } from '../../src/host.ts';
import { SecretReadiness, type WantedSecret } from '../../src/kube/readiness.ts';

const ref = (name: string, namespace = 'apps'): SecretRef => ({ namespace, name });
const want = (host: string, secret: string, error = false): WantedSecret => ({
  host: `apps/${host}`,
  secret: ref(secret),
  error,
});

/** A readiness over an in-memory set of Secrets, a frozen clock and a count of reads. */
function setup(missingRecheckMs = 1000) {
  const present = new Set<string>();
  const unreadable = new Map<string, string>();
  const reads: string[] = [];
  const clock = { t: 1_000_000 };
  let hold: Promise<void> | undefined;
  const r = new SecretReadiness({
    exists: async (s) => {
      const k = `${s.namespace}/${s.name}`;
      reads.push(k);
      const answer = present.has(k);
      if (hold) await hold;
      const problem = unreadable.get(k);
      if (problem !== undefined) throw new Error(problem);
      return answer;
    },
    missingRecheckMs,
    now: () => clock.t,
  });
  return {
    r,
    present,
    unreadable,
    reads,
    clock,
    holdReads: (p: Promise<void> | undefined): void => {
      hold = p;
    },
  };
}

describe('kube/readiness: SecretReadiness', function () {
  it('waits for Secrets not read yet, then for absent ones, naming Host and Secret', async function () {
    const { r, present } = setup();
    present.add('apps/a-tls');
    r.setWanted([want('a', 'a-tls'), want('b', 'b-tls')]);
    assert.deepEqual(r.missing(), [
      'apps/a → apps/a-tls (not read yet)',
      'apps/b → apps/b-tls (not read yet)',
    ]);
    await r.check();
    assert.deepEqual(r.missing(), ['apps/b → apps/b-tls']);
    assert.deepEqual(r.waived(), []);
  });

  it('does not wait for a Host in Error, but names it; a Secret no Host names is forgotten', async function () {
    const { r } = setup();
    r.setWanted([want('a', 'a-tls', true)]);
    await r.check();
    assert.deepEqual(r.missing(), []);
    assert.deepEqual(r.waived(), ['apps/a → apps/a-tls']);
    r.setWanted([]);
    assert.deepEqual(r.waived(), []);
  });

  it('says why a Secret cannot be read (API error text)', async function () {
    const { r, unreadable } = setup();
    unreadable.set('apps/a-tls', 'reading Secret apps/a-tls: Forbidden');
    r.setWanted([want('a', 'a-tls')]);
    await r.check();
    assert.deepEqual(r.missing(), ['apps/a → apps/a-tls (reading Secret apps/a-tls: Forbidden)']);
  });

  it("reads an absent Secret again after missingRecheckMs, a present one never again (a later deletion is the leader's to repair)", async function () {
    const { r, present, reads, clock } = setup(1000);
    present.add('apps/a-tls');
    r.setWanted([want('a', 'a-tls'), want('b', 'b-tls')]);
    await r.check();
    assert.deepEqual(reads.sort(), ['apps/a-tls', 'apps/b-tls']);
    reads.length = 0;
    clock.t += 999;
    await r.check();
    assert.deepEqual(reads, [], 'nothing due yet');
    clock.t += 1;
    present.add('apps/b-tls');
    await r.check();
    assert.deepEqual(reads, ['apps/b-tls'], 'only the absent one is due');
    assert.deepEqual(r.missing(), []);
    reads.length = 0;
    present.delete('apps/a-tls');
    clock.t += 3_600_000;
    await r.check();
    assert.deepEqual(reads, []);
    assert.deepEqual(r.missing(), []);
    // The Host names another Secret: that one is read (and waited for) anew.
    r.setWanted([want('a', 'a2-tls'), want('b', 'b-tls')]);
    await r.check();
    assert.deepEqual(reads, ['apps/a2-tls']);
    assert.deepEqual(r.missing(), ['apps/a → apps/a2-tls']);
  });

  it('a write recorded while a read is on its way wins over the stale absent answer', async function () {
    const { r, holdReads } = setup();
    r.setWanted([want('a', 'a-tls')]);
    let release = (): void => undefined;
    holdReads(new Promise<void>((res) => (release = res)));
    const pass = r.check();
    r.markPresent(ref('a-tls'));
    release();
    await pass;
    assert.deepEqual(r.missing(), []);
  });

  it('tells its listeners only when what is missing or waived changes', async function () {
    const { r, present } = setup();
    let calls = 0;
    r.onChange(() => (calls += 1));
    r.setWanted([want('a', 'a-tls')]);
    assert.equal(calls, 1);
    r.setWanted([want('a', 'a-tls')]);
    assert.equal(calls, 1);
    present.add('apps/a-tls');
    await r.check();
    assert.equal(calls, 2);
    assert.deepEqual(r.missing(), []);
  });
});
