import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { Issuer } from '../authz/issuer.ts';
import { writePolicy } from '../authz/policy.ts';

interface Entry {
  type: string;
  time: string;
  request_id?: string;
  trace_id?: string;
  method?: string;
  host?: string;
  path?: string;
  rule: string;
  result: string;
  reason: string;
  status?: number;
  subject?: string;
  issuer?: string;
  api_key?: string;
}

describe('authz decision log (--decision-log FILE) through Envoy', function () {
  this.timeout(60_000);
  const stack = new Stack('tracing-decision-log').install();
  const issuer = new Issuer();
  let authz: ServiceHandle;
  let envoy: EnvoyHandle;
  let file: string;

  before(async function () {
    await issuer.start();
    file = join(stack.mkdir('decisions'), 'decisions.jsonl');
    authz = await stack.service('authz', {
      args: ['--policy-file', writePolicy(stack.dir, issuer.issuer), '--decision-log', file],
    });
    const echo = await stack.echo();
    envoy = await stack.envoy({
      AUTHZ_GRPC: true,
      AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
      UPSTREAM_PORT: echo.port,
    });
  });
  after(() => issuer.stop());

  const entries = (): Entry[] =>
    existsSync(file)
      ? readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Entry)
      : [];

  it('one line per decision with ids, method, host, path without query, rule, result, reason, subject/issuer/API key name; never a credential', async () => {
    const token = await issuer.token({ sub: 'alice' });
    const expired = await issuer.token({ sub: 'bob', exp: Math.floor(Date.now() / 1000) - 3600 });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const allowed = await fetch(envoy.url('/api/things?access_token=query-secret-value&page=2'), {
      headers: {
        authorization: `Bearer ${token}`,
        cookie: 'session=cookie-secret-value',
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      },
    });
    assert.equal(allowed.status, 200, await allowed.text());
    const partner = await fetch(envoy.url('/partner/orders'), { headers: { 'x-api-key': 'partner-key-1' } });
    assert.equal(partner.status, 200, await partner.text());
    const denied = await fetch(envoy.url('/api/things'), { headers: { authorization: `Bearer ${expired}` } });
    assert.equal(denied.status, 401);
    await denied.text();

    const lines = await waitUntil('three decision lines', () => {
      const e = entries();
      return e.length >= 3 ? e : undefined;
    });
    assert.equal(lines.length, 3, 'one line per decision');
    const [jwt, key, deny] = lines as [Entry, Entry, Entry];
    assert.equal(jwt.type, 'decision');
    assert.ok(!Number.isNaN(Date.parse(jwt.time)));
    assert.equal(jwt.method, 'GET');
    assert.equal(jwt.path, '/api/things', 'the query string is stripped');
    assert.match(jwt.host ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(jwt.rule, 'api');
    assert.equal(jwt.result, 'allow');
    assert.equal(jwt.subject, 'alice');
    assert.equal(jwt.issuer, issuer.issuer);
    assert.equal(jwt.trace_id, traceId);
    assert.ok(jwt.request_id, "Envoy's x-request-id");
    assert.equal(key.rule, 'partner');
    assert.equal(key.result, 'allow');
    assert.equal(key.api_key, 'acme', 'the API key by its name');
    assert.equal(deny.result, 'deny');
    assert.equal(deny.reason, 'token_expired');
    assert.equal(deny.status, 401);
    assert.equal(deny.subject, undefined, 'no identity from a token that was refused');

    const text = readFileSync(file, 'utf8');
    for (const secret of [
      token.split('.')[1] ?? '-',
      token.split('.')[2] ?? '-',
      expired.split('.')[2] ?? '-',
      'query-secret-value',
      'cookie-secret-value',
      'partner-key-1',
    ])
      assert.ok(!text.includes(secret), `no credential in the decision log (${secret.slice(0, 8)}…)`);
  });
});
