import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, it, before } from 'mocha';
import { Stack, ROOT } from '../harness/stack.ts';
import { applyEmissaryCrds, EMISSARY_CRD_NAMES, startKube, type KubeHandle } from '../harness/kube.ts';
import {
  assertAcmeRbacByImpersonation,
  assertAcmeTokenConfined,
  assertAcmeTokenHostsAndSecrets,
  assertAcmeAdmission,
  assertNetworkPolicies,
  assertRedis,
  assertNoEmissaryCrds,
  assertWorkloads,
  docs,
  layoutOf,
  type Layout,
  type Obj,
} from './deploy-assertions.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');

describe('deploy/kubernetes applies to a real kube-apiserver', function () {
  const stack = new Stack('kube-apply').install();
  let kube: KubeHandle;
  let base: Obj[];
  let baseText: string;

  const render = (dir: string): string => kube.kubectl('kustomize', dir);
  let layout: Layout;
  const getJson = <T = Obj>(...args: string[]): T =>
    JSON.parse(kube.kubectl('get', ...args, '-o', 'json')) as T;

  before(async function () {
    this.timeout(120_000);
    kube = await startKube(stack);
    baseText = render(DEPLOY);
    base = docs(baseText);
    layout = layoutOf(base);
  });

  it("applies Emissary's own CRDs (v3alpha1 only, structural) and they become Established", function () {
    this.timeout(60_000);
    applyEmissaryCrds(kube);
    for (const name of EMISSARY_CRD_NAMES) {
      const crd = getJson<{
        spec: {
          preserveUnknownFields?: boolean;
          conversion?: { strategy: string };
          versions: Array<{
            name: string;
            served: boolean;
            storage: boolean;
            subresources?: { status?: unknown };
          }>;
        };
        status: { conditions: Array<{ type: string; status: string }> };
      }>('crd', name);
      assert.deepEqual(
        crd.spec.versions.map((v) => [v.name, v.served, v.storage]),
        [['v3alpha1', true, true]],
        name,
      );
      assert.notEqual(crd.spec.preserveUnknownFields, true, name);
      assert.equal(crd.spec.conversion?.strategy ?? 'None', 'None', name);
      // NonStructuralSchema would be reported as a condition.
      assert.ok(
        !crd.status.conditions.some((c) => c.type === 'NonStructuralSchema' && c.status === 'True'),
        name,
      );
      if (name === 'hosts.getambassador.io') assert.deepEqual(crd.spec.versions[0]?.subresources?.status, {});
    }
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
    const rv = (): string =>
      getJson('deployment', 'acme', '-n', layout.acmeNs).metadata.resourceVersion ?? '';
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
    assertWorkloads(kube, layout);
  });

  it('NetworkPolicies: data ports from Emissary only, admin ports from Prometheus only, egress confined (read back from the server)', function () {
    assertNetworkPolicies(kube, layout);
  });

  it('Redis exists where REDIS_URL points: one hardened replica, no persistence (issue 10 #2)', function () {
    assertRedis(kube, layout);
  });

  it('renders no getambassador.io CRD or resource: the base never installs or overwrites Emissary CRDs', function () {
    assertNoEmissaryCrds(base);
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
    const rls = getJson<{
      spec: { domain: string; failure_mode_deny: boolean; protocol_version: string; timeout_ms: number };
    }>('ratelimitservice', 'extsvc-ratelimit', '-n', 'default');
    // Emissary's defaults (issue 10 #3): domain "ambassador" everywhere it must agree; the timeout is
    // set explicitly (Emissary's 20 ms default would turn brief stalls into "allow").
    assert.equal(rls.spec.domain, 'ambassador');
    assert.equal(rls.spec.protocol_version, 'v3');
    assert.equal(rls.spec.failure_mode_deny, false);
    assert.ok(rls.spec.timeout_ms >= 20, `timeout_ms ${rls.spec.timeout_ms}`);
    const rl = getJson<{ data: Record<string, string> }>('configmap', 'ratelimit-config', '-n', layout.ns);
    const domains = Object.values(rl.data).map((text) => /^domain: (\S+)$/m.exec(text)?.[1]);
    assert.ok(domains.includes(rls.spec.domain), `ratelimit-config domains ${JSON.stringify(domains)}`);
    const host = getJson<{
      metadata: { annotations: Record<string, string> };
      spec: { hostname: string; mappingSelector: { matchLabels: Record<string, string> } };
    }>('host', 'www', '-n', 'default');
    assert.equal(host.metadata.annotations['acme.extsvc.dev/manage'], 'true');
    // The challenge route is acme's to create (issue 10 #6): the example ships none, and acme's
    // CHALLENGE_MAPPING_SERVICE names its own Service's challenge port.
    assert.equal(
      kube.kubectlResult(['get', 'mapping', 'www-acme-challenge', '-n', 'default']).status,
      1,
      'no hand-written challenge Mapping',
    );
    const acmeEnv = getJson<{
      spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } };
    }>('deployment', 'acme', '-n', layout.acmeNs).spec.template.spec.containers[0]?.env;
    const target = acmeEnv?.find((e) => e.name === 'CHALLENGE_MAPPING_SERVICE')?.value ?? '';
    assert.equal(target, `acme.${layout.acmeNs}:8089`);
    const acmeSvc = getJson<{ spec: { ports: Array<{ name: string; port: number }> } }>(
      'service',
      'acme',
      '-n',
      layout.acmeNs,
    );
    assert.equal(acmeSvc.spec.ports.find((p) => p.name === 'challenge')?.port, 8089);
    // The Mapping's labels are keyed by the RateLimitService's domain (Emissary sends only those).
    const api = getJson<{ spec: { labels: Record<string, unknown[]> } }>(
      'mapping',
      'www-api',
      '-n',
      'default',
    );
    assert.deepEqual(Object.keys(api.spec.labels), [rls.spec.domain]);
    assert.equal(api.spec.labels[rls.spec.domain]?.length, 2);

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
    assert.notEqual(layout.acmeNs, layout.ns, 'acme has its own namespace');
    assertAcmeRbacByImpersonation(kube, layout);
  });

  it("acme's own token cannot PATCH authz-policy or ratelimit-config, and can do what acme needs (issue 18 #5)", async function () {
    await assertAcmeTokenConfined(kube, layout);
  });

  it("admission: acme's token may write only its own challenge Mappings and a Host's missing spec.tlsSecret (ValidatingAdmissionPolicy)", async function () {
    this.timeout(60_000);
    await assertAcmeAdmission(kube, layout);
  });

  it("RBAC holds for the acme ServiceAccount's own token (TokenRequest), not only impersonation", async function () {
    await assertAcmeTokenHostsAndSecrets(kube, layout);
    const token = kube.serviceAccountToken(layout.acmeNs, 'acme');
    let r = await kube.raw(
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
