import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { describe, it, before, after } from 'mocha';
import { KubeConfig, Watch, type V1Secret } from '@kubernetes/client-node';
import { Stack, ROOT, type EnvoyHandle, type PebbleHandle } from '../harness/stack.ts';
import { freePort, waitUntil, type ManagedProcess } from '../harness/proc.ts';
import { applyEmissaryCrds, startKube, type KubeHandle } from '../harness/kube.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const RUNNER = join(ROOT, 'integration', 'kube', 'acme-runner.ts');
const HOSTS = '/apis/getambassador.io/v3alpha1/namespaces/default/hosts';
const LEASE_MS = 3000;

interface Replica {
  readonly identity: string;
  readonly proc: ManagedProcess;
  readonly challengePort: number;
  admin<T>(path: string): Promise<T>;
}

interface HostStatusBody {
  state?: string;
  phaseCompleted?: string;
  phasePending?: string;
  tlsCertificateSource?: string;
  errorReason?: string;
  errorTimestamp?: string;
  errorBackoff?: string;
}

const pemBlocks = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
const decode = (s: V1Secret, key: string): string =>
  Buffer.from(s.data?.[key] ?? '', 'base64').toString('utf8');

describe('acme Kubernetes mode against a real kube-apiserver, Pebble and Envoy', function () {
  const stack = new Stack('kube-acme').install();
  let kube: KubeHandle;
  let envoy: EnvoyHandle;
  let pebble: PebbleHandle;
  let saKubeconfig: string;
  let leader: Replica;
  let follower: Replica;
  const secretVersions: V1Secret[] = [];
  const watchErrors: string[] = [];
  let watchAbort: AbortController | undefined;
  let watchStopped = false;

  const startReplica = async (
    identity: string,
    challengePort: number,
    env: Record<string, string> = {},
  ): Promise<Replica> => {
    const adminPort = await freePort();
    const proc = stack.spawn(identity, process.execPath, [RUNNER], {
      KUBECONFIG: saKubeconfig,
      POD_NAMESPACE: 'extsvc-acme',
      POD_NAME: identity,
      ACME_CA_FILE: pebble.caCertPath,
      DEFAULT_AUTHORITY: pebble.directoryUrl,
      CHALLENGE_PORT: String(challengePort),
      ADMIN_PORT: String(adminPort),
      LEASE_DURATION_MS: String(LEASE_MS),
      RENEW_DEADLINE_MS: '2000',
      RETRY_PERIOD_MS: '250',
      SECRET_CHECK_INTERVAL_MS: '500',
      BACKOFF_INITIAL_MS: '2000',
      CHALLENGE_MAPPING_SERVICE: 'acme.extsvc-acme:8089',
      ...env,
    });
    const admin = async <T>(path: string): Promise<T> =>
      (await (await fetch(`http://127.0.0.1:${adminPort}${path}`)).json()) as T;
    await waitUntil(
      `${identity} ready`,
      async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok,
      {
        timeoutMs: 30_000,
        abort: () => (proc.exitStatus ? `exited:\n${proc.logs()}` : undefined),
      },
    );
    return { identity, proc, challengePort, admin };
  };

  const host = (
    name: string,
    hostname: string,
    secret: string,
    opts: { annotate?: boolean; labels?: Record<string, string> } = {},
  ): string =>
    JSON.stringify({
      apiVersion: 'getambassador.io/v3alpha1',
      kind: 'Host',
      metadata: {
        name,
        namespace: 'default',
        ...(opts.annotate === false ? {} : { annotations: { 'acme.extsvc.dev/manage': 'true' } }),
      },
      spec: {
        hostname,
        acmeProvider: { authority: pebble.directoryUrl, email: 'ops@extsvc.test' },
        tlsSecret: { name: secret },
        ...(opts.labels ? { mappingSelector: { matchLabels: opts.labels } } : {}),
      },
    });
  const getHost = async (name: string): Promise<{ metadata: { uid: string }; status?: HostStatusBody }> => {
    const r = await kube.raw('GET', `${HOSTS}/${name}`);
    assert.equal(r.status, 200);
    return r.body as { metadata: { uid: string }; status?: HostStatusBody };
  };
  const getSecret = async (name: string, ns = 'default'): Promise<V1Secret | undefined> => {
    const r = await kube.raw('GET', `/api/v1/namespaces/${ns}/secrets/${name}`);
    return r.status === 200 ? (r.body as V1Secret) : undefined;
  };
  const waitState = async (name: string, state: string, timeoutMs = 30_000): Promise<HostStatusBody> =>
    waitUntil(
      `Host ${name} ${state}`,
      async () => {
        const s = (await getHost(name)).status;
        return s?.state === state ? s : undefined;
      },
      { timeoutMs, intervalMs: 100 },
    );
  const serialOf = (s: V1Secret): string =>
    new X509Certificate(pemBlocks(decode(s, 'tls.crt'))[0] ?? '').serialNumber;
  const events = async (name: string): Promise<Array<{ reason: string; type: string; message: string }>> => {
    const r = await kube.raw(
      'GET',
      `/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${name}`,
    );
    return (r.body as { items: Array<{ reason: string; type: string; message: string }> }).items;
  };

  const lease = async (): Promise<{ holderIdentity?: string; leaseTransitions?: number }> =>
    (
      (await kube.raw('GET', '/apis/coordination.k8s.io/v1/namespaces/extsvc-acme/leases/extsvc-acme'))
        .body as {
        spec: { holderIdentity?: string; leaseTransitions?: number };
      }
    ).spec;

  /**
   * Records every version of the Secrets in `default` from a listed resourceVersion on. A watch that
   * ends (client-node's 30 s inactivity timeout while nothing changes, a 429 while the API server's
   * watch cache initializes) resumes from the last version seen, so no event is missed however long
   * the set-up takes; a gap the server cannot replay (410 Expired) is recorded and fails the test.
   */
  const recordSecrets = async (kc: KubeConfig): Promise<void> => {
    const list = await kube.raw('GET', '/api/v1/namespaces/default/secrets');
    assert.equal(list.status, 200);
    const listed = list.body as { metadata: { resourceVersion: string }; items: V1Secret[] };
    let rv = listed.metadata.resourceVersion;
    secretVersions.push(...listed.items);
    const run = async (): Promise<void> => {
      if (watchStopped) return;
      watchAbort = await new Watch(kc).watch(
        '/api/v1/namespaces/default/secrets',
        { resourceVersion: rv, allowWatchBookmarks: true },
        (type: string, obj: V1Secret) => {
          if (type === 'ERROR') {
            watchErrors.push(JSON.stringify(obj));
            watchStopped = true;
            return;
          }
          if (obj.metadata?.resourceVersion) rv = obj.metadata.resourceVersion;
          if (type !== 'BOOKMARK') secretVersions.push(obj);
        },
        () => {
          // a reconnect pause, not a wait for an outcome
          if (!watchStopped) setTimeout(() => void run(), 100).unref();
        },
      );
    };
    await run();
  };

  before(async function () {
    this.timeout(150_000);
    kube = await startKube(stack);
    applyEmissaryCrds(kube);
    kube.kubectl(
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/hosts.getambassador.io',
      'crd/mappings.getambassador.io',
    );
    // The controller runs as the acme ServiceAccount with the base's RBAC only: least privilege is enough.
    const base = kube.kubectl('kustomize', DEPLOY);
    kube.apply(base);
    saKubeconfig = kube.kubeconfigForToken(kube.serviceAccountToken('extsvc-acme', 'acme'), 'acme');

    const kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfigPath);
    await recordSecrets(kc);

    const followerPort = await freePort();
    // Envoy routes /.well-known/acme-challenge/ to the follower only: the leader orders, the follower answers.
    envoy = await stack.envoy({ ACME_CHALLENGE_PORT: followerPort });
    pebble = await stack.pebble({ httpPort: envoy.httpPort, env: { PEBBLE_AUTHZREUSE: '0' } });
    leader = await startReplica('acme-a', await freePort(), { TEST_CONFLICT_SECRET: 'default/app-f-tls' });
    await waitUntil(
      'acme-a leads',
      async () => (await leader.admin<{ isLeader: boolean }>('/leader')).isLeader,
      {
        timeoutMs: 20_000,
      },
    );
    follower = await startReplica('acme-b', followerPort);
  });

  after(function () {
    watchStopped = true;
    watchAbort?.abort();
  });

  it('a new Host gets a temporary Secret, then a valid one chained to Pebble, and status Ready; the follower answered the challenge', async function () {
    this.timeout(60_000);
    kube.apply(host('app-a', 'app-a.extsvc.test', 'app-a-tls', { labels: { app: 'a' } }));
    const status = await waitState('app-a', 'Ready');
    assert.equal(status.tlsCertificateSource, 'ACME');
    assert.equal(status.phaseCompleted, 'NA');
    assert.equal(status.phasePending, 'NA');
    assert.equal(status.errorReason, undefined);

    const s = await getSecret('app-a-tls');
    assert.ok(s);
    assert.equal(s.type, 'kubernetes.io/tls');
    const a = s.metadata?.annotations ?? {};
    assert.equal(a['acme.extsvc.dev/temporary'], 'false');
    assert.equal(a['acme.extsvc.dev/names'], 'app-a.extsvc.test');
    assert.equal(a['acme.extsvc.dev/issuer'], pebble.directoryUrl);
    assert.ok(Date.parse(a['acme.extsvc.dev/not-after'] ?? '') > Date.now());
    assert.equal(s.metadata?.labels?.['app.kubernetes.io/managed-by'], 'extsvc-acme');
    const chain = pemBlocks(decode(s, 'tls.crt')).map((p) => new X509Certificate(p));
    assert.ok(chain.length >= 2, 'full chain: leaf and intermediate');
    const leaf = chain[0] as X509Certificate;
    assert.match(leaf.subjectAltName ?? '', /DNS:app-a\.extsvc\.test/);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(decode(s, 'tls.key'))));
    for (let i = 0; i + 1 < chain.length; i++)
      assert.ok(chain[i]?.verify((chain[i + 1] as X509Certificate).publicKey));
    const root = new X509Certificate(await pebble.roots());
    assert.ok((chain[chain.length - 1] as X509Certificate).verify(root.publicKey), 'chained to Pebble root');

    // The first version the API server ever held was the temporary self-signed certificate.
    assert.deepEqual(watchErrors, []);
    const versions = secretVersions.filter((v) => v.metadata?.name === 'app-a-tls');
    const first = versions[0];
    assert.ok(first, `no version of app-a-tls among ${secretVersions.length} recorded`);
    assert.equal(first.metadata?.annotations?.['acme.extsvc.dev/temporary'], 'true');
    const tmp = new X509Certificate(pemBlocks(decode(first, 'tls.crt'))[0] ?? '');
    assert.equal(tmp.issuer, tmp.subject);
    assert.match(tmp.subjectAltName ?? '', /DNS:app-a\.extsvc\.test/);

    // Only the follower (behind Envoy) served the CA's validation requests.
    assert.ok((await follower.admin<{ challengeRequests: number }>('/stats')).challengeRequests > 0);
    assert.equal((await leader.admin<{ challengeRequests: number }>('/stats')).challengeRequests, 0);
    assert.equal((await follower.admin<{ orders: number }>('/stats')).orders, 0, 'the follower never orders');
    assert.equal((await leader.admin<{ orders: number }>('/stats')).orders, 1);

    // Account key: Edge Stack's layout (Opaque, user.key SEC1 EC PEM) in the Host's namespace, under
    // Edge Stack's derived name NameEncode(authority)--NameEncode(email); none in acme's namespace.
    const home = await kube.raw('GET', '/api/v1/namespaces/extsvc-acme/secrets');
    assert.equal((home.body as { items: V1Secret[] }).items.filter((x) => x.data?.['user.key']).length, 0);
    const r = await kube.raw('GET', '/api/v1/namespaces/default/secrets');
    const accounts = (r.body as { items: V1Secret[] }).items.filter((x) => x.data?.['user.key']);
    assert.equal(accounts.length, 1);
    assert.match(
      accounts[0]?.metadata?.name ?? '',
      /^https-3a-2f-2f127\.0\.0\.1-3a[0-9]+-2fdir--ops-40extsvc\.test$/,
    );
    const account = accounts[0];
    assert.ok(account);
    assert.equal(account.type, 'Opaque');
    assert.match(decode(account, 'user.key'), /^-----BEGIN EC PRIVATE KEY-----/);
    assert.match(
      accounts[0]?.metadata?.annotations?.['acme.extsvc.dev/account-url'] ?? '',
      /^https:\/\/127\.0\.0\.1/,
    );

    const ev = await events('app-a');
    assert.ok(
      ev.some((e) => e.reason === 'Pending' && /temporary self-signed/.test(e.message)),
      JSON.stringify(ev),
    );
    assert.ok(ev.some((e) => e.reason === 'Ready' && e.type === 'Normal'));
    // No challenge ConfigMap left behind.
    const cms = await kube.raw(
      'GET',
      '/api/v1/namespaces/extsvc-acme/configmaps?labelSelector=acme.extsvc.dev/challenge%3Dtrue',
    );
    assert.equal((cms.body as { items: unknown[] }).items.length, 0);
  });

  it('creates the challenge Mapping: exact prefix, rewrite "", exact hostname, the Host labels, owned by the Host', async function () {
    const m = await kube.raw(
      'GET',
      '/apis/getambassador.io/v3alpha1/namespaces/default/mappings/app-a-acme-challenge',
    );
    assert.equal(m.status, 200);
    const body = m.body as {
      metadata: { labels: Record<string, string>; ownerReferences: Array<{ kind: string; uid: string }> };
      spec: Record<string, unknown>;
    };
    assert.equal(body.spec['prefix'], '/.well-known/acme-challenge/');
    assert.equal(body.spec['rewrite'], '');
    assert.equal(body.spec['hostname'], 'app-a.extsvc.test');
    assert.equal(body.spec['bypass_auth'], true);
    assert.equal(body.metadata.labels['app'], 'a');
    assert.equal(body.metadata.ownerReferences[0]?.uid, (await getHost('app-a')).metadata.uid);
  });

  it('deleting the Secret reissues it', async function () {
    this.timeout(60_000);
    const before = await getSecret('app-a-tls');
    assert.ok(before);
    const r = await kube.raw('DELETE', '/api/v1/namespaces/default/secrets/app-a-tls');
    assert.equal(r.status, 200);
    const again = await waitUntil(
      'app-a-tls reissued',
      async () => {
        const s = await getSecret('app-a-tls');
        return s && s.metadata?.annotations?.['acme.extsvc.dev/temporary'] === 'false' ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    assert.notEqual(serialOf(again), serialOf(before));
    assert.notEqual(again.metadata?.uid, before.metadata?.uid);
    await waitState('app-a', 'Ready');
  });

  it('a bad Host gets Error with a reason while the others become Ready; unannotated Hosts are left alone', async function () {
    this.timeout(60_000);
    kube.apply(host('bad', '*.wild.extsvc.test', 'bad-tls'));
    kube.apply(host('app-c', 'app-c.extsvc.test', 'app-c-tls'));
    kube.apply(host('not-mine', 'not-mine.extsvc.test', 'not-mine-tls', { annotate: false }));
    const bad = await waitState('bad', 'Error');
    assert.match(bad.errorReason ?? '', /wildcard/);
    await waitState('app-c', 'Ready');
    assert.equal((await getHost('not-mine')).status, undefined);
    assert.equal(await getSecret('not-mine-tls'), undefined);
    assert.equal(await getSecret('bad-tls'), undefined);
    assert.ok((await events('bad')).some((e) => e.type === 'Warning' && e.reason === 'Error'));
  });

  it('a Secret managed by someone else (Helm) is left alone and the Host says so', async function () {
    this.timeout(30_000);
    const foreign = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name: 'helm-tls',
        namespace: 'default',
        labels: { 'app.kubernetes.io/managed-by': 'Helm' },
        annotations: { 'meta.helm.sh/release-name': 'web' },
      },
      data: {
        'tls.crt': Buffer.from('not a cert').toString('base64'),
        'tls.key': Buffer.from('nope').toString('base64'),
      },
    };
    const created = await kube.raw('POST', '/api/v1/namespaces/default/secrets', foreign);
    assert.equal(created.status, 201);
    const rv = (created.body as V1Secret).metadata?.resourceVersion;
    kube.apply(host('app-e', 'app-e.extsvc.test', 'helm-tls'));
    const st = await waitState('app-e', 'Error');
    assert.match(st.errorReason ?? '', /helm-tls is managed by Helm/);
    // Wait for a few more Secret checks by the controller (its reads of helm-tls): it must not touch it.
    const reads = async (): Promise<number> =>
      (await leader.admin<{ secretReads: Record<string, number> }>('/stats')).secretReads[
        'default/helm-tls'
      ] ?? 0;
    const readsAtError = await reads();
    await waitUntil('three more Secret checks of helm-tls', async () => (await reads()) >= readsAtError + 3, {
      timeoutMs: 30_000,
    });
    assert.equal((await getSecret('helm-tls'))?.metadata?.resourceVersion, rv);
    assert.ok((await events('app-e')).some((e) => e.type === 'Warning' && /managed by Helm/.test(e.message)));
    // No order for a certificate that could not be stored (app-a twice, app-c so far).
    assert.equal((await leader.admin<{ orders: number }>('/stats')).orders, 3);
  });

  it('a 409 conflict on the Secret write is retried (re-read, re-checked, written)', async function () {
    this.timeout(60_000);
    kube.apply(host('app-f', 'app-f.extsvc.test', 'app-f-tls'));
    await waitState('app-f', 'Ready');
    const s = await getSecret('app-f-tls');
    assert.ok(s);
    assert.equal(s.metadata?.annotations?.['acme.extsvc.dev/temporary'], 'false');
    // The concurrent writer's change is kept (server-side apply owns only acme's fields).
    assert.equal(s.metadata?.labels?.['touched'], 'yes');
    assert.ok((await leader.admin<{ conflicts: number }>('/stats')).conflicts >= 1);
  });

  it('killing the leader: the follower takes over once the lease expires, without re-ordering valid certificates', async function () {
    this.timeout(60_000);
    assert.equal((await lease()).holderIdentity, 'acme-a');
    assert.equal((await follower.admin<{ isLeader: boolean }>('/leader')).isLeader, false);
    const serials = new Map<string, string>();
    for (const n of ['app-a-tls', 'app-c-tls', 'app-f-tls'])
      serials.set(n, serialOf((await getSecret(n)) as V1Secret));

    await leader.proc.kill('SIGKILL');
    // Eventually: the lease runs out (LEASE_MS), plus a bound derived from it for a loaded machine.
    // The follower must wait for the expiry (no split brain); how much longer it takes is not asserted.
    await waitUntil(
      'acme-b leads',
      async () => (await follower.admin<{ isLeader: boolean }>('/leader')).isLeader,
      {
        timeoutMs: LEASE_MS * 6,
        intervalMs: 50,
      },
    );
    const l = await lease();
    assert.equal(l.holderIdentity, 'acme-b');
    assert.ok((l.leaseTransitions ?? 0) >= 1);

    // The new leader loads the stored certificates: Ready, same serials, no order.
    await waitUntil(
      'acme-b reports app-a Ready',
      async () =>
        (await follower.admin<{ hosts: Array<{ key: string; state: string }> }>('/hosts')).hosts.some(
          (h) => h.key === 'default/app-a' && h.state === 'Ready',
        ),
      { timeoutMs: 10_000 },
    );
    for (const [n, serial] of serials) assert.equal(serialOf((await getSecret(n)) as V1Secret), serial, n);
    assert.equal((await follower.admin<{ orders: number }>('/stats')).orders, 0);

    // And it issues for new Hosts (answering the challenge itself now).
    kube.apply(host('app-g', 'app-g.extsvc.test', 'app-g-tls'));
    await waitState('app-g', 'Ready');
    assert.equal((await follower.admin<{ orders: number }>('/stats')).orders, 1);
  });

  it('a leader stopped gracefully (SIGTERM) releases the Lease: the next replica leads at once', async function () {
    // the bounds of its waits: a replica start (30 s on a loaded machine), then two of 10 s
    this.timeout(60_000);
    const third = await startReplica('acme-c', await freePort());
    assert.equal((await third.admin<{ isLeader: boolean }>('/leader')).isLeader, false);
    await follower.proc.stop();
    assert.deepEqual(follower.proc.exitStatus, { code: 0, signal: null });
    // The mechanism, not a stopwatch: before exiting, acme-b cleared its holder (or acme-c already took it).
    const released = await lease();
    assert.notEqual(released.holderIdentity, 'acme-b', JSON.stringify(released));
    await waitUntil(
      'acme-c leads',
      async () => (await third.admin<{ isLeader: boolean }>('/leader')).isLeader,
      {
        timeoutMs: 10_000,
        intervalMs: 50,
      },
    );
    await waitUntil(
      'acme-c reports app-g Ready without ordering',
      async () =>
        (await third.admin<{ hosts: Array<{ key: string; state: string }> }>('/hosts')).hosts.some(
          (h) => h.key === 'default/app-g' && h.state === 'Ready',
        ),
      { timeoutMs: 10_000 },
    );
    assert.equal((await third.admin<{ orders: number }>('/stats')).orders, 0);
  });
});
