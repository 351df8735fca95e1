import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { correlationFields, correlationOfHeaders } from '../src/trace.ts';

describe('common/trace', () => {
  const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
  const sid = '00f067aa0ba902b7';

  it('reads x-request-id and a W3C traceparent', () => {
    const c = correlationOfHeaders({ 'x-request-id': 'abc-123', traceparent: `00-${tid}-${sid}-01` });
    assert.deepEqual(c, { requestId: 'abc-123', traceId: tid, spanId: sid, sampled: true, format: 'w3c' });
    assert.deepEqual(correlationFields(c), { requestId: 'abc-123', traceId: tid });
  });

  it('rejects malformed W3C headers (version ff, zero ids, extra fields in version 00, bad length)', () => {
    for (const tp of [
      `ff-${tid}-${sid}-01`,
      `00-${'0'.repeat(32)}-${sid}-01`,
      `00-${tid}-${'0'.repeat(16)}-01`,
      `00-${tid}-${sid}-01-extra`,
      `00-${tid.slice(1)}-${sid}-01`,
    ])
      assert.equal(correlationOfHeaders({ traceparent: tp }).traceId, undefined, tp);
    // A later version may add fields.
    assert.equal(correlationOfHeaders({ traceparent: `01-${tid}-${sid}-00-more` }).traceId, tid);
  });

  it('falls back to B3 single and multi headers; a 64-bit trace id is left-padded', () => {
    assert.deepEqual(correlationOfHeaders({ b3: `${tid}-${sid}-1` }), {
      traceId: tid,
      spanId: sid,
      sampled: true,
      format: 'b3',
    });
    assert.deepEqual(
      correlationOfHeaders({ 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': sid, 'x-b3-sampled': '0' }),
      {
        traceId: '0000000000000000a3ce929d0e0e4736',
        spanId: sid,
        sampled: false,
        format: 'b3',
      },
    );
    assert.equal(correlationOfHeaders({ b3: '1' }).traceId, undefined, 'a lone sampling state has no ids');
    assert.equal(
      correlationOfHeaders({ traceparent: `00-${tid}-${sid}-01`, b3: `${'1'.repeat(32)}-${sid}` }).format,
      'w3c',
      'W3C wins when both are present',
    );
  });

  it('drops a request id that could corrupt a log line or /diag (control characters, spaces, too long)', () => {
    assert.equal(correlationOfHeaders({ 'x-request-id': 'a\nb' }).requestId, undefined);
    assert.equal(correlationOfHeaders({ 'x-request-id': 'a b' }).requestId, undefined);
    assert.equal(correlationOfHeaders({ 'x-request-id': 'x'.repeat(129) }).requestId, undefined);
    assert.equal(correlationOfHeaders({ 'x-request-id': 'x'.repeat(128) }).requestId?.length, 128);
    assert.deepEqual(correlationFields(correlationOfHeaders({})), {});
  });
});
