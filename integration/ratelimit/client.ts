// A small RLS v3 gRPC client for the ratelimit integration tests and the benchmark.
import { credentials, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadProtos } from '@extsvc/common/proto';

/** Response of ShouldRateLimit as proto-loader returns it (snake_case, enums as strings). */
export interface RlsResponse {
  overall_code: 'OK' | 'OVER_LIMIT' | 'UNKNOWN';
  statuses: Array<{
    code: string;
    current_limit: { name: string; requests_per_unit: number; unit: string } | null;
    limit_remaining: number;
    duration_until_reset: { seconds: number; nanos: number } | null;
  }>;
  response_headers_to_add: Array<{ key: string; value: string }>;
  dynamic_metadata: unknown;
}

/** A request descriptor: entries as [key, value] pairs, optional override and hits_addend. */
export interface Desc {
  entries: Array<[string, string]>;
  limit?: { requests_per_unit: number; unit: string };
  hits_addend?: number;
}

let ctor: ServiceClientConstructor | undefined;
function rlsCtor(): ServiceClientConstructor {
  if (!ctor) {
    let node: unknown = loadProtos(['envoy/service/ratelimit/v3/rls.proto']);
    for (const p of 'envoy.service.ratelimit.v3.RateLimitService'.split('.'))
      node = (node as Record<string, unknown>)[p];
    ctor = node as ServiceClientConstructor;
  }
  return ctor;
}

/** An RLS client on its own channel. */
export class RlsClient {
  readonly #client: Client & {
    ShouldRateLimit(
      req: unknown,
      opts: { deadline: number },
      cb: (err: ServiceError | null, res?: RlsResponse) => void,
    ): void;
  };
  constructor(port: number) {
    const C = rlsCtor();
    this.#client = new C(`127.0.0.1:${port}`, credentials.createInsecure(), {
      // a distinct option keeps grpc-js from sharing one subchannel between clients
      'grpc.channel_id': Math.random(),
    }) as never;
  }
  /** Calls ShouldRateLimit with a deadline (ms). */
  call(
    domain: string,
    descriptors: Desc[],
    opts: { hitsAddend?: number; deadlineMs?: number } = {},
  ): Promise<RlsResponse> {
    const req = {
      domain,
      hits_addend: opts.hitsAddend ?? 0,
      descriptors: descriptors.map((d) => ({
        entries: d.entries.map(([key, value]) => ({ key, value })),
        ...(d.limit ? { limit: d.limit } : {}),
        ...(d.hits_addend !== undefined ? { hits_addend: { value: d.hits_addend } } : {}),
      })),
    };
    return new Promise((resolve, reject) =>
      this.#client.ShouldRateLimit(req, { deadline: Date.now() + (opts.deadlineMs ?? 5000) }, (err, res) =>
        err ? reject(err) : resolve(res as RlsResponse),
      ),
    );
  }
  close(): void {
    this.#client.close();
  }
}

/** Shorthand: one descriptor per [k, v, k2, v2...] list. */
export const d = (...kv: string[]): Desc => {
  const entries: Array<[string, string]> = [];
  for (let i = 0; i < kv.length; i += 2) entries.push([kv[i] as string, kv[i + 1] as string]);
  return { entries };
};
