import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { describe, it } from 'mocha';
import {
  type HostDefaults,
  type ParsedHost,
  groupHosts,
  hostnameProblem,
  parseHost,
  rejectProviderConflicts,
  nameEncode,
  parseHostsText,
} from '../src/host.ts';

const defaults: HostDefaults = {
  namespace: 'default',
  authority: 'https://acme.example/default-dir',
  ambassadorIds: ['default'],
  allowedAuthorities: ['https://acme.example/default-dir', 'https://ca.example/dir'],
};
const fixture = readFileSync(new URL('./fixtures/hosts-mixed.yaml', import.meta.url), 'utf8');

function parse(text = fixture): readonly ParsedHost[] {
  const r = parseHostsText(text, 'hosts.yaml', defaults);
  assert.equal(r.kind, 'ok');
  return r.kind === 'ok' ? r.hosts : [];
}
const byKey = (hosts: readonly ParsedHost[], key: string): ParsedHost => {
  const h = hosts.find((x) => x.key === key);
  assert.ok(h, `host ${key} present`);
  return h;
};

describe('acme host parsing', () => {
  it('keeps valid Hosts beside invalid ones, each invalid one with its reason', () => {
    const hosts = parse();
    assert.deepEqual(
      hosts.map((h) => [h.key, h.kind]),
      [
        ['web/a', 'acme'],
        ['web/b', 'acme'],
        ['web/wild', 'invalid'],
        ['web/nosecret', 'acme'],
        ['web/badauth', 'invalid'],
        ['web/manual', 'none'],
        ['default/defaulted', 'acme'],
      ],
    );
    const reason = (k: string): string => {
      const h = byKey(hosts, k);
      return h.kind === 'invalid' ? h.reason : '';
    };
    assert.equal(
      reason('web/wild'),
      'wildcard hostname "*.example.com" cannot be validated with HTTP-01 (wildcards need DNS-01)',
    );
    // No tlsSecret: Edge Stack's default, the hostname NameEncoded, in the Host's namespace.
    const nosecret = byKey(hosts, 'web/nosecret');
    assert.deepEqual(nosecret.kind === 'acme' && nosecret.tlsSecret, {
      namespace: 'web',
      name: nameEncode(nosecret.hostname ?? ''),
    });
    assert.equal(
      reason('web/badauth'),
      'spec.acmeProvider.authority "ftp://ca.example/dir" must be an https:// ACME directory URL',
    );
  });

  it('lower-cases hostnames, applies the default authority and namespace, ignores other kinds and ids', () => {
    const r = parseHostsText(fixture, 'hosts.yaml', defaults);
    assert.equal(r.kind === 'ok' && r.ignored, 2);
    const hosts = parse();
    const b = byKey(hosts, 'web/b');
    assert.equal(b.hostname, 'b.example.com');
    const d = byKey(hosts, 'default/defaulted');
    assert.equal(d.kind === 'acme' && d.acme?.authority, 'https://acme.example/default-dir');
    assert.deepEqual(d.kind === 'acme' && d.tlsSecret, { namespace: 'default', name: 'g-tls' });
  });

  it('accepts "*" as ambassador id to read every Host', () => {
    const r = parseHostsText(fixture, 'hosts.yaml', { ...defaults, ambassadorIds: ['*'] });
    assert.ok(r.kind === 'ok' && r.hosts.some((h) => h.key === 'default/other-id'));
  });

  it('treats authority none (any case) as leave alone', () => {
    const m = byKey(parse(), 'web/manual');
    assert.equal(m.kind, 'none');
  });

  it('groups Hosts sharing a tlsSecret into one certificate with all names', () => {
    const groups = groupHosts(parse());
    assert.deepEqual(
      groups.map((g) => [g.key, g.names, g.hostKeys]),
      [
        ['default/g-tls', ['g.example.com'], ['default/defaulted']],
        ['web/c.example.com', ['c.example.com'], ['web/nosecret']],
        ['web/shared-tls', ['a.example.com', 'b.example.com'], ['web/a', 'web/b']],
      ],
    );
  });

  it('never votes: Hosts sharing a tlsSecret with different providers are all an Error, naming the field', () => {
    const doc = (name: string, email: string, authority = 'https://ca.example/dir'): string =>
      `apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec:\n  hostname: ${name}.example.com\n  acmeProvider: {authority: '${authority}', email: ${email}}\n  tlsSecret: {name: s}\n`;
    // Two Hosts outvoting a third used to pick the CA (and account) of the third's certificate.
    const hosts = rejectProviderConflicts(
      parse(
        [
          doc('x', 'one@example.com'),
          doc('y', 'two@example.com'),
          doc('z', 'two@example.com', 'https://acme.example/default-dir'),
        ].join('---\n'),
      ),
    );
    assert.deepEqual(
      hosts.map((h) => h.kind),
      ['invalid', 'invalid', 'invalid'],
    );
    const x = hosts[0];
    assert.equal(
      x?.kind === 'invalid' && x.reason,
      'spec.acmeProvider (authority, email) differs between the Hosts sharing tlsSecret default/s (default/y, default/z); make them identical',
    );
    assert.deepEqual(groupHosts(hosts), []);
    // Even unfiltered, a disagreeing group is never issued for.
    assert.deepEqual(
      groupHosts(parse([doc('x', 'one@example.com'), doc('y', 'two@example.com')].join('---\n'))),
      [],
    );
    // Agreeing Hosts are untouched.
    const same = rejectProviderConflicts(
      parse([doc('x', 'one@example.com'), doc('y', 'one@example.com')].join('---\n')),
    );
    assert.deepEqual(
      same.map((h) => h.kind),
      ['acme', 'acme'],
    );
  });

  it('a tlsSecret in another namespace is an Error naming the field (a tenant cannot write there)', () => {
    const hosts = parse(
      'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: shop, namespace: default}\nspec: {hostname: shop.example.com, tlsSecret: {name: shop-tls}}\n---\n' +
        'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: evil, namespace: tenant}\nspec: {hostname: evil.example.com, tlsSecret: {namespace: default, name: shop-tls}}\n---\n' +
        'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: own, namespace: tenant}\nspec: {hostname: own.example.com, tlsSecret: {namespace: tenant, name: shop-tls}}\n',
    );
    const evil = byKey(hosts, 'tenant/evil');
    assert.equal(
      evil.kind === 'invalid' && evil.reason,
      'spec.tlsSecret.namespace "default" must be the Host\'s own namespace "tenant" (or be left out)',
    );
    // Same Secret name in two namespaces: two certificates, never one.
    assert.deepEqual(
      groupHosts(hosts).map((g) => [g.key, g.names]),
      [
        ['default/shop-tls', ['shop.example.com']],
        ['tenant/shop-tls', ['own.example.com']],
      ],
    );
  });

  it('an authority outside the allowlist is an Error (never contacted); the allowlist compares normalized URLs', () => {
    const doc = (authority: string): Record<string, unknown> => ({
      apiVersion: 'getambassador.io/v3alpha1',
      kind: 'Host',
      metadata: { name: 'h', namespace: 'web' },
      spec: { hostname: 'h.example.com', acmeProvider: { authority }, tlsSecret: { name: 'h-tls' } },
    });
    const origin = { file: 'hosts.yaml', index: 0 };
    const out = parseHost(doc('https://169.254.169.254/latest/meta-data'), origin, defaults);
    assert.equal(
      out.kind === 'invalid' && out.reason,
      'spec.acmeProvider.authority "https://169.254.169.254/latest/meta-data" is not in the operator\'s allowed authorities (--allowed-authorities); it is not contacted',
    );
    assert.equal(parseHost(doc('https://CA.example/dir'), origin, defaults).kind, 'acme');
    assert.equal(
      parseHost(doc('https://ca.example/dir'), origin, { ...defaults, allowedAuthorities: [] }).kind,
      'invalid',
    );
  });

  const origin = { file: 'hosts.yaml', index: 0 };
  const mhost = (
    meta: Record<string, unknown>,
    provider: Record<string, unknown>,
  ): Record<string, unknown> => ({
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Host',
    metadata: { name: 'h', ...meta },
    spec: {
      hostname: 'h.example.com',
      acmeProvider: { authority: 'https://ca.example/dir', ...provider },
      tlsSecret: { name: 'h-tls' },
    },
  });

  it('rejects names under .localhost (RFC 6761: never publicly resolvable)', () => {
    assert.match(hostnameProblem('app.localhost') ?? '', /does not qualify for a public certificate/);
    assert.match(hostnameProblem('a.b.localhost') ?? '', /does not qualify for a public certificate/);
    assert.equal(hostnameProblem('localhost.example.com'), undefined);
  });

  it('rejects an acmeProvider.email that is not an e-mail address', () => {
    for (const email of ['not-an-address', 'two words@example.com', 7]) {
      const h = parseHost(mhost({}, { email }), origin, defaults);
      assert.equal(
        h.kind === 'invalid' && h.reason,
        'spec.acmeProvider.email must be an e-mail address',
        String(email),
      );
    }
    assert.equal(parseHost(mhost({}, { email: 'ops@example.com' }), origin, defaults).kind, 'acme');
  });

  it('rejects a metadata.namespace that is not a DNS label', () => {
    for (const namespace of ['Bad_NS', 'a.b', '-x', 'x'.repeat(64)]) {
      const h = parseHost(mhost({ namespace }, {}), origin, defaults);
      assert.equal(h.kind === 'invalid' && h.reason, 'metadata.namespace must be a DNS label', namespace);
    }
    assert.equal(parseHost(mhost({ namespace: 'team-1' }, {}), origin, defaults).kind, 'acme');
  });

  it('rejects a duplicate Host name but keeps the first', () => {
    const one =
      'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: x}\nspec: {hostname: x.example.com, tlsSecret: {name: s}}\n';
    const hosts = parse(`${one}---\n${one}`);
    assert.equal(hosts[0]?.kind, 'acme');
    assert.equal(hosts[1]?.kind, 'invalid');
    assert.match(hosts[1]?.kind === 'invalid' ? hosts[1].reason : '', /^duplicate Host default\/x/);
  });

  it('rejects the whole file on a YAML syntax error, naming the file and document', () => {
    const r = parseHostsText('kind: Host\nspec: [unclosed\n', 'hosts.yaml', defaults);
    assert.equal(r.kind, 'error');
    assert.equal(r.kind === 'error' && r.problems[0]?.field, 'hosts.yaml: document 0');
  });

  it('names unsupported API versions and bad secret names', () => {
    const hosts = parse(
      'apiVersion: getambassador.io/v9\nkind: Host\nmetadata: {name: x}\nspec: {hostname: x.example.com}\n---\n' +
        'apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: y}\nspec: {hostname: y.example.com, tlsSecret: {name: ../etc}}\n',
    );
    assert.match(hosts[0]?.kind === 'invalid' ? hosts[0].reason : '', /^apiVersion must be one of/);
    assert.equal(
      hosts[1]?.kind === 'invalid' && hosts[1].reason,
      'spec.tlsSecret.name "../etc" must be a DNS subdomain name',
    );
  });

  it('qualifies hostnames for HTTP-01', () => {
    assert.equal(hostnameProblem('a.example.com'), undefined);
    assert.match(hostnameProblem('*') ?? '', /required/);
    assert.match(hostnameProblem('10.0.0.1') ?? '', /IP address/);
    assert.match(hostnameProblem('intranet') ?? '', /fully qualified/);
    assert.match(hostnameProblem('host.example.*') ?? '', /wildcard/);
    assert.match(hostnameProblem('bad_label.example.com') ?? '', /not a valid DNS name/);
  });

  it('parses the shipped example Hosts file into one certificate with two names', () => {
    const text = readFileSync(new URL('../examples/hosts.yaml', import.meta.url), 'utf8');
    const r = parseHostsText(text, 'hosts.yaml', {
      ...defaults,
      allowedAuthorities: ['https://pebble:14000/dir'],
    });
    const groups = groupHosts(r.kind === 'ok' ? r.hosts : []);
    assert.deepEqual(
      groups.map((g) => [g.key, g.names]),
      [['default/example-tls', ['example.test', 'www.example.test']]],
    );
  });

  it("encodes names as Edge Stack's NameEncode", () => {
    assert.equal(
      `${nameEncode('https://acme-v02.api.letsencrypt.org/directory')}--${nameEncode('julian@example.com')}`,
      'https-3a-2f-2facme-2dv02.api.letsencrypt.org-2fdirectory--julian-40example.com',
    );
  });

  it("a Host from Emissary's docs (acmeProvider.email only): tlsSecret is the NameEncoded hostname; in Kubernetes mode the account Secret is Edge Stack's derived name in the Host's namespace", () => {
    const doc = {
      apiVersion: 'getambassador.io/v3alpha1',
      kind: 'Host',
      metadata: { name: 'example-host', namespace: 'shop' },
      spec: { hostname: 'my-host.example.com', acmeProvider: { email: 'julian@example.com' } },
    };
    const le = 'https://acme-v02.api.letsencrypt.org/directory';
    const kube = { ...defaults, authority: le, allowedAuthorities: [le], accountSecretInHostNamespace: true };
    const h = parseHost(doc, { file: 'Host shop/example-host', index: 0 }, kube);
    assert.equal(h.kind, 'acme');
    assert.deepEqual(h.kind === 'acme' && h.tlsSecret, { namespace: 'shop', name: 'my-2dhost.example.com' });
    assert.deepEqual(h.kind === 'acme' && h.acme?.privateKeySecret, {
      namespace: 'shop',
      name: 'https-3a-2f-2facme-2dv02.api.letsencrypt.org-2fdirectory--julian-40example.com',
    });
    // Two Hosts of one Secret with different e-mails: the derived privateKeySecret is not named as a
    // difference of its own (the Hosts do not name one).
    const other = parseHost(
      {
        ...doc,
        metadata: { name: 'other', namespace: 'shop' },
        spec: { ...doc.spec, acmeProvider: { email: 'b@example.com' } },
      },
      { file: 'Host shop/other', index: 0 },
      kube,
    );
    const [r1] = rejectProviderConflicts([h, other]);
    assert.equal(
      r1?.kind === 'invalid' ? r1.reason : '',
      'spec.acmeProvider (email) differs between the Hosts sharing tlsSecret shop/my-2dhost.example.com (shop/other); make them identical',
    );
    // File mode keeps derived accounts under --account-dir.
    const file = parseHost(
      doc,
      { file: 'hosts.yaml', index: 0 },
      { ...kube, accountSecretInHostNamespace: false },
    );
    assert.equal(file.kind === 'acme' ? file.acme?.privateKeySecret : 'x', undefined);
  });
});
