import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import type { MethodDefinition } from '@grpc/grpc-js';
import { serviceDefinition } from '@extsvc/common/grpc';
import { decodeRequest, encodeResponse } from '../src/codec.ts';
import type { CoreResponse, CoreStatus } from '../src/limiter.ts';
import type { Unit } from '../src/rules.ts';
import { fromGrpc, toGrpc } from '../src/wire.ts';
import type { RateLimitRequest__Output } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitRequest.ts';
import type { RateLimitResponse } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitResponse.ts';

const method = serviceDefinition(
  ['envoy/service/ratelimit/v3/rls.proto'],
  'envoy.service.ratelimit.v3.RateLimitService',
)['ShouldRateLimit'] as MethodDefinition<unknown, unknown>;
// the proto-loader (protobufjs) path the direct codec replaces
const genericDecode = (b: Buffer): RateLimitRequest__Output =>
  method.requestDeserialize(b) as RateLimitRequest__Output;
const genericEncodeRequest = (o: unknown): Buffer => method.requestSerialize(o);
const genericEncode = (r: RateLimitResponse): Buffer => method.responseSerialize(r);

/** Deterministic pseudo-random source (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = ['', 'a', 'user', 'ключ', '日本語', 'x'.repeat(200), 'emoji 🚀', 'k_v.w'];
const UNITS: Unit[] = ['SECOND', 'MINUTE', 'HOUR', 'DAY', 'WEEK', 'MONTH', 'YEAR'];
const NUMBERS = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455, 268435456, 4294967295];

describe('ratelimit/codec', () => {
  it('decodes requests as proto-loader + fromGrpc do (random requests)', () => {
    const rand = rng(1);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    for (let n = 0; n < 500; n++) {
      const req: Record<string, unknown> = {};
      if (rand() < 0.9) req['domain'] = pick(STRINGS);
      if (rand() < 0.3) req['hits_addend'] = pick(NUMBERS);
      const nd = Math.floor(rand() * 4);
      const descriptors: unknown[] = [];
      for (let i = 0; i < nd; i++) {
        const d: Record<string, unknown> = {};
        const ne = Math.floor(rand() * 4);
        d['entries'] = Array.from({ length: ne }, () => ({ key: pick(STRINGS), value: pick(STRINGS) }));
        if (rand() < 0.3)
          d['limit'] = {
            requests_per_unit: pick(NUMBERS),
            unit: Math.floor(rand() * 9) - 1,
          };
        if (rand() < 0.3) d['hits_addend'] = { value: pick([...NUMBERS, 2 ** 40, 2 ** 53 - 1]) };
        descriptors.push(d);
      }
      if (nd > 0 || rand() < 0.5) req['descriptors'] = descriptors;
      const bytes = genericEncodeRequest(req);
      assert.deepEqual(decodeRequest(bytes), fromGrpc(genericDecode(bytes)), JSON.stringify(req));
    }
  });

  it('skips unknown fields and keeps the last value of repeated singular fields', () => {
    const a = genericEncodeRequest({
      domain: 'first',
      descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
    });
    const b = genericEncodeRequest({ domain: 'second', hits_addend: 7 });
    // unknown fields: 15 varint, 16 fixed64, 17 length-delimited, 18 fixed32
    const unknown = Buffer.from([
      0x78, 0x96, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x8a, 0x01, 0x02, 0x41, 0x42, 0x95, 0x01, 1, 2, 3,
      4,
    ]);
    const bytes = Buffer.concat([a, unknown, b]);
    assert.deepEqual(decodeRequest(bytes), fromGrpc(genericDecode(bytes)));
    assert.equal(decodeRequest(bytes).domain, 'second');
  });

  it('throws on truncated input, as proto-loader does', () => {
    const bytes = genericEncodeRequest({
      domain: 'domain',
      descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
    });
    for (let cut = 1; cut < bytes.length; cut++) {
      const part = bytes.subarray(0, cut);
      let generic: unknown;
      try {
        generic = fromGrpc(genericDecode(part));
      } catch {
        generic = 'error';
      }
      let direct: unknown;
      try {
        direct = decodeRequest(part);
      } catch {
        direct = 'error';
      }
      assert.deepEqual(direct, generic, `cut at ${cut}`);
    }
  });

  it('agrees with proto-loader on random bytes (value or error)', () => {
    const rand = rng(3);
    const outcome = (f: () => unknown): unknown => {
      try {
        return f();
      } catch {
        return 'error';
      }
    };
    for (let n = 0; n < 5000; n++) {
      const bytes = Buffer.from(
        Array.from({ length: Math.floor(rand() * 24) }, () => Math.floor(rand() * 256)),
      );
      assert.deepEqual(
        outcome(() => decodeRequest(bytes)),
        outcome(() => fromGrpc(genericDecode(bytes))),
        bytes.toString('hex'),
      );
    }
  });

  it('applies the nesting limit of proto-loader to nested groups', () => {
    const outcome = (f: () => unknown): unknown => {
      try {
        return f();
      } catch {
        return 'error';
      }
    };
    for (const depth of [1, 99, 100, 101, 102, 150]) {
      // field 15 as groups inside groups, in the request and inside a descriptor
      const groups = Buffer.concat([Buffer.alloc(depth, 0x7b), Buffer.alloc(depth, 0x7c)]);
      const inDescriptor = Buffer.concat([Buffer.from([0x12, groups.length]), groups]);
      for (const bytes of [groups, depth < 60 ? inDescriptor : groups]) {
        const direct = outcome(() => decodeRequest(bytes));
        assert.deepEqual(
          direct,
          outcome(() => fromGrpc(genericDecode(bytes))),
          `depth ${depth}`,
        );
      }
    }
  });

  it('encodes responses to the bytes proto-loader writes for toGrpc (random responses)', () => {
    const rand = rng(2);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    for (let n = 0; n < 500; n++) {
      const statuses: CoreStatus[] = Array.from({ length: Math.floor(rand() * 4) }, () => ({
        code: rand() < 0.5 ? 'OK' : 'OVER_LIMIT',
        currentLimit:
          rand() < 0.7
            ? { name: pick(STRINGS), requestsPerUnit: pick(NUMBERS), unit: pick(UNITS) }
            : undefined,
        limitRemaining: pick(NUMBERS),
        durationUntilReset: rand() < 0.7 ? pick(NUMBERS) : undefined,
      }));
      const r: CoreResponse = {
        overallCode: rand() < 0.5 ? 'OK' : 'OVER_LIMIT',
        statuses,
        responseHeaders:
          rand() < 0.5
            ? []
            : [
                { key: 'RateLimit-Limit', value: String(pick(NUMBERS)) },
                { key: pick(STRINGS), value: pick(STRINGS) },
              ],
        dynamicMetadata: undefined,
        newlyOver: [],
        stats: [],
        globalShadowApplied: false,
      };
      const direct = encodeResponse(r);
      assert.ok(direct);
      assert.deepEqual(direct, genericEncode(toGrpc(r)), JSON.stringify(r));
    }
  });

  it('leaves dynamic metadata and out-of-range numbers to the generic encoder', () => {
    const base: CoreResponse = {
      overallCode: 'OK',
      statuses: [{ code: 'OK', currentLimit: undefined, limitRemaining: 0, durationUntilReset: undefined }],
      responseHeaders: [],
      dynamicMetadata: undefined,
      newlyOver: [],
      stats: [],
      globalShadowApplied: false,
    };
    assert.equal(encodeResponse({ ...base, dynamicMetadata: { domain: 'd' } }), undefined);
    assert.equal(
      encodeResponse({
        ...base,
        statuses: [{ code: 'OK', currentLimit: undefined, limitRemaining: 2 ** 32, durationUntilReset: 1 }],
      }),
      undefined,
    );
    assert.equal(
      encodeResponse({
        ...base,
        statuses: [
          {
            code: 'OK',
            currentLimit: { name: '', requestsPerUnit: 1.5, unit: 'SECOND' },
            limitRemaining: 0,
            durationUntilReset: 1,
          },
        ],
      }),
      undefined,
    );
  });
});
