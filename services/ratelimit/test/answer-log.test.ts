import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { Metadata } from '@grpc/grpc-js';
import { answerFields, callCorrelation } from '../src/answer-log.ts';
import type { CoreRequest, CoreResponse } from '../src/limiter.ts';

describe('ratelimit/answer-log', () => {
  it('reads the request id and trace context from the gRPC metadata of the call', () => {
    const md = new Metadata();
    md.set('x-request-id', 'rid-1');
    md.set('x-b3-traceid', 'a3ce929d0e0e4736');
    md.set('x-b3-spanid', '00f067aa0ba902b7');
    assert.deepEqual(callCorrelation(md), {
      requestId: 'rid-1',
      traceId: '0000000000000000a3ce929d0e0e4736',
    });
    assert.deepEqual(callCorrelation(new Metadata()), {});
  });

  it('names the descriptors that decided by their keys and limit, never their values', () => {
    const req: CoreRequest = {
      domain: 'edge',
      hitsAddend: 1,
      descriptors: [
        { entries: [{ key: 'api_key', value: 'sk-live-secret' }] },
        {
          entries: [
            { key: 'remote_address', value: '10.0.0.1' },
            { key: 'path', value: '/x' },
          ],
        },
      ],
    };
    const status = (code: 'OK' | 'OVER_LIMIT', name: string) => ({
      code,
      currentLimit: { name, requestsPerUnit: 1, unit: 'second' as const },
      limitRemaining: 0,
      durationUntilReset: 1,
    });
    const resp = {
      overallCode: 'OVER_LIMIT',
      statuses: [status('OK', 'per-key'), status('OVER_LIMIT', 'per-ip')],
    } as unknown as CoreResponse;
    assert.deepEqual(answerFields(req, resp), {
      domain: 'edge',
      descriptors: ['remote_address,path (per-ip)'],
    });
    const all = answerFields(req, undefined);
    assert.deepEqual(all, { domain: 'edge', descriptors: ['api_key', 'remote_address,path'] });
    assert.ok(!JSON.stringify(all).includes('sk-live-secret'));
  });
});
