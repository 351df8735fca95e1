// Benchmark: authz Check decisions/s and latency, gRPC direct (ghz) and through Envoy (wrk), for a valid
// ES256 token seen before, a fresh valid token per request and an invalid token; side by side with
// OPA-Envoy (Rego io.jwt.decode_verify) and Envoy's in-process jwt_authn as the ceiling.
// Usage: node bench/authz/run.ts [--duration 8] [--rounds 3] [--concurrency 32] [--skip-opa] [--bin DIR]
//        [--only TEXT] [--variants 'jose=JWT_VERIFY_THREADS=0;workers=JWT_VERIFY_THREADS=1'] [--profile DIR]
// Needs .tools/bin/ghz (and .tools/bin/opa-envoy-plugin for the OPA column), wrk, envoy (scripts/env.sh).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntil } from '../../integration/harness/proc.ts';
import { Issuer } from '../../integration/authz/issuer.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : (process.argv[i + 1] ?? def);
};
/** Directory of ghz and opa-envoy-plugin (`--bin`, default .tools/bin). */
const BIN = arg('bin', join(ROOT, '.tools', 'bin'));
const DURATION = Number(arg('duration', '8'));
const CONC = Number(arg('concurrency', '32'));
const ROUNDS = Number(arg('rounds', '3'));
const LOAD_BEFORE = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
/** Only scenarios whose name contains this (quick A/B runs), e.g. `--only fresh`. */
const ONLY = arg('only', '');
/**
 * authz variants run side by side (one authz process and one Envoy each), as `name=ENV=V,ENV=V;name2=...`;
 * default: one variant with the shipped defaults, named plain `authz`.
 */
const VARIANTS: ReadonlyArray<{ name: string; env: Record<string, string> }> = arg('variants', '')
  ? arg('variants', '')
      .split(';')
      .filter((v) => v.trim() !== '')
      .map((v) => {
        const [name = '', ...rest] = v.split('=');
        const env: Record<string, string> = {};
        for (const kv of rest.join('=').split(',').filter(Boolean)) {
          const i = kv.indexOf('=');
          env[kv.slice(0, i)] = kv.slice(i + 1);
        }
        return { name: `authz[${name}]`, env };
      })
  : [{ name: 'authz', env: {} }];
/** `--profile DIR`: each authz variant runs with --cpu-prof into DIR/<variant> (written on SIGTERM at the end). */
const PROFILE = arg('profile', '');
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
  if (!scenario.includes(ONLY)) return;
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
  if (!scenario.includes(ONLY)) return;
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
  // Token sets: one seen-before token, a pool of POOL distinct valid tokens cycled by every tool (every
  // target caches at most 100 verified tokens, like jwt_authn's jwt_cache_size: 100, so a pool token is
  // never a cache hit), one invalid token (bad signature, the same each time).
  const POOL = 20_000;
  // Valid for 6 h: the fixture's default 10 min is shorter than a full run on a loaded machine, and an
  // expired token turns every later row into a deny (non-2xx in every Envoy row, jwt_authn's included).
  const exp = Math.floor(Date.now() / 1000) + 6 * 3600;
  const seen = await issuer.token({ exp });
  const fresh: string[] = [];
  for (let i = 0; i < POOL; i++) fresh.push(await issuer.token({ sub: `user-${i}`, jti: String(i), exp }));
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
  };
  writeFileSync(files.seen, JSON.stringify([checkMsg(seen)]));
  writeFileSync(files.fresh, JSON.stringify(fresh.map(checkMsg)));
  writeFileSync(files.invalid, JSON.stringify([checkMsg(invalid)]));
  const tokenFiles = {
    seen: join(dir, 'seen.txt'),
    fresh: join(dir, 'fresh.txt'),
    invalid: join(dir, 'invalid.txt'),
  };
  writeFileSync(tokenFiles.seen, `${seen}\n`);
  writeFileSync(tokenFiles.fresh, fresh.join('\n') + '\n');
  writeFileSync(tokenFiles.invalid, `${invalid}\n`);

  // authz
  const policy = join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    `providers:\n  main: { issuer: "${issuer.issuer}", audiences: [api], jwks: ${jwks}, algorithms: [ES256] }\nrules:\n  - { name: api, match: { pathPrefix: /api }, jwt: true }\n`,
  );
  const authz: Array<{ name: string; grpc: number; envoy: number; proc: ChildProcess }> = [];
  for (const v of VARIANTS) {
    const [gp, hp, ap] = [await freePort(), await freePort(), await freePort()];
    const profileArgs = PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${join(PROFILE, v.name.replace(/[^\w-]+/g, '_'))}`]
      : [];
    const proc = start(
      process.execPath,
      [
        ...profileArgs,
        join(ROOT, 'services/authz/src/main.ts'),
        `--grpc-port=${gp}`,
        `--http-port=${hp}`,
        `--admin-port=${ap}`,
        '--grpc-host=127.0.0.1',
        '--http-host=127.0.0.1',
        '--admin-host=127.0.0.1',
        `--policy-file=${policy}`,
        '--token-cache-size=100',
      ],
      {
        LOG_LEVEL: 'warn',
        NODE_OPTIONS: process.env['AUTHZ_NODE_OPTIONS'] ?? '--max-semi-space-size=32',
        ...v.env,
      },
    );
    await waitUntil(`${v.name} ready`, httpOk(`http://127.0.0.1:${ap}/readyz`), { timeoutMs: 30_000 });
    const via = await envoy(`envoy-${authz.length}`, extAuthz('authz'), grpcCluster('authz', gp));
    authz.push({ name: v.name, grpc: gp, envoy: via, proc });
  }

  // OPA-Envoy with the same JWT check in Rego
  let op = 0;
  let viaOpa = 0;
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
    op = await freePort();
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
    viaOpa = await envoy('envoy-opa', extAuthz('opa'), grpcCluster('opa', op));
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

  // Warm-up, then ROUNDS interleaved rounds (the machine is shared: interleaving spreads the noise).
  for (const a of authz) ghz('warm', `warm ${ONLY}`, a.grpc, files.fresh, 3000);
  if (op) ghz('warm', `warm ${ONLY}`, op, files.fresh, 3000);
  rows.length = 0;
  const n = (rps: number) => Math.max(2000, Math.round(rps * DURATION));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [scenario, file] of [
      ['seen token', files.seen],
      ['fresh token', files.fresh],
      ['invalid token', files.invalid],
    ] as const) {
      for (const a of authz) ghz(`${a.name} gRPC direct`, scenario, a.grpc, file, n(4000));
      if (op) ghz('OPA-Envoy gRPC direct', scenario, op, file, n(2500));
    }
    for (const [scenario, file] of [
      ['seen token @500 rps', files.seen],
      ['fresh token @500 rps', files.fresh],
    ] as const) {
      for (const a of authz) ghz(`${a.name} gRPC direct`, scenario, a.grpc, file, 500 * DURATION, 500);
      if (op) ghz('OPA-Envoy gRPC direct', scenario, op, file, 500 * DURATION, 500);
    }
    for (const [scenario, file] of [
      ['seen token', tokenFiles.seen],
      ['fresh token', tokenFiles.fresh],
      ['invalid token', tokenFiles.invalid],
    ] as const) {
      for (const a of authz) wrk(`Envoy + ${a.name}`, scenario, a.envoy, file);
      if (viaOpa) wrk('Envoy + OPA-Envoy', scenario, viaOpa, file);
      wrk('Envoy jwt_authn', scenario, viaJwtAuthn, file);
    }
  }
  await issuer.stop();
  // A CPU profile is written when the process exits on its own: SIGTERM, then wait.
  if (PROFILE)
    await Promise.all(
      authz.map(
        (a) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 15_000);
            a.proc.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            a.proc.kill('SIGTERM');
          }),
      ),
    );

  const median = (xs: number[]): number => {
    const v = [...xs].sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)] ?? 0;
  };
  const keys = [...new Set(rows.map((r) => `${r.target}|${r.scenario}`))];
  process.stdout.write(
    `\n${ROUNDS} rounds x ${DURATION}s, concurrency ${CONC} (fixed-rate rows: open loop), median per row; load before: ${LOAD_BEFORE}\n`,
  );
  process.stdout.write(
    '| target | scenario | req/s | p50 ms | p99 ms | statuses (last round) |\n|---|---|---:|---:|---:|---|\n',
  );
  for (const k of keys) {
    const rs = rows.filter((r) => `${r.target}|${r.scenario}` === k);
    const [target, scenario] = k.split('|');
    process.stdout.write(
      `| ${target} | ${scenario} | ${median(rs.map((r) => r.rps))} | ${median(rs.map((r) => r.p50ms)).toFixed(2)} | ${median(rs.map((r) => r.p99ms)).toFixed(2)} | ${rs.at(-1)?.errors ?? ''} |\n`,
    );
  }
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
