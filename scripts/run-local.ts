// Runs the whole suite locally on embedded defaults: Envoy in front of authz, ratelimit (in-memory
// counters) and acme (file mode), plus a demo upstream. Ctrl-C stops everything.
// Usage: bash scripts/run-local.sh   (sets up the machine first)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManagedProcess, waitUntil } from '../integration/harness/proc.ts';
import { ENVOY_DEFAULTS, renderEnvoyConfig } from '../deploy/envoy/render.ts';

const root = join(import.meta.dirname, '..');
const work = join(root, '.tools', 'run-local');
const compose = join(root, 'deploy', 'compose');
mkdirSync(join(work, 'certs'), { recursive: true });
// Locally the example Host is left alone (authority none): no CA is contacted and no TLS listener is needed.
const hostsFile = join(work, 'hosts.yaml');
writeFileSync(
  hostsFile,
  'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: { name: example, namespace: default }\n' +
    'spec:\n  hostname: example.test\n  acmeProvider: { authority: none }\n  tlsSecret: { name: example-tls }\n',
);

const node = process.execPath;
const svc = (name: string, args: string[]): ManagedProcess =>
  new ManagedProcess(name, node, [join(root, 'services', name, 'src', 'main.ts'), ...args], {
    env: { ...process.env, LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info', ADMIN_HOST: '127.0.0.1' },
    cwd: root,
  });

const v = ENVOY_DEFAULTS;
const procs: ManagedProcess[] = [
  new ManagedProcess(
    'upstream',
    node,
    [join(root, 'integration', 'harness', 'echo-server.ts'), `--port=${v.UPSTREAM_PORT}`],
    { cwd: root },
  ),
  svc('authz', [
    '--grpc-host=127.0.0.1',
    '--http-host=127.0.0.1',
    `--policy-file=${join(compose, 'authz', 'policy.yaml')}`,
  ]),
  svc('ratelimit', [
    '--grpc-host=127.0.0.1',
    '--http-host=127.0.0.1',
    `--config-dir=${join(compose, 'ratelimit')}`,
    '--limit-response-headers-enabled',
  ]),
  svc('acme', [
    '--challenge-host=127.0.0.1',
    `--hosts-file=${hostsFile}`,
    `--cert-dir=${join(work, 'certs')}`,
  ]),
];

const stopAll = async (code: number): Promise<never> => {
  await Promise.all(procs.map((p) => p.stop(3000)));
  process.exit(code);
};
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stdout.write('\nstopping...\n');
    void stopAll(0);
  });
}

const admins: Record<string, number> = { authz: 9003, ratelimit: 6070, acme: 8090 };
try {
  for (const [name, port] of Object.entries(admins)) {
    const p = procs.find((x) => x.name === name) as ManagedProcess;
    await waitUntil(
      `${name} ready`,
      async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      {
        timeoutMs: 30_000,
        abort: () => (p.exitStatus ? p.logs() : undefined),
      },
    );
  }
  const configPath = join(work, 'envoy.yaml');
  writeFileSync(configPath, renderEnvoyConfig({ ...v, LISTEN_ADDRESS: '127.0.0.1' }));
  const envoy = new ManagedProcess(
    'envoy',
    process.env['ENVOY_BIN'] ?? 'envoy',
    ['-c', configPath, '--use-dynamic-base-id', '--log-level', 'warn'],
    { cwd: root },
  );
  procs.push(envoy);
  await waitUntil(
    'envoy ready',
    async () => (await fetch(`http://127.0.0.1:${v.ADMIN_PORT}/ready`)).status === 200,
    {
      timeoutMs: 30_000,
      abort: () => (envoy.exitStatus ? envoy.logs() : undefined),
    },
  );
} catch (err) {
  process.stderr.write(`failed to start: ${(err as Error).message}\n`);
  for (const p of procs)
    process.stderr.write(`--- ${p.name}\n${p.logs().split('\n').slice(-20).join('\n')}\n`);
  await stopAll(1);
}

const base = `http://127.0.0.1:${v.HTTP_PORT}`;
process.stdout.write(`
extsvc is running: Envoy on ${base} (admin http://127.0.0.1:${v.ADMIN_PORT})
  authz     gRPC 127.0.0.1:9001  HTTP 127.0.0.1:9002  admin http://127.0.0.1:9003
  ratelimit gRPC 127.0.0.1:8081  HTTP 127.0.0.1:8080  admin http://127.0.0.1:6070  (in-memory counters)
  acme      challenge 127.0.0.1:8089                  admin http://127.0.0.1:8090

Try:
  curl -i ${base}/public/hello                          # allowed by policy, rate limited per client
  curl -i ${base}/api/hello                             # 401: a token or API key is required
  curl -i -H 'x-api-key: demo-key' ${base}/api/hello    # allowed with the demo API key
  for i in $(seq 1 12); do curl -s -o /dev/null -w '%{http_code} ' -H 'x-client-id: me' ${base}/public/x; done; echo
                                                        # 429 after 10 requests per minute for client "me"
  curl -i ${base}/.well-known/acme-challenge/x          # 404 from acme (no pending challenge), no auth
  curl -s http://127.0.0.1:9003/metrics | grep authz_   # decisions
  curl -s http://127.0.0.1:6070/config                  # active rate limit configuration
Ctrl-C stops everything.
`);
await new Promise(() => undefined);
