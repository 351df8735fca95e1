import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import { Stack, ROOT, type EnvoyHandle, type PebbleHandle, type ServiceHandle } from '../harness/stack.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import { applyEmissaryCrds, startKube, type KubeHandle } from '../harness/kube.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const HOSTS = '/apis/getambassador.io/v3alpha1/namespaces/default/hosts';

// The shipped acme service (services/acme/src/main.ts) in Kubernetes mode, as the Deployment in
// deploy/kubernetes runs it: flags/env only, the acme ServiceAccount's RBAC, Pebble through Envoy.
describe('acme service binary in Kubernetes mode (--host-source=kubernetes --store=kubernetes)', function () {
  const stack = new Stack('kube-acme-service').install();
  let kube: KubeHandle;
  let envoy: EnvoyHandle;
  let pebble: PebbleHandle;
  let acme: ServiceHandle;

  before(async function () {
    this.timeout(150_000);
    kube = await startKube(stack);
    applyEmissaryCrds(kube);
    kube.kubectl('wait', '--for=condition=Established', '--timeout=30s', 'crd/hosts.getambassador.io');
    kube.apply(kube.kubectl('kustomize', DEPLOY));
    const saKubeconfig = kube.kubeconfigForToken(kube.serviceAccountToken('extsvc-acme', 'acme'), 'acme');
    const challengePort = await freePort();
    envoy = await stack.envoy({ ACME_CHALLENGE_PORT: challengePort });
    pebble = await stack.pebble({ httpPort: envoy.httpPort, env: { PEBBLE_AUTHZREUSE: '0' } });
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
        '--ari=false',
      ],
    });
  });

  it('leads, issues a Secret for an annotated Host and reports Ready in its status', async function () {
    this.timeout(60_000);
    await waitUntil('acme-0 leads', async () => {
      const r = await acme.admin('/leader');
      return (JSON.parse(r.body) as { isLeader: boolean }).isLeader;
    });
    kube.apply(
      JSON.stringify({
        apiVersion: 'getambassador.io/v3alpha1',
        kind: 'Host',
        metadata: { name: 'svc-a', namespace: 'default', annotations: { 'acme.extsvc.dev/manage': 'true' } },
        spec: {
          hostname: 'svc-a.extsvc.test',
          acmeProvider: { authority: pebble.directoryUrl, email: 'ops@extsvc.test' },
          tlsSecret: { name: 'svc-a-tls' },
        },
      }),
    );
    const status = await waitUntil(
      'Host svc-a Ready',
      async () => {
        const r = await kube.raw('GET', `${HOSTS}/svc-a`);
        const s = (r.body as { status?: { state?: string; tlsCertificateSource?: string } }).status;
        return s?.state === 'Ready' ? s : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 200 },
    );
    assert.equal(status.tlsCertificateSource, 'ACME');
    const secret = await kube.raw('GET', '/api/v1/namespaces/default/secrets/svc-a-tls');
    assert.equal(secret.status, 200);
    const body = secret.body as { type: string; data: Record<string, string> };
    assert.equal(body.type, 'kubernetes.io/tls');
    const leaf = new X509Certificate(Buffer.from(body.data['tls.crt'] ?? '', 'base64'));
    assert.match(leaf.subjectAltName ?? '', /DNS:svc-a\.extsvc\.test/);
    assert.ok((await acme.metric('acme_orders_total', { result: 'issued' })) >= 1);
    assert.equal(await acme.metric('acme_hosts', { state: 'Ready' }), 1);
    const hosts = JSON.parse((await acme.admin('/hosts')).body) as { hosts: Array<{ state: string }> };
    assert.equal(hosts.hosts[0]?.state, 'Ready');
  });

  it('rejects inconsistent Kubernetes flags with exit 2', async () => {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'services/acme/src/main.ts'), '--host-source=kubernetes'],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--store: must be 'kubernetes' with --host-source=kubernetes/);
  });
});
