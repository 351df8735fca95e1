import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { ApiException, type V1Lease } from '@kubernetes/client-node';
import type { KubeApis } from '../../src/kube/api.ts';
import { startLeaderElection, type LeaderElector } from '../../src/kube/leader.ts';
import { settle, silentLogger } from '../fakes.ts';

const conflict = (): ApiException<unknown> =>
  new ApiException(409, 'Conflict', { message: 'the object has been modified' }, {});

/**
 * A Lease API with optimistic concurrency. Reads can be held: the answer is the Lease as it was when
 * the read arrived, delivered when the test lets it go (a slow API server under load).
 */
class FakeLeaseApi {
  lease: V1Lease | undefined;
  holdReads = false;
  conflictOnRelease = 0;
  readonly held: Array<() => void> = [];
  #rv = 0;
  #onHeld: (() => void) | undefined;

  /** Resolves when a read is being held. */
  nextHeldRead(): Promise<void> {
    return new Promise((r) => (this.#onHeld = r));
  }

  #store(body: V1Lease): V1Lease {
    this.lease = structuredClone({
      ...body,
      metadata: { ...body.metadata, resourceVersion: String(++this.#rv) },
    });
    return structuredClone(this.lease);
  }

  apis(): KubeApis {
    const coordination = {
      readNamespacedLease: async (): Promise<V1Lease> => {
        if (!this.lease) throw new ApiException(404, 'Not Found', {}, {});
        const snapshot = structuredClone(this.lease);
        if (this.holdReads) {
          await new Promise<void>((r) => {
            this.held.push(r);
            this.#onHeld?.();
          });
        }
        return snapshot;
      },
      createNamespacedLease: async ({ body }: { body: V1Lease }): Promise<V1Lease> => {
        if (this.lease) throw conflict();
        return this.#store(body);
      },
      replaceNamespacedLease: async ({ body }: { body: V1Lease }): Promise<V1Lease> => {
        if (body.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) throw conflict();
        if (!body.spec?.holderIdentity && this.conflictOnRelease > 0) {
          // someone else (kubectl, another controller) wrote the Lease just before the release
          this.conflictOnRelease--;
          this.#store(this.lease as V1Lease);
          throw conflict();
        }
        return this.#store(body);
      },
    };
    return { coordination } as unknown as KubeApis;
  }
}

const start = (api: FakeLeaseApi): { elector: LeaderElector; started: () => number } => {
  let started = 0;
  const elector = startLeaderElection(
    api.apis(),
    {
      name: 'l',
      namespace: 'ns',
      identity: 'me',
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 1,
    },
    { onStartedLeading: () => void started++, onStoppedLeading: () => undefined },
    silentLogger,
  );
  return { elector, started: () => started };
};

const untilLeader = async (elector: LeaderElector): Promise<void> => {
  while (!elector.isLeader) await new Promise((r) => setTimeout(r, 1));
};

describe('kube/leader: releasing the Lease on close', function () {
  it('a renewal in flight when close() is called does not undo the release, nor restart leadership', async function () {
    const api = new FakeLeaseApi();
    const { elector, started } = start(api);
    await untilLeader(elector);
    assert.equal(started(), 1);

    // The next renewal's read is slow to answer; close() is called meanwhile.
    api.holdReads = true;
    const renewRead = api.nextHeldRead();
    await renewRead;
    const closing = elector.close();
    await settle();
    // The renewal completes first (its write lands), then whatever close() read in between answers.
    api.holdReads = false;
    api.held.shift()?.();
    await settle();
    while (api.held.length > 0) api.held.shift()?.();
    await closing;

    assert.equal(api.lease?.spec?.holderIdentity, undefined, JSON.stringify(api.lease?.spec));
    assert.equal(elector.isLeader, false);
    assert.equal(started(), 1, 'leadership is not started again after close()');
  });

  it('a conflicting write during the release is retried with the new version', async function () {
    const api = new FakeLeaseApi();
    const { elector } = start(api);
    await untilLeader(elector);
    api.conflictOnRelease = 2;
    await elector.close();
    assert.equal(api.conflictOnRelease, 0);
    assert.equal(api.lease?.spec?.holderIdentity, undefined, JSON.stringify(api.lease?.spec));
    assert.equal(api.lease?.spec?.leaseDurationSeconds, 1);
  });

  it('a follower leaves the Lease alone on close', async function () {
    const api = new FakeLeaseApi();
    const other = start(api);
    await untilLeader(other.elector);
    const before = structuredClone(api.lease);
    const follower = startLeaderElection(
      api.apis(),
      {
        name: 'l',
        namespace: 'ns',
        identity: 'you',
        leaseDurationMs: 3000,
        renewDeadlineMs: 2000,
        retryPeriodMs: 60_000,
      },
      { onStartedLeading: () => undefined, onStoppedLeading: () => undefined },
      silentLogger,
    );
    while (follower.leader !== 'me') await new Promise((r) => setTimeout(r, 1));
    await other.elector.close();
    const released = structuredClone(api.lease);
    await follower.close();
    assert.equal(before?.spec?.holderIdentity, 'me');
    assert.deepEqual(api.lease, released);
  });
});
