import { credentials, type Client, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadProtos } from '@extsvc/common/proto';
import type { CheckRequest } from '../../proto/generated/envoy/service/auth/v3/CheckRequest.ts';
import type { CheckResponse__Output } from '../../proto/generated/envoy/service/auth/v3/CheckResponse.ts';

/** The outcome of one Check RPC: a response, or an RPC error code. */
export type CheckOutcome = { ok: true; res: CheckResponse__Output } | { ok: false; code: number };

/** A minimal Authorization client for tests and benchmarks. */
export class AuthzClient {
  readonly #client: Client & Record<string, unknown>;
  constructor(port: number) {
    let node: unknown = loadProtos(['envoy/service/auth/v3/external_auth.proto']);
    for (const p of ['envoy', 'service', 'auth', 'v3', 'Authorization'])
      node = (node as Record<string, unknown>)[p];
    const Ctor = node as ServiceClientConstructor;
    this.#client = new Ctor(`127.0.0.1:${port}`, credentials.createInsecure());
  }

  /** Sends a Check with the given request attributes. */
  check(req: CheckRequest, deadlineMs = 5000): Promise<CheckOutcome> {
    return new Promise((resolve) => {
      const fn = this.#client['Check'] as (
        r: CheckRequest,
        o: { deadline: number },
        cb: (err: { code: number } | null, res?: CheckResponse__Output) => void,
      ) => void;
      fn.call(this.#client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err) resolve({ ok: false, code: err.code });
        else resolve({ ok: true, res: res as CheckResponse__Output });
      });
    });
  }

  /** A Check for an HTTP request with these headers. */
  checkHttp(
    headers: Record<string, string>,
    path = '/api/x',
    method = 'GET',
    ctx: Record<string, string> = {},
  ): Promise<CheckOutcome> {
    return this.check({
      attributes: {
        request: {
          http: {
            method,
            path,
            host: 'app.example.com',
            headers: { ':path': path, ':method': method, ...headers },
          },
        },
        context_extensions: ctx,
      },
    });
  }

  close(): void {
    this.#client.close();
  }
}
