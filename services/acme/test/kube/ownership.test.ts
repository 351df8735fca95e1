import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { ParsedHost, SecretRef } from '../../src/host.ts';
import { type OwnershipStore, SecretOwnership, checkSecretsOnce } from '../../src/kube/ownership.ts';
import { silentLogger } from '../fakes.ts';

const FOREIGN = 'tlsSecret apps/kc-tls is managed by field manager kubectl-create; acme leaves it alone';

const host = (name: string, secret: string): ParsedHost => ({
  kind: 'acme',
  key: `apps/${name}`,
  namespace: 'apps',
  name,
  hostname: `${name}.extsvc.test`,
  acme: { authority: 'https://ca.test/dir', email: 'ops@extsvc.test' },
  tlsSecret: { namespace: 'apps', name: secret },
  origin: { file: 'kube', index: 0 },
});

/**
 * Secrets whose ownership verdict the test sets; `afterRead` runs after each ownership read (a
 * `kubectl annotate` landing between two reads of one round).
 */
function setup() {
  const verdicts = new Map<string, string>();
  const reads: string[] = [];
  let afterRead: ((n: number) => void) | undefined;
  const store: OwnershipStore = {
    refusal: async (ref: SecretRef) => {
      const k = `${ref.namespace}/${ref.name}`;
      const answer = verdicts.get(k);
      reads.push(k);
      afterRead?.(reads.length);
      return answer;
    },
    changedSinceSeen: async () => false,
  };
  const given: ParsedHost[][] = [];
  const issuer = {
    running: 0,
    setHosts: async (hosts: readonly ParsedHost[]): Promise<void> => void given.push([...hosts]),
  };
  const hosts = [host('kc', 'kc-tls'), host('web', 'web-tls')];
  const ownership = new SecretOwnership(silentLogger);
  let statusWrites = 0;
  const ctx = {
    issuer,
    store,
    ownership,
    hosts: () => hosts,
    log: silentLogger,
    scheduleStatus: () => void (statusWrites += 1),
  };
  /** What the controller's Host sync does: ownership, then the issuer gets the Hosts. */
  const sync = async (): Promise<void> => {
    const parsed = await ownership.apply(hosts, store);
    await issuer.setHosts(parsed);
  };
  const kindOf = (key: string, round = given.at(-1)): string | undefined =>
    round?.find((h) => h.key === key)?.kind;
  return {
    verdicts,
    reads,
    given,
    ctx,
    sync,
    kindOf,
    statusWrites: () => statusWrites,
    setAfterRead: (fn: ((n: number) => void) | undefined): void => {
      afterRead = fn;
    },
  };
}

describe('kube/ownership: foreign tlsSecrets and the issuer', function () {
  it('a Secret released (annotated adopt=true) between two ownership reads of one Secret check is still handed to the issuer', async function () {
    const t = setup();
    t.verdicts.set('apps/kc-tls', FOREIGN);
    await t.sync();
    assert.equal(t.kindOf('apps/kc'), 'invalid');
    assert.equal(t.kindOf('apps/web'), 'acme');

    // The annotation lands right after the round's first read of kc-tls: every later read says "ours".
    const firstReadOfRound = t.reads.length + 1;
    t.setAfterRead((n) => {
      if (n === firstReadOfRound) t.verdicts.delete('apps/kc-tls');
    });
    await checkSecretsOnce(t.ctx);
    t.setAfterRead(undefined);
    // Later rounds (the Secret check polls on) must not lose the change either.
    await checkSecretsOnce(t.ctx);
    await checkSecretsOnce(t.ctx);

    assert.equal(t.ctx.ownership.foreign.size, 0);
    assert.equal(t.kindOf('apps/kc'), 'acme', 'the issuer must get kc as an acme Host to order for it');
    assert.equal(t.kindOf('apps/web'), 'acme');
    assert.ok(t.statusWrites() > 0, 'statuses rewritten');
  });

  it('a Secret released between two Secret checks is handed to the issuer once', async function () {
    const t = setup();
    t.verdicts.set('apps/kc-tls', FOREIGN);
    await t.sync();
    await checkSecretsOnce(t.ctx);
    const before = t.given.length;
    t.verdicts.delete('apps/kc-tls');
    await checkSecretsOnce(t.ctx);
    await checkSecretsOnce(t.ctx);
    assert.equal(t.given.length, before + 1, 'one hand-over, not one per round');
    assert.equal(t.kindOf('apps/kc'), 'acme');
  });

  it('a Secret taken over by someone else during a Secret check is taken from the issuer', async function () {
    const t = setup();
    await t.sync();
    assert.equal(t.kindOf('apps/kc'), 'acme');
    const firstReadOfRound = t.reads.length + 1;
    t.setAfterRead((n) => {
      if (n === firstReadOfRound) t.verdicts.set('apps/kc-tls', FOREIGN);
    });
    await checkSecretsOnce(t.ctx);
    t.setAfterRead(undefined);
    await checkSecretsOnce(t.ctx);
    assert.equal(t.kindOf('apps/kc'), 'invalid');
    const kc = t.given.at(-1)?.find((h) => h.key === 'apps/kc');
    assert.equal(kc?.kind === 'invalid' ? kc.reason : undefined, FOREIGN);
  });

  it('a Secret that cannot be read keeps its last verdict', async function () {
    const t = setup();
    t.verdicts.set('apps/kc-tls', FOREIGN);
    await t.sync();
    const failing = {
      ...t.ctx.store,
      refusal: async (): Promise<string | undefined> => Promise.reject(new Error('timeout')),
    };
    await checkSecretsOnce({ ...t.ctx, store: failing });
    assert.equal(t.ctx.ownership.foreign.get('apps/kc-tls'), FOREIGN);
    assert.equal(t.kindOf('apps/kc'), 'invalid');
  });
});
