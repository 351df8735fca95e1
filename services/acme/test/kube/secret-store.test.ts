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
