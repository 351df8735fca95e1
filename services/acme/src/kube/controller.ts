import { type CoreV1Event, type KubernetesListObject, makeInformer } from '@kubernetes/client-node';
import type { Logger } from '@extsvc/common/logger';
import type { HostDefaults, ParsedHost, SecretRef } from '../host.ts';
import type { HostStatus, Issuer } from '../issuer.ts';
import type { AccountStore, CertificateStore, ChallengeStore } from '../stores.ts';
import {
  EMISSARY,
  FIELD_MANAGER,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  type KubeApis,
  apiErrorMessage,
  applyPatch,
  mergePatch,
} from './api.ts';
import { ConfigMapChallengeStore } from './challenge-store.ts';
import {
  type HostObject,
  type OptIn,
  challengeMapping,
  emissaryStatus,
  isManaged,
  parseHostObject,
  statusMatches,
} from './hosts.ts';
import { type LeaderElectionOptions, type LeaderElector, startLeaderElection } from './leader.ts';
import { SecretOwnership, checkSecretsOnce } from './ownership.ts';
import { SecretReadiness, type WantedSecret } from './readiness.ts';
import { KubeAccountStore, KubeCertificateStore, type SecretStoreHooks } from './secret-store.ts';

/** Options of the Kubernetes mode (validated by config.ts). */
export interface KubeControllerOptions {
  /** Namespaces whose Hosts are watched; empty: all namespaces. */
  readonly namespaces: readonly string[];
  /** acme's own namespace: Lease, challenge ConfigMaps, derived account Secrets. */
  readonly ownNamespace: string;
  /** This replica's identity in the Lease (pod name). */
  readonly identity: string;
  readonly lease: Omit<LeaderElectionOptions, 'namespace' | 'identity'>;
  readonly optIn: OptIn;
  /** Authority of managed Hosts without acmeProvider.authority. */
  readonly defaultAuthority: string;
  /** ACME directories managed Hosts may name (others: Error, never contacted). */
  readonly allowedAuthorities: readonly string[];
  /** How often the leader checks that its Secrets still hold what it wrote (deleted: reissue), ms. */
  readonly secretCheckIntervalMs: number;
  /** Field managers whose TLS Secrets acme may take over (Edge Stack's `amb-sidecar`...); default none. */
  readonly adoptFieldManagers?: readonly string[];
  /** When set, the leader applies a challenge Mapping per Host routing to this service (`name.ns:port`). */
  readonly challengeMappingService?: string;
}

/** What the controller needs from its caller. */
export interface KubeControllerDeps {
  readonly apis: KubeApis;
  readonly logger: Logger;
  /** Builds an issuer on these stores (called each time this replica becomes leader). */
  readonly createIssuer: (stores: {
    certs: CertificateStore;
    accounts: AccountStore;
    challenges: ChallengeStore;
  }) => Issuer;
  /** Test hooks of the Secret store. */
  readonly secretHooks?: SecretStoreHooks;
}

/** A running Kubernetes-mode controller. */
export interface KubeController {
  /** The shared challenge store: every replica's challenge server answers from it. */
  readonly challenges: ChallengeStore;
  readonly isLeader: boolean;
  /** The current leader's identity as last seen. */
  readonly leader: string | undefined;
  /** This replica's issuer while it leads (metrics: certificates(), running), else undefined. */
  readonly issuer: Issuer | undefined;
  /** Statuses computed by this replica's issuer (empty on followers). */
  statuses(): HostStatus[];
  /** True once the Host informers have listed. */
  readonly synced: boolean;
  /** Which managed Hosts' tlsSecrets this replica has not seen yet (readiness), kept current. */
  readonly readiness: Pick<SecretReadiness, 'missing' | 'waived' | 'onChange'>;
  close(): Promise<void>;
}

const EVENT_COMPONENT = 'extsvc-acme';

/**
 * The Kubernetes mode: Host informers, leader election, and on the leader an issuer over
 * Secret-backed stores whose statuses go to the Hosts' status subresource, with Events.
 */
export async function startKubeController(
  opts: KubeControllerOptions,
  deps: KubeControllerDeps,
): Promise<KubeController> {
  const { apis } = deps;
  const log = deps.logger.child({ component: 'kube' });
  const defaults: HostDefaults = {
    namespace: 'default',
    authority: opts.defaultAuthority,
    ambassadorIds: ['*'],
    allowedAuthorities: opts.allowedAuthorities,
    accountSecretInHostNamespace: true,
  };
  const challenges = new ConfigMapChallengeStore(apis, opts.ownNamespace, { logger: log });
  let closed = false;
  /** True once the Host informers have listed. */
  let synced = false;
  let issuer: Issuer | undefined;
  let certs: KubeCertificateStore | undefined;
  let unsubscribe: (() => void) | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void, ms: number): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    t.unref();
    timers.add(t);
  };

  // --- Host informers (one per namespace, or one cluster-wide) -------------------------------
  const { group, version } = EMISSARY;
  const scopes = opts.namespaces.length === 0 ? [undefined] : [...opts.namespaces];
  const informers = scopes.map((ns) => {
    const path = ns ? `/apis/${group}/${version}/namespaces/${ns}/hosts` : `/apis/${group}/${version}/hosts`;
    const list = async (): Promise<KubernetesListObject<HostObject>> =>
      (ns
        ? await apis.custom.listNamespacedCustomObject({ group, version, namespace: ns, plural: 'hosts' })
        : await apis.custom.listClusterCustomObject({
            group,
            version,
            plural: 'hosts',
          })) as KubernetesListObject<HostObject>;
    const inf = makeInformer<HostObject>(apis.kubeConfig, path, list);
    let delay = 500;
    inf.on('error', (err: unknown) => {
      if (closed) return;
      log.warn({ err: apiErrorMessage(err), scope: ns ?? '*' }, 'Host watch failed; restarting');
      later(() => void inf.start().catch(() => undefined), delay);
      delay = Math.min(delay * 2, 30_000);
    });
    inf.on('connect', () => (delay = 500));
    for (const verb of ['add', 'update', 'delete'] as const)
      inf.on(verb, () => {
        scheduleSync();
        scheduleReadiness();
      });
    return inf;
  });
  const allHosts = (): HostObject[] => informers.flatMap((i) => [...i.list()]);
  const managedHosts = (): HostObject[] => allHosts().filter((h) => isManaged(h, opts.optIn));
  const hostByKey = (key: string): HostObject | undefined =>
    allHosts().find((h) => `${h.metadata?.namespace}/${h.metadata?.name}` === key);

  // --- leader work, serialized --------------------------------------------------------------
  let chain: Promise<void> = Promise.resolve();
  const serial = (what: string, fn: () => Promise<void>): Promise<void> =>
    (chain = chain
      .then(fn)
      .catch((err: unknown) => log.error({ err: apiErrorMessage(err) }, `${what} failed`)));
  let syncQueued = false;
  function scheduleSync(): void {
    if (syncQueued || closed) return;
    syncQueued = true;
    later(() => {
      syncQueued = false;
      void serial('Host sync', syncHosts);
    }, 50);
  }
  let statusQueued = false;
  const scheduleStatus = (): void => {
    if (statusQueued || closed) return;
    statusQueued = true;
    later(() => {
      statusQueued = false;
      void serial('status write', writeStatuses);
    }, 50);
  };

  const parsedManaged = (): ParsedHost[] => managedHosts().map((h) => parseHostObject(h, defaults));

  // --- readiness: every managed Host's tlsSecret exists (on every replica, leader or not) -------
  // Invalid Hosts, authority none (the user's own Secret) and unmanaged Hosts are not waited for;
  // neither is a Host in Error (its status says why it has no Secret: waiting could never end).
  const readiness = new SecretReadiness({
    exists: (ref) => new KubeCertificateStore(apis).exists(ref),
    missingRecheckMs: Math.min(1000, opts.secretCheckIntervalMs),
  });
  const wantedSecrets = (): WantedSecret[] => {
    const out: WantedSecret[] = [];
    for (const h of managedHosts()) {
      const p = parseHostObject(h, defaults);
      if (p.kind === 'acme' && p.tlsSecret)
        out.push({ host: p.key, secret: p.tlsSecret, error: h.status?.['state'] === 'Error' });
    }
    return out;
  };
  let readinessQueued = false;
  function scheduleReadiness(): void {
    if (readinessQueued || closed || !synced) return;
    readinessQueued = true;
    later(() => {
      readinessQueued = false;
      readiness.setWanted(wantedSecrets());
      void readiness.check();
    }, 50);
  }
  const readinessLoop = (): void => {
    if (closed) return;
    later(
      () => void readiness.check().then(readinessLoop, readinessLoop),
      Math.min(1000, opts.secretCheckIntervalMs),
    );
  };
  const appliedMappings = new Map<string, string>();

  const ownership = new SecretOwnership(log);

  async function syncHosts(): Promise<void> {
    if (!issuer) return;
    const parsed = await ownership.apply(parsedManaged(), certs);
    await issuer.setHosts(parsed);
    await applyDefaultTlsSecrets(parsed);
    if (opts.challengeMappingService) await applyMappings(parsed);
    scheduleStatus();
  }

  // Emissary terminates TLS for a Host only when spec.tlsSecret names a Secret (irhost.py; the CRD:
  // "If the value is "", then we do not do TLS for this Host"). Like Edge Stack, acme writes the
  // default it uses (the NameEncoded hostname) into the Host, as its own field (server-side apply):
  // only spec.tlsSecret, never another field (the admission policy in acme-rbac.yaml enforces it).
  const defaultedTls = new Set<string>();
  async function applyDefaultTlsSecrets(parsed: readonly ParsedHost[]): Promise<void> {
    for (const p of parsed) {
      if (p.kind !== 'acme' || !p.tlsSecret) continue;
      const h = hostByKey(p.key);
      if (!h?.metadata?.name || h.spec?.['tlsSecret'] !== undefined) continue;
      const uid = h.metadata.uid ?? p.key;
      if (defaultedTls.has(uid)) continue;
      try {
        await apis.custom.patchNamespacedCustomObject(
          {
            group,
            version,
            namespace: p.namespace,
            plural: 'hosts',
            name: h.metadata.name,
            body: {
              apiVersion: `${group}/${version}`,
              kind: 'Host',
              metadata: { name: h.metadata.name, namespace: p.namespace },
              spec: { tlsSecret: { name: p.tlsSecret.name } },
            },
            fieldManager: FIELD_MANAGER,
          },
          applyPatch,
        );
        defaultedTls.add(uid);
        log.info({ host: p.key, tlsSecret: p.tlsSecret.name }, "Host's default spec.tlsSecret written");
      } catch (err) {
        log.warn({ host: p.key, err: apiErrorMessage(err) }, 'spec.tlsSecret not written to the Host');
      }
    }
  }

  async function applyMappings(parsed: readonly ParsedHost[]): Promise<void> {
    for (const p of parsed) {
      if (p.kind !== 'acme') continue;
      const h = hostByKey(p.key);
      const rv = h?.metadata?.resourceVersion;
      if (!h || rv === undefined || appliedMappings.get(p.key) === rv) continue;
      const body = challengeMapping(h, p.hostname, opts.challengeMappingService as string, {
        [MANAGED_BY_LABEL]: MANAGED_BY,
      });
      const name = (body['metadata'] as { name: string }).name;
      try {
        await apis.custom.patchNamespacedCustomObject(
          {
            group,
            version,
            namespace: p.namespace,
            plural: 'mappings',
            name,
            body,
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          applyPatch,
        );
        appliedMappings.set(p.key, rv);
      } catch (err) {
        log.warn({ host: p.key, err: apiErrorMessage(err) }, 'challenge Mapping not applied');
      }
    }
  }

  const lastEvent = new Map<string, string>();
  async function writeStatuses(): Promise<void> {
    if (!issuer) return;
    for (const s of issuer.statuses()) {
      const h = hostByKey(s.key);
      if (!h?.metadata?.name || !h.metadata.namespace) continue;
      const want = emissaryStatus(s);
      if (!statusMatches(h.status, want)) {
        try {
          await apis.custom.patchNamespacedCustomObjectStatus(
            {
              group,
              version,
              namespace: h.metadata.namespace,
              plural: 'hosts',
              name: h.metadata.name,
              body: { status: want },
            },
            mergePatch,
          );
        } catch (err) {
          log.warn({ host: s.key, err: apiErrorMessage(err) }, 'Host status not written');
        }
      }
      await emitEvent(h, s);
    }
  }

  // Emissary drops a Host whose Secret is missing: say when the placeholder went in.
  async function temporaryEvents(ref: SecretRef): Promise<void> {
    for (const p of parsedManaged()) {
      if (p.kind !== 'acme' || p.tlsSecret?.namespace !== ref.namespace || p.tlsSecret.name !== ref.name)
        continue;
      const h = hostByKey(p.key);
      if (h)
        await recordEvent(
          h,
          'Normal',
          'Pending',
          `temporary self-signed certificate written to Secret ${ref.namespace}/${ref.name} so the Host is active; ordering a certificate for ${p.hostname}`,
        );
    }
  }

  async function emitEvent(h: HostObject, s: HostStatus): Promise<void> {
    const sig = `${s.state}|${s.phasePending}|${s.errorReason ?? ''}`;
    const key = `${h.metadata?.namespace}/${h.metadata?.name}`;
    if (lastEvent.get(key) === sig) return;
    lastEvent.set(key, sig);
    const names = (s.names ?? [s.hostname ?? '']).join(', ');
    const message =
      s.state === 'Error'
        ? (s.errorReason ?? 'error')
        : s.state === 'Ready'
          ? s.tlsCertificateSource === 'ACME'
            ? `certificate for ${names} stored in Secret ${s.tlsSecret ?? ''}${s.notAfter ? `, valid until ${s.notAfter}` : ''}`
            : 'Host ready'
          : `${s.phaseCompleted} done, ${s.phasePending} pending for ${names}`;
    await recordEvent(h, s.state === 'Error' ? 'Warning' : 'Normal', s.state, message);
  }

  async function recordEvent(
    h: HostObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const { name, namespace, uid } = h.metadata ?? {};
    if (!name || !namespace || !uid) return;
    const now = new Date();
    const event: CoreV1Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${name}.`, namespace },
      involvedObject: { apiVersion: `${group}/${version}`, kind: 'Host', name, namespace, uid },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: EVENT_COMPONENT },
      reportingComponent: EVENT_COMPONENT,
      reportingInstance: opts.identity,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await apis.core.createNamespacedEvent({ namespace, body: event });
    } catch (err) {
      log.warn({ host: `${namespace}/${name}`, err: apiErrorMessage(err) }, 'Event not recorded');
    }
  }

  // A deleted or replaced Secret is noticed by polling what the store last saw (acme may not list Secrets).
  async function checkSecrets(): Promise<void> {
    if (!issuer || !certs) return;
    await checkSecretsOnce({ issuer, store: certs, ownership, hosts: parsedManaged, log, scheduleStatus });
  }
  const secretLoop = (): void => {
    if (closed) return;
    later(() => {
      void serial('Secret check', checkSecrets).finally(secretLoop);
    }, opts.secretCheckIntervalMs);
  };

  // --- leadership ----------------------------------------------------------------------------
  const elector: LeaderElector = startLeaderElection(
    apis,
    { ...opts.lease, namespace: opts.ownNamespace, identity: opts.identity },
    {
      onStartedLeading: () =>
        serial('start leading', async () => {
          if (closed) return;
          certs = new KubeCertificateStore(apis, {
            adopt: { fieldManagers: opts.adoptFieldManagers ?? [] },
            hooks: {
              ...deps.secretHooks,
              onWritten: (ref, temporary) => {
                deps.secretHooks?.onWritten?.(ref, temporary);
                readiness.markPresent(ref);
                if (temporary) void serial('Event', () => temporaryEvents(ref));
              },
            },
          });
          const accounts = new KubeAccountStore(apis, { defaultNamespace: opts.ownNamespace });
          issuer = deps.createIssuer({ certs, accounts, challenges });
          unsubscribe = issuer.onChange(scheduleStatus);
          lastEvent.clear();
          appliedMappings.clear();
          const swept = await challenges.sweep(Date.now()).catch(() => 0);
          if (swept > 0) log.info({ swept }, 'expired challenge ConfigMaps removed');
          await syncHosts();
        }),
      onStoppedLeading: () =>
        serial('stop leading', async () => {
          unsubscribe?.();
          const i = issuer;
          issuer = undefined;
          certs = undefined;
          await i?.close();
        }),
    },
    deps.logger,
  );

  await Promise.all([...informers.map((i) => i.start()), challenges.start()]);
  synced = true;
  readiness.setWanted(wantedSecrets());
  void readiness.check();
  scheduleSync();
  secretLoop();
  readinessLoop();
  log.info(
    { namespaces: opts.namespaces.length ? opts.namespaces : '*', identity: opts.identity },
    'Kubernetes mode started',
  );

  return {
    challenges,
    get isLeader() {
      return elector.isLeader && issuer !== undefined;
    },
    get leader() {
      return elector.leader;
    },
    get synced() {
      return synced;
    },
    get issuer() {
      return issuer;
    },
    readiness,
    statuses: () => issuer?.statuses() ?? [],
    close: async () => {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all([...informers.map((i) => i.stop()), challenges.stop()]);
      await elector.close();
      await chain;
    },
  };
}
