import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import type { V1Secret } from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeApis } from '../../src/kube/api.ts';
import { KubeAccountStore, foreignManager } from '../../src/kube/secret-store.ts';
import { accountId } from '../../src/issuer.ts';

const secret = (metadata: NonNullable<V1Secret['metadata']>): V1Secret => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata,
});

describe('kube/secret-store', function () {
  describe('foreignManager', function () {
    it('lets acme write absent-owner, its own, and empty placeholder Secrets', function () {
      assert.equal(foreignManager(secret({ name: 's' })), undefined);
      assert.equal(
        foreignManager(secret({ name: 's', labels: { 'app.kubernetes.io/managed-by': 'extsvc-acme' } })),
        undefined,
      );
      assert.equal(
        foreignManager(
          secret({
            name: 's',
            managedFields: [{ manager: 'kubectl-create', operation: 'Update', fieldsV1: { 'f:type': {} } }],
          }),
        ),
        undefined,
      );
    });
    it('names Helm, cert-manager, a foreign owner, or the field manager that owns the certificate', function () {
      assert.equal(
        foreignManager(secret({ name: 's', labels: { 'app.kubernetes.io/managed-by': 'Helm' } })),
        'Helm',
      );
      assert.equal(
        foreignManager(secret({ name: 's', annotations: { 'meta.helm.sh/release-name': 'web' } })),
        'Helm',
      );
      assert.equal(
        foreignManager(secret({ name: 's', annotations: { 'cert-manager.io/certificate-name': 'web' } })),
        'cert-manager',
      );
      assert.match(
        foreignManager(
          secret({
            name: 's',
            ownerReferences: [
              { apiVersion: 'cert-manager.io/v1', kind: 'Certificate', name: 'web', uid: 'u' },
            ],
          }),
        ) ?? '',
        /^Certificate web/,
      );
      assert.equal(
        foreignManager(
          secret({
            name: 's',
            managedFields: [
              { manager: 'extsvc-acme', operation: 'Apply', fieldsV1: { 'f:data': { 'f:tls.crt': {} } } },
              {
                manager: 'argocd-controller',
                operation: 'Apply',
                fieldsV1: { 'f:data': { 'f:tls.key': {} } },
              },
            ],
          }),
        ),
        'field manager argocd-controller',
      );
    });
    it("takes over Edge Stack's or kubectl's Secret only when opted in (field manager listed, or the Secret annotated); Helm and cert-manager never", function () {
      const edgeStack = (annotations?: Record<string, string>): V1Secret =>
        secret({
          name: 's',
          ...(annotations ? { annotations } : {}),
          managedFields: [
            {
              manager: 'amb-sidecar',
              operation: 'Update',
              fieldsV1: { 'f:data': { 'f:tls.crt': {}, 'f:tls.key': {} } },
            },
          ],
        });
      const kubectl = secret({
        name: 's',
        managedFields: [
          {
            manager: 'kubectl-create',
            operation: 'Update',
            fieldsV1: { 'f:data': { 'f:tls.crt': {}, 'f:tls.key': {} } },
          },
        ],
      });
      assert.equal(foreignManager(edgeStack()), 'field manager amb-sidecar');
      assert.equal(foreignManager(kubectl), 'field manager kubectl-create');
      assert.equal(foreignManager(edgeStack(), { fieldManagers: ['amb-sidecar'] }), undefined);
      assert.equal(
        foreignManager(kubectl, { fieldManagers: ['amb-sidecar'] }),
        'field manager kubectl-create',
      );
      assert.equal(foreignManager(kubectl, { fieldManagers: ['kubectl-create'] }), undefined);
      assert.equal(foreignManager(edgeStack({ 'acme.extsvc.dev/adopt': 'true' })), undefined);
      assert.equal(
        foreignManager(edgeStack({ 'acme.extsvc.dev/adopt': 'yes' })),
        'field manager amb-sidecar',
      );
      const all = { fieldManagers: ['amb-sidecar', 'kubectl-create', 'helm', 'cert-manager-certificates'] };
      const adopt = { 'acme.extsvc.dev/adopt': 'true' };
      assert.equal(
        foreignManager(
          secret({ name: 's', labels: { 'app.kubernetes.io/managed-by': 'Helm' }, annotations: adopt }),
          all,
        ),
        'Helm',
      );
      assert.equal(
        foreignManager(
          secret({ name: 's', annotations: { ...adopt, 'meta.helm.sh/release-name': 'web' } }),
          all,
        ),
        'Helm',
      );
      assert.equal(
        foreignManager(
          secret({ name: 's', annotations: { ...adopt, 'cert-manager.io/certificate-name': 'web' } }),
          all,
        ),
        'cert-manager',
      );
    });
  });

  it('KubeAccountStore maps issuer account ids to Secrets (privateKeySecret, else a derived name at home)', function () {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const store = new KubeAccountStore(kubeApis(kc), { defaultNamespace: 'extsvc' });
    const explicit = accountId({
      authority: 'https://ca/dir',
      privateKeySecret: { namespace: 'apps', name: 'acct.key' },
    });
    assert.deepEqual(store.secretFor(explicit), { namespace: 'apps', name: 'acct.key' });
    const derived = accountId({
      authority: 'https://acme-v02.api.letsencrypt.org/directory',
      email: 'a@b.example',
    });
    assert.deepEqual(store.secretFor(derived), { namespace: 'extsvc', name: derived });
    assert.match(derived, /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/);
  });
});

describe('kube/secret-store KubeAccountStore encodings', function () {
  it("writes Edge Stack's PKCS#8 RSA-2048 user.key back in the same encoding; a new EC key as SEC1", async function () {
    const { generateKeyPairSync } = await import('node:crypto');
    const edgeStackKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    const written: V1Secret[] = [];
    const fake = {
      core: {
        readNamespacedSecret: async (): Promise<V1Secret> => ({
          metadata: { name: 'le-account', namespace: 'shop' },
          data: { 'user.key': Buffer.from(edgeStackKey).toString('base64') },
        }),
        patchNamespacedSecret: async (req: { body: V1Secret }): Promise<V1Secret> => {
          written.push(req.body);
          return req.body;
        },
      },
    } as unknown as ReturnType<typeof kubeApis>;
    const store = new KubeAccountStore(fake, { defaultNamespace: 'extsvc-acme' });
    const loaded = await store.load('shop.le-account');
    assert.ok(loaded);
    await store.save('shop.le-account', { ...loaded, accountUrl: 'https://ca.example/acct/1' });
    const userKey = (s: V1Secret | undefined): string =>
      Buffer.from(s?.data?.['user.key'] ?? '', 'base64').toString('utf8');
    assert.equal(userKey(written[0]), edgeStackKey);
    assert.match(userKey(written[0]), /^-----BEGIN PRIVATE KEY-----/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
    await store.save('shop.other', { keyPem: ec });
    assert.match(userKey(written[1]), /^-----BEGIN EC PRIVATE KEY-----/);
  });
});

describe('kube/secret-store KubeAccountStore derived accounts', function () {
  it("reads a derived account Secret from acme's own namespace when the Host's namespace has none, and writes it to the Host's namespace", async function () {
    const { ApiException, generateKeyPairSync } = {
      ...(await import('@kubernetes/client-node')),
      ...(await import('node:crypto')),
    };
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'sec1', format: 'pem' })
      .toString();
    const name = 'https-3a-2f-2fca.example-2fdir--ops-40example.com';
    const reads: string[] = [];
    const written: V1Secret[] = [];
    const fake = {
      core: {
        readNamespacedSecret: async (req: { name: string; namespace: string }): Promise<V1Secret> => {
          reads.push(`${req.namespace}/${req.name}`);
          if (req.namespace !== 'extsvc-acme') throw new ApiException(404, 'not found', '', {});
          return {
            metadata: { name, namespace: 'extsvc-acme' },
            data: { 'user.key': Buffer.from(key).toString('base64') },
          };
        },
        patchNamespacedSecret: async (req: { body: V1Secret }): Promise<V1Secret> => {
          written.push(req.body);
          return req.body;
        },
      },
    } as unknown as ReturnType<typeof kubeApis>;
    const store = new KubeAccountStore(fake, { defaultNamespace: 'extsvc-acme' });
    const loaded = await store.load(`shop.${name}`);
    assert.ok(loaded);
    assert.deepEqual(reads, [`shop/${name}`, `extsvc-acme/${name}`]);
    await store.save(`shop.${name}`, loaded);
    assert.equal(written[0]?.metadata?.namespace, 'shop');
    assert.equal(Buffer.from(written[0]?.data?.['user.key'] ?? '', 'base64').toString(), key);
    // An explicit privateKeySecret never falls back to another namespace.
    reads.length = 0;
    assert.equal(await store.load('shop.my-account'), undefined);
    assert.deepEqual(reads, ['shop/my-account']);
  });
});
