import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { parse } from 'yaml';
import { Stack, ROOT } from '../harness/stack.ts';
import { applyEmissaryCrds, helmBin, startKube, type KubeHandle } from '../harness/kube.ts';
import {
  assertAcmeRbacByImpersonation,
  assertAcmeTokenConfined,
  assertAcmeTokenHostsAndSecrets,
  assertAcmeAdmission,
  assertNetworkPolicies,
  assertNoEmissaryCrds,
  assertRedis,
  assertWorkloads,
  docs,
  getJson,
  layoutOf,
  type Layout,
  type Obj,
  type Peers,
} from './deploy-assertions.ts';

const CHART = join(ROOT, 'deploy', 'helm', 'extsvc');
const KUSTOMIZE = join(ROOT, 'deploy', 'kubernetes');
const PROMETHEUS_CRDS = join(ROOT, 'integration', 'kube', 'fixtures', 'prometheus-operator-crds.yaml');
const HELM_LABELS = ['app.kubernetes.io/instance', 'app.kubernetes.io/managed-by', 'helm.sh/chart'];
const MONITORING_APIS = [
  '--api-versions',
  'monitoring.coreos.com/v1/ServiceMonitor',
  '--api-versions',
  'monitoring.coreos.com/v1/PrometheusRule',
];
const EMISSARY_APIS = [
  '--api-versions',
  'getambassador.io/v3alpha1/AuthService',
  '--api-versions',
  'getambassador.io/v3alpha1/RateLimitService',
];

/** JSON with object keys sorted: equal objects give equal strings. */
const canonical = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(
          Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : x,
  );
const id = (o: Obj): string => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;

// The chart in deploy/helm/extsvc with a real helm v4 (built from the Go module proxy, cached): lint,
// template (the same objects as the kustomize base), install into a real kube-apiserver and the same
// assertions as apply.test.ts on what the server holds.
describe('deploy/helm/extsvc with helm v4: lint, template, install into a real kube-apiserver', function () {
  const stack = new Stack('kube-helm').install();
  let helmEnv: NodeJS.ProcessEnv;
  let kube: KubeHandle;

  const helm = (args: readonly string[]): { status: number; stdout: string; stderr: string } => {
    const r = spawnSync(helmBin(), args, { encoding: 'utf8', cwd: ROOT, env: helmEnv, timeout: 120_000 });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
  };
  const template = (...args: string[]): Obj[] => {
    const r = helm(['template', 'extsvc', CHART, '--namespace', 'extsvc', ...args]);
    assert.equal(r.status, 0, r.stderr);
    return docs(r.stdout);
  };
  const templateFails = (...args: string[]): string => {
    const r = helm(['template', 'extsvc', CHART, '--namespace', 'extsvc', ...args]);
    assert.notEqual(r.status, 0, `helm template ${args.join(' ')} succeeded`);
    return r.stderr;
  };

  before(async function () {
    this.timeout(30 * 60_000); // the first run builds helm
    helmBin();
    // Hermetic helm: its config, cache and data directories live in the test's temporary directory.
    helmEnv = {
      ...process.env,
      HELM_CONFIG_HOME: stack.mkdir('helm-config'),
      HELM_CACHE_HOME: stack.mkdir('helm-cache'),
      HELM_DATA_HOME: stack.mkdir('helm-data'),
    };
    kube = await startKube(stack);
  });

  it('helm lint --strict passes', () => {
    const r = helm(['lint', '--strict', CHART]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('helm template with the default values renders exactly the objects of the kustomize base', () => {
    const chart = template();
    const base = docs(execFileSync('kubectl', ['kustomize', KUSTOMIZE], { encoding: 'utf8' }));
    // Helm never creates its release namespace (helm install -n extsvc, or --create-namespace);
    // the base creates it with its Pod Security labels.
    const expected = base.filter((o) => !(o.kind === 'Namespace' && o.metadata.name === 'extsvc'));
    const strip = (o: Obj): Obj => {
      for (const k of HELM_LABELS) delete o.metadata.labels?.[k];
      return o;
    };
    const got = new Map(chart.map((o) => [id(o), canonical(strip(o))]));
    const want = new Map(expected.map((o) => [id(o), canonical(o)]));
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
    for (const [k, v] of want) assert.equal(got.get(k), v, k);
    assertNoEmissaryCrds(chart);
  });

  it('ServiceMonitor and PrometheusRule only when the Prometheus Operator API exists; the rule is deploy/monitoring/alerts.yaml', () => {
    assert.deepEqual(
      template()
        .filter((o) => o.apiVersion.startsWith('monitoring.coreos.com/'))
        .map(id),
      [],
    );
    const objs = template(...MONITORING_APIS).filter((o) => o.apiVersion === 'monitoring.coreos.com/v1');
    assert.deepEqual(objs.map((o) => o.kind).sort(), ['PrometheusRule', 'ServiceMonitor']);
    const rule = objs.find((o) => o.kind === 'PrometheusRule') as unknown as { spec: { groups: unknown } };
    const alerts = parse(readFileSync(join(ROOT, 'deploy', 'monitoring', 'alerts.yaml'), 'utf8')) as {
      groups: unknown;
    };
    assert.equal(canonical(rule.spec.groups), canonical(alerts.groups));
    const sm = objs.find((o) => o.kind === 'ServiceMonitor') as unknown as {
      spec: { endpoints: Array<{ port: string }>; namespaceSelector: { matchNames: string[] } };
    };
    assert.deepEqual(
      sm.spec.endpoints.map((e) => e.port),
      ['admin'],
    );
    assert.deepEqual(sm.spec.namespaceSelector.matchNames, ['extsvc', 'extsvc-acme']);
  });

  it('Emissary resources as values: one path prefix and one header list for the HTTP AuthService and the authz Deployment', () => {
    const objs = template(
      ...EMISSARY_APIS,
      '--set',
      'emissary.authService.enabled=true',
      '--set',
      'emissary.authService.proto=http',
      '--set',
      'emissary.rateLimitService.enabled=true',
      '--set',
      'authz.httpPathPrefix=/checks',
      '--set-json',
      'emissary.authService.allowedAuthorizationHeaders=["content-type","x-user-id","x-tenant"]',
    );
    const auth = objs.find((o) => o.kind === 'AuthService') as unknown as { spec: Record<string, unknown> };
    assert.equal(auth.spec['path_prefix'], '/checks');
    assert.equal(auth.spec['auth_service'], 'authz.extsvc:9002');
    assert.ok((auth.spec['allowed_request_headers'] as string[]).includes('origin'));
    assert.ok((auth.spec['allowed_authorization_headers'] as string[]).includes('content-type'));
    const authz = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'authz') as unknown as {
      spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value: string }> }> } } };
    };
    const env = authz.spec.template.spec.containers[0]?.env ?? [];
    assert.equal(env.find((e) => e.name === 'HTTP_PATH_PREFIX')?.value, '/checks');
    // What authz may set is what this AuthService delivers: Emissary's fixed list + the configured ones.
    assert.deepEqual((env.find((e) => e.name === 'HTTP_UPSTREAM_HEADERS')?.value ?? '').split(',').sort(), [
      'authorization',
      'content-type',
      'location',
      'proxy-authenticate',
      'set-cookie',
      'www-authenticate',
      'x-tenant',
      'x-user-id',
    ]);
    assert.deepEqual(auth.spec['allowed_authorization_headers'], ['content-type', 'x-user-id', 'x-tenant']);
    const rls = objs.find((o) => o.kind === 'RateLimitService') as unknown as {
      spec: Record<string, unknown>;
    };
    assert.equal(rls.spec['domain'], 'ambassador');
    assert.equal(rls.spec['service'], 'ratelimit.extsvc:8081');
    const rlConfig = objs.find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name === 'ratelimit-config',
    ) as unknown as {
      data: Record<string, string>;
    };
    assert.ok(Object.values(rlConfig.data).some((t) => /^domain: ambassador$/m.test(t)));
    assertNoEmissaryCrds(objs.filter((o) => o.apiVersion !== 'getambassador.io/v3alpha1'));
    assert.ok(!objs.some((o) => o.kind === 'CustomResourceDefinition'));
  });

  it('external Redis: no Redis objects, REDIS_URL is the given URL, ratelimit egress to its port', () => {
    const objs = template(
      '--set',
      'redis.enabled=false',
      '--set',
      'redis.externalUrl=redis://cache.example:6380',
      '--set',
      'networkPolicy.externalRedis.port=6380',
    );
    const np = objs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'ratelimit') as unknown as {
      spec: { egress: Array<{ ports: Array<{ port: number }> }> };
    };
    assert.ok(
      np.spec.egress.some((e) => e.ports.some((p) => p.port === 6380)),
      JSON.stringify(np.spec.egress),
    );
    assert.ok(!np.spec.egress.some((e) => e.ports.some((p) => p.port === 6379)));
    assert.ok(!objs.some((o) => o.metadata.name === 'redis'));
    const rl = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'ratelimit') as unknown as {
      spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value: string }> }> } } };
    };
    assert.equal(
      rl.spec.template.spec.containers[0]?.env.find((e) => e.name === 'REDIS_URL')?.value,
      'redis://cache.example:6380',
    );
  });

  it('refuses unsafe values with a clear error', () => {
    assert.match(
      templateFails('--set', 'acme.namespace=extsvc'),
      /acme\.namespace must differ from the release namespace/,
    );
    assert.match(
      templateFails('--set', 'acme.servedNamespaces={default,extsvc}'),
      /acme\.servedNamespaces must not contain extsvc/,
    );
    assert.match(
      templateFails('--set', 'redis.enabled=false'),
      /memory counters .* set ratelimit\.replicas to 1/,
    );
    assert.equal(template('--set', 'redis.enabled=false', '--set', 'ratelimit.replicas=1').length > 0, true);
    assert.match(
      templateFails('--set', 'emissary.rateLimitService.enabled=true'),
      /serves no getambassador\.io\/v3alpha1 RateLimitService/,
    );
  });

  describe('helm install into the real kube-apiserver', function () {
    let layout: Layout;
    let crdVersions: Map<string, string>;

    const crds = (): Map<string, string> =>
      new Map(
        getJson<{ items: Obj[] }>(kube, 'crd').items.map((c) => [
          c.metadata.name,
          c.metadata.resourceVersion ?? '',
        ]),
      );

    before(function () {
      this.timeout(120_000);
      applyEmissaryCrds(kube);
      kube.apply(readFileSync(PROMETHEUS_CRDS, 'utf8'));
      kube.kubectl(
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        'crd/servicemonitors.monitoring.coreos.com',
        'crd/prometheusrules.monitoring.coreos.com',
      );
      // The release namespace, labelled as README.md says (Pod Security restricted).
      kube.apply(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: {
            name: 'extsvc',
            labels: {
              'pod-security.kubernetes.io/enforce': 'restricted',
              'pod-security.kubernetes.io/warn': 'restricted',
            },
          },
        }),
      );
      crdVersions = crds();
      const r = helm([
        'install',
        'extsvc',
        CHART,
        '--namespace',
        'extsvc',
        '--kubeconfig',
        kube.kubeconfigPath,
        '--set',
        'emissary.authService.enabled=true',
        '--set',
        'emissary.rateLimitService.enabled=true',
      ]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stderr, /violate PodSecurity/, r.stderr);
      layout = layoutOf(
        docs(helm(['get', 'manifest', 'extsvc', '-n', 'extsvc', '--kubeconfig', kube.kubeconfigPath]).stdout),
      );
    });

    it('objects present: probes, resources, securityContext, PDBs, Services, Redis', () => {
      assert.deepEqual(layout, { ns: 'extsvc', acmeNs: 'extsvc-acme' });
      assertWorkloads(kube, layout);
      assertRedis(kube, layout);
      const rls = getJson<{ spec: { domain: string } }>(
        kube,
        'ratelimitservice',
        'extsvc-ratelimit',
        '-n',
        'extsvc',
      );
      assert.equal(rls.spec.domain, 'ambassador');
      const auth = getJson<{ spec: { proto: string } }>(kube, 'authservice', 'extsvc-authz', '-n', 'extsvc');
      assert.equal(auth.spec.proto, 'grpc');
    });

    it('ServiceMonitor and PrometheusRule installed (the operator API exists); no CRD created or changed', () => {
      assert.ok(getJson(kube, 'servicemonitor', 'extsvc', '-n', 'extsvc').metadata.name);
      assert.ok(getJson(kube, 'prometheusrule', 'extsvc', '-n', 'extsvc').metadata.name);
      assert.deepEqual(crds(), crdVersions);
    });

    it('RBAC least privilege, by impersonation and with the acme ServiceAccount token', async function () {
      this.timeout(60_000);
      assertAcmeRbacByImpersonation(kube, layout);
      await assertAcmeTokenConfined(kube, layout);
      await assertAcmeTokenHostsAndSecrets(kube, layout);
    });

    it("admission: acme's token may write only its own challenge Mappings and a Host's missing spec.tlsSecret", async function () {
      this.timeout(60_000);
      await assertAcmeAdmission(kube, layout);
    });

    it('NetworkPolicies as installed, then with other Emissary/Prometheus selectors after helm upgrade', function () {
      this.timeout(60_000);
      assertNetworkPolicies(kube, layout);
      const peers: Peers = {
        emissary: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ambassador' } },
          podSelector: { matchLabels: { product: 'aes' } },
        },
        prometheus: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } },
          podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus', prometheus: 'k8s' } },
        },
      };
      const r = helm([
        'upgrade',
        'extsvc',
        CHART,
        '--namespace',
        'extsvc',
        '--kubeconfig',
        kube.kubeconfigPath,
        '--reuse-values',
        '--set-json',
        `networkPolicy.emissaryPeers=${JSON.stringify([peers.emissary])}`,
        '--set-json',
        `networkPolicy.prometheusPeers=${JSON.stringify([peers.prometheus])}`,
      ]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assertNetworkPolicies(kube, layout, peers);
    });
  });
});
