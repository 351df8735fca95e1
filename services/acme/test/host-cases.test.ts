import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import { type HostDefaults, parseHost } from '../src/host.ts';

// Host validation cases the mutation run (issue 13) found unasserted: each invalid field with its
// exact reason, the account key Secret, and what an invalid Host still reports.

const defaults: HostDefaults = {
  namespace: 'default',
  authority: 'https://ca.example/dir',
  ambassadorIds: ['default'],
  allowedAuthorities: ['https://ca.example/dir'],
};
const origin = { file: 'hosts.yaml', index: 3 };
const host = (
  meta: Record<string, unknown> = {},
  spec: Record<string, unknown> = {},
  provider: Record<string, unknown> | string = {},
): Record<string, unknown> => ({
  apiVersion: 'getambassador.io/v3alpha1',
  kind: 'Host',
  metadata: { name: 'h', namespace: 'web', ...meta },
  spec: { hostname: 'h.example.com', tlsSecret: { name: 'h-tls' }, acmeProvider: provider, ...spec },
});
const reason = (doc: Record<string, unknown>): string => {
  const h = parseHost(doc, origin, defaults);
  return h.kind === 'invalid' ? h.reason : h.kind;
};

describe('acme host validation cases (mutation findings)', () => {
  it('names the invalid field', () => {
    assert.equal(reason(host()), 'acme');
    assert.match(
      reason({ ...host(), apiVersion: 'v1' }),
      /^apiVersion must be one of .*getambassador\.io\/v3alpha1/,
    );
    assert.equal(
      reason(host({ name: 'Bad_Name' })),
      'metadata.name is required and must be a DNS subdomain name',
    );
    assert.equal(reason(host({ name: 5 })), 'metadata.name is required and must be a DNS subdomain name');
    assert.equal(reason(host({}, { hostname: 5 })), 'spec.hostname must be a string');
    assert.equal(reason(host({}, {}, 'x')), 'spec.acmeProvider must be an object');
    assert.equal(reason(host({}, {}, { authority: 5 })), 'spec.acmeProvider.authority must be a string');
    assert.equal(
      reason(host({}, { tlsSecret: { name: '' } })),
      'spec.tlsSecret.name must be a non-empty string',
    );
    assert.equal(reason(host({}, { tlsSecret: 'x' })), 'spec.tlsSecret.name must be a non-empty string');
    assert.equal(
      reason(host({}, { tlsSecret: { name: 'x', namespace: 'A_B' } })),
      'spec.tlsSecret.namespace must be a DNS label',
    );
    assert.equal(reason(host({}, { tlsSecret: { name: 'x', namespace: '' } })), 'acme');
    assert.equal(reason(host({}, { tlsSecret: { name: 'x', namespace: 'web' } })), 'acme');
    assert.equal(
      reason(host({}, {}, { email: 'ops@example.com extra' })),
      'spec.acmeProvider.email must be an e-mail address',
    );
    assert.equal(
      reason(host({}, { hostname: 'x'.repeat(250) + '.com' })),
      `hostname "${'x'.repeat(40)}..." is longer than 253 characters`,
    );
  });

  it('account key Secret: a DNS name in the Host namespace, empty means none', () => {
    const pk = (v: unknown): ReturnType<typeof parseHost> =>
      parseHost(host({}, {}, { privateKeySecret: v }), origin, defaults);
    const ok = pk({ name: 'acct-key' });
    assert.ok(ok.kind === 'acme');
    assert.deepEqual(ok.acme?.privateKeySecret, { namespace: 'web', name: 'acct-key' });
    const none = pk({ name: '' });
    assert.ok(none.kind === 'acme');
    assert.equal(none.acme?.privateKeySecret, undefined);
    for (const bad of [5, { name: 5 }, {}])
      assert.equal(
        (pk(bad) as { reason?: string }).reason,
        'spec.acmeProvider.privateKeySecret.name must be a string',
      );
    assert.equal(
      (pk({ name: 'Bad_Key' }) as { reason?: string }).reason,
      'spec.acmeProvider.privateKeySecret.name must be a DNS subdomain name',
    );
  });

  it('an invalid Host keeps its key, hostname and origin for the status it reports', () => {
    const h = parseHost(
      host({ namespace: 'web' }, { hostname: ' H.Example.COM ' }, { email: 'bad' }),
      origin,
      defaults,
    );
    assert.deepEqual(
      { kind: h.kind, key: h.key, hostname: h.hostname, origin: h.origin },
      { kind: 'invalid', key: 'web/h', hostname: 'h.example.com', origin },
    );
    const unnamed = parseHost({ ...host(), metadata: { namespace: 'web' }, spec: {} }, origin, defaults);
    assert.equal(unnamed.key, 'web/#3');
    assert.equal('hostname' in unnamed, false, 'no hostname given, none reported');
  });
});
