import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Stack, type EnvoyHandle, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { Issuer } from '../authz/issuer.ts';
import { writePolicy } from '../authz/policy.ts';

interface LogLine {
  msg?: string;
  requestId?: string;
  traceId?: string;
  rule?: string;
  reason?: string;
}

interface DiagTable {
  kind: string;
  title: string;
  columns?: string[];
  rows?: unknown[][];
}

describe('request correlation through Envoy (authz logs and /diag)', function () {
  const stack = new Stack('tracing-correlation').install();
  const issuer = new Issuer();
  let authz: ServiceHandle;
  let envoy: EnvoyHandle;

  before(async function () {
    this.timeout(60_000);
    await issuer.start();
    const policyFile = writePolicy(stack.dir, issuer.issuer);
    authz = await stack.service('authz', { args: ['--policy-file', policyFile, '--log-level', 'debug'] });
    const echo = await stack.echo();
    envoy = await stack.envoy({
      AUTHZ_GRPC: true,
      AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
      UPSTREAM_PORT: echo.port,
    });
  });
  after(() => issuer.stop());

  const logLine = (pred: (l: LogLine) => boolean): Promise<LogLine> =>
    waitUntil('an authz log line', () =>
      authz.proc
        .lines()
        .map((l): LogLine | undefined => {
          try {
            return JSON.parse(l) as LogLine;
          } catch {
            return undefined;
          }
        })
        .find((l) => l !== undefined && pred(l)),
    );

  const recentRows = async (query: string): Promise<{ columns: string[]; rows: unknown[][] }> => {
    const r = await authz.admin(`/diag.json?${query}`);
    assert.equal(r.status, 200, r.body);
    const doc = JSON.parse(r.body) as { sections: DiagTable[] };
    const t = doc.sections.find((s) => s.title === 'Recent decisions');
    assert.ok(t?.columns && t.rows, 'a Recent decisions table');
    return { columns: t.columns, rows: t.rows };
  };

  it("an allowed request's x-request-id (as Envoy sent it) is on authz's log line and finds it on /diag", async () => {
    const sent = `rid-${randomBytes(8).toString('hex')}`;
    const res = await fetch(envoy.url('/public/hello'), { headers: { 'x-request-id': sent } });
    assert.equal(res.status, 200);
    // The id Envoy used (it may replace an external client's id): the upstream echo shows it.
    const echoed = (JSON.parse(await res.text()) as { headers: Record<string, string> }).headers;
    const rid = echoed['x-request-id'];
    assert.ok(rid, 'Envoy forwards an x-request-id upstream');
    const line = await logLine((l) => l.msg === 'allowed' && l.requestId === rid);
    assert.equal(line.rule, 'public');
    const { columns, rows } = await recentRows(`request_id=${encodeURIComponent(rid)}`);
    assert.equal(rows.length, 1, 'the filter keeps exactly the one decision');
    const row = rows[0] ?? [];
    assert.equal(row[columns.indexOf('request id')], rid);
    assert.equal(row[columns.indexOf('path')], '/public/hello');
    assert.equal(row[columns.indexOf('rule')], 'public');
    const none = await recentRows('request_id=no-such-request');
    assert.equal(none.rows.length, 0, 'an unknown request id matches nothing');
  });

  it("a denied request's W3C trace id is on authz's deny line and filters /diag, with Envoy's request id", async () => {
    const traceId = randomBytes(16).toString('hex');
    const token = await issuer.token({ sub: 'alice', exp: Math.floor(Date.now() / 1000) - 3600 });
    const res = await fetch(envoy.url('/api/things?access_token=query-secret'), {
      headers: {
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        authorization: `Bearer ${token}`,
      },
    });
    assert.equal(res.status, 401);
    await res.text();
    const line = await logLine((l) => l.msg === 'denied' && l.traceId === traceId);
    assert.equal(line.reason, 'token_expired');
    assert.equal(line.rule, 'api');
    assert.ok(line.requestId, 'the deny line also carries the request id Envoy generated');
    const { columns, rows } = await recentRows(`trace_id=${traceId}`);
    assert.equal(rows.length, 1);
    const row = rows[0] ?? [];
    assert.equal(row[columns.indexOf('request id')], line.requestId);
    assert.equal(row[columns.indexOf('path')], '/api/things', 'the query string is not kept');
    const byRid = await recentRows(`request_id=${encodeURIComponent(line.requestId)}`);
    assert.equal(byRid.rows.length, 1);
    const logs = authz.proc.logs();
    assert.ok(!logs.includes(token.split('.')[2] ?? '-'), 'no token in the logs');
    assert.ok(!logs.includes('query-secret'), 'no query string in the logs');
  });
});
