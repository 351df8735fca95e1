// Assertions shared by the kustomize base (apply.test.ts) and the Helm chart (helm.test.ts): both must
// put the same objects in a real kube-apiserver, so both suites run the same checks on what the
// server holds after the install.
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import type { KubeHandle } from '../harness/kube.ts';
import { waitUntil } from '../harness/proc.ts';

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
  // A CRD's watch cache answers 429 (retry later) for a moment after the CRD is created.
  r = await waitUntil(
    'hosts list answered',
    async () => {
      const x = await kube.raw('GET', '/apis/getambassador.io/v3alpha1/hosts', undefined, { token });
      return x.status === 429 ? undefined : x;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await kube.raw('DELETE', '/api/v1/namespaces/default/secrets/probe');
}

/** A label selector as NetworkPolicy uses it. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** One NetworkPolicy peer (`from` / `to` entry). */
export interface Peer {
  namespaceSelector?: LabelSelector;
  podSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

interface PolicyRule {
  from?: Peer[];
  to?: Peer[];
  ports?: Array<{ protocol?: string; port?: number | string; endPort?: number }>;
}

interface NetworkPolicy {
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: LabelSelector;
    policyTypes?: string[];
    ingress?: PolicyRule[];
    egress?: PolicyRule[];
  };
}

/** Who the NetworkPolicies let in: Emissary's pods for data ports, Prometheus's for admin ports. */
export interface Peers {
  readonly emissary: Peer;
  readonly prometheus: Peer;
}

/** The defaults: Emissary's Helm chart in namespace emissary, kube-prometheus-stack in monitoring. */
export const DEFAULT_PEERS: Peers = {
  emissary: {
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'emissary' } },
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'emissary-ingress' } },
  },
  prometheus: {
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
  },
};

/** Label selector semantics of the API (matchLabels AND matchExpressions). */
export function selects(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const inValues = has && (e.values ?? []).includes(labels[e.key] as string);
    const ok =
      e.operator === 'In'
        ? inValues
        : e.operator === 'NotIn'
          ? !inValues
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

const ANYONE = 'anyone';

interface PodView {
  readonly ns: string;
  readonly labels: Record<string, string>;
  readonly ports: Record<string, number>;
}

function ruleCoversPort(rule: PolicyRule, port: number, pod: PodView, protocol = 'TCP'): boolean {
  if (!rule.ports || rule.ports.length === 0) return true;
  return rule.ports.some((p) => {
    if ((p.protocol ?? 'TCP') !== protocol) return false;
    if (p.port === undefined) return true;
    const n = typeof p.port === 'number' ? p.port : pod.ports[p.port];
    if (n === undefined) return false;
    return p.endPort === undefined ? n === port : port >= n && port <= p.endPort;
  });
}

/**
 * Evaluates the NetworkPolicies read back from the server for one destination pod and port: the
 * list of peers allowed in (`anyone` for a rule without `from`), or undefined when no policy
 * isolates the pod for ingress (then everyone gets in).
 */
function ingressPeers(policies: readonly NetworkPolicy[], pod: PodView, port: number): string[] | undefined {
  const isolating = policies.filter(
    (p) =>
      p.metadata.namespace === pod.ns &&
      selects(p.spec.podSelector, pod.labels) &&
      (p.spec.policyTypes ?? ['Ingress']).includes('Ingress'),
  );
  if (isolating.length === 0) return undefined;
  const peers = new Set<string>();
  for (const p of isolating)
    for (const rule of p.spec.ingress ?? []) {
      if (!ruleCoversPort(rule, port, pod)) continue;
      if (!rule.from || rule.from.length === 0) peers.add(ANYONE);
      for (const peer of rule.from ?? []) peers.add(JSON.stringify(peer));
    }
  return [...peers].sort();
}

/** Whether the egress policies of `pod` allow a connection to `dest` (a pod, or an outside address). */
function egressAllowed(
  policies: readonly NetworkPolicy[],
  pod: PodView,
  dest: { ns: string; nsLabels: Record<string, string>; labels: Record<string, string> } | 'outside',
  port: number,
  protocol = 'TCP',
): boolean {
  const isolating = policies.filter(
    (p) =>
      p.metadata.namespace === pod.ns &&
      selects(p.spec.podSelector, pod.labels) &&
      (p.spec.policyTypes ?? []).includes('Egress'),
  );
  if (isolating.length === 0) return true;
  const destPorts = { ns: pod.ns, labels: {}, ports: {} };
  return isolating.some((p) =>
    (p.spec.egress ?? []).some((rule) => {
      if (!ruleCoversPort(rule, port, destPorts, protocol)) return false;
      if (!rule.to || rule.to.length === 0) return true;
      return rule.to.some((peer) => {
        if (dest === 'outside') return peer.ipBlock !== undefined;
        if (peer.ipBlock) return false;
        const nsOk = peer.namespaceSelector
          ? selects(peer.namespaceSelector, dest.nsLabels)
          : dest.ns === pod.ns;
        return nsOk && selects(peer.podSelector, dest.labels);
      });
    }),
  );
}

/**
 * The NetworkPolicies that the server holds (read back with kubectl) isolate every pod of the install
 * and let in exactly: `peers.emissary` on the data ports, `peers.prometheus` on the admin ports,
 * ratelimit on Redis; ratelimit may leave only for Redis and DNS, acme only for DNS and HTTPS.
 */
export function assertNetworkPolicies(
  kube: KubeHandle,
  layout: Layout,
  peers: Peers = DEFAULT_PEERS,
  opts: { redis?: boolean } = {},
): void {
  const policies: NetworkPolicy[] = [];
  for (const ns of [layout.ns, layout.acmeNs])
    policies.push(...getJson<{ items: NetworkPolicy[] }>(kube, 'networkpolicies', '-n', ns).items);
  const nsLabels = (ns: string): Record<string, string> =>
    getJson<{ metadata: { labels: Record<string, string> } }>(kube, 'namespace', ns).metadata.labels;
  const podOf = (name: string, ns: string): PodView => {
    const d = getJson<{
      spec: {
        template: {
          metadata: { labels: Record<string, string> };
          spec: { containers: Array<{ ports?: Array<{ name: string; containerPort: number }> }> };
        };
      };
    }>(kube, 'deployment', name, '-n', ns);
    const ports: Record<string, number> = {};
    for (const c of d.spec.template.spec.containers)
      for (const p of c.ports ?? []) ports[p.name] = p.containerPort;
    return { ns, labels: d.spec.template.metadata.labels, ports };
  };
  const em = JSON.stringify(peers.emissary);
  const prom = JSON.stringify(peers.prometheus);
  const expected: Array<[string, string, Record<string, string[]>]> = [
    ['authz', layout.ns, { grpc: [em], http: [em], admin: [prom] }],
    ['ratelimit', layout.ns, { grpc: [em], http: [em], admin: [prom] }],
    ['acme', layout.acmeNs, { challenge: [em], admin: [prom] }],
  ];
  if (opts.redis !== false) expected.push(['redis', layout.ns, {}]);
  const ratelimit = podOf('ratelimit', layout.ns);
  for (const [name, ns, byPort] of expected) {
    const pod = podOf(name, ns);
    for (const [portName, port] of Object.entries(pod.ports)) {
      const want =
        name === 'redis'
          ? [JSON.stringify({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ratelimit' } } })]
          : byPort[portName];
      assert.ok(want, `${name} port ${portName} has an expectation`);
      assert.deepEqual(
        ingressPeers(policies, pod, port),
        [...want].sort(),
        `${ns}/${name} port ${portName} (${port})`,
      );
    }
    // A port the pod does not declare is closed to everyone, Emissary included.
    assert.deepEqual(ingressPeers(policies, pod, 12345), [], `${name}: undeclared port`);
  }
  // Egress: ratelimit reaches Redis and DNS, nothing outside; acme reaches HTTPS (API server, CA) and DNS.
  const redis = {
    ns: layout.ns,
    nsLabels: nsLabels(layout.ns),
    labels: { 'app.kubernetes.io/name': 'redis' },
  };
  const dns = { ns: 'kube-system', nsLabels: nsLabels('kube-system'), labels: { 'k8s-app': 'kube-dns' } };
  assert.equal(egressAllowed(policies, ratelimit, redis, 6379), true, 'ratelimit -> redis:6379');
  assert.equal(egressAllowed(policies, ratelimit, dns, 53, 'UDP'), true, 'ratelimit -> dns');
  assert.equal(egressAllowed(policies, ratelimit, 'outside', 443), false, 'ratelimit -> outside:443');
  assert.equal(egressAllowed(policies, ratelimit, redis, 6380), false, 'ratelimit -> redis:6380');
  const acme = podOf('acme', layout.acmeNs);
  assert.equal(egressAllowed(policies, acme, 'outside', 443), true, 'acme -> CA / API server :443');
  assert.equal(egressAllowed(policies, acme, 'outside', 6443), true, 'acme -> API server :6443');
  assert.equal(egressAllowed(policies, acme, dns, 53, 'UDP'), true, 'acme -> dns');
  assert.equal(egressAllowed(policies, acme, redis, 6379), false, 'acme -> redis');
  assert.equal(egressAllowed(policies, acme, 'outside', 80), false, 'acme -> outside:80');
}

/** The bundled Redis: hardened like the services, and where ratelimit's REDIS_URL points. */
export function assertRedis(kube: KubeHandle, layout: Layout): void {
  const d = getJson<{
    spec: {
      replicas: number;
      template: {
        spec: {
          automountServiceAccountToken: boolean;
          securityContext: { runAsNonRoot: boolean; runAsUser: number; seccompProfile: { type: string } };
          containers: Array<{
            args: string[];
            resources: { requests: Record<string, string>; limits: Record<string, string> };
            securityContext: {
              readOnlyRootFilesystem: boolean;
              allowPrivilegeEscalation: boolean;
              capabilities: { drop: string[] };
            };
            volumeMounts: Array<{ name: string; mountPath: string }>;
            readinessProbe: unknown;
          }>;
          volumes: Array<{ name: string; emptyDir?: unknown }>;
        };
      };
    };
  }>(kube, 'deployment', 'redis', '-n', layout.ns);
  assert.equal(d.spec.replicas, 1);
  const pod = d.spec.template.spec;
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.notEqual(pod.securityContext.runAsUser, 0);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  const c = pod.containers[0];
  assert.ok(c);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.ok(c.resources.requests['cpu'] && c.resources.requests['memory'] && c.resources.limits['memory']);
  assert.ok(c.readinessProbe);
  // Redis's working directory is writable (emptyDir), and nothing is persisted.
  const data = c.volumeMounts.find((m) => m.mountPath === '/data');
  assert.ok(data, '/data mounted');
  assert.ok(pod.volumes.find((v) => v.name === data.name)?.emptyDir !== undefined, '/data is an emptyDir');
  assert.deepEqual(c.args.slice(c.args.indexOf('--save'), c.args.indexOf('--save') + 2), ['--save', '']);

  const rl = getJson<{
    spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } };
  }>(kube, 'deployment', 'ratelimit', '-n', layout.ns);
  const url = new URL(
    rl.spec.template.spec.containers[0]?.env.find((e) => e.name === 'REDIS_URL')?.value ?? '',
  );
  const [svcName, svcNs] = url.hostname.split('.');
  assert.equal(svcNs, layout.ns);
  const svc = getJson<{ spec: { selector: Record<string, string>; ports: Array<{ port: number }> } }>(
    kube,
    'service',
    svcName ?? '',
    '-n',
    layout.ns,
  );
  assert.ok(
    svc.spec.ports.some((p) => p.port === Number(url.port || 6379)),
    'REDIS_URL port on the Service',
  );
  assert.deepEqual(svc.spec.selector, { 'app.kubernetes.io/name': 'redis' });
}

/**
 * The acme ServiceAccount's Mapping and Host writes, with its own token, against the shipped
 * ValidatingAdmissionPolicy: a user's Mapping cannot be patched, taken over (label added), or a
 * Mapping that routes anything else planted; a Host cannot be changed beyond adding a missing
 * spec.tlsSecret. acme's own challenge Mapping (as the controller applies it) and the tlsSecret
 * default still work. Other users are not affected.
 */
export async function assertAcmeAdmission(kube: KubeHandle, layout: Layout): Promise<void> {
  const token = kube.serviceAccountToken(layout.acmeNs, 'acme');
  const APPLY = 'application/apply-patch+yaml';
  const mappings = '/apis/getambassador.io/v3alpha1/namespaces/default/mappings';
  const hosts = '/apis/getambassador.io/v3alpha1/namespaces/default/hosts';
  const service = `acme.${layout.acmeNs}:8089`;
  const mapping = (
    name: string,
    spec: Record<string, unknown>,
    labels?: Record<string, string>,
  ): unknown => ({
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Mapping',
    metadata: { name, namespace: 'default', ...(labels ? { labels } : {}) },
    spec,
  });
  const ours = { 'app.kubernetes.io/managed-by': 'extsvc-acme' };
  const challenge = {
    hostname: 'adm.example.com',
    prefix: '/.well-known/acme-challenge/',
    rewrite: '',
    service,
    bypass_auth: true,
    timeout_ms: 5000,
  };
  // A user's Mapping, as its owner (admin) wrote it.
  let r = await kube.raw(
    'POST',
    mappings,
    mapping('user-app', { hostname: '*', prefix: '/app/', service: 'app:80' }),
  );
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const userBefore = JSON.stringify((r.body as { spec: unknown }).spec);
  const refused = (x: { status: number; body: unknown }, what: string, re: RegExp): void => {
    assert.equal(x.status, 403, `${what}: ${x.status} ${JSON.stringify(x.body)}`);
    assert.match((x.body as { message?: string }).message ?? '', re, what);
  };
  // RBAC allows Mapping writes in served namespaces; the policy refuses each of these.
  r = await kube.raw(
    'PATCH',
    `${mappings}/user-app`,
    { spec: { service: 'evil:80', bypass_auth: true } },
    { token, contentType: MERGE },
  );
  refused(r, "patch of a user's Mapping", /extsvc-acme-writes.*only its own challenge Mappings/);
  r = await kube.raw(
    'PATCH',
    `${mappings}/user-app`,
    { metadata: { labels: ours } },
    { token, contentType: MERGE },
  );
  refused(r, "taking over a user's Mapping with acme's label", /only its own challenge Mappings/);
  r = await kube.raw('DELETE', `${mappings}/user-app`, undefined, { token });
  refused(r, "deleting a user's Mapping", /only its own challenge Mappings/);
  r = await kube.raw('POST', mappings, mapping('evil-acme-challenge', { ...challenge, prefix: '/' }, ours), {
    token,
  });
  refused(r, 'a challenge-named Mapping routing everything', /routes only \/\.well-known\/acme-challenge\//);
  r = await kube.raw(
    'POST',
    mappings,
    mapping('evil2-acme-challenge', { ...challenge, service: 'evil:80' }, ours),
    { token },
  );
  refused(r, 'a challenge Mapping to another service', /routes only/);
  r = await kube.raw(
    'POST',
    mappings,
    mapping('evil3-acme-challenge', { ...challenge, add_request_headers: { x: { value: 'y' } } }, ours),
    { token },
  );
  refused(r, 'a challenge Mapping with extra fields', /routes only/);
  assert.equal(
    JSON.stringify(((await kube.raw('GET', `${mappings}/user-app`)).body as { spec: unknown }).spec),
    userBefore,
  );
  // acme's own challenge Mapping, applied the way the controller applies it, then updated and deleted.
  r = await kube.raw(
    'PATCH',
    `${mappings}/adm-acme-challenge?fieldManager=extsvc-acme&force=true`,
    mapping('adm-acme-challenge', challenge, ours),
    { token, contentType: APPLY },
  );
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await kube.raw(
    'PATCH',
    `${mappings}/adm-acme-challenge?fieldManager=extsvc-acme&force=true`,
    mapping('adm-acme-challenge', { ...challenge, timeout_ms: 3000 }, ours),
    { token, contentType: APPLY },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  r = await kube.raw('DELETE', `${mappings}/adm-acme-challenge`, undefined, { token });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // Hosts: only a missing spec.tlsSecret may be added.
  const host = {
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Host',
    metadata: { name: 'adm', namespace: 'default' },
  };
  r = await kube.raw('POST', hosts, {
    ...host,
    spec: { hostname: 'adm.example.com', acmeProvider: { email: 'a@example.com' } },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await kube.raw(
    'PATCH',
    `${hosts}/adm`,
    { spec: { hostname: 'evil.example.com' } },
    { token, contentType: MERGE },
  );
  refused(r, "changing a Host's hostname", /only add a missing spec\.tlsSecret/);
  r = await kube.raw(
    'PATCH',
    `${hosts}/adm`,
    { spec: { tlsSecret: { name: 'x' }, hostname: 'evil.example.com' } },
    { token, contentType: MERGE },
  );
  refused(r, 'adding tlsSecret and changing the hostname at once', /only add a missing spec\.tlsSecret/);
  r = await kube.raw(
    'PATCH',
    `${hosts}/adm`,
    { metadata: { labels: { a: 'b' } }, spec: { tlsSecret: { name: 'x' } } },
    { token, contentType: MERGE },
  );
  refused(r, 'adding tlsSecret and a label at once', /only add a missing spec\.tlsSecret/);
  r = await kube.raw(
    'PATCH',
    `${hosts}/adm?fieldManager=extsvc-acme`,
    { ...host, spec: { tlsSecret: { name: 'adm.example.com' } } },
    { token, contentType: APPLY },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  r = await kube.raw(
    'PATCH',
    `${hosts}/adm`,
    { spec: { tlsSecret: { name: 'other' } } },
    { token, contentType: MERGE },
  );
  refused(r, 'changing an existing tlsSecret', /only add a missing spec\.tlsSecret/);
  // Other users are not matched by the policy.
  r = await kube.raw(
    'PATCH',
    `${mappings}/user-app`,
    { spec: { service: 'app:8080' } },
    { contentType: MERGE },
  );
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await kube.raw('DELETE', `${mappings}/user-app`);
  await kube.raw('DELETE', `${hosts}/adm`);
}
