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

  // The attempt in flight, so close() can wait for it: a renewal landing after the release would
  // overwrite it (the release then fails with 409) and leave this replica holding the Lease.
  let inFlight: Promise<void> = Promise.resolve();
  const attempt = async (): Promise<void> => {
    try {
      const ok = await tryAcquireOrRenew();
      if (ok) lastRenew = Date.now();
      // Once closing, leadership only ends: an attempt that finished late must not start it again.
      if (ok && !closed) transition(true);
      else transition(false);
    } catch (err) {
      // 409: another replica wrote the Lease first. Anything else: the API is unreachable.
      if (statusOf(err) !== 409) log.warn({ err: apiErrorMessage(err) }, 'lease update failed');
      if (leader && Date.now() - lastRenew > opts.renewDeadlineMs) transition(false);
    }
  };
  const tick = async (): Promise<void> => {
    if (closed) return;
    inFlight = attempt();
    await inFlight;
    if (!closed) {
      timer = setTimeout(() => void tick(), opts.retryPeriodMs);
      timer.unref();
    }
  };
  void tick();

  /**
   * Clears the holder so a follower takes over on its next try. Retried (re-read, re-written) on a
   * conflict or an API error for up to renewDeadline (shutdown stays bounded); true once released or no
   * longer ours.
   */
  const release = async (): Promise<boolean> => {
    const deadline = Date.now() + opts.renewDeadlineMs;
    for (let tries = 1; ; tries++) {
      try {
        const lease = await apis.coordination.readNamespacedLease({
          name: opts.name,
          namespace: opts.namespace,
        });
        if (lease.spec?.holderIdentity !== opts.identity) return true;
        delete lease.spec.holderIdentity;
        lease.spec.leaseDurationSeconds = 1;
        await apis.coordination.replaceNamespacedLease({
          name: opts.name,
          namespace: opts.namespace,
          body: lease,
        });
        log.info({ identity: opts.identity }, 'lease released');
        return true;
      } catch (err) {
        const last = Date.now() + opts.retryPeriodMs >= deadline;
        log.warn({ err: apiErrorMessage(err), tries, final: last }, 'lease release failed');
        if (last) return false;
        // a conflict is retried at once with the new version; an API error after a pause
        if (statusOf(err) !== 409) await new Promise((r) => setTimeout(r, opts.retryPeriodMs));
      }
    }
  };

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
      await inFlight;
      // Held per the last attempt even if leadership was never started (an acquire that raced close).
      const held = leader || holder === opts.identity;
      transition(false);
      await chain;
      if (held) await release();
    },
  };
}
