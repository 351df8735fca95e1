import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { fromGrpc, fromJson, JsonRequestError, toGrpc, toJson } from '../src/wire.ts';
import type { CoreResponse } from '../src/limiter.ts';

const resp: CoreResponse = {
  overallCode: 'OVER_LIMIT',
  statuses: [
    {
      code: 'OVER_LIMIT',
      currentLimit: { name: 'n', requestsPerUnit: 10, unit: 'MINUTE' },
      limitRemaining: 0,
      durationUntilReset: 58,
    },
    { code: 'OK', currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined },
  ],
  responseHeaders: [{ key: 'RateLimit-Limit', value: '10' }],
  dynamicMetadata: { domain: 'd', n: 1, l: [true, null], o: { x: 'y' } },
  newlyOver: [],
  stats: [],
  globalShadowApplied: false,
};

describe('ratelimit/wire', () => {
  it('parses proto3 JSON requests with camelCase or original names', () => {
    const r = fromJson({
      domain: 'd',
      hitsAddend: '3',
      descriptors: [
        {
          entries: [{ key: 'k', value: 'v' }, { key: 'k2' }],
          limit: { requestsPerUnit: 5, unit: 'HOUR' },
          hits_addend: '0',
        },
      ],
    });
    assert.deepEqual(r, {
      domain: 'd',
      hitsAddend: 3,
      descriptors: [
        {
          entries: [
            { key: 'k', value: 'v' },
            { key: 'k2', value: '' },
          ],
          override: { requestsPerUnit: 5, unit: 'HOUR' },
          hitsAddend: 0,
        },
      ],
    });
  });
  it('rejects unknown fields and wrong types', () => {
    assert.throws(() => fromJson({ domain: 'd', nope: 1 }), JsonRequestError);
    assert.throws(() => fromJson({ domain: 5 }), JsonRequestError);
    assert.throws(() => fromJson([]), JsonRequestError);
    assert.throws(() => fromJson({ descriptors: [{ limit: { unit: 'WEEK' } }] }), JsonRequestError);
  });
  it('ignores an override with unit UNKNOWN', () => {
    assert.equal(
      fromJson({ domain: 'd', descriptors: [{ entries: [], limit: { requestsPerUnit: 1 } }] }).descriptors[0]
        ?.override,
      undefined,
    );
  });
  it('renders proto3 JSON like protojson (defaults omitted, durations as strings)', () => {
    assert.deepEqual(toJson(resp), {
      overallCode: 'OVER_LIMIT',
      statuses: [
        {
          code: 'OVER_LIMIT',
          currentLimit: { name: 'n', requestsPerUnit: 10, unit: 'MINUTE' },
          durationUntilReset: '58s',
        },
        { code: 'OK' },
      ],
      responseHeadersToAdd: [{ key: 'RateLimit-Limit', value: '10' }],
      dynamicMetadata: { domain: 'd', n: 1, l: [true, null], o: { x: 'y' } },
    });
  });
  it('maps gRPC objects both ways', () => {
    const g = toGrpc(resp);
    assert.deepEqual(g.statuses?.[0]?.duration_until_reset, { seconds: 58, nanos: 0 });
    assert.deepEqual(g.dynamic_metadata?.fields?.['o'], {
      structValue: { fields: { x: { stringValue: 'y' } } },
    });
    const r = fromGrpc({
      domain: 'd',
      hits_addend: 0,
      descriptors: [
        {
          entries: [{ key: 'a', value: 'b' }],
          limit: { requests_per_unit: 2, unit: 'DAY' },
          hits_addend: { value: 4 },
        },
      ],
    });
    assert.deepEqual(r.descriptors[0], {
      entries: [{ key: 'a', value: 'b' }],
      override: { requestsPerUnit: 2, unit: 'DAY' },
      hitsAddend: 4,
    });
  });
});
