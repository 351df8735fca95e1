import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it, before, after } from 'mocha';
import type { V1Secret } from '@kubernetes/client-node';
import { Stack, ROOT, type PebbleHandle, type ServiceHandle } from '../harness/stack.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import { applyEmissaryCrds, startKube, type KubeHandle } from '../harness/kube.ts';
import { FaultProxy, hostStatuses } from '../acme/helpers.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const LEASE = '/apis/coordination.k8s.io/v1/namespaces/extsvc-acme/leases/extsvc-acme';
const hostsPath = (ns: string): string => `/apis/getambassador.io/v3alpha1/namespaces/${ns}/hosts`;
const MERGE = { contentType: 'application/merge-patch+json' };

interface HostStatusBody {
  state?: string;
  errorReason?: string;
  errorBackoff?: string;
}

// The shipped service (services/acme/src/main.ts) in Kubernetes mode with the acme ServiceAccount's
// token and the base's RBAC. The test holds acme's Lease as another replica would when it needs acme
// to be a follower that writes nothing: that is how a Secret stays missing for as long as needed.
describe('acme Kubernetes mode: readiness, renew-before and retry annotations (real kube-apiserver, Pebble, Envoy)', function () {
  const stack = new Stack('kube-acme-ready').install();
  let kube: KubeHandle;
  let pebble: PebbleHandle;
  let proxy: FaultProxy;
  let acme: ServiceHandle;

  const readyz = async (): Promise<{ status: number; body: string }> => acme.admin('/readyz');
  const isLeader = async (): Promise<boolean> =>
    (JSON.parse((await acme.admin('/leader')).body) as { isLeader: boolean }).isLeader;
  const getSecret = async (name: string): Promise<V1Secret | undefined> => {
    const r = await kube.raw('GET', `/api/v1/namespaces/default/secrets/${name}`);
    return r.status === 200 ? (r.body as V1Secret) : undefined;
  };
  const hostStatus = async (name: string, ns = 'default'): Promise<HostStatusBody | undefined> =>
    ((await kube.raw('GET', `${hostsPath(ns)}/${name}`)).body as { status?: HostStatusBody }).status;
  const waitState = (name: string, state: string, ns = 'default'): Promise<HostStatusBody> =>
    waitUntil(
      `Host ${ns}/${name} ${state}`,
      async () => {
        const s = await hostStatus(name, ns);
        return s?.state === state ? s : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 100 },
    );
  const applyHost = (name: string, spec: Record<string, unknown>, ns = 'default'): void =>
    void kube.apply(
      JSON.stringify({
        apiVersion: 'getambassador.io/v3alpha1',
        kind: 'Host',
        metadata: { name, namespace: ns },
        spec,
      }),
    );
  const annotate = async (name: string, annotations: Record<string, string>): Promise<void> => {
    const r = await kube.raw(
      'PATCH',
      `${hostsPath('default')}/${name}`,
      { metadata: { annotations } },
      MERGE,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  // MicroTime: RFC 3339 with exactly six fractional digits.
  const microNow = (): string => new Date().toISOString().replace('Z', '000Z');
  /** Another replica holds the Lease (for an hour): acme follows and writes nothing. */
  const holdLease = async (): Promise<void> => {
    const spec = { holderIdentity: 'acme-other', leaseDurationSeconds: 3600, renewTime: microNow() };
    const r = await kube.raw('PATCH', LEASE, { spec }, MERGE);
    if (r.status === 404) {
      const c = await kube.raw('POST', '/apis/coordination.k8s.io/v1/namespaces/extsvc-acme/leases', {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: 'extsvc-acme', namespace: 'extsvc-acme' },
        spec: { ...spec, acquireTime: spec.renewTime },
      });
      assert.equal(c.status, 201, JSON.stringify(c.body));
    } else assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  /** The other replica lets go (no holder): acme takes the Lease on its next try. */
  const releaseLease = async (): Promise<void> => {
    const r = await kube.raw(
      'PATCH',
      LEASE,
      { spec: { holderIdentity: null, leaseDurationSeconds: 1 } },
      MERGE,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  const waitReadyz = (what: string, pred: (r: { status: number; body: string }) => boolean) =>
    waitUntil(
      what,
      async () => {
        const r = await readyz();
        return pred(r) ? r : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );

  before(async function () {
    this.timeout(150_000);
    kube = await startKube(stack);
    applyEmissaryCrds(kube);
    kube.apply(kube.kubectl('kustomize', DEPLOY));
    const saKubeconfig = kube.kubeconfigForToken(kube.serviceAccountToken('extsvc-acme', 'acme'), 'acme');
    const challengePort = await freePort();
    const envoy = await stack.envoy({ ACME_CHALLENGE_PORT: challengePort });
    pebble = await stack.pebble({ httpPort: envoy.httpPort, env: { PEBBLE_AUTHZREUSE: '0' } });
    proxy = new FaultProxy(pebble.directoryUrl, pebble.caCertPath);
    const authority = await proxy.start();
    await holdLease();
    acme = await stack.service('acme', {
      ports: { challenge: challengePort },
      args: [
        '--host-source=kubernetes',
        '--store=kubernetes',
        `--kubeconfig=${saKubeconfig}`,
        '--pod-namespace=extsvc-acme',
        '--pod-name=acme-0',
        `--default-authority=${authority}`,
        `--ca-file=${pebble.caCertPath}`,
        '--lease-duration=3s',
        '--renew-deadline=2s',
        '--retry-period=250ms',
        '--secret-check-interval=500ms',
        '--ari=false',
        '--acme-retries=0',
        '--poll-interval=200ms',
        // A failed order waits an hour: only the retry annotation can bring a Host back in this test.
        '--backoff-initial=1h',
        '--backoff-max=2h',
      ],
    });
  });
  after(async () => {
    await proxy?.close();
  });

  it("is not ready while a managed Host's tlsSecret is missing, naming Host and Secret; ready once acme wrote it (unmanaged and authority-none Hosts not waited for)", async function () {
    this.timeout(60_000);
    assert.equal(await isLeader(), false, 'another replica holds the Lease');
    // Not acme's: no acmeProvider (TLS by someone else), and authority none (the user's own Secret).
    applyHost('elsewhere', { hostname: 'elsewhere.extsvc.test', tlsSecret: { name: 'elsewhere-tls' } });
    applyHost('byhand', {
      hostname: 'byhand.extsvc.test',
      acmeProvider: { authority: 'none' },
      tlsSecret: { name: 'byhand-tls' },
    });
    applyHost('site', {
      hostname: 'site.extsvc.test',
      acmeProvider: { email: 'ops@extsvc.test' },
      tlsSecret: { name: 'site-tls' },
    });
    // The Lease goes back to acme whatever happens here: the next tests need a leader.
    let r: { status: number; body: string };
    try {
      r = await waitReadyz(
        '/readyz 503 naming default/site → default/site-tls (read, absent)',
        (x) =>
          x.status === 503 &&
          x.body.includes('default/site → default/site-tls') &&
          !x.body.includes('not read yet'),
      );
      assert.doesNotMatch(r.body, /elsewhere|byhand/);
      assert.doesNotMatch(r.body, /BEGIN|tls\.key/);
      assert.equal(await getSecret('site-tls'), undefined, 'the follower wrote nothing');
    } finally {
      await releaseLease();
    }
    await waitReadyz('/readyz 200', (x) => x.status === 200);
    const secret = await getSecret('site-tls');
    assert.ok(secret?.data?.['tls.crt'] && secret.data['tls.key'], 'a certificate pair (temporary or real)');
    assert.equal(await isLeader(), true);
  });

  it('names a Host acme cannot store a Secret for (no RoleBinding in its namespace) without waiting for it: the Host says Error', async function () {
    this.timeout(60_000);
    kube.apply(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'norbac' } }));
    applyHost(
      'shop',
      {
        hostname: 'shop.extsvc.test',
        acmeProvider: { email: 'ops@extsvc.test' },
        tlsSecret: { name: 'shop-tls' },
      },
      'norbac',
    );
    const status = await waitState('shop', 'Error', 'norbac');
    assert.match(status.errorReason ?? '', /forbidden/i);
    const r = await waitReadyz(
      '/readyz 200 naming norbac/shop as not waited for',
      (x) => x.status === 200 && x.body.includes('norbac/shop → norbac/shop-tls'),
    );
    assert.match(r.body, /not waited for \(Host in Error/);
  });

  // A deleted Secret is how users force a reissue: acme (the leader's Secret check) writes the
  // temporary certificate again and orders. Readiness does not turn off for it: every replica would
  // go unready at once and the challenge Service lose its endpoints right when that order needs them.
  it('a Secret deleted by the user (a forced reissue): acme writes it again and reissues while /readyz stays 200', async function () {
    this.timeout(90_000);
    await waitState('site', 'Ready');
    const old = await getSecret('site-tls');
    assert.ok(old?.metadata?.uid);
    const del = await kube.raw('DELETE', '/api/v1/namespaces/default/secrets/site-tls');
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const seen = new Set<number>();
    const again = await waitUntil(
      'site-tls written again with a newly issued certificate',
      async () => {
        seen.add((await readyz()).status);
        const s = await getSecret('site-tls');
        return s?.metadata?.uid !== old.metadata?.uid &&
          s?.metadata?.annotations?.['acme.extsvc.dev/temporary'] === 'false'
          ? s
          : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 50 },
    );
    assert.ok(again.data?.['tls.crt']);
    assert.deepEqual([...seen], [200], '/readyz answered 200 all along');
  });

  it('acme.extsvc.dev/renew-before on a Host moves its planned renewal to notAfter minus that duration', async function () {
    this.timeout(60_000);
    await waitState('site', 'Ready');
    const view = await waitUntil(
      '/hosts: site has a certificate',
      async () => {
        const s = (await hostStatuses(acme)).get('default/site');
        return s?.notAfter !== undefined && s.nextRenewal !== undefined && !s.temporaryCertificate
          ? s
          : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 100 },
    );
    const notAfter = Date.parse(view.notAfter as string);
    const wanted = notAfter - 100 * 3_600_000;
    assert.notEqual(
      Date.parse(view.nextRenewal as string),
      wanted,
      'the lifetime fraction plans another time',
    );
    await annotate('site', { 'acme.extsvc.dev/renew-before': '100h' });
    await waitUntil(
      '/hosts: site renews 100h before notAfter',
      async () => {
        const s = (await hostStatuses(acme)).get('default/site');
        return s?.nextRenewal !== undefined && Date.parse(s.nextRenewal) === wanted;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    assert.equal(
      await acme.metric('acme_certificate_renewal_timestamp_seconds', { secret: 'default/site-tls' }),
      wanted / 1000,
    );
  });

  it('acme.extsvc.dev/retry with a new value retries an Error Host at once instead of after its backoff', async function () {
    this.timeout(90_000);
    // The CA refuses new orders (the other Hosts are settled: only this one orders).
    proxy.decide = (method, path) =>
      method === 'POST' && path.startsWith('/order-plz')
        ? {
            status: 500,
            headers: { 'content-type': 'application/problem+json' },
            body: JSON.stringify({
              type: 'urn:ietf:params:acme:error:serverInternal',
              detail: 'test: CA down',
            }),
          }
        : undefined;
    applyHost('later', {
      hostname: 'later.extsvc.test',
      acmeProvider: { email: 'ops@extsvc.test' },
      tlsSecret: { name: 'later-tls' },
    });
    const failed = await waitState('later', 'Error');
    assert.equal(failed.errorBackoff, '1h0m0s', 'the next attempt is an hour away');
    proxy.decide = () => undefined;
    await annotate('later', { 'acme.extsvc.dev/retry': '1' });
    await waitState('later', 'Ready');
    const leaf = await getSecret('later-tls');
    assert.equal(leaf?.metadata?.annotations?.['acme.extsvc.dev/temporary'], 'false');
  });
});
