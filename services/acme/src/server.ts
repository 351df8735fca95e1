import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import Fastify from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { ConfigError, errorMessage } from '@extsvc/common/errors';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import type { Tracing } from '@extsvc/common/otel';
import { createAcmeCa } from './acme-ca.ts';
import type { CaClient } from './ca.ts';
import type { KeyType } from './certs.ts';
import { ACME_OPTIONS, type AcmeConfig, allowedAuthorities } from './config.ts';
import { DirectoryCertificateStore, FileAccountStore } from './file-store.ts';
import type { HostDefaults, ParsedHost } from './host.ts';
import { FileHostSource, type HostSource } from './host-source.ts';
import { type Clock, type HostStatus, Issuer, systemClock } from './issuer.ts';
import { createSelfCheck } from './self-check.ts';
import { MemoryChallengeStore } from './stores.ts';
import type { AccountStore, CertificateStore, ChallengeStore } from './stores.ts';
import { registerAcmeDiag } from './diag.ts';
import { boundPort } from '@extsvc/common/net';

/** A running acme service. */
export interface AcmeService {
  readonly challengePort: number;
  readonly adminPort: number;
  /** The file-mode issuer (undefined in Kubernetes mode, where the leader builds its own). */
  readonly issuer: Issuer | undefined;
  close(): Promise<void>;
}

/** Optional overrides (tests, other modes): clock, randomness, CA client, Host source. */
export interface StartOverrides {
  readonly clock?: Clock;
  readonly random?: () => number;
  readonly ca?: CaClient;
  readonly hosts?: HostSource;
  /** OpenTelemetry tracing (startTracing): spans per order and per challenge; shut down by close(). */
  readonly tracing?: Tracing | undefined;
}

/** A /readyz detail naming the first five `items` (Hosts, Secrets; never their contents), then a count. */
function listDetail(what: string, items: readonly string[]): string {
  return `${what} ${items.slice(0, 5).join(', ')}${items.length > 5 ? ` and ${items.length - 5} more` : ''}`;
}

/** The Kubernetes-mode modules, imported on demand: @kubernetes/client-node alone is ~55 MiB of RSS (bench/idle-rss.ts). */
async function kubeModules() {
  const [api, controller] = await Promise.all([import('./kube/api.ts'), import('./kube/controller.ts')]);
  return { ...api, ...controller };
}

/** Starts the challenge server, the admin server, the Hosts watcher and the issuer. */
export async function start(
  config: AcmeConfig,
  rt: Runtime,
  overrides: StartOverrides = {},
): Promise<AcmeService> {
  const log = rt.logger;
  // Not ready until the Hosts are loaded and each has a stored certificate: /readyz answers from
  // the moment the admin port listens, and an empty component map would read as ready.
  rt.health.set('hosts', false, 'Hosts not loaded yet');
  const defaults: HostDefaults = {
    namespace: config.defaultNamespace,
    authority: config.defaultAuthority,
    ambassadorIds: config.ambassadorId,
    allowedAuthorities: allowedAuthorities(config),
  };
  const kubeMode = config.hostSource === 'kubernetes';
  const source = overrides.hosts ?? new FileHostSource(config.hostsFile, defaults, config.hostsPollInterval);
  const first = kubeMode ? { kind: 'ok' as const, hosts: [], ignored: 0 } : source.load();
  if (first.kind === 'error') throw new ConfigError(first.problems);

  // Without a Hosts file nothing is ever written; the directories are then only placeholders.
  const certDir = resolve(config.certDir ?? 'certs');
  const accountDir = resolve(config.accountDir ?? join(certDir, '_accounts'));
  if (kubeMode)
    log.info({ namespaces: config.watchNamespaces }, 'Kubernetes mode: Hosts, Secrets and Leases in the API');
  else if (config.hostsFile !== undefined) {
    await mkdir(certDir, { recursive: true });
    await mkdir(accountDir, { recursive: true, mode: 0o700 });
  } else log.warn('no --hosts-file: no Hosts, the challenge server only');

  const requestSeconds = new Histogram({
    name: 'acme_request_duration_seconds',
    help: 'HTTP requests to the ACME CA by step and status.',
    labelNames: ['op', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [rt.registry],
  });
  const orders = new Counter({
    name: 'acme_orders_total',
    help: 'Certificate orders by result (issued, failed, rate_limited).',
    labelNames: ['result'],
    registers: [rt.registry],
  });
  const orderSeconds = new Histogram({
    name: 'acme_order_duration_seconds',
    help: 'Duration of certificate orders, from account check to stored certificate.',
    labelNames: ['result'],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
    registers: [rt.registry],
  });
  const challengeRequests = new Counter({
    name: 'acme_challenge_requests_total',
    help: 'Requests to /.well-known/acme-challenge/ by result.',
    labelNames: ['result'],
    registers: [rt.registry],
  });
  const reloads = new Counter({
    name: 'acme_hosts_reloads_total',
    help: 'Reloads of the Hosts file by result (a failed reload keeps the last good Hosts).',
    labelNames: ['result'],
    registers: [rt.registry],
  });

  const ca =
    overrides.ca ??
    createAcmeCa({
      ...(config.caFile !== undefined ? { caPem: readFileSync(config.caFile, 'utf8') } : {}),
      requestTimeoutMs: config.acmeTimeout,
      ...(config.eabKid !== undefined && config.eabHmacKey !== undefined
        ? { eab: { kid: config.eabKid, hmacKey: config.eabHmacKey } }
        : {}),
      retries: config.acmeRetries,
      retryDelayMs: 1000,
      poll: { minMs: config.pollInterval, maxMs: 10_000, attempts: 12 },
      onRequest: (op, status, seconds) => requestSeconds.observe({ op, status }, seconds),
    });
  const clock = overrides.clock ?? systemClock;
  const makeIssuer = (stores: {
    certs: CertificateStore;
    accounts: AccountStore;
    challenges: ChallengeStore;
  }): Issuer =>
    new Issuer(
      {
        clock,
        random: overrides.random ?? Math.random,
        ca,
        ...stores,
        logger: log.child({ component: 'issuer' }),
        ...(overrides.tracing ? { tracing: overrides.tracing } : {}),
        ...(config.selfCheckAddress !== undefined
          ? {
              selfCheck: createSelfCheck({
                address: config.selfCheckAddress,
                attempts: config.selfCheckAttempts,
                intervalMs: 1000,
                timeoutMs: 10_000,
              }),
            }
          : {}),
        onOrder: (result, ms) => {
          orders.inc({ result });
          orderSeconds.observe({ result }, ms / 1000);
        },
      },
      {
        renewal: { fraction: config.renewFraction, jitter: config.renewJitter },
        backoff: { initialMs: config.backoffInitial, maxMs: config.backoffMax },
        maxConcurrent: config.maxConcurrentOrders,
        keyType: config.keyType as KeyType,
        temporaryValidityMs: config.temporaryValidity,
        challengeTtlMs: 10 * 60_000,
        ari: config.ari,
        ariPoll: { minMs: config.ariPollMin, maxMs: config.ariPollMax },
        ...(config.defaultProfile !== undefined ? { defaultProfile: config.defaultProfile } : {}),
        maxSleepMs: 3_600_000,
      },
    );
  // File mode: one issuer on directory stores. Kubernetes mode: the controller builds an issuer on
  // Secret/ConfigMap stores each time this replica becomes the leader; followers only answer challenges.
  const k8s = kubeMode ? await kubeModules() : undefined;
  const kube = k8s
    ? await k8s.startKubeController(
        {
          namespaces: config.watchNamespaces,
          ownNamespace: config.podNamespace,
          identity: config.podName,
          lease: {
            name: config.leaseName,
            leaseDurationMs: config.leaseDuration,
            renewDeadlineMs: config.renewDeadline,
            retryPeriodMs: config.retryPeriod,
          },
          optIn: { ambassadorIds: config.ambassadorId },
          adoptFieldManagers: config.adoptFieldManagers,
          defaultAuthority: config.defaultAuthority,
          allowedAuthorities: allowedAuthorities(config),
          secretCheckIntervalMs: config.secretCheckInterval,
          ...(config.challengeMappingService !== undefined
            ? { challengeMappingService: config.challengeMappingService }
            : {}),
        },
        { apis: k8s.kubeApis(k8s.loadKubeConfig(config.kubeconfig)), logger: log, createIssuer: makeIssuer },
      )
    : undefined;
  const fileChallenges = new MemoryChallengeStore();
  const fileAccounts = new FileAccountStore(accountDir);
  let activeHosts: readonly ParsedHost[] = first.hosts;
  const fileIssuer = kube
    ? undefined
    : makeIssuer({
        certs: new DirectoryCertificateStore(certDir, config.envoyCertDir, parseInt(config.keyFileMode, 8)),
        accounts: fileAccounts,
        challenges: fileChallenges,
      });
  const challenges: ChallengeStore = kube?.challenges ?? fileChallenges;
  const statuses = (): HostStatus[] => (kube ? kube.statuses() : (fileIssuer as Issuer).statuses());
  const certificates = (): ReturnType<Issuer['certificates']> =>
    kube ? (kube.issuer?.certificates() ?? []) : (fileIssuer as Issuer).certificates();

  new Gauge({
    name: 'acme_hosts',
    help: 'Hosts by state (Initial, Pending, Ready, Error).',
    labelNames: ['state'],
    registers: [rt.registry],
    collect() {
      const counts: Record<string, number> = { Initial: 0, Pending: 0, Ready: 0, Error: 0 };
      for (const s of statuses()) counts[s.state] = (counts[s.state] ?? 0) + 1;
      this.reset();
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'acme_certificate_not_after_timestamp_seconds',
    help: 'Expiry of each stored certificate (tlsSecret), Unix seconds.',
    labelNames: ['secret', 'temporary'],
    registers: [rt.registry],
    collect() {
      this.reset();
      for (const c of certificates())
        if (c.notAfter !== undefined)
          this.set({ secret: c.secret, temporary: String(c.temporary) }, c.notAfter / 1000);
    },
  });
  new Gauge({
    name: 'acme_certificate_renewal_timestamp_seconds',
    help: 'Planned renewal time of each certificate, Unix seconds.',
    labelNames: ['secret'],
    registers: [rt.registry],
    collect() {
      this.reset();
      for (const c of certificates())
        if (c.renewAt !== undefined) this.set({ secret: c.secret }, c.renewAt / 1000);
    },
  });

  const http = Fastify({ logger: false, forceCloseConnections: true });
  // The challenge route is public (no auth in front of it): anything a client sends must stay cheap.
  // Tokens are base64url with >= 128 bits (RFC 8555 §8.1); other paths never reach the store. Both
  // stores answer from memory (Kubernetes mode: an index kept by a watch), never an API read.
  http.get<{ Params: { token: string } }>('/.well-known/acme-challenge/:token', async (req, reply) => {
    const token = req.params.token;
    const now = clock.now();
    const notFound = () => {
      challengeRequests.inc({ result: 'not_found' });
      return reply.code(404).type('text/plain').send('not found\n');
    };
    // The token is answered only for the name being validated: a request without a Host (HTTP/1.0,
    // or an empty header) names none, so it never gets one (cert-manager's solver does the same).
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (host === '') {
      challengeRequests.inc({ result: 'bad_request' });
      return reply.code(400).type('text/plain').send('Host header required\n');
    }
    if (!/^[A-Za-z0-9_-]{22,256}$/.test(token)) return notFound();
    let c: Awaited<ReturnType<ChallengeStore['get']>>;
    try {
      c = await challenges.get(token, now);
    } catch (err) {
      challengeRequests.inc({ result: 'error' });
      log.warn({ err: errorMessage(err) }, 'challenge store unavailable');
      return reply.code(503).type('text/plain').send('unavailable\n');
    }
    // Only the name being validated gets the token (as cert-manager's solver), and only while pending.
    if (!c || host !== c.name) return notFound();
    challengeRequests.inc({ result: 'served' });
    return reply
      .code(200)
      .header('cache-control', 'no-cache, no-store, must-revalidate')
      .type('text/plain')
      .send(c.keyAuthorization);
  });
  await http.listen({ host: config.challengeHost, port: config.challengePort });
  const challengePort = boundPort(http.server, config.challengePort);

  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: log,
    configView: () => ({ options: redactedView(ACME_OPTIONS, config) }),
    routes: (app) => {
      app.get('/hosts', async () => ({ hosts: statuses() }));
      // /diag: Hosts, phases, certificates and accounts; read-only, no actions.
      registerAcmeDiag(app, {
        service: rt.service,
        version: rt.version,
        health: rt.health,
        source: {
          statuses,
          ...(kube ? {} : { hosts: () => activeHosts, accounts: fileAccounts }),
          running: () => (kube ? (kube.issuer?.running ?? 0) : (fileIssuer?.running ?? 0)),
          settings: [
            ['host source', config.hostSource],
            ['certificate store', config.store],
            ['default authority', config.defaultAuthority],
            ['key type', config.keyType],
            ['max concurrent orders', config.maxConcurrentOrders],
            ...(kube ? ([['leader', kube.leader ?? '(none)']] as const) : []),
          ],
        },
      });
      if (kube)
        app.get('/leader', async () => ({
          identity: config.podName,
          isLeader: kube.isLeader,
          leader: kube.leader ?? null,
        }));
    },
  });

  if (fileIssuer) {
    // Ready only when every managed Host has a certificate pair (temporary or real) on disk: Envoy's
    // TLS listener, and a compose health check that gates it, need the files to exist.
    const certificatesStored = (): void => {
      const missing = fileIssuer.unstored();
      rt.health.set(
        'certificates',
        missing.length === 0,
        missing.length === 0 ? undefined : listDetail('no certificate stored yet for', missing),
      );
    };
    rt.health.set('certificates', false, 'Hosts not loaded yet');
    fileIssuer.onChange(certificatesStored);
    await fileIssuer.setHosts(first.hosts);
    certificatesStored();
  }
  if (kube) {
    // Ready only when every managed Host's tlsSecret exists (temporary or real), as every replica
    // sees it: Emissary drops a Host whose Secret is missing. A Host in Error is named, not waited for.
    const secretsStored = (): void => {
      const missing = kube.readiness.missing();
      const waived = kube.readiness.waived();
      rt.health.set(
        'certificates',
        missing.length === 0,
        missing.length > 0
          ? listDetail('waiting for the tlsSecret of', missing)
          : waived.length > 0
            ? listDetail('not waited for (Host in Error, see its status):', waived)
            : undefined,
      );
    };
    kube.readiness.onChange(secretsStored);
    secretsStored();
    rt.health.set('hosts', kube.synced, kube.synced ? undefined : 'Host informers listing');
    const syncTimer = setInterval(() => {
      if (kube.synced) {
        rt.health.set('hosts', true);
        clearInterval(syncTimer);
      }
    }, 200);
    syncTimer.unref();
  } else rt.health.set('hosts', true);
  log.info({ file: config.hostsFile, hosts: first.hosts.length, ignored: first.ignored }, 'hosts loaded');
  const watcher = kube
    ? { close: async () => undefined }
    : source.watch(
        async (hosts) => {
          reloads.inc({ result: 'ok' });
          activeHosts = hosts;
          await (fileIssuer as Issuer).setHosts(hosts);
          log.info({ file: config.hostsFile, hosts: hosts.length }, 'hosts reloaded');
        },
        (problems) => {
          reloads.inc({ result: 'error' });
          log.error({ file: config.hostsFile, problems }, 'hosts reload failed: keeping the last good Hosts');
        },
      );
  rt.health.set('listeners', true);
  log.info({ challengePort, adminPort: admin.port, certDir }, 'acme started');

  let closing: Promise<void> | undefined;
  return {
    challengePort,
    adminPort: admin.port,
    issuer: fileIssuer,
    close: () =>
      (closing ??= (async () => {
        rt.health.drain();
        await watcher.close();
        await delay(config.drainMs);
        await closeAll([kube, fileIssuer, { close: () => http.close() }, admin, ca]);
        await overrides.tracing?.shutdown();
      })()),
  };
}
