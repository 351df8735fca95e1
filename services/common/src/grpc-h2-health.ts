/**
 * grpc.health.v1.Health on the node:http2 gRPC server (grpc-h2.ts), with the same answers as the
 * grpc-js implementation in grpc.ts: "" and the given names follow the HealthState (SERVING /
 * NOT_SERVING); Check of another name is NOT_FOUND; Watch of another name sends SERVICE_UNKNOWN and
 * stays open; Watch sends the current status, then every change.
 */
import type { HealthState } from './health.ts';
import { GrpcCode, GrpcStatusError, type GrpcRoutes } from './grpc-h2.ts';

/** grpc.health.v1.HealthCheckResponse.ServingStatus numbers. */
const Serving = { SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;

function varint(buf: Buffer, at: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  for (let i = at; i < buf.length && i < at + 10; i++) {
    const b = buf[i]!;
    // only lengths and tags are read as numbers: anything past 2^53 is skipped, not used
    if (shift < 53) value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, i + 1];
  }
  throw new GrpcStatusError(GrpcCode.INTERNAL, 'Error deserializing request');
}

/** The `service` field (1) of a HealthCheckRequest; unknown fields are skipped, as protobuf says. */
export function decodeHealthRequest(buf: Buffer): string {
  let service = '';
  let at = 0;
  const bad = (): never => {
    throw new GrpcStatusError(GrpcCode.INTERNAL, 'Error deserializing request');
  };
  while (at < buf.length) {
    const [tag, next] = varint(buf, at);
    at = next;
    const field = Math.floor(tag / 8);
    if (field === 0) bad();
    switch (tag % 8) {
      case 0:
        at = varint(buf, at)[1];
        break;
      case 1:
        at += 8;
        break;
      case 2: {
        const [len, start] = varint(buf, at);
        if (start + len > buf.length) bad();
        if (field === 1) service = buf.toString('utf8', start, start + len);
        at = start + len;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        bad();
    }
    if (at > buf.length) bad();
  }
  return service;
}

const encoded = (status: number): Buffer => Buffer.from([0x08, status]);

/** Health Check and Watch routes for `names` (and ""), answering from `health`. */
export function healthRoutes(health: HealthState, names: readonly string[]): GrpcRoutes {
  const known = new Set(['', ...names]);
  const current = (): Buffer => encoded(health.serving ? Serving.SERVING : Serving.NOT_SERVING);
  return {
    '/grpc.health.v1.Health/Check': {
      kind: 'unary',
      handle(request) {
        if (!known.has(decodeHealthRequest(request)))
          throw new GrpcStatusError(GrpcCode.NOT_FOUND, 'unknown service');
        return current();
      },
    },
    '/grpc.health.v1.Health/Watch': {
      kind: 'server-streaming',
      handle(request, call) {
        if (!known.has(decodeHealthRequest(request))) {
          call.write(encoded(Serving.SERVICE_UNKNOWN));
          return;
        }
        call.write(current());
        const off = health.onChange(() => call.write(current()));
        call.onCancel(off);
      },
    },
  };
}
