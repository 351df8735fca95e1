// Assertions shared by the kustomize base (apply.test.ts) and the Helm chart (helm.test.ts): both must
// put the same objects in a real kube-apiserver, so both suites run the same checks on what the
// server holds after the install.
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import type { KubeHandle } from '../harness/kube.ts';

/** A Kubernetes object as rendered or read back. */
export interface Obj {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
  spec?: Record<string, unknown>;
  [k: string]: unknown;
}

/** Where an install put things: the namespace of authz/ratelimit/redis, and acme's own. */
export interface Layout {
  readonly ns: string;
  readonly acmeNs: string;
}

/** The services of the base: container ports by name (probes must hit `admin`). */
export const SERVICES = {
  authz: { grpc: 9001, http: 9002, admin: 9003 },
  ratelimit: { grpc: 8081, http: 8080, admin: 6070 },
  acme: { challenge: 8089, admin: 8090 },
} as const;

/** Parses a multi-document YAML stream, dropping empty documents. */
export function docs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null && typeof d === 'object');
}

/** The namespaces a rendered install uses, read from where the authz and acme Deployments are. */
export function layoutOf(objects: readonly Obj[]): Layout {
  const nsOf = (name: string): string => {
    const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name);
    assert.ok(d?.metadata.namespace, `Deployment ${name} with a namespace in the render`);
    return d.metadata.namespace;
  };
  return { ns: nsOf('authz'), acmeNs: nsOf('acme') };
}

/** No install may create or overwrite Emissary's CRDs (the cluster's Emissary owns them). */
export function assertNoEmissaryCrds(objects: readonly Obj[]): void {
  for (const o of objects) {
    assert.ok(
      !(o.kind === 'CustomResourceDefinition' && o.metadata.name.endsWith('.getambassador.io')),
      `the install renders CRD ${o.metadata.name}`,
    );
    assert.notEqual(o.apiVersion.split('/')[0], 'getambassador.io', `${o.kind}/${o.metadata.name}`);
  }
}

/** kubectl get ... -o json, parsed. */
export function getJson<T = Obj>(kube: KubeHandle, ...args: string[]): T {
  return JSON.parse(kube.kubectl('get', ...args, '-o', 'json')) as T;
}

function canI(kube: KubeHandle, as: string, ...args: string[]): boolean {
  const r = kube.kubectlResult(['auth', 'can-i', `--as=${as}`, ...args]);
  const answer = r.stdout.trim();
  assert.ok(answer === 'yes' || answer === 'no', `can-i ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
  return answer === 'yes';
}

interface PodSpecView {
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
    env?: Array<{ name: string; value?: string }>;
  }>;
}

/** Every Deployment: admin-port probes, resources, non-root read-only securityContext, PDB, Service ports. */
export function assertWorkloads(kube: KubeHandle, layout: Layout): void {
  for (const [name, ports] of Object.entries(SERVICES)) {
    const ns = name === 'acme' ? layout.acmeNs : layout.ns;
    const d = getJson<{ spec: { template: { spec: PodSpecView } } }>(kube, 'deployment', name, '-n', ns);
    const pod = d.spec.template.spec;
    assert.equal(pod.serviceAccountName, name);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    const c = pod.containers[0];
    assert.ok(c);
    assert.deepEqual(Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort])), ports);
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'admin', scheme: 'HTTP' });
    assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'admin', scheme: 'HTTP' });
    assert.ok(c.resources.requests['cpu'] && c.resources.requests['memory'] && c.resources.limits['memory']);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    // ConfigMaps mounted as directories: a subPath mount never sees the kubelet's symlink swap.
    for (const m of c.volumeMounts ?? [])
      assert.equal(m.subPath, undefined, `${name} ${m.name} uses subPath`);

    const svc = getJson<{ spec: { ports: Array<{ name: string; port: number }> } }>(
      kube,
      'service',
      name,
      '-n',
      ns,
    );
    assert.deepEqual(Object.fromEntries(svc.spec.ports.map((p) => [p.name, p.port])), ports);
    const pdb = getJson<{
      spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    }>(kube, 'pdb', name, '-n', ns);
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, { 'app.kubernetes.io/name': name });
  }
  assert.ok(getJson(kube, 'configmap', 'ratelimit-config', '-n', layout.ns).metadata.name);
  assert.ok(getJson(kube, 'configmap', 'authz-policy', '-n', layout.ns).metadata.name);
}

/** acme's RBAC seen through `kubectl auth can-i --as` (impersonation). */
export function assertAcmeRbacByImpersonation(kube: KubeHandle, layout: Layout): void {
  const acme = `system:serviceaccount:${layout.acmeNs}:acme`;
  const yes = (...args: string[]): void => assert.equal(canI(kube, acme, ...args), true, args.join(' '));
  const no = (...args: string[]): void => assert.equal(canI(kube, acme, ...args), false, args.join(' '));
  // Hosts, cluster-wide read, status write only.
  yes('list', 'hosts.getambassador.io', '-A');
  yes('watch', 'hosts.getambassador.io', '-A');
  yes('update', 'hosts.getambassador.io', '--subresource=status', '-n', 'default');
  yes('patch', 'hosts.getambassador.io', '--subresource=status', '-n', 'team-a');
  no('update', 'hosts.getambassador.io', '-n', 'default');
  no('delete', 'hosts.getambassador.io', '-n', 'default');
  // Secrets: only in served namespaces and its own, never list/watch/delete.
  yes('patch', 'secrets', '-n', 'default');
  yes('create', 'secrets', '-n', 'default');
  yes('get', 'secrets', '-n', 'default');
  no('list', 'secrets', '-n', 'default');
  no('delete', 'secrets', '-n', 'default');
  no('delete', 'secrets', '-A');
  no('get', 'secrets', '-n', 'kube-system');
  yes('patch', 'secrets', '-n', layout.acmeNs); // account keys
  no('list', 'secrets', '-n', layout.acmeNs);
  yes('create', 'events', '-n', 'default');
  yes('create', 'mappings.getambassador.io', '-n', 'default');
  no('create', 'mappings.getambassador.io', '-n', 'kube-system');
  // Leases and challenge ConfigMaps only in its own namespace.
  yes('update', 'leases.coordination.k8s.io', '-n', layout.acmeNs);
  no('update', 'leases.coordination.k8s.io', '-n', 'default');
  yes('create', 'configmaps', '-n', layout.acmeNs);
  yes('watch', 'configmaps', '-n', layout.acmeNs);
  no('create', 'configmaps', '-n', 'default');
  // Nothing at all where authz and ratelimit keep their configuration (issue 18 #5).
  for (const verb of ['get', 'list', 'create', 'update', 'patch', 'delete']) {
    no(verb, 'configmaps', '-n', layout.ns);
    no(verb, 'secrets', '-n', layout.ns);
  }
  // authz and ratelimit have no API access at all.
  for (const sa of ['authz', 'ratelimit']) {
    const who = `system:serviceaccount:${layout.ns}:${sa}`;
    assert.equal(canI(kube, who, 'get', 'secrets', '-n', layout.ns), false);
    assert.equal(canI(kube, who, 'get', 'configmaps', '-n', layout.ns), false);
    assert.equal(canI(kube, who, 'list', 'hosts.getambassador.io', '-A'), false);
  }
}

const MERGE = 'application/merge-patch+json';

/**
 * The attack of issue 18 #5, with the acme ServiceAccount's own token (TokenRequest): rewrite the
 * authz policy into one public rule, raise the rate limits, plant a ConfigMap or read a Secret next to
 * them. Each is refused and the ConfigMaps are unchanged; what acme needs in its own namespace works.
 */
export async function assertAcmeTokenConfined(kube: KubeHandle, layout: Layout): Promise<void> {
  const token = kube.serviceAccountToken(layout.acmeNs, 'acme');
  const cmPath = (ns: string, name = ''): string =>
    `/api/v1/namespaces/${ns}/configmaps${name ? `/${name}` : ''}`;
  const before = new Map<string, string>();
  for (const name of ['authz-policy', 'ratelimit-config'])
    before.set(name, JSON.stringify((await kube.raw('GET', cmPath(layout.ns, name))).body));

  const publicPolicy = 'rules:\n  - name: all\n    match: { pathPrefix: / }\n    public: true\n';
  let r = await kube.raw(
    'PATCH',
    cmPath(layout.ns, 'authz-policy'),
    { data: { 'policy.yaml': publicPolicy } },
    { token, contentType: MERGE },
  );
  assert.equal(r.status, 403, `acme token PATCHed ${layout.ns}/authz-policy: ${r.status}`);
  r = await kube.raw(
    'PATCH',
    cmPath(layout.ns, 'ratelimit-config'),
    { data: { 'ambassador.yaml': 'domain: ambassador\ndescriptors: []\n' } },
    { token, contentType: MERGE },
  );
  assert.equal(r.status, 403, `acme token PATCHed ${layout.ns}/ratelimit-config: ${r.status}`);
  r = await kube.raw('DELETE', cmPath(layout.ns, 'ratelimit-config'), undefined, { token });
  assert.equal(r.status, 403);
  r = await kube.raw(
    'POST',
    cmPath(layout.ns),
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'planted', namespace: layout.ns }, data: {} },
    { token },
  );
  assert.equal(r.status, 403);
  r = await kube.raw('GET', `/api/v1/namespaces/${layout.ns}/secrets`, undefined, { token });
  assert.equal(r.status, 403);
  r = await kube.raw(
    'POST',
    `/api/v1/namespaces/${layout.ns}/secrets`,
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'planted', namespace: layout.ns }, data: {} },
    { token },
  );
  assert.equal(r.status, 403);
  for (const [name, body] of before)
    assert.equal(
      JSON.stringify((await kube.raw('GET', cmPath(layout.ns, name))).body),
      body,
      `${name} changed`,
    );

  // What acme needs, in its own namespace: the Lease, challenge ConfigMaps, account-key Secrets, Events.
  const own = layout.acmeNs;
  const lease = {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'probe-lease', namespace: own },
    spec: { holderIdentity: 'probe', leaseDurationSeconds: 15 },
  };
  const leases = `/apis/coordination.k8s.io/v1/namespaces/${own}/leases`;
  r = await kube.raw('POST', leases, lease, { token });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await kube.raw(
    'PATCH',
    `${leases}/probe-lease`,
    { spec: { holderIdentity: 'other' } },
    { token, contentType: MERGE },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  r = await kube.raw(
    'POST',
    cmPath(own),
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'probe-challenge', namespace: own, labels: { 'acme.extsvc.dev/challenge': 'true' } },
      data: { token: 'x' },
    },
    { token },
  );
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await kube.raw('GET', `${cmPath(own)}?labelSelector=acme.extsvc.dev/challenge%3Dtrue`, undefined, {
    token,
  });
  assert.equal(r.status, 200);
  r = await kube.raw('GET', `${cmPath(own)}?watch=1&timeoutSeconds=1`, undefined, { token });
  assert.equal(r.status, 200);
  r = await kube.raw('DELETE', cmPath(own, 'probe-challenge'), undefined, { token });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const secrets = `/api/v1/namespaces/${own}/secrets`;
  r = await kube.raw(
    'POST',
    secrets,
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'probe-account', namespace: own },
      type: 'Opaque',
      data: {},
    },
    { token },
  );
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await kube.raw(
    'PATCH',
    `${secrets}/probe-account`,
    { metadata: { labels: { a: 'b' } } },
    { token, contentType: MERGE },
  );
  assert.equal(r.status, 200);
  r = await kube.raw('GET', `${secrets}/probe-account`, undefined, { token });
  assert.equal(r.status, 200);
  r = await kube.raw(
    'POST',
    `/api/v1/namespaces/${own}/events`,
    {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: 'probe.1', namespace: own },
      involvedObject: { kind: 'Lease', name: 'probe-lease', namespace: own },
      reason: 'Probe',
      message: 'probe',
      type: 'Normal',
    },
    { token },
  );
  assert.equal(r.status, 201, JSON.stringify(r.body));
  // Clean up as admin (acme may not delete Secrets or Leases).
  await kube.raw('DELETE', `${secrets}/probe-account`);
  await kube.raw('DELETE', `${leases}/probe-lease`);
}

/** The acme token: Hosts read cluster-wide, status only, Secrets where it serves. */
export async function assertAcmeTokenHostsAndSecrets(kube: KubeHandle, layout: Layout): Promise<void> {
  const token = kube.serviceAccountToken(layout.acmeNs, 'acme');
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
  await kube.raw('DELETE', '/api/v1/namespaces/default/secrets/probe');
}
