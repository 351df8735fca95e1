import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, before } from 'mocha';
import type { V1Secret } from '@kubernetes/client-node';
import { Stack, ROOT, type PebbleHandle } from '../harness/stack.ts';
import { freePort, waitUntil } from '../harness/proc.ts';
import { applyEmissaryCrds, startKube, type KubeHandle } from '../harness/kube.ts';
import {
  createCertificateForKey,
  createSelfSigned,
  generatePrivateKey,
} from '../../services/acme/src/certs.ts';

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const RUNNER = join(ROOT, 'integration', 'kube', 'acme-runner.ts');
const HOSTS = '/apis/getambassador.io/v3alpha1/namespaces/default/hosts';
const SECRETS = '/api/v1/namespaces/default/secrets';

interface HostStatusBody {
  state?: string;
  tlsCertificateSource?: string;
  errorReason?: string;
}

const pemBlocks = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
const decode = (s: V1Secret, key: string): string =>
  Buffer.from(s.data?.[key] ?? '', 'base64').toString('utf8');
const b64 = (s: string): string => Buffer.from(s).toString('base64');

// An operator moving from Edge Stack: Hosts as Emissary's docs write them, Secrets Edge Stack
// (field manager amb-sidecar) and kubectl wrote. acme runs as its ServiceAccount with the base's RBAC
// and the base's defaults (AMBASSADOR_ID=default), adopting amb-sidecar's Secrets (opt-in).
describe('acme Kubernetes mode: coming from Edge Stack (real kube-apiserver, Pebble, Envoy)', function () {
  const stack = new Stack('kube-acme-edgestack').install();
  let kube: KubeHandle;
  let pebble: PebbleHandle;
  let admin: <T>(path: string) => Promise<T>;

  const getHost = async (name: string): Promise<{ status?: HostStatusBody }> => {
    const r = await kube.raw('GET', `${HOSTS}/${name}`);
    assert.equal(r.status, 200);
    return r.body as { status?: HostStatusBody };
  };
  const getSecret = async (name: string, ns = 'default'): Promise<V1Secret | undefined> => {
    const r = await kube.raw('GET', `/api/v1/namespaces/${ns}/secrets/${name}`);
    return r.status === 200 ? (r.body as V1Secret) : undefined;
  };
  const waitState = async (name: string, state: string, timeoutMs = 45_000): Promise<HostStatusBody> =>
    waitUntil(
      `Host ${name} ${state}`,
      async () => {
        const s = (await getHost(name)).status;
        return s?.state === state ? s : undefined;
      },
      { timeoutMs, intervalMs: 100 },
    );
  const applyHost = (
    name: string,
    spec: Record<string, unknown>,
    annotations?: Record<string, string>,
  ): void =>
    void kube.apply(
      JSON.stringify({
        apiVersion: 'getambassador.io/v3alpha1',
        kind: 'Host',
        metadata: { name, namespace: 'default', ...(annotations ? { annotations } : {}) },
        spec,
      }),
    );
  // A Secret as a given field manager writes it (Edge Stack's amb-sidecar, kubectl create).
  const createSecretAs = async (fieldManager: string, body: V1Secret): Promise<V1Secret> => {
    const r = await kube.raw('POST', `${SECRETS}?fieldManager=${fieldManager}`, body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as V1Secret;
  };

  before(async function () {
    this.timeout(150_000);
    kube = await startKube(stack);
    applyEmissaryCrds(kube);
    kube.apply(kube.kubectl('kustomize', DEPLOY));
    const saKubeconfig = kube.kubeconfigForToken(kube.serviceAccountToken('extsvc-acme', 'acme'), 'acme');
    const challengePort = await freePort();
    const envoy = await stack.envoy({ ACME_CHALLENGE_PORT: challengePort });
    pebble = await stack.pebble({ httpPort: envoy.httpPort, env: { PEBBLE_AUTHZREUSE: '0' } });
    const adminPort = await freePort();
    const proc = stack.spawn('acme', process.execPath, [RUNNER], {
      KUBECONFIG: saKubeconfig,
      POD_NAMESPACE: 'extsvc-acme',
      POD_NAME: 'acme-0',
      ACME_CA_FILE: pebble.caCertPath,
      // Emissary's docs' Hosts name no authority: the operator's default one (Pebble here).
      DEFAULT_AUTHORITY: pebble.directoryUrl,
      CHALLENGE_PORT: String(challengePort),
      ADMIN_PORT: String(adminPort),
      LEASE_DURATION_MS: '3000',
      RENEW_DEADLINE_MS: '2000',
      RETRY_PERIOD_MS: '250',
      SECRET_CHECK_INTERVAL_MS: '500',
      BACKOFF_INITIAL_MS: '2000',
      CHALLENGE_MAPPING_SERVICE: 'acme.extsvc-acme:8089',
      // As deploy/kubernetes/acme.yaml ships it, plus the Edge Stack opt-in.
      AMBASSADOR_ID: 'default',
      ADOPT_FIELD_MANAGERS: 'amb-sidecar',
    });
    admin = async <T>(path: string): Promise<T> =>
      (await (await fetch(`http://127.0.0.1:${adminPort}${path}`)).json()) as T;
    await waitUntil('acme leads', async () => (await admin<{ isLeader: boolean }>('/leader')).isLeader, {
      timeoutMs: 30_000,
      abort: () => (proc.exitStatus ? `exited:\n${proc.logs()}` : undefined),
    });
  });

  it("a Host written from Emissary's docs (no tlsSecret, no annotation) becomes Ready: certificate in the Secret named after its hostname, account key in its namespace", async function () {
    this.timeout(60_000);
    // docs: getambassador.io/docs/emissary/latest/topics/running/host-crd (acmeProvider with an e-mail only).
    applyHost('docs-host', {
      hostname: 'docs-host.extsvc.test',
      acmeProvider: { email: 'julian@example.com' },
    });
    const st = await waitState('docs-host', 'Ready');
    assert.equal(st.tlsCertificateSource, 'ACME');
    // NameEncode("docs-host.extsvc.test"): Edge Stack's default Secret name.
    const s = await getSecret('docs-2dhost.extsvc.test');
    assert.ok(s, 'Secret docs-2dhost.extsvc.test');
    assert.equal(s.metadata?.annotations?.['acme.extsvc.dev/temporary'], 'false');
    const leaf = new X509Certificate(pemBlocks(decode(s, 'tls.crt'))[0] ?? '');
    assert.equal(leaf.subjectAltName, 'DNS:docs-host.extsvc.test');
    // Edge Stack's account Secret: NameEncode(authority)--NameEncode(email), in the Host's namespace.
    const enc = (x: string): string =>
      [...Buffer.from(x.toLowerCase())]
        .map((b) =>
          /[a-z0-9.]/.test(String.fromCharCode(b))
            ? String.fromCharCode(b)
            : `-${b.toString(16).padStart(2, '0')}`,
        )
        .join('');
    const account = await getSecret(`${enc(pebble.directoryUrl)}--${enc('julian@example.com')}`);
    assert.ok(account, 'derived account Secret in default');
    assert.match(decode(account, 'user.key'), /^-----BEGIN EC PRIVATE KEY-----/);
    // Written into the Host (its own field), so that Emissary terminates TLS with it; the admission
    // policy shipped in the base let acme's token add it.
    const spec = await waitUntil(
      'spec.tlsSecret written',
      async () => {
        const h = (await kube.raw('GET', `${HOSTS}/docs-host`)).body as {
          spec: { tlsSecret?: { name: string }; hostname: string };
          metadata: {
            managedFields: Array<{ manager: string; fieldsV1?: { 'f:spec'?: Record<string, unknown> } }>;
          };
        };
        return h.spec.tlsSecret ? h : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    assert.deepEqual(spec.spec.tlsSecret, { name: 'docs-2dhost.extsvc.test' });
    assert.equal(spec.spec.hostname, 'docs-host.extsvc.test');
    const mine = spec.metadata.managedFields.find((f) => f.manager === 'extsvc-acme');
    assert.deepEqual(Object.keys(mine?.fieldsV1?.['f:spec'] ?? {}), ['f:tlsSecret']);
    const home = await kube.raw('GET', '/api/v1/namespaces/extsvc-acme/secrets');
    assert.equal((home.body as { items: V1Secret[] }).items.filter((x) => x.data?.['user.key']).length, 0);
  });

  it('Hosts without an acmeProvider, of another ambassador_id, or annotated "false" are left alone', async function () {
    this.timeout(30_000);
    applyHost('cm-host', { hostname: 'cm.extsvc.test', tlsSecret: { name: 'cm-tls' } });
    applyHost('other-id', {
      hostname: 'other.extsvc.test',
      ambassador_id: ['edge'],
      acmeProvider: { email: 'julian@example.com' },
    });
    applyHost(
      'opted-out',
      { hostname: 'out.extsvc.test', acmeProvider: { email: 'julian@example.com' } },
      { 'acme.extsvc.dev/manage': 'false' },
    );
    // Positive signal that acme saw them: a managed Host applied after them is Ready.
    applyHost('marker', { hostname: 'marker.extsvc.test', acmeProvider: { email: 'julian@example.com' } });
    await waitState('marker', 'Ready');
    for (const n of ['cm-host', 'other-id', 'opted-out'])
      assert.equal((await getHost(n)).status, undefined, n);
    assert.equal(await getSecret('cm-tls'), undefined);
    assert.equal(await getSecret('other.extsvc.test'), undefined);
    assert.equal(await getSecret('out.extsvc.test'), undefined);
    const hosts = (await admin<{ hosts: Array<{ key: string }> }>('/hosts')).hosts.map((h) => h.key);
    assert.ok(!hosts.includes('default/cm-host') && !hosts.includes('default/opted-out'), hosts.join());
  });

  it('an Edge Stack Secret (field manager amb-sidecar) and its PKCS#8 RSA-2048 account key are adopted: renewed from Pebble, the account key written back byte for byte', async function () {
    this.timeout(90_000);
    // Edge Stack's certificate, two thirds of its lifetime gone: due for renewal now.
    const now = Date.now();
    const certKey = generatePrivateKey('rsa2048');
    const oldChain = createCertificateForKey(
      ['es.extsvc.test'],
      certKey,
      now - 2 * 3_600_000,
      now + 1_800_000,
      'Edge Stack test',
    );
    const oldSerial = new X509Certificate(oldChain).serialNumber;
    await createSecretAs('amb-sidecar', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'es-tls', namespace: 'default' },
      data: { 'tls.crt': b64(oldChain), 'tls.key': b64(certKey) },
    });
    const userKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    await createSecretAs('amb-sidecar', {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: 'es-account', namespace: 'default' },
      data: { 'user.key': b64(userKey) },
    });
    applyHost('es', {
      hostname: 'es.extsvc.test',
      acmeProvider: { email: 'ops@extsvc.test', privateKeySecret: { name: 'es-account' } },
      tlsSecret: { name: 'es-tls' },
    });
    const renewed = await waitUntil(
      'es-tls renewed by acme',
      async () => {
        const s = await getSecret('es-tls');
        return s && s.metadata?.annotations?.['acme.extsvc.dev/issuer'] !== undefined ? s : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await waitState('es', 'Ready');
    const chain = pemBlocks(decode(renewed, 'tls.crt')).map((p) => new X509Certificate(p));
    assert.notEqual(chain[0]?.serialNumber, oldSerial);
    assert.equal(chain[0]?.subjectAltName, 'DNS:es.extsvc.test');
    const root = new X509Certificate(await pebble.roots());
    assert.ok(chain.at(-1)?.verify(root.publicKey), 'chained to Pebble root');
    assert.equal(renewed.metadata?.labels?.['app.kubernetes.io/managed-by'], 'extsvc-acme');
    // The account: Edge Stack's key, registered at Pebble, stored back in its own encoding.
    const account = await getSecret('es-account');
    assert.ok(account);
    assert.equal(decode(account, 'user.key'), userKey);
    assert.match(
      account.metadata?.annotations?.['acme.extsvc.dev/account-url'] ?? '',
      /^https:\/\/127\.0\.0\.1/,
    );
  });

  it('a kubectl-made Secret is not taken over without the opt-in (the Host says how), and is once annotated acme.extsvc.dev/adopt=true', async function () {
    this.timeout(90_000);
    // Past two thirds of its lifetime: once adopted, acme renews it at once.
    const kcKey = generatePrivateKey('ecdsa-p256');
    const now = Date.now();
    const pair = {
      chainPem: createCertificateForKey(
        ['kc.extsvc.test'],
        kcKey,
        now - 3_600_000,
        now + 600_000,
        'kubectl test',
      ),
      keyPem: kcKey,
    };
    const dir = stack.mkdir('kubectl-tls');
    writeFileSync(join(dir, 'tls.crt'), pair.chainPem);
    writeFileSync(join(dir, 'tls.key'), pair.keyPem);
    kube.kubectl(
      'create',
      'secret',
      'tls',
      'kc-tls',
      '-n',
      'default',
      `--cert=${join(dir, 'tls.crt')}`,
      `--key=${join(dir, 'tls.key')}`,
    );
    const rv = (await getSecret('kc-tls'))?.metadata?.resourceVersion;
    applyHost('kc', {
      hostname: 'kc.extsvc.test',
      acmeProvider: { email: 'ops@extsvc.test' },
      tlsSecret: { name: 'kc-tls' },
    });
    const st = await waitState('kc', 'Error');
    assert.match(st.errorReason ?? '', /managed by field manager kubectl-create/);
    assert.match(st.errorReason ?? '', /acme\.extsvc\.dev\/adopt=true/);
    assert.equal((await getSecret('kc-tls'))?.metadata?.resourceVersion, rv, 'left alone');
    kube.kubectl('annotate', 'secret', 'kc-tls', '-n', 'default', 'acme.extsvc.dev/adopt=true');
    await waitState('kc', 'Ready', 60_000);
    const s = await getSecret('kc-tls');
    assert.ok(s);
    assert.equal(s.metadata?.annotations?.['acme.extsvc.dev/issuer'], pebble.directoryUrl);
  });

  it('authority none with a Secret the user made (kubectl create secret tls) is Ready, never "does not exist"', async function () {
    this.timeout(30_000);
    const pair = createSelfSigned(['own.extsvc.test'], Date.now(), 3_600_000);
    const dir = stack.mkdir('user-tls');
    writeFileSync(join(dir, 'tls.crt'), pair.chainPem);
    writeFileSync(join(dir, 'tls.key'), pair.keyPem);
    kube.kubectl(
      'create',
      'secret',
      'tls',
      'own-tls',
      '-n',
      'default',
      `--cert=${join(dir, 'tls.crt')}`,
      `--key=${join(dir, 'tls.key')}`,
    );
    const rv = (await getSecret('own-tls'))?.metadata?.resourceVersion;
    applyHost('own', {
      hostname: 'own.extsvc.test',
      acmeProvider: { authority: 'none' },
      tlsSecret: { name: 'own-tls' },
    });
    applyHost('missing', {
      hostname: 'missing.extsvc.test',
      acmeProvider: { authority: 'none' },
      tlsSecret: { name: 'nope-tls' },
    });
    const missing = await waitState('missing', 'Error');
    assert.match(missing.errorReason ?? '', /nope-tls does not exist/);
    const st = await waitState('own', 'Ready');
    assert.equal(st.tlsCertificateSource, 'Other');
    assert.equal(st.errorReason, undefined);
    assert.equal((await getSecret('own-tls'))?.metadata?.resourceVersion, rv, 'left alone');
  });
});
