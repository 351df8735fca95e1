import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@extsvc/common/errors';
import { discoveryUrl, parsePolicy } from '../src/policy.ts';

// Every validation message of the policy, each with the input that provokes it (the mutation run of
// issue 13 found most of them unasserted): a fixture per bad configuration with its exact messages.

function problems(yaml: string, env: Record<string, string> = {}): string[] {
  try {
    parsePolicy(yaml, 'c.yaml', env);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems.map((p) => `${p.field}: ${p.message}`);
  }
  return ['OK'];
}

const P = (s: string): string =>
  `providers:\n  p:\n    issuer: https://i.test\n${s}\nrules: [ { public: true } ]`;
const CASES: Array<[string, string, string[], Record<string, string>?]> = [
  [
    'string fields',
    'realm: ""\nproviders: { p: { issuer: "" } }\nrules: [ { name: 5, public: true } ]',
    [
      'c.yaml: realm: must be a non-empty string',
      'c.yaml: providers.p.issuer: must be a non-empty string',
      'c.yaml: rules[0].name: must be a non-empty string',
    ],
  ],
  [
    'string lists',
    'providers: { p: { issuer: x, audiences: [a, ""], algorithms: 5, hmacSecret: { value: 0123456789abcdef0123456789abcdef } } }\nrules: [ { public: true } ]',
    [
      'c.yaml: providers.p.algorithms: must be a string or a list of strings',
      'c.yaml: providers.p.audiences: must be a string or a list of strings',
    ],
  ],
  [
    'booleans and ints',
    P('    requireExp: "yes"\n    maxTokenBytes: 10\n    keyCache: { allowHttp: 1, maxBytes: 1.5 }'),
    [
      'c.yaml: providers.p.keyCache.maxBytes: must be an integer >= 1024',
      'c.yaml: providers.p.keyCache.allowHttp: must be true or false',
      'c.yaml: providers.p.requireExp: must be true or false',
      'c.yaml: providers.p.maxTokenBytes: must be an integer >= 64',
    ],
  ],
  [
    'durations',
    P(
      '    clockSkew: -1\n    maxLifetime: 1x\n    keyCache: { timeout: 0, minAge: 2h, maxAge: 1h, maxStale: soon, cooldown: [1], failedRetry: 1d }',
    ),
    [
      'c.yaml: providers.p.keyCache.maxStale: must be a duration like 500ms, 30s, 10m or a number of seconds',
      'c.yaml: providers.p.keyCache.cooldown: must be a duration like 500ms, 30s, 10m or a number of seconds',
      'c.yaml: providers.p.keyCache.failedRetry: must be a duration like 500ms, 30s, 10m or a number of seconds',
      'c.yaml: providers.p.keyCache.minAge: must not exceed maxAge',
      'c.yaml: providers.p.keyCache.timeout: must be positive',
      'c.yaml: providers.p.maxLifetime: must be a duration like 500ms, 30s, 10m or a number of seconds',
      'c.yaml: providers.p.clockSkew: must be a duration like 500ms, 30s, 10m or a number of seconds',
    ],
  ],
  ['keyCache not a mapping', P('    keyCache: [1]'), ['c.yaml: providers.p.keyCache: must be a mapping']],
  [
    'keyCache unknown field',
    P('    keyCache: { ttl: 1s }'),
    ['c.yaml: providers.p.keyCache.ttl: unknown field'],
  ],
  [
    'keysUnavailable',
    P('    keysUnavailable: allow'),
    ['c.yaml: providers.p.keysUnavailable: must be deny or error'],
  ],
  [
    'header names',
    'providers: { p: { issuer: x, hmacSecret: { value: 0123456789abcdef0123456789abcdef }, tokenSources: [ { header: "bad header" }, { header: ":path" }, { header: x-t, prefix: 5 } ] } }\nrules: [ { public: true } ]',
    [
      "c.yaml: providers.p.tokenSources[0].header: invalid header name 'bad header'",
      "c.yaml: providers.p.tokenSources[1].header: invalid header name ':path'",
      'c.yaml: providers.p.tokenSources[2].prefix: must be a non-empty string',
    ],
  ],
  [
    'token sources',
    'providers: { p: { issuer: x, hmacSecret: { value: 0123456789abcdef0123456789abcdef }, tokenSources: [ 5, {}, { query: "" }, { cookie: "" }, bearer ] } }\nrules: [ { public: true } ]',
    [
      "c.yaml: providers.p.tokenSources[0]: must be 'bearer' or one of {header, prefix}, {query}, {cookie}",
      'c.yaml: providers.p.tokenSources[1]: one of header, query, cookie is required',
      'c.yaml: providers.p.tokenSources[2].query: must be a non-empty string',
      'c.yaml: providers.p.tokenSources[3].cookie: must be a non-empty string',
    ],
  ],
  [
    'empty token sources',
    'providers: { p: { issuer: x, hmacSecret: { value: 0123456789abcdef0123456789abcdef }, tokenSources: [] } }\nrules: [ { public: true } ]',
    ['c.yaml: providers.p.tokenSources: must be a non-empty list'],
  ],
  [
    'secrets',
    'providers:\n  a: { issuer: a, hmacSecret: 5 }\n  b: { issuer: b, hmacSecret: { value: x, env: Y } }\n  c: { issuer: c, hmacSecret: { env: UNSET } }\n  d: { issuer: d, hmacSecret: { file: missing.txt } }\n  e: { issuer: e, hmacSecret: { env: EMPTY } }\nrules: [ { public: true } ]',
    [
      'c.yaml: providers.a.hmacSecret: must be a string or {value | file | env}',
      'c.yaml: providers.b.hmacSecret: exactly one of value, file, env is required',
      'c.yaml: providers.c.hmacSecret.env: environment variable UNSET is not set',
      "c.yaml: providers.d.hmacSecret.file: cannot read 'missing.txt' (ENOENT)",
      'c.yaml: providers.e.hmacSecret.env: environment variable EMPTY is not set',
    ],
    { EMPTY: '' },
  ],
  [
    'urls',
    'providers:\n  a: { issuer: a, jwksUri: "ftp://x/keys" }\n  b: { issuer: b, discoveryUrl: "not a url" }\n  c: { issuer: c, discovery: yes }\nrules: [ { public: true } ]',
    [
      "c.yaml: providers.a.jwksUri: must be an http(s) URL, got 'ftp://x/keys'",
      "c.yaml: providers.b.discoveryUrl: must be an http(s) URL, got 'not a url'",
      'c.yaml: providers.c.discovery: must be true or false',
    ],
  ],
  [
    'several key sources',
    'providers: { a: { issuer: a, jwksUri: "https://x/k", jwks: { keys: [] } } }\nrules: [ { public: true } ]',
    ['c.yaml: providers.a: only one of jwksUri, jwks may be set'],
  ],
  [
    'jwks',
    'providers:\n  a: { issuer: a, jwks: [1] }\n  b: { issuer: b, jwks: { keys: [ 5, { kty: 1 }, { kty: oct, k: x }, { kty: EC, d: x } ] } }\nrules: [ { public: true } ]',
    [
      'c.yaml: providers.a.jwks: must be a JWKS object {keys: [...]}',
      'c.yaml: providers.b.jwks.keys[0]: must be a JWK with kty',
      'c.yaml: providers.b.jwks.keys[1]: must be a JWK with kty',
      'c.yaml: providers.b.jwks.keys[2]: must be a public key',
      'c.yaml: providers.b.jwks.keys[3]: must be a public key',
    ],
  ],
  [
    'jwksFile',
    'providers:\n  a: { issuer: a, jwksFile: missing.json }\n  b: { issuer: b, jwksFile: "" }\nrules: [ { public: true } ]',
    [
      "c.yaml: providers.a.jwksFile: cannot read 'missing.json' (ENOENT)",
      'c.yaml: providers.b.jwksFile: must be a non-empty string',
    ],
  ],
  [
    'algorithms',
    'providers:\n  a: { issuer: a, hmacSecret: { value: 0123456789abcdef0123456789abcdef }, algorithms: [RS256, HS512, none] }\n  b: { issuer: b, jwksUri: "https://x/k", algorithms: [HS256] }\nrules: [ { public: true } ]',
    [
      'c.yaml: providers.a.algorithms: RS256 requires a key source (discovery, jwksUri, jwks, jwksFile)',
      "c.yaml: providers.a.algorithms: unsupported algorithm 'none'",
      'c.yaml: providers.b.algorithms: HS256 requires hmacSecret',
    ],
  ],
  [
    'short hmac',
    'providers: { a: { issuer: a, hmacSecret: { value: 0123456789abcdef0123456789abcde } } }\nrules: [ { public: true } ]',
    ['c.yaml: providers.a.hmacSecret: must be at least 32 bytes'],
  ],
  [
    'provider not a mapping',
    'providers: { a: 5 }\nrules: [ { public: true } ]',
    ['c.yaml: providers.a: must be a mapping'],
  ],
  [
    'api keys',
    'apiKeys:\n  a: 5\n  b: { header: "x y", prefix: "", keys: [] }\n  c: { keys: [ 5, { value: v }, { name: n, value: v, sha256: 00 }, { name: m, sha256: abc }, { name: o, value: v, claims: [1] } ] }\n  d: { keys: 5 }\nrules: [ { public: true } ]',
    [
      'c.yaml: apiKeys.a: must be a mapping',
      "c.yaml: apiKeys.b.header: invalid header name 'x y'",
      'c.yaml: apiKeys.b.prefix: must be a non-empty string',
      'c.yaml: apiKeys.b.keys: must be a non-empty list',
      'c.yaml: apiKeys.c.keys[0]: must be a mapping',
      'c.yaml: apiKeys.c.keys[1].name: required',
      'c.yaml: apiKeys.c.keys[2]: exactly one of sha256, value, file, env is required',
      'c.yaml: apiKeys.c.keys[3].sha256: must be 64 hex characters',
      'c.yaml: apiKeys.c.keys[4].claims: must be a mapping',
      'c.yaml: apiKeys.d.keys: must be a non-empty list',
    ],
  ],
  [
    'claims',
    'providers: { a: { issuer: a, hmacSecret: { value: 0123456789abcdef0123456789abcdef } } }\nrules:\n  - { name: a, jwt: { claims: 5 } }\n  - { name: b, jwt: { claims: [ 5, { claim: c }, { claim: c, equals: 1, oneOf: [1] }, { equals: 1 }, { claim: c, oneOf: [] }, { claim: c, regex: "(" }, { claim: c, regex: "" } ] } }',
    [
      'c.yaml: rules[0].jwt.claims: must be a list of {claim, equals | oneOf | regex}',
      'c.yaml: rules[1].jwt.claims[0]: must be a mapping',
      'c.yaml: rules[1].jwt.claims[1]: exactly one of equals, oneOf, regex is required',
      'c.yaml: rules[1].jwt.claims[2]: exactly one of equals, oneOf, regex is required',
      'c.yaml: rules[1].jwt.claims[3].claim: required',
      'c.yaml: rules[1].jwt.claims[4].oneOf: must be a non-empty list',
      'c.yaml: rules[1].jwt.claims[5].regex: invalid regular expression',
      'c.yaml: rules[1].jwt.claims[6].regex: must be a non-empty string',
    ],
  ],
  [
    'requirements',
    'rules:\n  - { name: a, public: false }\n  - { name: b, deny: 5 }\n  - { name: c, deny: { status: 503 } }\n  - { name: d, deny: { status: 418 } }\n  - { name: e, jwt: 5 }\n  - { name: f, jwt: true }\n  - { name: g, apiKey: 5 }\n  - { name: h, apiKey: true }\n  - { name: i, apiKey: nope }\n  - { name: j, anyOf: [] }\n  - { name: k, allOf: [ 5, { public: true, deny: true } ] }\n  - { name: l, public: true, jwt: true }',
    [
      'c.yaml: rules[0].public: must be true',
      'c.yaml: rules[1].deny: must be true or {status}',
      'c.yaml: rules[2].deny.status: must be a 4xx status (5xx would be an error for Envoy)',
      'c.yaml: rules[3].deny.status: must be a status defined by envoy.type.v3.StatusCode',
      'c.yaml: rules[4].jwt: must be true or a mapping',
      'c.yaml: rules[5].jwt.providers: no providers are configured',
      'c.yaml: rules[6].apiKey: must be a set name, a list of names, or {sets, claims}',
      'c.yaml: rules[7].apiKey.sets: no apiKeys sets are configured',
      "c.yaml: rules[8].apiKey.sets: unknown apiKeys set 'nope'",
      'c.yaml: rules[9].anyOf: must be a non-empty list of requirements',
      'c.yaml: rules[10].allOf[0]: must be a mapping',
      'c.yaml: rules[10].allOf[1]: exactly one of public, deny, jwt, apiKey, anyOf, allOf is required',
      'c.yaml: rules[11]: exactly one of public, deny, jwt, apiKey, anyOf, allOf is required',
    ],
  ],
  [
    'root',
    'realm: "a\\"b"\nproviders: 5\napiKeys: 5\npolicies: 5\nreservedHeaders: [authorization, host, "bad h"]\nreservedHeaderPrefixes: [x, c, "x-ok-"]\nrules: [ { public: true } ]\nextra: 1',
    [
      'c.yaml: (root).extra: unknown field',
      'c.yaml: realm: must not contain quotes, backslashes or newlines',
      'c.yaml: providers: must be a mapping of name to provider',
      'c.yaml: apiKeys: must be a mapping of set name to key set',
      'c.yaml: policies: must be a mapping of name to {rules}',
      "c.yaml: reservedHeaders[2]: invalid header name 'bad h'",
      "c.yaml: reservedHeaders: 'authorization' cannot be reserved",
      "c.yaml: reservedHeaders: 'host' cannot be reserved",
      "c.yaml: reservedHeaderPrefixes[0]: 'x' is too broad (it would strip common headers)",
      "c.yaml: reservedHeaderPrefixes[1]: 'c' is too broad (it would strip cookie)",
    ],
  ],
  [
    'policies',
    'policies:\n  a: 5\n  b: { rules: [ { public: true } ], other: 1 }\nrules: []',
    ['c.yaml: policies.a: must be a mapping with rules', 'c.yaml: policies.b.other: unknown field'],
  ],
  [
    'identity',
    'identity: 5\nrules:\n  - { name: a, public: true, identity: { headers: 5 } }\n  - { name: b, public: true, identity: { headers: { x-a: 5, host: "{{ sub }}", x-b: "{{ " } } }\n  - { name: c, public: true, identity: { payloadHeader: "" , removeCredentials: 1, x: 1 } }',
    [
      'c.yaml: identity: must be a mapping',
      'c.yaml: rules[0].identity.headers: must be a mapping of header name to template',
      'c.yaml: rules[1].identity.headers.x-a: must be a template string like "{{ sub }}"',
      'c.yaml: rules[1].identity.headers.host: this header cannot be set',
      'c.yaml: rules[1].identity.headers.x-b: unclosed {{',
      'c.yaml: rules[2].identity.x: unknown field',
      'c.yaml: rules[2].identity.payloadHeader: must be a non-empty string',
      'c.yaml: rules[2].identity.removeCredentials: must be true or false',
      "c.yaml: reservedHeaders: 'host' cannot be reserved",
    ],
  ],
  [
    'issuer required',
    'providers: { a: { jwksUri: "https://x/k" } }\nrules: [ { public: true } ]',
    ['c.yaml: providers.a.issuer: required'],
  ],
  [
    'same issuer',
    'providers: { a: { issuer: x, jwksUri: "https://x/k" }, b: { issuer: x, jwksUri: "https://x/k" } }\nrules: [ { public: true } ]',
    ["c.yaml: providers.b.issuer: same issuer as provider 'a'"],
  ],
];

describe('policy validation messages', () => {
  for (const [name, yaml, expected, env] of CASES)
    it(`${name}: ${expected.length} problem(s), each with file and field`, () => {
      assert.deepEqual(problems(yaml, env), expected);
    });
});

describe('policy values', () => {
  it('reads every provider setting with its unit, secrets and JWKS from files, and lower-cases prefixes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'policy-values-'));
    writeFileSync(join(dir, 'hmac.txt'), '0123456789abcdef0123456789abcdef\r\n');
    writeFileSync(
      join(dir, 'jwks.json'),
      JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] }),
    );
    writeFileSync(join(dir, 'bad.json'), '{');
    const p = parsePolicy(
      [
        'providers:',
        '  a:',
        '    issuer: https://a.test//',
        '    hmacSecret: { file: hmac.txt }',
        '    jwksFile: jwks.json',
        '    audiences: api',
        '    clockSkew: 2.5',
        '    maxLifetime: 1h',
        '    requireExp: false',
        '    maxTokenBytes: 64',
        '    keysUnavailable: error',
        '    tokenSources: [ { header: X-Token, prefix: "Token " }, { query: t }, { cookie: c } ]',
        '    keyCache: { timeout: 0.5, minAge: 0, maxAge: 0, maxStale: 1m, cooldown: 2s, failedRetry: 3s, maxBytes: 1024, allowHttp: true }',
        '  b: { issuer: "https://b.test/", discovery: true }',
        '  c: { issuer: c, discoveryUrl: "http://c.test/d" }',
        '  d: { issuer: d, discovery: false, jwks: { keys: [] } }',
        'apiKeys:',
        '  k: { header: X-Key, prefix: "Key ", keys: [ { name: n, value: v, claims: { sub: s } }, { name: m, value: w } ] }',
        'rules: [ { public: true } ]',
      ].join('\n'),
      join(dir, 'p.yaml'),
    );
    const a = p.providers.get('a');
    assert.ok(a);
    assert.equal(Buffer.from(a.hmacSecret ?? []).toString(), '0123456789abcdef0123456789abcdef');
    assert.deepEqual(a.keys, {
      kind: 'inline',
      jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] },
    });
    assert.deepEqual(a.audiences, ['api']);
    assert.equal(a.clockSkewSec, 3);
    assert.equal(a.maxLifetimeSec, 3600);
    assert.equal(a.requireExp, false);
    assert.equal(a.maxTokenBytes, 64);
    assert.equal(a.keysUnavailable, 'error');
    assert.deepEqual(a.sources, [
      { kind: 'header', name: 'x-token', prefix: 'token ' },
      { kind: 'query', name: 't' },
      { kind: 'cookie', name: 'c' },
    ]);
    assert.deepEqual(a.cache, {
      timeoutMs: 500,
      minAgeMs: 0,
      maxAgeMs: 0,
      maxStaleMs: 60_000,
      cooldownMs: 2000,
      failedRetryMs: 3000,
      maxBytes: 1024,
      allowHttp: true,
    });
    assert.ok(a.algorithms.includes('HS256') && a.algorithms.includes('ES256'));
    assert.deepEqual(p.providers.get('b')?.keys, {
      kind: 'discovery',
      url: 'https://b.test/.well-known/openid-configuration',
    });
    assert.deepEqual(p.providers.get('c')?.keys, { kind: 'discovery', url: 'http://c.test/d' });
    assert.deepEqual(p.providers.get('d')?.keys, { kind: 'inline', jwks: { keys: [] } });
    assert.equal(p.providers.get('b')?.maxLifetimeSec, undefined);
    assert.equal(p.providers.get('b')?.requireExp, true);
    assert.equal(p.providers.get('b')?.cache.allowHttp, false);
    const k = p.apiKeySets.get('k');
    assert.equal(k?.header, 'x-key');
    assert.equal(k?.prefix, 'key ');
    assert.deepEqual(
      k?.keys.map((x) => [x.name, x.claims['sub']]),
      [
        ['n', 's'],
        ['m', 'm'],
      ],
    );
    assert.equal(discoveryUrl('https://x.test///'), 'https://x.test/.well-known/openid-configuration');
    assert.deepEqual(
      (() => {
        try {
          parsePolicy('providers: { a: { issuer: a, jwksFile: bad.json } }\nrules: []', join(dir, 'q.yaml'));
          return [];
        } catch (err) {
          return (err as ConfigError).problems.map((x) => x.message);
        }
      })(),
      ['is not valid JSON'],
    );
  });
});
