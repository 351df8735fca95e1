import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import type { MethodDefinition } from '@grpc/grpc-js';
import { serviceDefinition } from '@extsvc/common/grpc';
import { decodeRequest, encodeResponse } from '../src/codec.ts';
import type { CoreResponse } from '../src/limiter.ts';
import { fromGrpc } from '../src/wire.ts';
import type { RateLimitRequest__Output } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitRequest.ts';

// Structured fuzzing of the direct decoder against proto-loader (protobufjs): well-formed and
// damaged RateLimitRequest bytes with unknown fields in every nested message, overlong and 64-bit
// varints, and truncation at every offset. The outcome (value, or the error and its message) must match.

const method = serviceDefinition(
  ['envoy/service/ratelimit/v3/rls.proto'],
  'envoy.service.ratelimit.v3.RateLimitService',
)['ShouldRateLimit'] as MethodDefinition<unknown, unknown>;
const genericDecode = (b: Buffer): RateLimitRequest__Output =>
  method.requestDeserialize(b) as RateLimitRequest__Output;

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

const BIG: readonly bigint[] = [
  0n,
  1n,
  127n,
  128n,
  16384n,
  2n ** 28n - 1n,
  2n ** 28n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 35n - 1n,
  2n ** 35n,
  2n ** 40n + 5n,
  2n ** 49n,
  2n ** 53n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** A varint of `v` (mod 2^64), padded with continuation bytes up to `min` bytes (at most 10). */
function varint(v: bigint, min = 0): number[] {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    out.push(Number(x & 127n));
    x >>= 7n;
  } while (x > 0n);
  while (out.length < Math.min(min, 10)) out.push(0);
  for (let i = 0; i < out.length - 1; i++) out[i] = (out[i] as number) | 0x80;
  return out;
}

const outcome = (f: () => unknown): unknown => {
  try {
    return { value: f() };
  } catch (err) {
    // The kind of error, without positions (protobufjs counts them against the whole buffer).
    return { error: (err as Error).message.replace(/(: | at offset ).*$/, '') };
  }
};

describe('ratelimit/codec against proto-loader (structured fuzzing)', () => {
  const rand = rng(13);
  const int = (n: number): number => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const tag = (field: number, wt: number): number[] => varint(BigInt((field << 3) | wt));
  const num = (): number[] => varint(pick(BIG), rand() < 0.3 ? int(11) : 0);
  const str = (): number[] => {
    const s = Buffer.from(pick(['', 'k', 'user', 'ключ', 'x'.repeat(130)]));
    return [...varint(BigInt(s.length)), ...s];
  };
  const lenDelim = (body: number[]): number[] => [...varint(BigInt(body.length)), ...body];
  function unknown(depth = 0): number[] {
    const field = 4 + int(12);
    switch (int(depth < 2 ? 5 : 4)) {
      case 0:
        return [...tag(field, 0), ...num()];
      case 1:
        return [...tag(field, 1), ...Array.from({ length: 8 }, () => int(256))];
      case 2:
        return [...tag(field, 2), ...lenDelim(Array.from({ length: int(6) }, () => int(256)))];
      case 3:
        return [...tag(field, 5), ...Array.from({ length: 4 }, () => int(256))];
      default:
        return [...tag(field, 3), ...unknown(depth + 1), ...tag(field, 4)];
    }
  }
  const withUnknown = (fields: number[][]): number[] => {
    const out = [...fields];
    for (let i = int(3); i > 0; i--) out.splice(int(out.length + 1), 0, unknown());
    return out.flat();
  };
  const entry = (): number[] =>
    withUnknown([
      ...(rand() < 0.8 ? [[...tag(1, 2), ...str()]] : []),
      ...(rand() < 0.8 ? [[...tag(2, 2), ...str()]] : []),
    ]);
  const override = (): number[] =>
    withUnknown([
      [...tag(1, 0), ...num()],
      [...tag(2, 0), ...varint(BigInt(pick([-1, 0, 1, 3, 6, 7, 9, 2 ** 31])), rand() < 0.2 ? 10 : 0)],
    ]);
  const uint64Value = (): number[] => withUnknown([[...tag(1, 0), ...num()]]);
  const descriptor = (): number[] =>
    withUnknown([
      ...Array.from({ length: int(3) }, () => [...tag(1, 2), ...lenDelim(entry())]),
      ...(rand() < 0.5 ? [[...tag(2, 2), ...lenDelim(override())]] : []),
      ...(rand() < 0.5 ? [[...tag(3, 2), ...lenDelim(uint64Value())]] : []),
    ]);
  const request = (): number[] =>
    withUnknown([
      [...tag(1, 2), ...str()],
      ...Array.from({ length: int(3) }, () => [...tag(2, 2), ...lenDelim(descriptor())]),
      ...(rand() < 0.6 ? [[...tag(3, 0), ...num()]] : []),
    ]);

  it('agrees on well-formed requests with unknown fields everywhere and long varints', () => {
    for (let n = 0; n < 1500; n++) {
      const bytes = Buffer.from(request());
      assert.deepEqual(
        outcome(() => decodeRequest(bytes)),
        outcome(() => fromGrpc(genericDecode(bytes))),
        bytes.toString('hex'),
      );
    }
  });

  it('agrees on truncated and damaged requests, error message included', () => {
    for (let n = 0; n < 300; n++) {
      const whole = request();
      const cuts = new Set([int(whole.length + 1), whole.length - 1, whole.length - 2, whole.length - 5]);
      for (const cut of cuts) {
        if (cut < 0) continue;
        const bytes = Buffer.from(whole.slice(0, cut));
        if (rand() < 0.3 && bytes.length > 0) bytes[int(bytes.length)] = int(256);
        assert.deepEqual(
          outcome(() => decodeRequest(bytes)),
          outcome(() => fromGrpc(genericDecode(bytes))),
          bytes.toString('hex'),
        );
      }
    }
  });

  it('reads 64-bit hits_addend values with more bytes after them as proto-loader does', () => {
    for (const v of BIG)
      for (const pad of [0, 10])
        for (const tail of [[], [0x10, 0x01], [0x19, 1, 2, 3, 4, 5, 6, 7, 8]]) {
          const wrapper = [...tag(1, 0), ...varint(v, pad), ...tail];
          const bytes = Buffer.from([
            ...tag(2, 2),
            ...lenDelim([...tag(3, 2), ...lenDelim(wrapper)]),
            0x18,
            0x05,
          ]);
          const direct = outcome(() => decodeRequest(bytes));
          assert.deepEqual(
            direct,
            outcome(() => fromGrpc(genericDecode(bytes))),
            `${v} ${pad} ${tail.length}`,
          );
        }
  });

  it('reads the last varint of the buffer, overlong or cut, as proto-loader does', () => {
    for (const v of BIG)
      for (let len = 1; len <= 11; len++) {
        const full = [0x0a, 0x01, 0x61, ...tag(3, 0), ...varint(v, len)];
        for (let cut = full.length - 6; cut <= full.length; cut++) {
          const bytes = Buffer.from(full.slice(0, Math.max(cut, 0)));
          assert.deepEqual(
            outcome(() => decodeRequest(bytes)),
            outcome(() => fromGrpc(genericDecode(bytes))),
            bytes.toString('hex'),
          );
        }
      }
  });

  it('throws proto-loader errors with their messages (wire type, nesting, range)', () => {
    const cases = [
      Buffer.from([0x7f]), // field 15, wire type 7
      Buffer.from([0x12, 0x01, 0x7e]), // wire type 6 inside a descriptor
      Buffer.from([0x0a, 0x05, 0x61]), // string clamped: no error, proto-loader agrees
      Buffer.from([0x12, 0x05, 0x0a]), // descriptor longer than the buffer
      Buffer.concat([Buffer.alloc(102, 0x7b), Buffer.alloc(102, 0x7c)]),
    ];
    for (const bytes of cases)
      assert.deepEqual(
        outcome(() => decodeRequest(bytes)),
        outcome(() => fromGrpc(genericDecode(bytes))),
        bytes.toString('hex'),
      );
    assert.deepEqual(
      outcome(() => decodeRequest(Buffer.from([0x7f]))),
      { error: 'invalid wire type 7' },
    );
    assert.deepEqual(
      outcome(() => decodeRequest(Buffer.from([0x12, 0x05, 0x0a]))),
      { error: 'index out of range' },
    );
    assert.deepEqual(
      outcome(() => decodeRequest(cases[4] as Buffer)),
      { error: 'maximum nesting depth exceeded' },
    );
  });

  it('leaves any number outside uint32 to the generic encoder (limit, remaining, reset)', () => {
    const status = { code: 'OK' as const, currentLimit: undefined, limitRemaining: 1, durationUntilReset: 1 };
    const base: CoreResponse = {
      overallCode: 'OK',
      statuses: [status],
      responseHeaders: [],
      dynamicMetadata: undefined,
      newlyOver: [],
      stats: [],
      globalShadowApplied: false,
    };
    assert.ok(encodeResponse(base));
    for (const bad of [2 ** 32, -1, 0.5]) {
      const limit = { name: 'n', requestsPerUnit: bad, unit: 'SECOND' as const };
      for (const s of [
        { ...status, durationUntilReset: bad },
        { ...status, limitRemaining: bad },
        { ...status, currentLimit: limit },
      ])
        assert.equal(encodeResponse({ ...base, statuses: [s] }), undefined, JSON.stringify(s));
    }
  });
});
