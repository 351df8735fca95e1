import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '@extsvc/common/errors';
import { headerListed, loadPolicyFile, parsePolicy, ASYMMETRIC_ALGS } from '../src/policy.ts';
import { DEFAULT_HTTP_UPSTREAM_HEADERS } from '../src/config.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems.map((p) => `${p.field}: ${p.message}`);
  }
  assert.fail('expected a ConfigError');
}

describe('policy', () => {
  it('loads the example policy with secrets from files, hashed API keys and defaults', () => {
    const p = loadPolicyFile(fixture('policy.yaml'));
    assert.equal(p.realm, 'example');
    const corp = p.providers.get('corp');
    assert.ok(corp);
    assert.deepEqual(corp.algorithms, [...ASYMMETRIC_ALGS]);
    assert.equal(corp.clockSkewSec, 30);
    assert.equal(corp.requireExp, true);
    assert.deepEqual(corp.keys, { kind: 'remote', url: 'https://issuer.example.com/jwks' });
    assert.deepEqual(corp.sources, [{ kind: 'header', name: 'authorization', prefix: 'bearer ' }]);
    const legacy = p.providers.get('legacy');
    assert.ok(legacy?.hmacSecret);
    assert.equal(Buffer.from(legacy.hmacSecret).toString(), 'this-is-a-32-byte-long-hmac-secret!!');
    assert.deepEqual(legacy.algorithms, ['HS256', 'HS384', 'HS512']);
    assert.equal(legacy.sources.length, 3);
    const keys = p.apiKeySets.get('partners')?.keys ?? [];
    assert.equal(keys.length, 2);
    assert.deepEqual(keys[1]?.hash, createHash('sha256').update('ci-key-value').digest());
    assert.deepEqual(keys[0]?.claims, { tenant: 'acme', sub: 'acme' });
    assert.deepEqual(
      p.rules.map((r) => r.name),
      ['health', 'admin', 'api'],
    );
    const admin = p.rules[1];
    assert.ok(admin?.requirement.kind === 'jwt');
    assert.deepEqual(admin.requirement.scopes, ['admin', 'write']);
    assert.deepEqual([...p.reservedHeaders].sort(), [
      'x-jwt-payload',
      'x-tenant',
      'x-user-id',
      'x-user-roles',
    ]);
    assert.ok(p.files.some((f) => f.endsWith('hmac.secret')));
    assert.equal(p.policies.get('internal')?.[0]?.requirement.kind, 'allOf');
    assert.ok(Object.isFrozen(p.rules));
  });

  it('reports every problem with file and field', () => {
    const file = fixture('bad-policy.yaml');
    assert.deepEqual(
      problems(() => loadPolicyFile(file)),
      [
        `${file}: providers.corp.algorithms: HS256 requires hmacSecret`,
        `${file}: providers.corp.algorithms: unsupported algorithm 'none'`,
        `${file}: rules[0].match.pathPrefix: must start with '/'`,
        `${file}: rules[0].jwt.providers: unknown provider 'other'`,
        `${file}: rules[1].name: duplicate rule name 'api'`,
        `${file}: rules[1]: exactly one of public, deny, jwt, apiKey, anyOf, allOf is required`,
      ],
    );
  });

  it('rejects unknown fields, bad durations, short HMAC secrets and private JWKS members', () => {
    const got = problems(() =>
      parsePolicy(
        [
          'providers:',
          '  p:',
          '    issuer: x',
          '    hmacSecret: short',
          '    clockSkew: soon',
          '    jwks: { keys: [ { kty: EC, d: secret } ] }',
          '    colour: blue',
          'rules: []',
        ].join('\n'),
        'p.yaml',
      ),
    );
    assert.ok(got.includes('p.yaml: providers.p.colour: unknown field'), got.join('\n'));
    assert.ok(got.includes('p.yaml: providers.p.hmacSecret: must be at least 32 bytes'));
    assert.ok(
      got.includes(
        'p.yaml: providers.p.clockSkew: must be a duration like 500ms, 30s, 10m or a number of seconds',
      ),
    );
    assert.ok(got.includes('p.yaml: providers.p.jwks.keys[0]: must be a public key'));
    assert.ok(!got.join(' ').includes('short'), 'a secret value never appears in messages');
  });

  it('reports invalid YAML with its line and a missing file', () => {
    assert.deepEqual(
      problems(() => parsePolicy('rules:\n  - [\n', 'y.yaml')),
      ['y.yaml:3: invalid YAML'],
    );
    assert.deepEqual(
      problems(() => loadPolicyFile('/nonexistent/p.yaml')),
      ['/nonexistent/p.yaml: cannot read policy file (ENOENT)'],
    );
  });

  it('defaults a provider without key source to OIDC discovery and rejects 5xx deny statuses', () => {
    const p = parsePolicy(
      'providers: { a: { issuer: "https://i.example/" } }\nrules: [ { jwt: true } ]',
      'a.yaml',
    );
    assert.deepEqual(p.providers.get('a')?.keys, {
      kind: 'discovery',
      url: 'https://i.example/.well-known/openid-configuration',
    });
    assert.deepEqual(
      problems(() => parsePolicy('rules: [ { deny: { status: 503 } } ]', 'd.yaml')),
      ['d.yaml: rules[0].deny.status: must be a 4xx status (5xx would be an error for Envoy)'],
    );
  });

  it('reads secrets from the environment', () => {
    const p = parsePolicy(
      'apiKeys: { s: { keys: [ { name: k, env: MY_KEY } ] } }\nrules: [ { apiKey: s } ]',
      'e.yaml',
      { MY_KEY: 'k1' },
    );
    assert.deepEqual(p.apiKeySets.get('s')?.keys[0]?.hash, createHash('sha256').update('k1').digest());
    assert.deepEqual(
      problems(() => parsePolicy('apiKeys: { s: { keys: [ { name: k, env: NOPE } ] } }', 'e.yaml')),
      ['e.yaml: apiKeys.s.keys[0].env: environment variable NOPE is not set'],
    );
  });
});

describe('policy shorthands and limits', () => {
  it('accepts path: {prefix|exact|regex} and action: public|deny', () => {
    const p = parsePolicy(
      [
        'rules:',
        '  - { name: a, match: { path: { prefix: / } }, action: public }',
        '  - { name: b, match: { path: { regex: "/x/[0-9]+" } }, action: deny }',
      ].join('\n'),
      's.yaml',
    );
    assert.deepEqual(p.rules[0]?.path, { kind: 'prefix', prefix: '/' });
    assert.equal(p.rules[0]?.requirement.kind, 'public');
    assert.equal(p.rules[1]?.requirement.kind, 'deny');
    assert.deepEqual(
      problems(() => parsePolicy('rules: [ { action: allow } ]', 's.yaml')),
      [
        's.yaml: rules[0].action: must be public or deny',
        's.yaml: rules[0]: exactly one of public, deny, jwt, apiKey, anyOf, allOf is required',
      ],
    );
  });

  it('only allows deny statuses Envoy can send', () => {
    assert.deepEqual(
      problems(() => parsePolicy('rules: [ { deny: { status: 418 } } ]', 'd.yaml')),
      ['d.yaml: rules[0].deny.status: must be a status defined by envoy.type.v3.StatusCode'],
    );
    assert.equal(
      parsePolicy('rules: [ { deny: { status: 410 } } ]', 'd.yaml').rules[0]?.requirement.kind,
      'deny',
    );
  });

  it('refuses identity headers HTTP mode cannot deliver, naming the header and the option', () => {
    const http = { httpUpstreamHeaders: [...DEFAULT_HTTP_UPSTREAM_HEADERS] };
    const doc = [
      "identity: { headers: { x-user-id: '{{ sub }}', x-tenant: '{{ tenant }}' } }",
      'rules:',
      '  - { name: a, public: true }',
      "  - { name: b, public: true, identity: { payloadHeader: x-payload, headers: { x-user-org: '{{ org }}' } } }",
    ].join('\n');
    const found = problems(() => parsePolicy(doc, 'h.yaml', {}, http));
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(
      found[0] ?? '',
      /^h\.yaml: identity\.headers\.x-tenant: HTTP mode cannot deliver 'x-tenant' upstream/,
    );
    assert.match(found[0] ?? '', /--http-upstream-headers \(HTTP_UPSTREAM_HEADERS\)/);
    assert.match(found[0] ?? '', /allowed_authorization_headers/);
    assert.match(
      found[1] ?? '',
      /^h\.yaml: rules\[1\]\.identity\.payloadHeader: HTTP mode cannot deliver 'x-payload'/,
    );
    // Declared deliverable (exact name or prefix*), or gRPC only: accepted.
    const ok = parsePolicy(doc, 'h.yaml', {}, { httpUpstreamHeaders: ['x-user-*', 'x-tenant', 'x-pay*'] });
    assert.deepEqual(
      ok.rules[0]?.identity.headers.map((h) => h.name),
      ['x-user-id', 'x-tenant'],
    );
    assert.equal(parsePolicy(doc, 'h.yaml').rules.length, 2);
    assert.ok(headerListed('x-user-anything', DEFAULT_HTTP_UPSTREAM_HEADERS));
    assert.ok(!headerListed('x-tenant', DEFAULT_HTTP_UPSTREAM_HEADERS));
  });

  it('refuses a query-string token with removeCredentials in HTTP mode, and too broad reserved prefixes', () => {
    const doc = [
      'providers: { q: { issuer: q, hmacSecret: { value: an-hmac-secret-that-is-32-bytes-long! }, tokenSources: [ { query: t } ] } }',
      'rules: [ { name: a, jwt: true, identity: { removeCredentials: true } } ]',
    ].join('\n');
    assert.deepEqual(
      problems(() => parsePolicy(doc, 'q.yaml', {}, { httpUpstreamHeaders: ['x-user-*'] })).map((p) =>
        p.slice(0, 80),
      ),
      ['q.yaml: rules[0].identity.removeCredentials: HTTP mode cannot remove the query-s'],
    );
    assert.equal(parsePolicy(doc, 'q.yaml').rules.length, 1, 'gRPC only: query_parameters_to_remove');
    assert.deepEqual(
      problems(() => parsePolicy('reservedHeaderPrefixes: [x-auth-, auth, x]', 'r.yaml')),
      [
        "r.yaml: reservedHeaderPrefixes[1]: 'auth' is too broad (it would strip authorization)",
        "r.yaml: reservedHeaderPrefixes[2]: 'x' is too broad (it would strip common headers)",
      ],
    );
    assert.deepEqual(parsePolicy('reservedHeaderPrefixes: [X-Auth-]', 'r.yaml').reservedHeaderPrefixes, [
      'x-auth-',
    ]);
  });
});
