import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { HealthState } from '@extsvc/common/health';
import { Authorizer } from '../src/authorizer.ts';
import type { AuthRequest, Decision } from '../src/decision.ts';
import {
  authzDiagSections,
  compactAlgorithms,
  FetchLog,
  parseTestRequest,
  RecentDecisions,
  recordingDecide,
  registerAuthzDiag,
  requirementText,
  safeUrl,
  TestInputError,
} from '../src/diag.ts';
import { parsePolicy } from '../src/policy.ts';

const HMAC = 'unit-test-hmac-secret-0123456789abcdef-XYZ';
const API_KEY = 'unit-test-api-key-secret-42';
const POLICY = parsePolicy(
  `realm: unit
providers:
  legacy:
    issuer: legacy-app
    hmacSecret: { value: ${HMAC} }
  corp:
    issuer: https://login.example.com
    jwksUri: https://user:pw@login.example.com/keys?token=abc
apiKeys:
  partners:
    keys: [ { name: acme, value: ${API_KEY}, claims: { tenant: acme } } ]
identity:
  headers: { x-user-id: '{{ sub }}' }
  payloadHeader: x-jwt-payload
rules:
  - { name: health, match: { path: /healthz, methods: [GET] }, public: true }
  - name: api
    match: { hosts: ['*.example.com'], pathPrefix: /api }
    anyOf: [ { jwt: { providers: [legacy], scopes: read } }, { apiKey: partners } ]
  - { name: old, match: { pathRegex: '/old/.*' }, deny: { status: 410 } }
policies:
  internal:
    rules:
      - { name: both, allOf: [ { jwt: true }, { apiKey: partners } ] }
`,
  'unit.yaml',
);

const req = (path: string, headers: Record<string, string> = {}, host = 'api.example.com'): AuthRequest => ({
  method: 'GET',
  host,
  path,
  headers,
  contextExtensions: {},
});

function authorizer(): Authorizer {
  return new Authorizer(POLICY, {
    fetch: () => Promise.reject(new Error('no network in unit tests')),
    now: Date.now,
    logger: pino({ level: 'silent' }),
    tokenCacheSize: 10,
    tokenCacheTtlMs: 60_000,
  });
}

describe('authz/diag', () => {
  it('keeps the latest decisions, newest first, without query strings', () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const recent = new RecentDecisions(2, () => t++);
    const deny: Decision = {
      kind: 'deny',
      reason: 'policy_deny',
      rule: 'old',
      status: 410,
      headers: [],
      body: '',
    };
    recent.record(req('/a?access_token=secret'), deny);
    recent.record(req('/b?x=1#frag'), { kind: 'error', reason: 'keys_unavailable', rule: 'api' });
    recent.record(req('/c'), deny);
    assert.equal(recent.total, 3);
    assert.deepEqual(
      recent.list().map((d) => [d.path, d.result, d.status]),
      [
        ['/c', 'deny', 410],
        ['/b', 'error', undefined],
      ],
    );
    assert.ok(!JSON.stringify(recent.list()).includes('secret'));
  });

  it('recordingDecide records real decisions and errors, and rethrows', async () => {
    const recent = new RecentDecisions();
    const ok = recordingDecide(
      async () => ({ kind: 'error', reason: 'keys_unavailable', rule: 'r' }),
      recent,
    );
    assert.equal((await ok(req('/x'))).kind, 'error');
    const failing = recordingDecide(() => Promise.reject(new Error('boom')), recent);
    await assert.rejects(failing(req('/y')), /boom/);
    assert.deepEqual(
      recent.list().map((d) => [d.path, d.reason]),
      [
        ['/y', 'internal'],
        ['/x', 'keys_unavailable'],
      ],
    );
  });

  it('the fetch log tells failing issuers and their recovery', () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const log = new FetchLog(() => (t += 1000));
    log.record('https://a', 'error');
    log.record('https://a', 'invalid');
    assert.deepEqual(log.get('https://a'), {
      lastAttemptAt: '2026-01-01T00:00:02.000Z',
      lastResult: 'invalid',
      lastOkAt: undefined,
      lastFailure: { result: 'invalid', at: '2026-01-01T00:00:02.000Z' },
      failuresInARow: 2,
    });
    log.record('https://a', 'ok');
    assert.equal(log.get('https://a')?.failuresInARow, 0);
    assert.equal(log.get('https://a')?.lastFailure?.at, '2026-01-01T00:00:02.000Z');
    assert.equal(log.get('https://b'), undefined);
  });

  it('summarises requirements, algorithms and URLs', () => {
    const api = POLICY.rules[1];
    assert.equal(requirementText(api!.requirement), 'anyOf(jwt(legacy) scopes=read | apiKey(partners))');
    assert.equal(compactAlgorithms(['RS256', 'RS384', 'ES256', 'EdDSA']), 'RS256/384, ES256, EdDSA');
    assert.equal(
      safeUrl('https://user:pw@login.example.com/keys?token=abc'),
      'https://login.example.com/keys (credentials/query hidden)',
    );
  });

  it('builds the sections from the live policy without secrets', async () => {
    const a = authorizer();
    try {
      const recent = new RecentDecisions();
      const fetchLog = new FetchLog(() => Date.parse('2026-01-01T00:00:05Z'));
      fetchLog.record('https://login.example.com', 'error');
      const sections = authzDiagSections({
        policy: () => a.policy,
        keyStatus: () => ({ corp: { keys: 2, kids: ['k1', 'k2'], fetchedAt: '2026-01-01T00:00:00.000Z' } }),
        recent,
        decide: (r) => a.decide(r),
        policyFile: 'unit.yaml',
        reload: () => ({ ok: false, at: '2026-01-01T00:00:00.000Z', error: 'unit.yaml: rules[0]: bad' }),
        fetchLog,
      });
      const json = JSON.stringify(sections);
      for (const secret of [HMAC, API_KEY, 'pw@', 'token=abc']) assert.ok(!json.includes(secret), secret);
      const rules = sections.find((s) => s.title === 'Rules');
      assert.ok(rules?.kind === 'table');
      assert.deepEqual(
        rules.rows.map((r) => [r[0], r[2], r[3], r[4], r[5]]),
        [
          ['default', 'health', 'any', '= /healthz', 'GET'],
          ['default', 'api', '*.example.com', '/api*', 'any'],
          ['default', 'old', 'any', '~ /old/.*', 'any'],
          ['internal', 'both', 'any', 'any', 'any'],
        ],
      );
      const providers = sections.find((s) => s.title === 'Providers');
      assert.ok(providers?.kind === 'table');
      const corp = providers.rows.find((r) => r[0] === 'corp');
      assert.deepEqual(corp?.slice(3, 8), [
        'stale',
        2,
        'k1, k2',
        '2026-01-01T00:00:00.000Z',
        'fetch failed at 2026-01-01T00:00:05.000Z (1 in a row)',
      ]);
      const policy = sections.find((s) => s.title === 'Policy');
      assert.ok(policy?.kind === 'kv');
      assert.deepEqual(
        policy.entries.find(([k]) => k === 'last reload error'),
        ['last reload error', 'unit.yaml: rules[0]: bad'],
      );
    } finally {
      a.close();
    }
  });

  it('parses the test form and rejects bad input with the field', () => {
    const r = parseTestRequest({
      method: 'post',
      host: '',
      path: '/api/x',
      headers: 'Host: api.example.com\nX-Api-Key: k\n\nx-multi: a\nx-multi: b',
      context: 'policy=internal rule=both',
    });
    assert.deepEqual(r, {
      method: 'POST',
      host: 'api.example.com',
      path: '/api/x',
      headers: { host: 'api.example.com', 'x-api-key': 'k', 'x-multi': 'a,b' },
      contextExtensions: { policy: 'internal', rule: 'both' },
    });
    assert.throws(() => parseTestRequest({ headers: 'no colon' }), TestInputError);
    assert.throws(() => parseTestRequest({ method: 'G E T' }), /method/);
    assert.throws(() => parseTestRequest({ context: 'policy' }), /context/);
    assert.throws(() => parseTestRequest([]), /object/);
  });

  it('the test form runs the decision without recording it, and never echoes credentials', async () => {
    const a = authorizer();
    const app = Fastify();
    try {
      const recent = new RecentDecisions();
      let real = 0;
      registerAuthzDiag(app, {
        service: 'authz',
        version: '0.0.0',
        health: new HealthState(),
        source: {
          policy: () => a.policy,
          keyStatus: () => a.keyStatus(),
          recent,
          decide: (r) => {
            real += 1;
            return a.decide(r);
          },
        },
      });
      const token = await new SignJWT({ sub: 'alice', scope: 'read' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('legacy-app')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(HMAC));
      const post = async (body: unknown) =>
        app.inject({ method: 'POST', url: '/diag/authz/test', payload: body as object });
      const allow = await post({
        method: 'GET',
        host: 'api.example.com',
        path: '/api/x?access_token=q',
        headers: `authorization: Bearer ${token}`,
      });
      assert.equal(allow.statusCode, 200);
      const body = allow.json<{ request: { path: string }; decision: Record<string, unknown> }>();
      assert.equal(body.request.path, '/api/x');
      assert.deepEqual(
        [body.decision['result'], body.decision['rule'], body.decision['reason']],
        ['allow', 'api', 'jwt'],
      );
      const up = body.decision['upstreamHeaders'] as Record<string, string>;
      assert.equal(up['x-user-id'], 'alice');
      assert.match(up['x-jwt-payload'] ?? '', /^\(verified payload/);
      for (const part of [token, ...token.split('.'), HMAC]) assert.ok(!allow.body.includes(part));
      const deny = await post({
        path: '/api/x',
        host: 'api.example.com',
        headers: `x-api-key: ${API_KEY}-no`,
      });
      assert.equal(
        deny.json<{ decision: { reason: string; status: number } }>().decision.reason,
        'invalid_api_key',
      );
      assert.ok(!deny.body.includes(API_KEY));
      assert.equal((await post({ headers: 'bad line' })).statusCode, 400);
      assert.equal(real, 2);
      assert.equal(recent.total, 0);
      const page = await app.inject({ method: 'GET', url: '/diag' });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /Test a request/);
    } finally {
      await app.close();
      a.close();
    }
  });
});
