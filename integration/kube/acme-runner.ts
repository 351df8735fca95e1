// Test entry point: the acme Kubernetes mode (services/acme/src/kube/) run out of cluster with a
// kubeconfig, composed the way services/acme/src/server.ts composes file mode: the real CA client,
// the real Issuer, a challenge server answering from the shared (ConfigMap) store, a small admin
// server. Configuration from the environment (see integration/kube/acme.test.ts).
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createLogger } from '@extsvc/common/logger';
import { createAcmeCa } from '../../services/acme/src/acme-ca.ts';
import type { CaClient } from '../../services/acme/src/ca.ts';
import { Issuer, systemClock } from '../../services/acme/src/issuer.ts';
import { kubeApis, loadKubeConfig, mergePatch } from '../../services/acme/src/kube/api.ts';
import { startKubeController } from '../../services/acme/src/kube/controller.ts';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is required`);
  return v;
};
const num = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);

const logger = createLogger({ service: 'acme', level: 'info' });
const apis = kubeApis(loadKubeConfig(env('KUBECONFIG')));
const ca = createAcmeCa({
  caPem: readFileSync(env('ACME_CA_FILE'), 'utf8'),
  requestTimeoutMs: 10_000,
  retries: 2,
  retryDelayMs: 200,
  poll: { minMs: 100, maxMs: 1000, attempts: 30 },
});
let conflicts = 0;
let orders = 0;
// Counts Secret reads per namespace/name: a test's positive signal that the Secret checks ran.
const secretReads = new Map<string, number>();
const readSecret = apis.core.readNamespacedSecret.bind(apis.core);
apis.core.readNamespacedSecret = (param, options) => {
  const key = `${param.namespace}/${param.name}`;
  secretReads.set(key, (secretReads.get(key) ?? 0) + 1);
  return readSecret(param, options);
};
// Counts certificate orders this replica starts (only the leader may).
const countingCa: CaClient = { ...ca, order: (req) => ((orders += 1), ca.order(req)) };
let conflictTarget = process.env['TEST_CONFLICT_SECRET'];
const controller = await startKubeController(
  {
    namespaces: (process.env['WATCH_NAMESPACES'] ?? '').split(',').filter((s) => s !== ''),
    ownNamespace: env('POD_NAMESPACE'),
    identity: env('POD_NAME'),
    lease: {
      name: env('LEASE_NAME', 'extsvc-acme'),
      leaseDurationMs: num('LEASE_DURATION_MS', 15_000),
      renewDeadlineMs: num('RENEW_DEADLINE_MS', 10_000),
      retryPeriodMs: num('RETRY_PERIOD_MS', 2_000),
    },
    optIn: { ambassadorIds: (process.env['AMBASSADOR_ID'] ?? '').split(',').filter((s) => s !== '') },
    adoptFieldManagers: (process.env['ADOPT_FIELD_MANAGERS'] ?? '').split(',').filter((s) => s !== ''),
    defaultAuthority: env('DEFAULT_AUTHORITY'),
    allowedAuthorities: [
      env('DEFAULT_AUTHORITY'),
      ...(process.env['ALLOWED_AUTHORITIES'] ?? '').split(',').filter((s) => s !== ''),
    ],
    secretCheckIntervalMs: num('SECRET_CHECK_INTERVAL_MS', 30_000),
    ...(process.env['CHALLENGE_MAPPING_SERVICE']
      ? { challengeMappingService: process.env['CHALLENGE_MAPPING_SERVICE'] }
      : {}),
  },
  {
    apis,
    logger,
    createIssuer: (stores) =>
      new Issuer(
        {
          clock: systemClock,
          random: Math.random,
          ca: countingCa,
          logger: logger.child({ component: 'issuer' }),
          ...stores,
        },
        {
          renewal: { fraction: 2 / 3, jitter: 0 },
          backoff: { initialMs: num('BACKOFF_INITIAL_MS', 300_000), maxMs: 86_400_000 },
          maxConcurrent: 4,
          keyType: 'ecdsa-p256',
          temporaryValidityMs: 3_600_000,
          challengeTtlMs: 600_000,
          ari: false,
          maxSleepMs: 3_600_000,
        },
      ),
    secretHooks: {
      onConflict: () => void (conflicts += 1),
      // Test only: another writer touches the Secret between our read and our write, once.
      beforeWrite: async (ref, attempt) => {
        if (
          attempt !== 1 ||
          conflictTarget === undefined ||
          `${ref.namespace}/${ref.name}` !== conflictTarget
        )
          return;
        try {
          await apis.core.patchNamespacedSecret(
            { name: ref.name, namespace: ref.namespace, body: { metadata: { labels: { touched: 'yes' } } } },
            mergePatch,
          );
          conflictTarget = undefined;
        } catch {
          // Absent yet (the temporary certificate is being created): the next write gets the conflict.
        }
      },
    },
  },
);

const listen = (server: Server, port: number): Promise<void> =>
  new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

let challengeRequests = 0;
const challengeServer = createServer((req, res) => {
  const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
  if (!m) return void res.writeHead(404).end('not found\n');
  challengeRequests += 1;
  const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
  if (host === '') return void res.writeHead(400).end('Host header required\n');
  controller.challenges.get(m[1] as string, Date.now()).then(
    (c) => {
      if (!c || host !== c.name) return void res.writeHead(404).end('not found\n');
      res
        .writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' })
        .end(c.keyAuthorization);
    },
    () => void res.writeHead(503).end('store unavailable\n'),
  );
});
const admin = createServer((req, res) => {
  const json = (code: number, body: unknown): void =>
    void res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  switch (req.url ?? '') {
    case '/healthz':
      return json(200, { ok: true });
    case '/readyz':
      return json(controller.synced ? 200 : 503, { synced: controller.synced });
    case '/leader':
      return json(200, {
        identity: env('POD_NAME'),
        isLeader: controller.isLeader,
        leader: controller.leader ?? null,
      });
    case '/hosts':
      return json(200, { hosts: controller.statuses() });
    case '/stats':
      return json(200, {
        conflicts,
        challengeRequests,
        orders,
        secretReads: Object.fromEntries(secretReads),
      });
    default:
      return json(404, {});
  }
});
await listen(challengeServer, num('CHALLENGE_PORT', 8089));
await listen(admin, num('ADMIN_PORT', 8090));
logger.info({ identity: env('POD_NAME') }, 'acme runner started');

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    challengeServer.close();
    admin.close();
    challengeServer.closeAllConnections();
    admin.closeAllConnections();
    await controller.close();
    await ca.close();
    process.exit(0);
  })();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
