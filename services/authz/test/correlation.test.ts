import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import type { AuthRequest, Decision } from '../src/decision.ts';
import { authzDiagSections, RecentDecisions } from '../src/diag.ts';
import { emptyPolicy } from '../src/policy.ts';

const req = (path: string, headers: Record<string, string>): AuthRequest => ({
  method: 'GET',
  host: 'api.example.com',
  path,
  headers,
  contextExtensions: {},
});

const deny: Decision = { kind: 'deny', reason: 'policy_deny', rule: 'r', status: 403, headers: [], body: '' };
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('authz/diag correlation', () => {
  const recent = new RecentDecisions(10, () => Date.parse('2026-01-01T00:00:00Z'));
  recent.record(req('/a', { 'x-request-id': 'rid-a' }), deny);
  recent.record(
    req('/b?token=x', { 'x-request-id': 'rid-b', traceparent: `00-${TRACE}-00f067aa0ba902b7-01` }),
    deny,
  );
  recent.record(req('/c', { authorization: 'Bearer secret-token' }), deny);
  const table = (filter: { requestId?: string; traceId?: string }) => {
    const s = authzDiagSections(
      {
        policy: emptyPolicy,
        keyStatus: () => ({}),
        recent,
        decide: () => Promise.resolve(deny),
      },
      filter,
    ).find((x) => x.title === 'Recent decisions');
    assert.ok(s?.kind === 'table');
    return s;
  };

  it('keeps the request id and trace id of each decision, nothing else of the headers', () => {
    const list = recent.list();
    assert.deepEqual(
      list.map((d) => [d.path, d.requestId, d.traceId]),
      [
        ['/c', undefined, undefined],
        ['/b', 'rid-b', TRACE],
        ['/a', 'rid-a', undefined],
      ],
    );
    assert.ok(!JSON.stringify(list).includes('secret-token'));
  });

  it('filters the recent decisions by request id or trace id (query parameters of /diag)', () => {
    const t = table({});
    assert.equal(t.rows.length, 3);
    assert.deepEqual(t.columns.slice(-2), ['request id', 'trace id']);
    const byRid = table({ requestId: 'rid-a' });
    assert.deepEqual(
      byRid.rows.map((r) => r[4]),
      ['/a'],
    );
    assert.deepEqual(
      table({ traceId: TRACE.toUpperCase() }).rows.map((r) => r[8]),
      ['rid-b'],
    );
    const none = table({ requestId: 'nope' });
    assert.equal(none.rows.length, 0);
    assert.equal(none.empty, 'no recent decision with request id nope');
  });
});
