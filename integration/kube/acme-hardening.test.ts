import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'mocha';
import type { V1Secret } from '@kubernetes/client-node';
import { freePort, waitUntil } from '../harness/proc.ts';
import { ROOT, Stack, type PebbleHandle, type ServiceHandle } from '../harness/stack.ts';
import { applyEmissaryCrds, startKube, type KubeHandle } from '../harness/kube.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const SA_USER = 'system:serviceaccount:extsvc-acme:acme';

interface AuditEvent {
  verb?: string;
  stage?: string;
  user?: { username?: string };
  objectRef?: { resource?: string; namespace?: string; name?: string };
}

// Issue 18 items 2 and 11 in Kubernetes mode: the shipped acme binary, as the acme ServiceAccount
// with the base's RBAC, against a real kube-apiserver whose audit log counts acme's API requests.
describe('acme hardening (Kubernetes mode): tenants, providers, authorities, challenge lookups', function () {
  const stack = new Stack('kube-acme-hardening').install();
  let kube: KubeHandle;
  let pebble: PebbleHandle;
  let acme: ServiceHandle;
  let auditLog: string;
  let trap: Server;
  let trapConnections = 0;
  let trapUrl: string;

  const applyHost = (
    ns: string,
    name: string,
    hostname: string,
    tlsSecret: Record<string, string>,
    provider: Record<string, string> = {},
  ): void =>
    void kube.apply(
      JSON.stringify({
        apiVersion: 'getambassador.io/v3alpha1',
        kind: 'Host',
        metadata: { name, namespace: ns, annotations: { 'acme.extsvc.dev/manage': 'true' } },
        spec: {
          hostname,
          acmeProvider: { authority: pebble.directoryUrl, email: 'ops@extsvc.test', ...provider },
          tlsSecret,
        },
      }),
    );
  const status = async (ns: string, name: string): Promise<Record<string, string> | undefined> => {
    const r = await kube.raw('GET', `/apis/getambassador.io/v3alpha1/namespaces/${ns}/hosts/${name}`);
    return (r.body as { status?: Record<string, string> }).status;
  };
  const waitState = (ns: string, name: string, state: string): Promise<Record<string, string>> =>
    waitUntil(
      `Host ${ns}/${name} ${state}`,
      async () => {
        const s = await status(ns, name);
        return s?.['state'] === state ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  const getSecret = async (ns: string, name: string): Promise<V1Secret | undefined> => {
    const r = await kube.raw('GET', `/api/v1/namespaces/${ns}/secrets/${name}`);
    return r.status === 200 ? (r.body as V1Secret) : undefined;
  };
  const audit = (): AuditEvent[] =>
    readFileSync(auditLog, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditEvent);

  before(async function () {
    this.timeout(150_000);
    auditLog = join(stack.dir, 'audit.log');
    const policy = join(stack.dir, 'audit-policy.yaml');
    writeFileSync(
      policy,
      [
        'apiVersion: audit.k8s.io/v1',
        'kind: Policy',
        'omitStages: [RequestReceived]',
        'rules:',
        '  - level: Metadata',
        '    resources: [{ group: "", resources: [configmaps] }]',
        '  - level: None',
        '',
      ].join('\n'),
    );
    kube = await startKube(stack, {
      apiserverArgs: [
        `--audit-policy-file=${policy}`,
        `--audit-log-path=${auditLog}`,
        '--audit-log-mode=blocking',
      ],
    });
    applyEmissaryCrds(kube);
    kube.apply(kube.kubectl('kustomize', DEPLOY));
    // acme also serves namespace `tenant` (a RoleBinding there, as the base's RBAC comments say).
    kube.apply(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'tenant' } }));
    kube.apply(
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'extsvc-acme', namespace: 'tenant' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'extsvc-acme-served-namespace',
        },
        subjects: [{ kind: 'ServiceAccount', name: 'acme', namespace: 'extsvc-acme' }],
      }),
    );
    const saKubeconfig = kube.kubeconfigForToken(kube.serviceAccountToken('extsvc-acme', 'acme'), 'acme');
    trap = createServer((s) => {
      trapConnections += 1;
      s.destroy();
    });
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
    trapUrl = `https://127.0.0.1:${(trap.address() as { port: number }).port}/dir`;
    const challengePort = await freePort();
    pebble = await stack.pebble({ httpPort: challengePort, env: { PEBBLE_AUTHZREUSE: '0' } });
    acme = await stack.service('acme', {
      ports: { challenge: challengePort },
      args: [
        '--host-source=kubernetes',
        '--store=kubernetes',
        `--kubeconfig=${saKubeconfig}`,
        '--pod-namespace=extsvc-acme',
        '--pod-name=acme-0',
        `--default-authority=${pebble.directoryUrl}`,
        `--ca-file=${pebble.caCertPath}`,
        '--lease-duration=3s',
        '--renew-deadline=2s',
        '--retry-period=250ms',
        '--secret-check-interval=500ms',
        '--backoff-initial=2s',
        '--ari=false',
      ],
    });
    await waitUntil('acme-0 leads', async () => {
      const r = await acme.admin('/leader');
      return (JSON.parse(r.body) as { isLeader: boolean }).isLeader;
    });
    applyHost('default', 'shop', 'shop.extsvc.test', { name: 'shop-tls' });
    await waitState('default', 'shop', 'Ready');
  });

  after(() => new Promise<void>((r) => (trap ? trap.close(() => r()) : r())));

  it("a tenant's Host naming default/shop-tls is an Error on spec.tlsSecret.namespace; the victim's Secret is untouched", async function () {
    this.timeout(60_000);
    const before = await getSecret('default', 'shop-tls');
    assert.ok(before);
    applyHost('tenant', 'evil', 'evil.extsvc.test', { namespace: 'default', name: 'shop-tls' });
    const st = await waitState('tenant', 'evil', 'Error');
    assert.equal(
      st['errorReason'],
      'spec.tlsSecret.namespace "default" must be the Host\'s own namespace "tenant" (or be left out)',
    );
    // The controller has processed the tenant's Host (its status says so): the victim's Secret is
    // the same object, with only the victim's name, and nothing was written in the tenant namespace.
    const after = await getSecret('default', 'shop-tls');
    assert.equal(after?.metadata?.resourceVersion, before.metadata?.resourceVersion);
    assert.equal(after?.metadata?.annotations?.['acme.extsvc.dev/names'], 'shop.extsvc.test');
    const leaf = new X509Certificate(Buffer.from(after?.data?.['tls.crt'] ?? '', 'base64'));
    assert.equal(leaf.subjectAltName, 'DNS:shop.extsvc.test');
    assert.equal(await getSecret('tenant', 'shop-tls'), undefined);
    assert.equal((await status('default', 'shop'))?.['state'], 'Ready');
  });

  it('an authority outside --allowed-authorities is an Error on the Host and never contacted (SSRF)', async function () {
    this.timeout(60_000);
    applyHost('tenant', 'ssrf', 'ssrf.extsvc.test', { name: 'ssrf-tls' }, { authority: trapUrl });
    const st = await waitState('tenant', 'ssrf', 'Error');
    assert.equal(
      st['errorReason'],
      `spec.acmeProvider.authority "${trapUrl}" is not in the operator's allowed authorities (--allowed-authorities); it is not contacted`,
    );
    assert.equal(trapConnections, 0);
    assert.equal(await getSecret('tenant', 'ssrf-tls'), undefined);
  });

  it('Hosts outvoting another Host on its Secret are an Error on each (no majority vote); the Secret is untouched', async function () {
    this.timeout(60_000);
    applyHost('tenant', 'split-a', 'split-a.extsvc.test', { name: 'split-tls' }, { email: 'a@extsvc.test' });
    await waitState('tenant', 'split-a', 'Ready');
    const before = await getSecret('tenant', 'split-tls');
    assert.ok(before);
    // Two Hosts with another account used to win the vote and have the certificate reissued under it.
    applyHost('tenant', 'split-b', 'split-b.extsvc.test', { name: 'split-tls' }, { email: 'b@extsvc.test' });
    applyHost('tenant', 'split-c', 'split-c.extsvc.test', { name: 'split-tls' }, { email: 'b@extsvc.test' });
    for (const [name, others] of [
      ['split-a', 'tenant/split-b, tenant/split-c'],
      ['split-b', 'tenant/split-a, tenant/split-c'],
      ['split-c', 'tenant/split-a, tenant/split-b'],
    ] as const) {
      const st = await waitUntil(
        `Host tenant/${name} Error naming the others`,
        async () => {
          const s = await status('tenant', name);
          return s?.['state'] === 'Error' && s['errorReason']?.includes(others) ? s : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      assert.equal(
        st['errorReason'],
        `spec.acmeProvider (email) differs between the Hosts sharing tlsSecret tenant/split-tls (${others}); make them identical`,
      );
    }
    const after = await getSecret('tenant', 'split-tls');
    assert.equal(after?.metadata?.resourceVersion, before.metadata?.resourceVersion);
    assert.equal(after?.metadata?.annotations?.['acme.extsvc.dev/names'], 'split-a.extsvc.test');
  });

  it('a Secret it may not write is proved before ordering: no CA order while the write is forbidden, and the Host says why', async function () {
    this.timeout(60_000);
    // acme serves namespace `locked` but may only read Secrets there (a mistaken RoleBinding).
    kube.apply(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'locked' } }));
    kube.apply(
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'acme-read-only', namespace: 'locked' },
        rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }],
      }),
    );
    kube.apply(
      JSON.stringify({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'acme-read-only', namespace: 'locked' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'acme-read-only' },
        subjects: [{ kind: 'ServiceAccount', name: 'acme', namespace: 'extsvc-acme' }],
      }),
    );
    const orders = (): Promise<number> =>
      acme.metric('acme_request_duration_seconds_count', { op: 'new-order' });
    const before = await orders();
    applyHost('locked', 'nowrite', 'nowrite.extsvc.test', { name: 'nowrite-tls' });
    // Positive signal: a retry after the backoff has run (the probe's own reason is on the Host).
    const st = await waitUntil(
      'Host locked/nowrite Error from the write probe',
      async () => {
        const s = await status('locked', 'nowrite');
        return s?.['state'] === 'Error' && /no certificate is ordered/.test(s['errorReason'] ?? '')
          ? s
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    assert.match(
      st['errorReason'] ?? '',
      /^certificate store: cannot write Secret locked\/nowrite-tls: HTTP 403/,
    );
    assert.equal(await orders(), before, 'no order reached the CA');
    assert.equal(await getSecret('locked', 'nowrite-tls'), undefined);
  });

  it('unknown challenge tokens are answered from the watched index: zero ConfigMap GETs at the API server', async function () {
    this.timeout(60_000);
    const port = acme.ports.challenge as number;
    const ask = (token: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: `/.well-known/acme-challenge/${token}`,
            headers: { host: 'shop.extsvc.test' },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const N = 200;
    for (let i = 0; i < N; i++)
      assert.equal(await ask(`unknown-token-${String(i).padStart(6, '0')}-abcdefghijkl`), 404);
    // Positive signal that the audit log is written up to here: a marker request as acme itself.
    const token = kube.serviceAccountToken('extsvc-acme', 'acme');
    await kube.raw('GET', '/api/v1/namespaces/extsvc-acme/configmaps/audit-marker', undefined, { token });
    const events = await waitUntil(
      'marker in the audit log',
      async () => {
        const ev = audit();
        return ev.some((e) => e.objectRef?.name === 'audit-marker') ? ev : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const gets = events.filter(
      (e) =>
        e.verb === 'get' &&
        e.stage === 'ResponseComplete' &&
        e.user?.username === SA_USER &&
        e.objectRef?.resource === 'configmaps' &&
        e.objectRef.name?.startsWith('acme-challenge-') === true,
    );
    assert.equal(gets.length, 0, `${gets.length} ConfigMap GETs for ${N} unknown tokens`);
    // The watch itself is there (list + watch, label-selected), and the real challenge was served.
    assert.ok(
      events.some(
        (e) => e.verb === 'watch' && e.user?.username === SA_USER && e.objectRef?.namespace === 'extsvc-acme',
      ),
    );
    assert.ok((await acme.metric('acme_challenge_requests_total', { result: 'served' })) >= 1);
    assert.equal(await acme.metric('acme_challenge_requests_total', { result: 'not_found' }), N);
  });
});
