// Benchmark: authz Check decisions/s and latency, gRPC direct (ghz) and through Envoy (wrk), for a valid
// ES256 token seen before, a fresh valid token per request and an invalid token; side by side with
// OPA-Envoy (Rego io.jwt.decode_verify) and Envoy's in-process jwt_authn as the ceiling.
// Usage: node bench/authz/run.ts [--duration 10] [--concurrency 32] [--skip-opa]
// Needs .tools/bin/ghz (and .tools/bin/opa-envoy-plugin for the OPA column), wrk, envoy (scripts/env.sh).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntil } from '../../integration/harness/proc.ts';
import { Issuer } from '../../integration/authz/issuer.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, '.tools', 'bin');
const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : (process.argv[i + 1] ?? def);
};
const DURATION = Number(arg('duration', '10'));
const CONC = Number(arg('concurrency', '32'));
const SKIP_OPA = process.argv.includes('--skip-opa') || !existsSync(join(BIN, 'opa-envoy-plugin'));
const dir = mkdtempSync(join(tmpdir(), 'bench-authz-'));
const procs: ChildProcess[] = [];

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  return p;
}
const httpOk = (url: string) => async () => (await fetch(url).catch(() => undefined))?.ok === true;

interface Row {
  target: string;
  scenario: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: string;
}
const rows: Row[] = [];

function ghz(
  target: string,
  scenario: string,
  port: number,
  dataFile: string,
  n?: number,
  rps?: number,
): void {
  const args = [
    '--cpus',
    '1',
    ...(rps ? ['--rps', String(rps)] : []),
    '--insecure',
    '--proto',
    join(ROOT, 'proto/envoy/service/auth/v3/external_auth.proto'),
    '--import-paths',
    join(ROOT, 'proto'),
    '--call',
    'envoy.service.auth.v3.Authorization.Check',
    '--data-file',
    dataFile,
    '-c',
    String(CONC),
    ...(n ? ['-n', String(n)] : ['-z', `${DURATION}s`]),
    '-O',
    'json',
    `127.0.0.1:${port}`,
  ];
  const r = spawnSync(join(BIN, 'ghz'), args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const j = JSON.parse(r.stdout) as {
    rps: number;
    latencyDistribution: Array<{ percentage: number; latency: number }>;
    statusCodeDistribution: Record<string, number>;
  };
  const pct = (p: number) => (j.latencyDistribution.find((d) => d.percentage === p)?.latency ?? 0) / 1e6;
  rows.push({
    target,
    scenario,
    rps: Math.round(j.rps),
    p50ms: pct(50),
    p99ms: pct(99),
    errors: JSON.stringify(j.statusCodeDistribution),
  });
}

function wrk(target: string, scenario: string, port: number, tokensFile: string): void {
  const lua = join(dir, `wrk-${rows.length}.lua`);
  writeFileSync(
    lua,
    `local tokens = {}
for line in io.lines("${tokensFile}") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer " .. t })
end
local statuses = {}
response = function(status) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %f %f\\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99)))
end
`,
  );
  const r = spawnSync(
    'wrk',
    ['-t', '2', '-c', String(CONC), '-d', `${DURATION}s`, '-s', lua, `http://127.0.0.1:${port}/`],
    {
      encoding: 'utf8',
    },
  );
  const m = /RESULT (\d+) ([\d.]+) ([\d.]+) ([\d.]+)/.exec(r.stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? '0';
  if (!m) throw new Error(`wrk output: ${r.stdout}${r.stderr}`);
  rows.push({
    target,
    scenario,
    rps: Math.round(Number(m[1]) / (Number(m[2]) / 1e6)),
    p50ms: Number(m[3]) / 1000,
    p99ms: Number(m[4]) / 1000,
    errors: `non-2xx: ${non2xx}`,
  });
}

function envoyConfig(port: number, admin: number, filter: string, clusters: string): string {
  return `admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${admin} } } }
static_resources:
  listeners:
    - address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          direct_response: { status: 200, body: { inline_string: "ok" } }
                http_filters:
${filter}
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
${clusters}
`;
}
const grpcCluster = (name: string, port: number) => `    - name: ${name}
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: { http2_protocol_options: {} }
      load_assignment:
        cluster_name: ${name}
        endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } } } ] } ]`;
const extAuthz = (cluster: string) => `                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      grpc_service: { envoy_grpc: { cluster_name: ${cluster} }, timeout: 1s }`;

async function envoy(name: string, filter: string, clusters: string): Promise<number> {
  const port = await freePort();
  const admin = await freePort();
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, envoyConfig(port, admin, filter, clusters));
  start('envoy', ['-c', file, '--use-dynamic-base-id', '--log-level', 'error', '--concurrency', '1']);
  await waitUntil(`${name} ready`, httpOk(`http://127.0.0.1:${admin}/ready`), { timeoutMs: 30_000 });
  return port;
}

async function main(): Promise<void> {
  const issuer = await new Issuer().start();
  const jwks = JSON.stringify(await (await fetch(`${issuer.url}/jwks`)).json());
  // Token sets: one seen-before token, N distinct fresh tokens, one invalid (bad signature) token.
  const N = 60_000;
  const RATE_N = 10_000;
  const seen = await issuer.token();
  const fresh: string[] = [];
  for (let i = 0; i < N + RATE_N; i++) fresh.push(await issuer.token({ sub: `user-${i}`, jti: String(i) }));
  const invalid = seen.slice(0, -6) + (seen.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
  const checkMsg = (t: string) => ({
    attributes: {
      request: {
        http: {
          method: 'GET',
          path: '/api/x',
          host: 'bench',
          headers: { ':path': '/api/x', authorization: `Bearer ${t}` },
        },
      },
    },
  });
  const files = {
    seen: join(dir, 'seen.json'),
    fresh: join(dir, 'fresh.json'),
    invalid: join(dir, 'invalid.json'),
    freshRate: join(dir, 'fresh-rate.json'),
  };
  writeFileSync(files.seen, JSON.stringify([checkMsg(seen)]));
  // Disjoint token sets: ghz fresh [0, N/2), wrk fresh [N/2, N), fixed-rate runs [N, N + RATE_N).
  writeFileSync(files.fresh, JSON.stringify(fresh.slice(0, N / 2).map(checkMsg)));
  writeFileSync(files.freshRate, JSON.stringify(fresh.slice(N).map(checkMsg)));
  writeFileSync(files.invalid, JSON.stringify([checkMsg(invalid)]));
  const tokenFiles = {
    seen: join(dir, 'seen.txt'),
    fresh: join(dir, 'fresh.txt'),
    invalid: join(dir, 'invalid.txt'),
  };
  writeFileSync(tokenFiles.seen, `${seen}\n`);
  writeFileSync(tokenFiles.fresh, fresh.slice(N / 2, N).join('\n') + '\n');
  writeFileSync(tokenFiles.invalid, `${invalid}\n`);

  // authz
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    `providers:\n  main: { issuer: "${issuer.issuer}", audiences: [api], jwks: ${jwks}, algorithms: [ES256] }\nrules:\n  - { name: api, match: { pathPrefix: /api }, jwt: true }\n`,
  );
  const [gp, hp, ap] = [await freePort(), await freePort(), await freePort()];
  start(
    process.execPath,
    [
      join(ROOT, 'services/authz/src/main.ts'),
      `--grpc-port=${gp}`,
      `--http-port=${hp}`,
      `--admin-port=${ap}`,
      '--grpc-host=127.0.0.1',
      '--http-host=127.0.0.1',
      '--admin-host=127.0.0.1',
      `--policy-file=${policy}`,
      '--token-cache-size=100000',
    ],
    { LOG_LEVEL: 'warn' },
  );
  await waitUntil('authz ready', httpOk(`http://127.0.0.1:${ap}/readyz`), { timeoutMs: 30_000 });
  ghz('authz gRPC direct', 'warm-up', gp, files.seen, 2000);
  rows.pop();
  ghz('authz gRPC direct', 'seen token', gp, files.seen, 40_000);
  ghz('authz gRPC direct', 'fresh token', gp, files.fresh, N / 2);
  ghz('authz gRPC direct', 'invalid token', gp, files.invalid, 40_000);
  ghz('authz gRPC direct', 'seen token @1000 rps', gp, files.seen, 10_000, 1000);
  ghz('authz gRPC direct', 'fresh token @1000 rps', gp, files.freshRate, 10_000, 1000);
  const viaAuthz = await envoy('envoy-authz', extAuthz('authz'), grpcCluster('authz', gp));
  wrk('Envoy + authz', 'seen token', viaAuthz, tokenFiles.seen);
  wrk('Envoy + authz', 'fresh token', viaAuthz, tokenFiles.fresh);
  wrk('Envoy + authz', 'invalid token', viaAuthz, tokenFiles.invalid);

  // OPA-Envoy with the same JWT check in Rego
  if (!SKIP_OPA) {
    const rego = join(dir, 'policy.rego');
    writeFileSync(
      rego,
      `package envoy.authz
import rego.v1
default allow := false
jwks := ${JSON.stringify(jwks)}
token := t if {
  v := input.attributes.request.http.headers.authorization
  startswith(v, "Bearer ")
  t := substring(v, 7, -1)
}
allow if {
  [valid, _, _] := io.jwt.decode_verify(token, {"cert": jwks, "iss": "${issuer.issuer}", "aud": "api"})
  valid
}
`,
    );
    const op = await freePort();
    const oa = await freePort();
    start(join(BIN, 'opa-envoy-plugin'), [
      'run',
      '--server',
      '--addr',
      `127.0.0.1:${oa}`,
      '--log-level',
      'error',
      '--set',
      `plugins.envoy_ext_authz_grpc.addr=127.0.0.1:${op}`,
      '--set',
      'plugins.envoy_ext_authz_grpc.path=envoy/authz/allow',
      '--set',
      'decision_logs.console=false',
      rego,
    ]);
    await waitUntil('opa ready', httpOk(`http://127.0.0.1:${oa}/health?plugins`), { timeoutMs: 30_000 });
    ghz('OPA-Envoy gRPC direct', 'warm-up', op, files.seen, 2000);
    rows.pop();
    ghz('OPA-Envoy gRPC direct', 'seen token', op, files.seen, 40_000);
    ghz('OPA-Envoy gRPC direct', 'fresh token', op, files.fresh, N / 2);
    ghz('OPA-Envoy gRPC direct', 'invalid token', op, files.invalid, 40_000);
    ghz('OPA-Envoy gRPC direct', 'seen token @1000 rps', op, files.seen, 10_000, 1000);
    ghz('OPA-Envoy gRPC direct', 'fresh token @1000 rps', op, files.freshRate, 10_000, 1000);
    const viaOpa = await envoy('envoy-opa', extAuthz('opa'), grpcCluster('opa', op));
    wrk('Envoy + OPA-Envoy', 'seen token', viaOpa, tokenFiles.seen);
    wrk('Envoy + OPA-Envoy', 'fresh token', viaOpa, tokenFiles.fresh);
    wrk('Envoy + OPA-Envoy', 'invalid token', viaOpa, tokenFiles.invalid);
  }

  // Envoy jwt_authn (in-process ceiling)
  const jwtAuthn = `                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        main:
                          issuer: "${issuer.issuer}"
                          audiences: [api]
                          local_jwks: { inline_string: ${JSON.stringify(jwks)} }
                          jwt_cache_config: { jwt_cache_size: 100 }
                      rules: [ { match: { prefix: "/" }, requires: { provider_name: main } } ]`;
  const viaJwtAuthn = await envoy('envoy-jwt-authn', jwtAuthn, '    []');
  wrk('Envoy jwt_authn', 'seen token', viaJwtAuthn, tokenFiles.seen);
  wrk('Envoy jwt_authn', 'fresh token', viaJwtAuthn, tokenFiles.fresh);
  wrk('Envoy jwt_authn', 'invalid token', viaJwtAuthn, tokenFiles.invalid);

  await issuer.stop();
  process.stdout.write(
    `\nduration ${DURATION}s per run, concurrency ${CONC}, ${process.env['HOSTNAME'] ?? ''}\n`,
  );
  process.stdout.write(
    '| target | scenario | req/s | p50 ms | p99 ms | status |\n|---|---|---:|---:|---:|---|\n',
  );
  for (const r of rows)
    process.stdout.write(
      `| ${r.target} | ${r.scenario} | ${r.rps} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.errors} |\n`,
    );
}

for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench failed: ${String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
