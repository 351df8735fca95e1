import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, it, before } from 'mocha';
import { parseAllDocuments } from 'yaml';
import { Stack, ROOT } from '../harness/stack.ts';
import { startKube, type KubeHandle } from '../harness/kube.ts';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  spec?: Record<string, unknown>;
  [k: string]: unknown;
}

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');

/** The services of the base: container ports by name (probes must hit `admin`). */
const SERVICES = {
  authz: { grpc: 9001, http: 9002, admin: 9003 },
  ratelimit: { grpc: 8081, http: 8080, admin: 6070 },
  acme: { challenge: 8089, admin: 8090 },
} as const;

const SA = (name: string): string => `system:serviceaccount:extsvc:${name}`;

describe('deploy/kubernetes applies to a real kube-apiserver', function () {
  const stack = new Stack('kube-apply').install();
  let kube: KubeHandle;
  let base: Obj[];
  let baseText: string;

  const render = (dir: string): string => kube.kubectl('kustomize', dir);
  const docs = (text: string): Obj[] =>
    parseAllDocuments(text)
      .map((d) => d.toJS() as Obj | null)
      .filter((d): d is Obj => d !== null);
  const getJson = <T = Obj>(...args: string[]): T =>
    JSON.parse(kube.kubectl('get', ...args, '-o', 'json')) as T;
  const canI = (as: string, ...args: string[]): boolean => {
    const r = kube.kubectlResult(['auth', 'can-i', `--as=${as}`, ...args]);
    const answer = r.stdout.trim();
    assert.ok(answer === 'yes' || answer === 'no', `can-i ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return answer === 'yes';
  };

  before(async function () {
    this.timeout(120_000);
    kube = await startKube(stack);
    baseText = render(DEPLOY);
    base = docs(baseText);
  });

  it('applies the CRDs server-side and they become Established', function () {
    this.timeout(60_000);
    const crds = docs(render(join(DEPLOY, 'crds')));
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), [
      'authservices.getambassador.io',
      'hosts.getambassador.io',
      'mappings.getambassador.io',
      'ratelimitservices.getambassador.io',
    ]);
    kube.apply(render(join(DEPLOY, 'crds')));
    kube.kubectl(
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      ...crds.map((c) => `crd/${c.metadata.name}`),
    );
    const host = getJson<{
      spec: { versions: Array<{ name: string; subresources?: { status?: unknown } }> };
    }>('crd', 'hosts.getambassador.io');
    assert.equal(host.spec.versions[0]?.name, 'v3alpha1');
    assert.deepEqual(host.spec.versions[0]?.subresources?.status, {});
  });

  it('applies the base server-side without PodSecurity warnings and reads every object back', function () {
    this.timeout(60_000);
    const r = kube.kubectlResult(
      ['apply', '--server-side', '--field-manager=extsvc-deploy', '-f', '-'],
      baseText,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /violate PodSecurity/, r.stderr);
    for (const o of base) {
      const ns = o.metadata.namespace ? ['-n', o.metadata.namespace] : [];
      const group = o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : '';
      const got = getJson(`${o.kind.toLowerCase()}${group}`, o.metadata.name, ...ns, '--show-managed-fields');
      assert.equal(got.metadata.name, o.metadata.name);
      const managers = (got.metadata as { managedFields?: Array<{ manager: string; operation: string }> })
        .managedFields;
      assert.ok(
        managers?.some((m) => m.manager === 'extsvc-deploy' && m.operation === 'Apply'),
        `${o.kind}/${o.metadata.name} applied by extsvc-deploy: ${JSON.stringify(managers)}`,
      );
    }
    const kinds = base.map((o) => o.kind);
    for (const k of [
      'Namespace',
      'Deployment',
      'Service',
      'ServiceAccount',
      'PodDisruptionBudget',
      'ConfigMap',
    ])
      assert.ok(kinds.includes(k), k);
    // Server-side apply again is a no-op (no conflict, no new resourceVersion).
    const rv = (): string => getJson('deployment', 'acme', '-n', 'extsvc').metadata.resourceVersion ?? '';
    const rv1 = rv();
    kube.apply(baseText, 'extsvc-deploy');
    assert.equal(rv(), rv1);
  });

  it('namespace PodSecurity "restricted" warns about a non-conforming Deployment (the check above can fail)', function () {
    const bad = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'bad', namespace: 'extsvc' },
      spec: {
        selector: { matchLabels: { app: 'bad' } },
        template: {
          metadata: { labels: { app: 'bad' } },
          spec: { containers: [{ name: 'c', image: 'x' }] },
        },
      },
    };
    const r = kube.kubectlResult(
      ['apply', '--server-side', '--dry-run=server', '-f', '-'],
      JSON.stringify(bad),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /violate PodSecurity "restricted/);
  });

  it('every Deployment: admin-port probes, resources, non-root read-only securityContext, PDB, Service ports', function () {
    for (const [name, ports] of Object.entries(SERVICES)) {
      const d = getJson<{
        spec: {
          template: {
            spec: {
              serviceAccountName: string;
              securityContext: { runAsNonRoot: boolean; seccompProfile: { type: string } };
              containers: Array<{
                ports: Array<{ name: string; containerPort: number }>;
                readinessProbe: { httpGet: { path: string; port: string } };
                livenessProbe: { httpGet: { path: string; port: string } };
                resources: { requests: Record<string, string>; limits: Record<string, string> };
                securityContext: {
                  readOnlyRootFilesystem: boolean;
                  allowPrivilegeEscalation: boolean;
                  runAsNonRoot: boolean;
                  capabilities: { drop: string[] };
                };
                volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string }>;
              }>;
            };
          };
        };
      }>('deployment', name, '-n', 'extsvc');
      const pod = d.spec.template.spec;
      assert.equal(pod.serviceAccountName, name);
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
      const c = pod.containers[0];
      assert.ok(c);
      assert.deepEqual(Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort])), ports);
      assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'admin', scheme: 'HTTP' });
      assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'admin', scheme: 'HTTP' });
      assert.ok(
        c.resources.requests['cpu'] && c.resources.requests['memory'] && c.resources.limits['memory'],
      );
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      // ConfigMaps mounted as directories: a subPath mount never sees the kubelet's symlink swap.
      for (const m of c.volumeMounts ?? [])
        assert.equal(m.subPath, undefined, `${name} ${m.name} uses subPath`);

      const svc = getJson<{ spec: { ports: Array<{ name: string; port: number }> } }>(
        'service',
        name,
        '-n',
        'extsvc',
      );
      assert.deepEqual(Object.fromEntries(svc.spec.ports.map((p) => [p.name, p.port])), ports);
      const pdb = getJson<{
        spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
      }>('pdb', name, '-n', 'extsvc');
      assert.equal(pdb.spec.minAvailable, 1);
      assert.deepEqual(pdb.spec.selector.matchLabels, { 'app.kubernetes.io/name': name });
    }
    const rl = getJson<{ data: Record<string, string> }>('configmap', 'ratelimit-config', '-n', 'extsvc');
    assert.match(rl.data['emissary.yaml'] ?? '', /^domain: emissary$/m);
    assert.ok(getJson('configmap', 'authz-policy', '-n', 'extsvc').metadata.name);
  });

  it('applies the Emissary examples; the Host status subresource is separate from spec', async function () {
    this.timeout(30_000);
    const text = render(join(DEPLOY, 'examples'));
    kube.apply(text);
    kube.apply(readFileSync(join(DEPLOY, 'examples', 'authservice-http.yaml'), 'utf8'));
    const auth = getJson<{ spec: { proto: string; auth_service: string } }>(
      'authservice',
      'extsvc-authz',
      '-n',
      'default',
    );
    assert.equal(auth.spec.proto, 'http');
    kube.apply(readFileSync(join(DEPLOY, 'examples', 'authservice-grpc.yaml'), 'utf8'));
    const grpc = getJson<{ spec: { proto: string; protocol_version: string } }>(
      'authservice.getambassador.io',
      'extsvc-authz',
      '-n',
      'default',
    );
    assert.equal(grpc.spec.proto, 'grpc');
    assert.equal(grpc.spec.protocol_version, 'v3');
    const rls = getJson<{ spec: { domain: string; failure_mode_deny: boolean; protocol_version: string } }>(
      'ratelimitservice',
      'extsvc-ratelimit',
      '-n',
      'default',
    );
    assert.equal(rls.spec.domain, 'emissary');
    assert.equal(rls.spec.protocol_version, 'v3');
    assert.equal(rls.spec.failure_mode_deny, false);
    const challenge = getJson<{
      metadata: { labels: Record<string, string> };
      spec: Record<string, unknown>;
    }>('mapping', 'www-acme-challenge', '-n', 'default');
    assert.equal(challenge.spec['prefix'], '/.well-known/acme-challenge/');
    assert.equal(challenge.spec['rewrite'], '');
    assert.equal(challenge.spec['hostname'], 'www.example.com');
    const host = getJson<{
      metadata: { annotations: Record<string, string> };
      spec: { hostname: string; mappingSelector: { matchLabels: Record<string, string> } };
    }>('host', 'www', '-n', 'default');
    assert.equal(host.metadata.annotations['acme.extsvc.dev/manage'], 'true');
    // The challenge Mapping carries all of the Host's mappingSelector labels (Emissary >= 3.2 needs all).
    for (const [k, v] of Object.entries(host.spec.mappingSelector.matchLabels))
      assert.equal(challenge.metadata.labels[k], v);
    const api = getJson<{ spec: { labels: { emissary: unknown[] } } }>('mapping', 'www-api', '-n', 'default');
    assert.equal(api.spec.labels.emissary.length, 2);

    // Status goes through /status only; a status written through the main resource is ignored.
    const path = '/apis/getambassador.io/v3alpha1/namespaces/default/hosts/www';
    const merge = 'application/merge-patch+json';
    let r = await kube.raw('PATCH', path, { status: { state: 'Ready' } }, { contentType: merge });
    assert.equal(r.status, 200);
    assert.equal((r.body as { status?: unknown }).status, undefined);
    r = await kube.raw(
      'PATCH',
      `${path}/status`,
      { status: { state: 'Ready', phaseCompleted: 'NA' } },
      { contentType: merge },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((r.body as { status: unknown }).status, { state: 'Ready', phaseCompleted: 'NA' });
    // The schema's enum rejects a state Emissary does not know.
    r = await kube.raw('PATCH', `${path}/status`, { status: { state: 'Done' } }, { contentType: merge });
    assert.equal(r.status, 422);
  });

  it('RBAC: acme gets exactly hosts read, hosts/status write, Secrets/Events where it serves, Leases at home', function () {
    const acme = SA('acme');
    // Hosts, cluster-wide read, status write only.
    assert.equal(canI(acme, 'list', 'hosts.getambassador.io', '-A'), true);
    assert.equal(canI(acme, 'watch', 'hosts.getambassador.io', '-A'), true);
    assert.equal(
      canI(acme, 'update', 'hosts.getambassador.io', '--subresource=status', '-n', 'default'),
      true,
    );
    assert.equal(canI(acme, 'patch', 'hosts.getambassador.io', '--subresource=status', '-n', 'team-a'), true);
    assert.equal(canI(acme, 'update', 'hosts.getambassador.io', '-n', 'default'), false);
    assert.equal(canI(acme, 'delete', 'hosts.getambassador.io', '-n', 'default'), false);
    // Secrets: only in served namespaces, never list/watch/delete.
    assert.equal(canI(acme, 'patch', 'secrets', '-n', 'default'), true);
    assert.equal(canI(acme, 'create', 'secrets', '-n', 'default'), true);
    assert.equal(canI(acme, 'get', 'secrets', '-n', 'default'), true);
    assert.equal(canI(acme, 'list', 'secrets', '-n', 'default'), false);
    assert.equal(canI(acme, 'delete', 'secrets', '-n', 'default'), false);
    assert.equal(canI(acme, 'delete', 'secrets', '-A'), false);
    assert.equal(canI(acme, 'get', 'secrets', '-n', 'kube-system'), false);
    assert.equal(canI(acme, 'patch', 'secrets', '-n', 'extsvc'), true); // account keys
    assert.equal(canI(acme, 'list', 'secrets', '-n', 'extsvc'), false);
    assert.equal(canI(acme, 'create', 'events', '-n', 'default'), true);
    assert.equal(canI(acme, 'create', 'mappings.getambassador.io', '-n', 'default'), true);
    assert.equal(canI(acme, 'create', 'mappings.getambassador.io', '-n', 'kube-system'), false);
    // Leases and challenge ConfigMaps only in its own namespace.
    assert.equal(canI(acme, 'update', 'leases.coordination.k8s.io', '-n', 'extsvc'), true);
    assert.equal(canI(acme, 'update', 'leases.coordination.k8s.io', '-n', 'default'), false);
    assert.equal(canI(acme, 'create', 'configmaps', '-n', 'extsvc'), true);
    assert.equal(canI(acme, 'create', 'configmaps', '-n', 'default'), false);
    // authz and ratelimit have no API access at all.
    for (const sa of ['authz', 'ratelimit']) {
      assert.equal(canI(SA(sa), 'get', 'secrets', '-n', 'extsvc'), false);
      assert.equal(canI(SA(sa), 'get', 'configmaps', '-n', 'extsvc'), false);
      assert.equal(canI(SA(sa), 'list', 'hosts.getambassador.io', '-A'), false);
    }
  });

  it("RBAC holds for the acme ServiceAccount's own token (TokenRequest), not only impersonation", async function () {
    const token = kube.serviceAccountToken('extsvc', 'acme');
    const secret = (ns: string): unknown => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'probe', namespace: ns },
      type: 'Opaque',
      data: {},
    });
    let r = await kube.raw('POST', '/api/v1/namespaces/default/secrets', secret('default'), { token });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    r = await kube.raw('POST', '/api/v1/namespaces/kube-system/secrets', secret('kube-system'), { token });
    assert.equal(r.status, 403);
    r = await kube.raw('DELETE', '/api/v1/namespaces/default/secrets/probe', undefined, { token });
    assert.equal(r.status, 403);
    r = await kube.raw('GET', '/api/v1/secrets', undefined, { token });
    assert.equal(r.status, 403);
    r = await kube.raw('GET', '/apis/getambassador.io/v3alpha1/hosts', undefined, { token });
    assert.equal(r.status, 200);
    r = await kube.raw(
      'PATCH',
      '/apis/getambassador.io/v3alpha1/namespaces/default/hosts/www/status',
      { status: { state: 'Pending' } },
      { token, contentType: 'application/merge-patch+json' },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await kube.raw(
      'PATCH',
      '/apis/getambassador.io/v3alpha1/namespaces/default/hosts/www',
      { spec: { hostname: 'evil.example.com' } },
      { token, contentType: 'application/merge-patch+json' },
    );
    assert.equal(r.status, 403);
  });
});
