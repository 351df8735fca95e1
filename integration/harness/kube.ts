import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'node:https';
import { freePort, waitUntil, type ManagedProcess } from './proc.ts';
import { ROOT, type Stack } from './stack.ts';

/** Token of the cluster-admin user (group system:masters) of the test API server. */
export const KUBE_ADMIN_TOKEN = 'extsvc-admin-token';

/** A running kube-apiserver + etcd pair, reachable with kubectl and @kubernetes/client-node. */
export interface KubeHandle {
  /** https://127.0.0.1:<port> */
  readonly server: string;
  /** Bearer token of the cluster-admin user. */
  readonly token: string;
  /** CA certificate (PEM) of the API server's serving certificate. */
  readonly caPem: string;
  /** kubeconfig of the cluster-admin user (context namespace: default). */
  readonly kubeconfigPath: string;
  readonly apiserver: ManagedProcess;
  readonly etcd: ManagedProcess;
  /** Runs kubectl with the admin kubeconfig; returns stdout, throws with stderr on a non-zero exit. */
  kubectl(...args: string[]): string;
  /** Runs kubectl with `input` on stdin. */
  kubectlInput(input: string, ...args: string[]): string;
  /** Like kubectl() but never throws: exit status, stdout and stderr (`input` on stdin). */
  kubectlResult(args: readonly string[], input?: string): { status: number; stdout: string; stderr: string };
  /** Server-side applies YAML/JSON documents under `fieldManager` (default extsvc-test). */
  apply(manifests: string, fieldManager?: string): string;
  /** A ServiceAccount token (TokenRequest) for `namespace/name`; the ServiceAccount must exist. */
  serviceAccountToken(namespace: string, name: string): string;
  /** Writes a kubeconfig that authenticates with `token` (for RBAC-restricted clients); returns its path. */
  kubeconfigForToken(token: string, name: string): string;
  /** Raw HTTPS request to the API server as admin (or with `token`); JSON body in and out. */
  raw(
    method: string,
    path: string,
    body?: unknown,
    opts?: { token?: string; contentType?: string },
  ): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
}

/** Options for startKube(). */
export interface KubeOptions {
  /** Directory holding kube-apiserver and etcd; default KUBE_BIN_DIR or integration/kube/build.sh's output. */
  readonly binDir?: string;
  /** Extra kube-apiserver flags. */
  readonly apiserverArgs?: readonly string[];
}

let cachedBinDir: string | undefined;

/** The directory with the kube-apiserver and etcd binaries (builds them once and caches, see integration/kube/README.md). */
export function kubeBinDir(): string {
  if (process.env['KUBE_BIN_DIR']) return process.env['KUBE_BIN_DIR'];
  if (cachedBinDir) return cachedBinDir;
  const out = execFileSync('bash', [join(ROOT, 'integration', 'kube', 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30 * 60_000,
  });
  const last = out.trim().split('\n').pop();
  if (!last) throw new Error('integration/kube/build.sh printed no bin dir');
  cachedBinDir = last.trim();
  return cachedBinDir;
}

function writePki(dir: string): void {
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe', cwd: dir });
  ossl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=extsvc-test-kube-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  ossl(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=kube-apiserver',
    '-keyout',
    'serving.key',
    '-out',
    'serving.csr',
  );
  writeFileSync(
    join(dir, 'serving.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n',
  );
  ossl(
    'x509',
    '-req',
    '-in',
    'serving.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'serving.ext',
    '-out',
    'serving.crt',
  );
  // Service account token signing key: RSA, as every kube-apiserver accepts it.
  ossl('genrsa', '-out', 'sa.key', '2048');
  ossl('rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  writeFileSync(join(dir, 'tokens.csv'), `${KUBE_ADMIN_TOKEN},extsvc-admin,extsvc-admin,"system:masters"\n`);
}

function kubeconfig(server: string, caPem: string, token: string, user: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: extsvc-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: extsvc-test',
    '  context:',
    '    cluster: extsvc-test',
    `    user: ${user}`,
    '    namespace: default',
    'current-context: extsvc-test',
    '',
  ].join('\n');
}

/**
 * Starts etcd and kube-apiserver (RBAC on, static admin token, ServiceAccount tokens) on free loopback
 * ports, both tracked by `stack` so stack.stop() stops them. Resolves once /readyz answers 200.
 */
export async function startKube(stack: Stack, opts: KubeOptions = {}): Promise<KubeHandle> {
  const bin = opts.binDir ?? kubeBinDir();
  const etcdPort = await freePort();
  const peerPort = await freePort();
  const apiPort = await freePort();
  const dir = stack.mkdir(`kube-${apiPort}`);
  const pki = stack.mkdir(`kube-${apiPort}/pki`);
  writePki(pki);
  const etcd = stack.spawn(`etcd-${etcdPort}`, join(bin, 'etcd'), [
    '--name=extsvc-test',
    `--data-dir=${join(dir, 'etcd-data')}`,
    `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=extsvc-test=http://127.0.0.1:${peerPort}`,
    '--unsafe-no-fsync',
    '--log-level=warn',
  ]);
  await waitUntil(
    'etcd /readyz',
    async () => (await fetch(`http://127.0.0.1:${etcdPort}/readyz`)).status === 200,
    {
      timeoutMs: 30_000,
      intervalMs: 100,
      abort: () => (etcd.exitStatus ? `exited:\n${etcd.logs()}` : undefined),
    },
  );
  const apiserver = stack.spawn(`kube-apiserver-${apiPort}`, join(bin, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${join(pki, 'serving.crt')}`,
    `--tls-private-key-file=${join(pki, 'serving.key')}`,
    `--token-auth-file=${join(pki, 'tokens.csv')}`,
    '--authorization-mode=Node,RBAC',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${join(pki, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--endpoint-reconciler-type=none',
    '--enable-priority-and-fairness=false',
    '--profiling=false',
    ...(opts.apiserverArgs ?? []),
  ]);
  const caPem = readFileSync(join(pki, 'ca.crt'), 'utf8');
  const server = `https://127.0.0.1:${apiPort}`;
  const agent = new Agent({ ca: caPem, keepAlive: false });

  const raw: KubeHandle['raw'] = (method, path, body, o = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        `${server}${path}`,
        {
          method,
          agent,
          headers: {
            authorization: `Bearer ${o.token ?? KUBE_ADMIN_TOKEN}`,
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : {
                  'content-type': o.contentType ?? 'application/json',
                  'content-length': Buffer.byteLength(payload),
                }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // not JSON (readyz answers "ok")
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.end(payload);
    });

  await waitUntil('kube-apiserver /readyz', async () => (await raw('GET', '/readyz')).status === 200, {
    timeoutMs: 90_000,
    intervalMs: 200,
    abort: () => (apiserver.exitStatus ? `exited:\n${apiserver.logs()}` : undefined),
  });

  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, kubeconfig(server, caPem, KUBE_ADMIN_TOKEN, 'extsvc-admin'), { mode: 0o600 });

  const kubectlResult = (
    args: readonly string[],
    input?: string,
    config = kubeconfigPath,
  ): { status: number; stdout: string; stderr: string } => {
    const r = spawnSync('kubectl', ['--kubeconfig', config, ...args], {
      encoding: 'utf8',
      input,
      timeout: 60_000,
      cwd: ROOT,
    });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
  };
  const kubectlOrThrow = (args: readonly string[], input?: string): string => {
    const r = kubectlResult(args, input);
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
    return r.stdout;
  };

  return {
    server,
    token: KUBE_ADMIN_TOKEN,
    caPem,
    kubeconfigPath,
    apiserver,
    etcd,
    kubectl: (...args) => kubectlOrThrow(args),
    kubectlInput: (input, ...args) => kubectlOrThrow(args, input),
    kubectlResult: (args, input) => kubectlResult(args, input),
    apply: (manifests, fieldManager = 'extsvc-test') =>
      kubectlOrThrow(['apply', '--server-side', `--field-manager=${fieldManager}`, '-f', '-'], manifests),
    serviceAccountToken: (namespace, name) =>
      kubectlOrThrow(['-n', namespace, 'create', 'token', name, '--duration=1h']).trim(),
    kubeconfigForToken: (token, name) => {
      const path = join(dir, `kubeconfig-${name.replace(/[^a-z0-9-]+/gi, '-')}`);
      writeFileSync(path, kubeconfig(server, caPem, token, name), { mode: 0o600 });
      return path;
    },
    raw,
    stop: async () => {
      agent.destroy();
      await apiserver.stop(5000);
      await etcd.stop(5000);
    },
  };
}

/**
 * Emissary's own getambassador.io CRDs (v3alpha1 only, structural schemas, as Emissary 4.x installs
 * them): integration/kube/fixtures/emissary-crds.yaml, written from Emissary's published crds.yaml.
 */
export const EMISSARY_CRDS = join(ROOT, 'integration', 'kube', 'fixtures', 'emissary-crds.yaml');

/** The CRD names in EMISSARY_CRDS. */
export const EMISSARY_CRD_NAMES = [
  'authservices.getambassador.io',
  'hosts.getambassador.io',
  'mappings.getambassador.io',
  'ratelimitservices.getambassador.io',
  'tlscontexts.getambassador.io',
] as const;

/** Applies Emissary's CRDs (EMISSARY_CRDS) server-side and waits until every one is Established. */
export function applyEmissaryCrds(kube: KubeHandle): void {
  kube.apply(readFileSync(EMISSARY_CRDS, 'utf8'), 'emissary-crds');
  kube.kubectl(
    'wait',
    '--for=condition=Established',
    '--timeout=30s',
    ...EMISSARY_CRD_NAMES.map((n) => `crd/${n}`),
  );
}

let cachedHelm: string | undefined;

/** The helm v4 binary (built once from the Go module proxy by integration/kube/build-helm.sh, cached). */
export function helmBin(): string {
  if (process.env['HELM_BIN']) return process.env['HELM_BIN'];
  if (cachedHelm) return cachedHelm;
  const out = execFileSync('bash', [join(ROOT, 'integration', 'kube', 'build-helm.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30 * 60_000,
  });
  const last = out.trim().split('\n').pop();
  if (!last) throw new Error('integration/kube/build-helm.sh printed no binary path');
  cachedHelm = last.trim();
  return cachedHelm;
}
