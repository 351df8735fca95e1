/**
 * A minimal gRPC server on node:http2, written from the gRPC over HTTP/2 protocol
 * (grpc/grpc doc/PROTOCOL-HTTP2.md): unary methods and server streaming, for the hot RPCs whose
 * per-call cost under grpc-js was the largest share of a profile (ratelimit's ShouldRateLimit,
 * authz's Check). Handlers take the request message's bytes and answer the response's bytes: each
 * service keeps its own codec. What it keeps from grpc-js, on purpose:
 * - `grpc-timeout` deadlines (DEADLINE_EXCEEDED; an invalid value is INTERNAL);
 * - the receive bound (RESOURCE_EXHAUSTED as soon as a length prefix says more, never buffered);
 * - `gzip` / `deflate` messages decompressed within the same bound; other encodings UNIMPLEMENTED;
 * - unknown method UNIMPLEMENTED; a content-type other than `application/grpc*` answered HTTP 415;
 * - SETTINGS_MAX_CONCURRENT_STREAMS; client PINGs answered (no server keepalive, as grpc-js's default);
 * - close(): GOAWAY on every connection, in-flight unary calls finish, streams end UNAVAILABLE,
 *   then connections still open at the deadline are destroyed.
 * And one bound grpc-js lacks: a request must arrive whole (END_STREAM) within `receiveTimeoutMs`.
 */
import {
  constants,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { gunzip, inflate } from 'node:zlib';

/** gRPC status codes used here (grpc/grpc doc/statuscodes.md). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** A gRPC status code number. */
export type GrpcCodeNumber = (typeof GrpcCode)[keyof typeof GrpcCode];

/** Thrown (or rejected) by a handler to answer a status other than OK; `details` goes to the client. */
export class GrpcStatusError extends Error {
  readonly code = 'ERR_GRPC_STATUS' as const;
  /** The gRPC status code sent as `grpc-status`. */
  readonly status: GrpcCodeNumber;
  constructor(status: GrpcCodeNumber, details: string, options?: { cause?: unknown }) {
    super(details, options);
    this.name = 'GrpcStatusError';
    this.status = status;
  }
}

/** One call as a handler sees it. */
export interface GrpcCall {
  /** `/<package.Service>/<Method>`. */
  readonly path: string;
  /** Request metadata by lower-case name (first value; `-bin` values stay base64). */
  metadata(name: string): string | undefined;
  /** Epoch ms of the `grpc-timeout` deadline; Infinity when none. */
  readonly deadline: number;
  /** True once the call ended without the handler's answer (client reset, deadline, shutdown). */
  readonly cancelled: boolean;
  /** Runs `listener` once when the call is cancelled. */
  onCancel(listener: () => void): void;
}

/** A server-streaming call: write messages, then end (OK unless a status is given). */
export interface GrpcServerStream extends GrpcCall {
  /** Sends one response message (bytes). Ignored once the call ended. */
  write(message: Uint8Array): void;
  /** Ends the call with OK or the given status. Idempotent. */
  end(status?: GrpcStatusError): void;
}

/** A unary method: request bytes → response bytes (or a GrpcStatusError). */
export interface UnaryMethod {
  readonly kind: 'unary';
  handle(request: Buffer, call: GrpcCall): Promise<Uint8Array> | Uint8Array;
}

/** A server-streaming method: the handler writes to the stream and ends it. */
export interface ServerStreamingMethod {
  readonly kind: 'server-streaming';
  handle(request: Buffer, call: GrpcServerStream): void;
}

/** A method by its path. */
export type GrpcMethod = UnaryMethod | ServerStreamingMethod;

/** Routes: `/<package.Service>/<Method>` → method. */
export type GrpcRoutes = Readonly<Record<string, GrpcMethod>>;

/** Options of startGrpcH2Server. */
export interface GrpcH2Options {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly routes: GrpcRoutes;
  /** Largest request message in bytes (after decompression). Default 4 MiB, as grpc-js. */
  readonly maxReceiveMessageBytes?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. Default 1000. */
  readonly maxConcurrentStreams?: number;
  /** A request must be received whole within this many ms (whatever its deadline). Default 30,000. */
  readonly receiveTimeoutMs?: number;
  /** Called when a handler throws something other than a GrpcStatusError (answered INTERNAL). */
  readonly onInternalError?: (err: unknown, path: string) => void;
}

/** A running server. */
export interface GrpcH2Server {
  readonly port: number;
  readonly server: Http2Server;
  /** GOAWAY, let unary calls finish within `deadlineMs` (default 5000), then destroy. Idempotent. */
  close(deadlineMs?: number): Promise<void>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** First allocation for a message split over DATA frames; doubled as more of it arrives. */
const INITIAL_MESSAGE_BUFFER = 16 * 1024;
const TIMEOUT_UNITS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};
const TIMEOUT = /^\s*(\d{1,8})\s*([HMSmun])\s*$/;

/** Response headers of every call that sends a message (compression of responses is never used). */
const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
} as const;
const OK_TRAILERS = { 'grpc-status': '0' } as const;

/** Percent-encodes a status message as the protocol asks (printable ASCII except '%' kept as is). */
function encodeMessage(s: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(s)
    ? s
    : Array.from(Buffer.from(s, 'utf8'), (b) =>
        b >= 0x20 && b <= 0x7e && b !== 0x25
          ? String.fromCharCode(b)
          : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
      ).join('');
}

/** The 5-byte length-prefixed message frame of `body`. */
export function grpcFrame(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

function decompress(encoding: string, data: Buffer, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer): void => {
      if (!err) resolve(out);
      else if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
        reject(
          new GrpcStatusError(
            GrpcCode.RESOURCE_EXHAUSTED,
            `Received message that decompresses to a size larger than ${max}`,
          ),
        );
      else reject(new GrpcStatusError(GrpcCode.INTERNAL, 'Failed to decompress message'));
    };
    if (encoding === 'gzip') gunzip(data, { maxOutputLength: max }, done);
    else inflate(data, { maxOutputLength: max }, done);
  });
}

/** Per-call state: reads one request message, runs the method, answers once. */
class Call implements GrpcServerStream {
  readonly path: string;
  readonly deadline: number;
  readonly #stream: ServerHttp2Stream;
  readonly #headers: IncomingHttpHeaders;
  readonly #method: GrpcMethod;
  readonly #server: ServerState;
  #timer: NodeJS.Timeout | undefined;
  #receiveBy: number;
  // request parsing
  #head: Buffer | undefined;
  #headFill = 0;
  // the message received so far, in a buffer that grows with the bytes sent (up to the announced length):
  // a length prefix alone never reserves memory
  #msg: Buffer | undefined;
  #msgFill = 0;
  #msgLen = 0;
  #flag = 0;
  #request: Buffer | undefined;
  #requestFlag = 0;
  #received = false;
  // answer
  #responded = false;
  #ended = false;
  #cancelled = false;
  #cancelListeners: (() => void)[] | undefined;
  #trailers: Record<string, string> | undefined;

  constructor(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    method: GrpcMethod,
    server: ServerState,
    deadline: number,
  ) {
    this.#stream = stream;
    this.#headers = headers;
    this.#method = method;
    this.#server = server;
    this.path = headers[':path'] as string;
    this.deadline = deadline;
    const now = Date.now();
    this.#receiveBy = now + server.receiveTimeoutMs;
    this.#arm(now);
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.once('end', () => this.#onEnd());
    stream.once('close', () => this.#onClose());
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  metadata(name: string): string | undefined {
    const v = this.#headers[name];
    return typeof v === 'string' ? v : Array.isArray(v) ? v[0] : undefined;
  }

  onCancel(listener: () => void): void {
    if (this.#cancelled) listener();
    else (this.#cancelListeners ??= []).push(listener);
  }

  /** One timer per call: the earlier of the receive bound (until the request is whole) and the deadline. */
  #arm(now: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const at = this.#received ? this.deadline : Math.min(this.deadline, this.#receiveBy);
    if (at === Infinity || at - now > MAX_TIMER_MS) return;
    this.#timer = setTimeout(() => this.#onTimer(), Math.max(0, at - now));
    this.#timer.unref();
  }

  #onTimer(): void {
    this.#timer = undefined;
    const now = Date.now();
    if (now >= this.deadline) this.#fail(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded');
    else if (!this.#received && now >= this.#receiveBy)
      this.#fail(GrpcCode.DEADLINE_EXCEEDED, 'Request not received within the receive timeout');
    else this.#arm(now);
  }

  #onData(chunk: Buffer): void {
    if (this.#ended) return;
    const max = this.#server.maxReceive;
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.#msg === undefined) {
        let len: number;
        if (this.#headFill === 0 && n - off >= 5) {
          this.#flag = chunk[off]!;
          len = chunk.readUInt32BE(off + 1);
          off += 5;
        } else {
          this.#head ??= Buffer.allocUnsafe(5);
          const take = Math.min(5 - this.#headFill, n - off);
          chunk.copy(this.#head, this.#headFill, off, off + take);
          this.#headFill += take;
          off += take;
          if (this.#headFill < 5) return;
          this.#headFill = 0;
          this.#flag = this.#head[0]!;
          len = this.#head.readUInt32BE(1);
        }
        if (this.#request !== undefined) {
          this.#fail(GrpcCode.UNIMPLEMENTED, `Received a second request message for method ${this.path}`);
          return;
        }
        if (this.#flag > 1) {
          this.#fail(GrpcCode.INTERNAL, `Invalid compressed flag ${this.#flag}`);
          return;
        }
        if (len > max) {
          this.#fail(GrpcCode.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs. ${max})`);
          return;
        }
        if (n - off >= len) {
          // the common case: the whole message in this chunk, no copy
          this.#complete(chunk.subarray(off, off + len));
          off += len;
          continue;
        }
        this.#msg = Buffer.allocUnsafe(Math.min(len, Math.max(n - off, INITIAL_MESSAGE_BUFFER)));
        this.#msgFill = 0;
        this.#msgLen = len;
      }
      const take = Math.min(this.#msgLen - this.#msgFill, n - off);
      if (this.#msgFill + take > this.#msg.length) {
        const grown = Buffer.allocUnsafe(
          Math.min(this.#msgLen, Math.max(this.#msg.length * 2, this.#msgFill + take)),
        );
        this.#msg.copy(grown, 0, 0, this.#msgFill);
        this.#msg = grown;
      }
      chunk.copy(this.#msg, this.#msgFill, off, off + take);
      this.#msgFill += take;
      off += take;
      if (this.#msgFill === this.#msgLen) {
        const m = this.#msg;
        this.#msg = undefined;
        this.#complete(m);
      }
    }
  }

  #complete(message: Buffer): void {
    this.#request = message;
    this.#requestFlag = this.#flag;
  }

  #onEnd(): void {
    if (this.#ended) return;
    this.#received = true;
    this.#arm(Date.now());
    const request = this.#request;
    if (request === undefined) {
      this.#fail(GrpcCode.UNIMPLEMENTED, `Received no request message for method ${this.path}`);
      return;
    }
    if (this.#requestFlag === 1) {
      const encoding = this.metadata('grpc-encoding') ?? 'identity';
      if (encoding === 'identity') {
        // PROTOCOL-HTTP2.md: without a Message-Encoding the Compressed-Flag must be 0
        this.#fail(GrpcCode.INTERNAL, 'Compressed flag set on a message without grpc-encoding');
        return;
      }
      if (encoding !== 'gzip' && encoding !== 'deflate') {
        this.#fail(
          GrpcCode.UNIMPLEMENTED,
          `Received message compressed with unsupported encoding "${encoding}"`,
        );
        return;
      }
      decompress(encoding, request, this.#server.maxReceive).then(
        (plain) => this.#run(plain),
        (err: unknown) => this.#answerError(err),
      );
      return;
    }
    this.#run(request);
  }

  #run(request: Buffer): void {
    if (this.#ended) return;
    const m = this.#method;
    if (m.kind === 'server-streaming') {
      this.#server.streams.add(this);
      try {
        m.handle(request, this);
      } catch (err) {
        this.#answerError(err);
      }
      return;
    }
    let out: Promise<Uint8Array> | Uint8Array;
    try {
      out = m.handle(request, this);
    } catch (err) {
      this.#answerError(err);
      return;
    }
    if (out instanceof Uint8Array) this.#answer(out);
    else
      out.then(
        (body) => this.#answer(body),
        (err: unknown) => this.#answerError(err),
      );
  }

  #answer(body: Uint8Array): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#clear();
    const s = this.#stream;
    if (s.destroyed || s.closed) return;
    s.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    s.once('wantTrailers', () => s.sendTrailers(OK_TRAILERS));
    s.end(grpcFrame(body));
  }

  #answerError(err: unknown): void {
    if (err instanceof GrpcStatusError) {
      this.#fail(err.status, err.message);
      return;
    }
    this.#server.onInternalError?.(err, this.path);
    this.#fail(GrpcCode.INTERNAL, 'Internal error');
  }

  write(message: Uint8Array): void {
    if (this.#ended) return;
    const s = this.#stream;
    if (s.destroyed || s.closed) return;
    if (!this.#responded) {
      this.#responded = true;
      s.respond(RESPONSE_HEADERS, { waitForTrailers: true });
      s.once('wantTrailers', () => s.sendTrailers(this.#trailers ?? OK_TRAILERS));
    }
    s.write(grpcFrame(message));
  }

  end(status?: GrpcStatusError): void {
    if (status) this.#fail(status.status, status.message);
    else this.#fail(GrpcCode.OK, '');
  }

  /** Ends the call with a status (OK included); cancels the handler's interest when not OK. */
  #fail(code: GrpcCodeNumber, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#clear();
    const s = this.#stream;
    if (!s.destroyed && !s.closed) {
      const trailers: Record<string, string> = { 'grpc-status': String(code) };
      if (details) trailers['grpc-message'] = encodeMessage(details);
      if (this.#responded) {
        this.#trailers = trailers;
        s.end();
      } else
        s.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      // The client may still be sending (a refused oversized message, a request never finished):
      // after the status, RST_STREAM(NO_ERROR) tells it to stop (PROTOCOL-HTTP2.md).
      if (!this.#received) s.close(constants.NGHTTP2_NO_ERROR);
    }
    if (code !== GrpcCode.OK) this.#cancel();
  }

  #cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const ls = this.#cancelListeners;
    this.#cancelListeners = undefined;
    if (ls) for (const l of ls) l();
  }

  #clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#server.streams.delete(this);
  }

  /** Shutdown: streaming calls end UNAVAILABLE (unary calls are left to finish). */
  shutdown(): void {
    this.#fail(GrpcCode.UNAVAILABLE, 'Server shutting down');
  }

  #onClose(): void {
    this.#received = true;
    // reset by the client, or the connection went away, before the call ended
    if (this.#ended) return;
    this.#ended = true;
    this.#clear();
    this.#cancel();
  }
}

interface ServerState {
  readonly maxReceive: number;
  readonly receiveTimeoutMs: number;
  readonly streams: Set<Call>;
  readonly onInternalError: ((err: unknown, path: string) => void) | undefined;
}

/** Answers a call that never reaches a method: status in the response headers, no message. */
function trailersOnly(stream: ServerHttp2Stream, code: GrpcCodeNumber, details: string): void {
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': encodeMessage(details),
    },
    { endStream: true },
  );
  // whatever the client still sends is not read
  stream.close(constants.NGHTTP2_NO_ERROR);
}

/** Starts a gRPC server on node:http2 (cleartext, prior knowledge, as Envoy's gRPC clients speak). */
export async function startGrpcH2Server(opts: GrpcH2Options): Promise<GrpcH2Server> {
  const state: ServerState = {
    maxReceive: opts.maxReceiveMessageBytes ?? 4 * 1024 * 1024,
    receiveTimeoutMs: opts.receiveTimeoutMs ?? 30_000,
    streams: new Set(),
    onInternalError: opts.onInternalError,
  };
  const routes = new Map(Object.entries(opts.routes));
  const sessions = new Set<ServerHttp2Session>();
  let closing = false;
  const server = createServer({
    settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 },
    // headers beyond this are refused by nghttp2 itself (Envoy's default request header limit is 60 KiB)
    maxHeaderListPairs: 1000,
  });
  // A malformed frame is a session or stream error: the peer gets GOAWAY / RST_STREAM, the process goes on.
  server.on('sessionError', () => {});
  server.on('session', (session) => {
    if (closing) {
      session.destroy();
      return;
    }
    sessions.add(session);
    session.on('error', () => {});
    session.once('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const ct = headers['content-type'];
    if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) {
      stream.respond({ ':status': constants.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
      stream.close(constants.NGHTTP2_NO_ERROR);
      return;
    }
    const path = headers[':path'];
    const method = typeof path === 'string' ? routes.get(path) : undefined;
    if (!method) {
      trailersOnly(
        stream,
        GrpcCode.UNIMPLEMENTED,
        `The server does not implement the method ${String(path)}`,
      );
      return;
    }
    let deadline = Infinity;
    const timeout = headers['grpc-timeout'];
    if (timeout !== undefined) {
      const m = typeof timeout === 'string' ? TIMEOUT.exec(timeout) : null;
      if (!m) {
        trailersOnly(stream, GrpcCode.INTERNAL, `Invalid grpc-timeout value "${String(timeout)}"`);
        return;
      }
      deadline = Date.now() + Number(m[1]) * TIMEOUT_UNITS[m[2]!]!;
    }
    new Call(stream, headers, method, state, deadline);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  let closed: Promise<void> | undefined;
  return {
    port,
    server,
    close: (deadlineMs = 5000) =>
      (closed ??= new Promise<void>((resolve) => {
        closing = true;
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, deadlineMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        // GOAWAY: streams already open finish, new ones go to another connection
        for (const s of sessions) s.close();
        for (const c of [...state.streams]) c.shutdown();
      })),
  };
}
