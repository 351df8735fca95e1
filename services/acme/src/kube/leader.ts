import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '@extsvc/common/logger';
import { type KubeApis, apiErrorMessage, statusOf } from './api.ts';

/** Leader election timing, as client-go's leaderelection (defaults 15 s / 10 s / 2 s). */
export interface LeaderElectionOptions {
  /** Lease object name (in `namespace`). */
  readonly name: string;
  readonly namespace: string;
  /** This replica's identity (the pod name). */
  readonly identity: string;
  /** How long a lease is valid without renewal, ms; a follower takes over after that much silence. */
  readonly leaseDurationMs: number;
  /** The leader steps down when it could not renew for this long, ms (< leaseDurationMs). */
  readonly renewDeadlineMs: number;
  /** Interval between acquire/renew attempts, ms. */
  readonly retryPeriodMs: number;
}

/** Callbacks on leadership changes; never run concurrently. */
export interface LeaderCallbacks {
  onStartedLeading(): Promise<void> | void;
  onStoppedLeading(): Promise<void> | void;
  onNewLeader?(identity: string | undefined): void;
}

/** A running elector. */
export interface LeaderElector {
  readonly isLeader: boolean;
  /** Identity of the current holder as last observed. */
  readonly leader: string | undefined;
  /** Stops; a leader releases the Lease (holder cleared) so a follower takes over at once. */
  close(): Promise<void>;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease with optimistic concurrency (resourceVersion):
 * acquire when the Lease is free or its holder has not renewed for leaseDuration (measured on this
 * replica's clock since the last observed change, so clocks need not agree), renew every retryPeriod,
 * step down when renewals fail for renewDeadline.
 */
export function startLeaderElection(
  apis: KubeApis,
  opts: LeaderElectionOptions,
  cb: LeaderCallbacks,
  logger: Logger,
): LeaderElector {
  const log = logger.child({ component: 'leader', lease: `${opts.namespace}/${opts.name}` });
  let leader = false;
  let holder: string | undefined;
  let observed: { key: string; at: number } | undefined;
  let lastRenew = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  const durationSeconds = Math.max(1, Math.ceil(opts.leaseDurationMs / 1000));

  const transition = (next: boolean): void => {
    if (next === leader) return;
    leader = next;
    log.info({ identity: opts.identity, leader: next }, next ? 'became leader' : 'stopped leading');
    chain = chain.then(async () => {
      try {
        await (next ? cb.onStartedLeading() : cb.onStoppedLeading());
      } catch (err) {
        log.error({ err: apiErrorMessage(err) }, 'leadership callback failed');
      }
    });
  };

  const spec = (prev: V1Lease | undefined, now: Date): V1Lease => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: opts.name,
      namespace: opts.namespace,
      ...(prev?.metadata?.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}),
    },
    spec: {
      holderIdentity: opts.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime:
        prev?.spec?.holderIdentity === opts.identity && prev.spec.acquireTime
          ? prev.spec.acquireTime
          : new V1MicroTime(now.getTime()),
      renewTime: new V1MicroTime(now.getTime()),
      leaseTransitions:
        (prev?.spec?.leaseTransitions ?? 0) + (prev?.spec?.holderIdentity === opts.identity || !prev ? 0 : 1),
    },
  });

  const tryAcquireOrRenew = async (): Promise<boolean> => {
    const now = Date.now();
    let lease: V1Lease | undefined;
    try {
      lease = await apis.coordination.readNamespacedLease({ name: opts.name, namespace: opts.namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (!lease) {
      await apis.coordination.createNamespacedLease({
        namespace: opts.namespace,
        body: spec(undefined, new Date(now)),
      });
      holder = opts.identity;
      return true;
    }
    const h = lease.spec?.holderIdentity ?? undefined;
    // client-node hands MicroTime fields over as strings or Dates depending on the path: compare text.
    const renew: unknown = lease.spec?.renewTime;
    const renewText = renew instanceof Date ? renew.toISOString() : typeof renew === 'string' ? renew : '';
    const key = `${h ?? ''}|${renewText}`;
    if (observed?.key !== key) observed = { key, at: now };
    if (h !== holder) {
      holder = h;
      cb.onNewLeader?.(h);
    }
    const expired =
      h === undefined ||
      h === '' ||
      observed.at + (lease.spec?.leaseDurationSeconds ?? durationSeconds) * 1000 <= now;
    if (h !== opts.identity && !expired) return false;
    await apis.coordination.replaceNamespacedLease({
      name: opts.name,
      namespace: opts.namespace,
      body: spec(lease, new Date(now)),
    });
    if (h !== opts.identity) log.info({ previous: h ?? null }, 'lease acquired');
    holder = opts.identity;
    return true;
  };

  const tick = async (): Promise<void> => {
    if (closed) return;
    try {
      const ok = await tryAcquireOrRenew();
      if (ok) lastRenew = Date.now();
      if (ok) transition(true);
      else transition(false);
    } catch (err) {
      // 409: another replica wrote the Lease first. Anything else: the API is unreachable.
      if (statusOf(err) !== 409) log.warn({ err: apiErrorMessage(err) }, 'lease update failed');
      if (leader && Date.now() - lastRenew > opts.renewDeadlineMs) transition(false);
    }
    if (!closed) {
      timer = setTimeout(() => void tick(), opts.retryPeriodMs);
      timer.unref();
    }
  };
  void tick();

  return {
    get isLeader() {
      return leader;
    },
    get leader() {
      return holder;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      const wasLeader = leader;
      transition(false);
      await chain;
      if (wasLeader) {
        // Release: an expired renewTime and no holder let a follower take over on its next try.
        try {
          const lease = await apis.coordination.readNamespacedLease({
            name: opts.name,
            namespace: opts.namespace,
          });
          if (lease.spec?.holderIdentity === opts.identity) {
            delete lease.spec.holderIdentity;
            lease.spec.leaseDurationSeconds = 1;
            await apis.coordination.replaceNamespacedLease({
              name: opts.name,
              namespace: opts.namespace,
              body: lease,
            });
          }
        } catch (err) {
          log.warn({ err: apiErrorMessage(err) }, 'lease release failed');
        }
      }
    },
  };
}
