import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import {
  type HostObject,
  challengeMapping,
  emissaryStatus,
  isManaged,
  parseHostObject,
  statusMatches,
} from '../../src/kube/hosts.ts';
import { challengeObjectName } from '../../src/kube/challenge-store.ts';

const host = (spec: Record<string, unknown>, annotations?: Record<string, string>): HostObject => ({
  apiVersion: 'getambassador.io/v3alpha1',
  kind: 'Host',
  metadata: { name: 'web', namespace: 'apps', uid: 'u-1', ...(annotations ? { annotations } : {}) },
  spec,
});

describe('kube/hosts', function () {
  describe('isManaged', function () {
    it('manages only annotated Hosts when no ambassador_id is configured', function () {
      assert.equal(isManaged(host({}), { ambassadorIds: [] }), false);
      assert.equal(isManaged(host({}, { 'acme.extsvc.dev/manage': 'true' }), { ambassadorIds: [] }), true);
    });
    it('matches ambassador_id (a Host without one has "default") among Hosts with an acmeProvider; the annotation "false" always opts out', function () {
      const acme = { acmeProvider: { email: 'ops@example.com' } };
      assert.equal(isManaged(host(acme), { ambassadorIds: ['default'] }), true);
      assert.equal(
        isManaged(host({ ...acme, ambassador_id: ['edge'] }), { ambassadorIds: ['default'] }),
        false,
      );
      assert.equal(
        isManaged(host({ ...acme, ambassador_id: ['edge', 'ours'] }), { ambassadorIds: ['ours'] }),
        true,
      );
      assert.equal(isManaged(host({ ...acme, ambassador_id: 'ours' }), { ambassadorIds: ['ours'] }), true);
      assert.equal(isManaged(host({ ...acme, ambassador_id: ['x'] }), { ambassadorIds: ['*'] }), true);
      assert.equal(
        isManaged(host(acme, { 'acme.extsvc.dev/manage': 'false' }), { ambassadorIds: ['*'] }),
        false,
      );
    });
    it('leaves Hosts without an acmeProvider to whoever manages their TLS (cert-manager, by hand) unless annotated', function () {
      assert.equal(isManaged(host({ tlsSecret: { name: 'cm-tls' } }), { ambassadorIds: ['default'] }), false);
      assert.equal(isManaged(host({}), { ambassadorIds: ['*'] }), false);
      assert.equal(
        isManaged(host({}, { 'acme.extsvc.dev/manage': 'true' }), { ambassadorIds: ['default'] }),
        true,
      );
    });
  });

  it('parseHostObject uses the issuer core validation (namespace from metadata, tlsSecret default namespace)', function () {
    const defaults = {
      namespace: 'default',
      authority: 'https://ca.example/dir',
      ambassadorIds: ['*'],
      allowedAuthorities: ['https://ca.example/dir'],
    };
    const ok = parseHostObject(
      host({ hostname: 'www.example.com', tlsSecret: { name: 'www-tls' } }),
      defaults,
    );
    assert.equal(ok.kind, 'acme');
    assert.equal(ok.key, 'apps/web');
    assert.deepEqual(ok.kind === 'acme' ? ok.tlsSecret : undefined, { namespace: 'apps', name: 'www-tls' });
    const bad = parseHostObject(host({ hostname: '*.example.com', tlsSecret: { name: 'w' } }), defaults);
    assert.equal(bad.kind, 'invalid');
  });

  it('emissaryStatus sets error fields only in Error, and clears them otherwise (merge patch nulls)', function () {
    const base = {
      key: 'apps/web',
      phaseCompleted: 'NA',
      phasePending: 'NA',
      tlsCertificateSource: 'ACME',
    } as const;
    assert.deepEqual(emissaryStatus({ ...base, state: 'Ready', errorReason: 'stale' }), {
      state: 'Ready',
      phaseCompleted: 'NA',
      phasePending: 'NA',
      tlsCertificateSource: 'ACME',
      errorReason: null,
      errorTimestamp: null,
      errorBackoff: null,
    });
    const err = emissaryStatus({
      ...base,
      state: 'Error',
      errorReason: 'boom',
      errorTimestamp: '2026-11-22T01:02:03.456Z',
      errorBackoff: '5m0s',
    });
    assert.equal(err.errorReason, 'boom');
    assert.equal(err.errorBackoff, '5m0s');
    // The API server stores date-times to the second: equal instants match, others do not.
    assert.equal(statusMatches({ ...err, errorTimestamp: '2026-11-22T01:02:03Z' }, err), true);
    assert.equal(statusMatches({ ...err, errorTimestamp: '2026-11-22T01:02:04Z' }, err), false);
    assert.equal(statusMatches({ ...err, errorReason: 'other' }, err), false);
    assert.equal(statusMatches(undefined, err), false);
  });

  it('challengeMapping: exact prefix, rewrite "", exact hostname, the Host labels and ambassador_id, owned by the Host', function () {
    const m = challengeMapping(
      host({
        hostname: 'www.example.com',
        mappingSelector: { matchLabels: { app: 'web' } },
        ambassador_id: 'edge',
      }),
      'www.example.com',
      'acme.extsvc:8089',
      { 'app.kubernetes.io/managed-by': 'extsvc-acme' },
    ) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    assert.equal(m.metadata['name'], 'web-acme-challenge');
    assert.equal(m.metadata['namespace'], 'apps');
    assert.deepEqual(m.metadata['labels'], { app: 'web', 'app.kubernetes.io/managed-by': 'extsvc-acme' });
    assert.deepEqual(m.spec, {
      ambassador_id: ['edge'],
      hostname: 'www.example.com',
      prefix: '/.well-known/acme-challenge/',
      rewrite: '',
      service: 'acme.extsvc:8089',
      bypass_auth: true,
      timeout_ms: 5000,
    });
    assert.equal((m.metadata['ownerReferences'] as Array<{ uid: string }>)[0]?.uid, 'u-1');
  });

  it('challenge object names are valid DNS names, stable, and distinct per token', function () {
    const a = challengeObjectName('Ab_-9zZ');
    assert.match(a, /^[a-z0-9-]{1,63}$/);
    assert.equal(a, challengeObjectName('Ab_-9zZ'));
    assert.notEqual(a, challengeObjectName('ab_-9zZ'));
  });
});
