import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { parse } from 'yaml';
import { Stack, ROOT, envoyBin, type ServiceHandle } from '../harness/stack.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import { docs, type Obj } from './deploy-assertions.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');

// What Emissary's translator (python/ambassador/envoy/v3/v3httpfilter.py) always adds to an HTTP
// AuthService's header lists; the configured ones are added to these.
const EMISSARY_REQUEST_HEADERS = [
  'authorization',
  'cookie',
  'from',
  'proxy-authorization',
  'user-agent',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
];
const EMISSARY_AUTHORIZATION_HEADERS = [
  'location',
  'authorization',
  'proxy-authenticate',
  'set-cookie',
  'www-authenticate',
];

interface AuthServiceSpec {
  auth_service: string;
  proto: string;
  path_prefix?: string;
  timeout_ms?: number;
  allowed_request_headers?: string[];
  allowed_authorization_headers?: string[];
}

/** The ext_authz http_service filter Emissary compiles from an HTTP AuthService. */
function envoyConfig(
  spec: AuthServiceSpec,
  ports: { listen: number; admin: number; authz: number; upstream: number },
): string {
  const patterns = (names: string[]): unknown => ({
    patterns: [...new Set(names)].sort().map((exact) => ({ exact, ignore_case: true })),
  });
  const authorizationHeaders = [
    ...EMISSARY_AUTHORIZATION_HEADERS,
    ...(spec.allowed_authorization_headers ?? []),
  ];
  const cluster = (name: string, port: number): unknown => ({
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } },
          ],
        },
      ],
    },
  });
  return JSON.stringify({
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: ports.admin } } },
    static_resources: {
      listeners: [
        {
          name: 'http',
          address: { socket_address: { address: '127.0.0.1', port_value: ports.listen } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'ingress',
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream' } }],
                        },
                      ],
                    },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.ext_authz',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
                          transport_api_version: 'V3',
                          failure_mode_allow: false,
                          http_service: {
                            server_uri: {
                              uri: `http://${spec.auth_service}`,
                              cluster: 'authz',
                              timeout: `${(spec.timeout_ms ?? 5000) / 1000}s`,
                            },
                            path_prefix: spec.path_prefix ?? '',
                            authorization_request: {
                              allowed_headers: patterns([
                                ...EMISSARY_REQUEST_HEADERS,
                                ...(spec.allowed_request_headers ?? []),
                              ]),
                            },
                            authorization_response: {
                              allowed_upstream_headers: patterns(authorizationHeaders),
                              allowed_client_headers: patterns(authorizationHeaders),
                            },
                          },
                        },
                      },
                      {
                        name: 'envoy.filters.http.router',
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [cluster('authz', ports.authz), cluster('upstream', ports.upstream)],
    },
  });
}

// The shipped HTTP AuthService example, compiled the way Emissary compiles it, in front of the real
// authz configured like its Deployment (policy ConfigMap, HTTP_PATH_PREFIX): issue 10 #4.
describe('examples/authservice-http.yaml through Envoy as Emissary compiles it, authz as deployed', function () {
  const stack = new Stack('kube-authservice-http').install();
  let authz: ServiceHandle;
  let upstream: { port: number; readonly requests: number };
  let listen: number;
  let spec: AuthServiceSpec;
  let env: Record<string, string>;

  before(async function () {
    this.timeout(60_000);
    const base = docs(execFileSync('kubectl', ['kustomize', DEPLOY], { encoding: 'utf8' }));
    const find = (kind: string, name: string): Obj => {
      const o = base.find((x) => x.kind === kind && x.metadata.name === name);
      assert.ok(o, `${kind}/${name}`);
      return o;
    };
    spec = (
      parse(readFileSync(join(DEPLOY, 'examples', 'authservice-http.yaml'), 'utf8')) as {
        spec: AuthServiceSpec;
      }
    ).spec;
    assert.equal(spec.proto, 'http');
    // The authz container's environment as the Deployment sets it.
    const container = (
      find('Deployment', 'authz') as unknown as {
        spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } };
      }
    ).spec.template.spec.containers[0];
    env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.value ?? '']));
    const policyDir = stack.mkdir('policy');
    const cm = find('ConfigMap', 'authz-policy') as unknown as { data: Record<string, string> };
    for (const [file, text] of Object.entries(cm.data)) writeFileSync(join(policyDir, file), text);
    authz = await stack.service('authz', {
      args: [`--policy-file=${join(policyDir, 'policy.yaml')}`],
      env: Object.fromEntries(
        ['HTTP_PATH_PREFIX', 'HTTP_UPSTREAM_HEADERS'].flatMap((k) =>
          env[k] === undefined ? [] : [[k, env[k]]],
        ),
      ),
      readyPath: '/healthz',
    });
    upstream = await stack.echo();
    listen = await freePort();
    const admin = await freePort();
    const config = join(stack.mkdir('envoy'), 'envoy.json');
    writeFileSync(
      config,
      envoyConfig(spec, { listen, admin, authz: authz.ports.http ?? 0, upstream: upstream.port }),
    );
    const proc = stack.spawn('envoy', envoyBin(), [
      '-c',
      config,
      '--use-dynamic-base-id',
      '--log-level',
      'warn',
      '--concurrency',
      '1',
    ]);
    await waitUntil(
      'envoy /ready',
      async () => (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200,
      {
        timeoutMs: 30_000,
        abort: () => (proc.exitStatus ? `exited early:\n${proc.logs()}` : undefined),
      },
    );
  });

  it('path_prefix of the AuthService equals HTTP_PATH_PREFIX of the authz Deployment: a public rule is allowed', async () => {
    const before = upstream.requests;
    const r = await fetch(`http://127.0.0.1:${listen}/healthz`);
    assert.equal(r.status, 200, await r.text());
    assert.equal(upstream.requests, before + 1);
    assert.ok(spec.path_prefix, 'the example sets a path_prefix');
  });

  it('a CORS preflight reaches authz with Origin and Access-Control-Request-Method and is allowed', async () => {
    const before = upstream.requests;
    const r = await fetch(`http://127.0.0.1:${listen}/api/things`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.equal(r.status, 200, await r.text());
    assert.equal(upstream.requests, before + 1, 'the preflight reached the app');
  });

  it('a request without credentials is denied 401 with the JSON body and its content-type', async () => {
    const before = upstream.requests;
    const r = await fetch(`http://127.0.0.1:${listen}/api/things`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(JSON.parse(await r.text()), 'JSON body');
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal(upstream.requests, before, 'the app saw nothing');
  });

  it('every identity header the policy sets is in allowed_authorization_headers', () => {
    const cm = docs(execFileSync('kubectl', ['kustomize', DEPLOY], { encoding: 'utf8' })).find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name === 'authz-policy',
    ) as unknown as { data: Record<string, string> };
    const policy = parse(cm.data['policy.yaml'] ?? '') as { identity?: { headers?: Record<string, string> } };
    const allowed = new Set([
      ...EMISSARY_AUTHORIZATION_HEADERS,
      ...(spec.allowed_authorization_headers ?? []),
    ]);
    for (const h of Object.keys(policy.identity?.headers ?? {}))
      assert.ok(allowed.has(h.toLowerCase()), `${h} would never reach the upstream`);
    assert.ok(allowed.has('content-type'));
  });

  it("authz's HTTP_UPSTREAM_HEADERS is what this AuthService delivers, so a policy setting another header is refused at load", () => {
    const delivered = new Set([
      ...EMISSARY_AUTHORIZATION_HEADERS,
      ...(spec.allowed_authorization_headers ?? []),
    ]);
    assert.deepEqual(new Set((env['HTTP_UPSTREAM_HEADERS'] ?? '').split(',')), delivered);
    const dir = stack.mkdir('policy-x-tenant');
    writeFileSync(
      join(dir, 'policy.yaml'),
      'identity:\n  headers:\n    x-tenant: tenant\nrules:\n  - name: all\n    match: { pathPrefix: / }\n    public: true\n',
    );
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'services', 'authz', 'src', 'main.ts'), `--policy-file=${join(dir, 'policy.yaml')}`],
      {
        encoding: 'utf8',
        timeout: 20_000,
        env: { ...process.env, HTTP_UPSTREAM_HEADERS: env['HTTP_UPSTREAM_HEADERS'] },
      },
    );
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /x-tenant/);
  });
});
