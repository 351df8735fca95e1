// The gRPC port on both transports (issue 16): the node:http2 server (grpc-h2, the default) must keep
// every behaviour grpc-js gives the port, so each test runs against both and asserts the same answer,
// made with a raw node:http2 client where grpc-js's client would not send the bytes. The attacks
// (truncated frames, a 4 GiB length prefix, resets, requests never finished) must never stop the process:
// the Stack fails the test when it dies.
import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { credentials, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { serviceDefinition } from '@extsvc/common/grpc';
import { loadProtos } from '@extsvc/common/proto';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { writeConfigMapDir } from '../harness/configmap-dir.ts';
import { RlsClient, type RlsResponse } from './client.ts';
import { RULES } from './config.ts';

const RLS = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
const WATCH = '/grpc.health.v1.Health/Watch';
const rlsDef = serviceDefinition(
  ['envoy/service/ratelimit/v3/rls.proto'],
  'envoy.service.ratelimit.v3.RateLimitService',
);
const rlsMethod = rlsDef['ShouldRateLimit']!;
/** A RateLimitResponse from its bytes (after the 5-byte prefix). */
const decodeResponse = (b: Buffer): RlsResponse =>
  rlsMethod.responseDeserialize(b.subarray(5)) as RlsResponse;

/** A serialized RateLimitRequest for domain `it` with one `key2` descriptor. */
function rlsRequest(value: string): Buffer {
  return rlsMethod.requestSerialize({ domain: 'it', descriptors: [{ entries: [{ key: 'key2', value }] }] });
}

/** A length-prefixed gRPC message (flag 0 unless given). */
function frame(body: Buffer, flag = 0, declared = body.length): Buffer {
  const f = Buffer.alloc(5 + body.length);
  f[0] = flag;
  f.writeUInt32BE(declared, 1);
  body.copy(f, 5);
  return f;
}

/** What a raw call saw: HTTP status, grpc-status and message (headers or trailers), response bytes, RST code. */
interface RawResult {
  status: number | undefined;
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  data: Buffer;
  rstCode: number;
}

interface RawOptions {
  readonly headers?: Record<string, string>;
  /** Bytes written one write each (a body split over as many DATA frames). */
  readonly chunks?: readonly Buffer[];
  /** END_STREAM after the chunks (default true). */
  readonly end?: boolean;
}

/** One call with a raw HTTP/2 client on `session`; resolves when the stream closes. */
function rawCall(session: ClientHttp2Session, path: string, opts: RawOptions = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...opts.headers,
    });
    const out: RawResult = {
      status: undefined,
      grpcStatus: undefined,
      grpcMessage: undefined,
      data: Buffer.alloc(0),
      rstCode: 0,
    };
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      out.rstCode = req.rstCode ?? 0;
      resolve(out);
      // a server may answer before the request ended (grpc-js leaves the stream half open then)
      if (!req.closed) req.close(constants.NGHTTP2_CANCEL);
    };
    const take = (h: IncomingHttpHeaders): void => {
      if (h['grpc-message'] !== undefined) out.grpcMessage = String(h['grpc-message']);
      if (h['grpc-status'] !== undefined) {
        out.grpcStatus = Number(h['grpc-status']);
        finish();
      }
    };
    req.on('response', (h) => {
      out.status = Number(h[':status']);
      take(h);
    });
    req.on('trailers', take);
    req.on('data', (c: Buffer) => (out.data = Buffer.concat([out.data, c])));
    req.on('error', () => {});
    req.on('close', finish);
    for (const c of opts.chunks ?? []) req.write(c);
    if (opts.end ?? true) req.end();
  });
}

function session(port: number): ClientHttp2Session {
  const s = connect(`http://127.0.0.1:${port}`);
  s.on('error', () => {});
  return s;
}

/** A HealthCheckRequest for `service`. */
const healthRequest = (service: string): Buffer =>
  Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(service)]), Buffer.from(service)]);

type Unary = (req: unknown, cb: (err: ServiceError | null, res?: { status: string }) => void) => void;
function healthClient(port: number): Client & { Check: Unary } {
  let node: unknown = loadProtos(['grpc/health/v1/health.proto']);
  for (const p of 'grpc.health.v1.Health'.split('.')) node = (node as Record<string, unknown>)[p];
  const C = node as ServiceClientConstructor;
  return new C(`127.0.0.1:${port}`, credentials.createInsecure(), {
    'grpc.channel_id': Math.random(),
  }) as never;
}

for (const transport of ['http2', 'grpc-js'] as const) {
  describe(`ratelimit gRPC port on ${transport}: grpc-js behaviours and attacks`, function () {
    this.timeout(60_000);
    const stack = new Stack(`ratelimit-transport-${transport}`).install();
    let rl: ServiceHandle;
    let h2: ClientHttp2Session;
    let configDir: string;

    before(async () => {
      configDir = stack.mkdir('config');
      writeConfigMapDir(configDir, { 'rules.yaml': RULES });
      rl = await stack.service('ratelimit', {
        args: ['--config-dir', configDir],
        env: { GRPC_TRANSPORT: transport, LOG_LEVEL: 'debug', GRPC_RECEIVE_TIMEOUT: '500ms' },
      });
      h2 = session(rl.ports.grpc!);
    });
    after(() => h2?.close());

    /** A well-formed call still answers (the process and the connection survived what came before). */
    let alive = 0;
    async function stillServes(): Promise<void> {
      const r = await rawCall(h2, RLS, { chunks: [frame(rlsRequest(`alive-${alive++}`))] });
      assert.equal(r.grpcStatus, 0);
      assert.equal(decodeResponse(r.data).overall_code, 'OK');
    }

    it('answers ShouldRateLimit with the same bytes to grpc-js and to a raw client', async () => {
      const c = new RlsClient(rl.ports.grpc!);
      try {
        const viaGrpcJs = await c.call('it', [{ entries: [['key2', 'same']] }]);
        const raw = await rawCall(h2, RLS, { chunks: [frame(rlsRequest('same'))] });
        assert.equal(raw.status, 200);
        assert.equal(raw.grpcStatus, 0);
        const decoded = decodeResponse(raw.data);
        assert.equal(viaGrpcJs.statuses[0]?.limit_remaining, 2);
        assert.equal(decoded.statuses[0]?.limit_remaining, 1);
      } finally {
        c.close();
      }
    });

    it('grpc-timeout: DEADLINE_EXCEEDED when the request is not complete by the deadline; invalid value INTERNAL', async () => {
      // the request never ends: only the server's deadline can answer
      const r = await rawCall(h2, RLS, {
        headers: { 'grpc-timeout': '200m' },
        chunks: [frame(rlsRequest('x')).subarray(0, 8)],
        end: false,
      });
      assert.equal(r.grpcStatus, 4);
      const bad = await rawCall(h2, RLS, {
        headers: { 'grpc-timeout': 'soon' },
        chunks: [frame(rlsRequest('x'))],
      });
      assert.equal(bad.grpcStatus, 13);
      await stillServes();
    });

    it('max receive size: a length prefix above GRPC_MAX_RECEIVE_MESSAGE_BYTES (up to 4 GiB) is RESOURCE_EXHAUSTED before the body is sent', async () => {
      for (const declared of [1024 * 1024 + 1, 2 ** 32 - 1]) {
        // only the 5-byte prefix and a few bytes are sent, without END_STREAM: the answer comes from the prefix
        const r = await rawCall(h2, RLS, { chunks: [frame(Buffer.from('abc'), 0, declared)], end: false });
        assert.equal(r.grpcStatus, 8, `declared ${declared}`);
      }
      await stillServes();
    });

    it('compressed messages: gzip is decompressed as grpc-js does, within the receive bound; an unknown encoding is UNIMPLEMENTED', async () => {
      const gz = await rawCall(h2, RLS, {
        headers: { 'grpc-encoding': 'gzip' },
        chunks: [frame(gzipSync(rlsRequest('gz')), 1)],
      });
      assert.equal(gz.grpcStatus, 0);
      assert.equal(decodeResponse(gz.data).overall_code, 'OK');
      // 8 MiB of zeros in a few KiB: refused once the output passes 1 MiB
      const bomb = await rawCall(h2, RLS, {
        headers: { 'grpc-encoding': 'gzip' },
        chunks: [frame(gzipSync(Buffer.alloc(8 * 1024 * 1024)), 1)],
      });
      assert.equal(bomb.grpcStatus, 8);
      const snappy = await rawCall(h2, RLS, {
        headers: { 'grpc-encoding': 'snappy' },
        chunks: [frame(rlsRequest('s'), 1)],
      });
      assert.equal(snappy.grpcStatus, 12);
      await stillServes();
    });

    it('unknown service or method: UNIMPLEMENTED; a content-type other than application/grpc: HTTP 415', async () => {
      for (const path of ['/envoy.service.ratelimit.v3.RateLimitService/Nope', '/no.Such/Method', '/']) {
        const r = await rawCall(h2, path, { chunks: [frame(rlsRequest('x'))] });
        assert.equal(r.status, 200, path);
        assert.equal(r.grpcStatus, 12, path);
      }
      const json = await rawCall(h2, RLS, {
        headers: { 'content-type': 'application/json' },
        chunks: [Buffer.from('{}')],
      });
      assert.equal(json.status, 415);
      assert.equal(json.grpcStatus, undefined);
      await stillServes();
    });

    it('a GET with the gRPC content-type is answered like a POST without a message (UNIMPLEMENTED)', async () => {
      const r = await rawCall(h2, RLS, { headers: { ':method': 'GET' } });
      assert.equal(r.grpcStatus, 12);
    });

    it('health: Check SERVING for "", "ratelimit" and the service name, NOT_FOUND for others; Watch SERVICE_UNKNOWN for others', async () => {
      const c = healthClient(rl.ports.grpc!);
      try {
        for (const service of ['', 'ratelimit', 'envoy.service.ratelimit.v3.RateLimitService']) {
          const res = await new Promise<{ status: string }>((resolve, reject) =>
            c.Check({ service }, (err, r) => (err ? reject(err) : resolve(r!))),
          );
          assert.equal(res.status, 'SERVING', service);
        }
        const err = await new Promise<ServiceError | null>((resolve) =>
          c.Check({ service: 'nope' }, (e) => resolve(e)),
        );
        assert.equal(err?.code, 5);
      } finally {
        c.close();
      }
      // Watch of an unknown name: one SERVICE_UNKNOWN message, the stream stays open until the client leaves
      const req = h2.request({
        ':method': 'POST',
        ':path': WATCH,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      req.on('error', () => {});
      req.end(frame(healthRequest('nope')));
      const first = await new Promise<Buffer>((resolve) => req.once('data', resolve));
      assert.deepEqual([...first], [0, 0, 0, 0, 2, 0x08, 3]);
      req.close(constants.NGHTTP2_CANCEL);
    });

    it('keepalive: a client PING is acknowledged', async () => {
      const acked = await new Promise<boolean>((resolve) => h2.ping((err) => resolve(!err)));
      assert.ok(acked);
    });

    it('call metadata (x-request-id, traceparent) in the debug log line of each answer; the per-call metric counts it', async () => {
      const before = await rl.metric('ratelimit_should_rate_limit_total', { code: 'OK' });
      const r = await rawCall(h2, RLS, {
        headers: {
          'x-request-id': `rid-${transport}`,
          traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        },
        chunks: [frame(rlsRequest('meta'))],
      });
      assert.equal(r.grpcStatus, 0);
      const line = await waitUntil('the debug line of the call', () =>
        rl.proc.lines().find((l) => l.includes(`rid-${transport}`)),
      );
      const entry = JSON.parse(line) as Record<string, unknown>;
      assert.equal(entry['traceId'], '0af7651916cd43dd8448eb211c80319c');
      assert.equal(entry['domain'], 'it');
      assert.equal(await rl.metric('ratelimit_should_rate_limit_total', { code: 'OK' }), before + 1);
    });

    it('attack: a truncated frame, then END_STREAM, is answered (UNIMPLEMENTED: no message); an invalid message is INTERNAL', async () => {
      const f = frame(rlsRequest('trunc'));
      const r = await rawCall(h2, RLS, { chunks: [f.subarray(0, f.length - 3)] });
      assert.equal(r.grpcStatus, 12);
      const headOnly = await rawCall(h2, RLS, { chunks: [f.subarray(0, 3)] });
      assert.equal(headOnly.grpcStatus, 12);
      const garbage = await rawCall(h2, RLS, {
        chunks: [frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))],
      });
      assert.equal(garbage.grpcStatus, 13);
      await stillServes();
    });

    it('attack: a request split over one DATA frame per byte is decoded as the same request', async () => {
      const f = frame(rlsRequest('split'));
      const r = await rawCall(h2, RLS, { chunks: [...f].map((b) => Buffer.from([b])) });
      assert.equal(r.grpcStatus, 0);
      assert.equal(decodeResponse(r.data).statuses[0]?.limit_remaining, 2);
    });

    it('attack: two messages on a unary call are UNIMPLEMENTED', async () => {
      const f = frame(rlsRequest('two'));
      const r = await rawCall(h2, RLS, { chunks: [f, f] });
      assert.equal(r.grpcStatus, 12);
    });

    it('attack: RST_STREAM mid-request, many times, leaves the server serving', async () => {
      const f = frame(rlsRequest('rst'));
      await Promise.all(
        Array.from(
          { length: 200 },
          () =>
            new Promise<void>((resolve) => {
              const req = h2.request({ ':method': 'POST', ':path': RLS, 'content-type': 'application/grpc' });
              req.on('error', () => {});
              req.on('close', () => resolve());
              req.write(f.subarray(0, 10), () => req.close(constants.NGHTTP2_CANCEL));
            }),
        ),
      );
      await stillServes();
    });

    it('attack: bytes that are not HTTP/2 on the port close that connection only', async () => {
      await new Promise<void>((resolve) => {
        const sock = tcpConnect(rl.ports.grpc!, '127.0.0.1', () =>
          sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'x'.repeat(10_000)),
        );
        sock.on('error', () => {});
        sock.on('close', () => resolve());
        sock.resume();
      });
      await stillServes();
    });

    if (transport === 'http2')
      it('attack: a request that never ends, without grpc-timeout, is answered DEADLINE_EXCEEDED after GRPC_RECEIVE_TIMEOUT (grpc-js waits forever)', async () => {
        const r = await rawCall(h2, RLS, { chunks: [frame(rlsRequest('slow')).subarray(0, 8)], end: false });
        assert.equal(r.grpcStatus, 4);
        assert.match(r.grpcMessage ?? '', /receive timeout/);
        await stillServes();
      });

    if (transport === 'http2')
      it('a compressed-flag frame without grpc-encoding is refused (INTERNAL; grpc-js reads it as uncompressed)', async () => {
        const r = await rawCall(h2, RLS, { chunks: [frame(rlsRequest('flag'), 1)] });
        assert.equal(r.grpcStatus, 13);
      });

    it('SIGTERM: Watch hears NOT_SERVING, GOAWAY is sent, the in-flight call finishes OK, new calls are refused, exit 0', async () => {
      const victim = await stack.service('ratelimit', {
        args: ['--config-dir', configDir],
        env: { GRPC_TRANSPORT: transport, DRAIN_MS: '0' },
      });
      const s = session(victim.ports.grpc!);
      try {
        const watch = s.request({
          ':method': 'POST',
          ':path': WATCH,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        watch.on('error', () => {});
        const statuses: number[] = [];
        watch.on('data', (c: Buffer) => {
          for (let at = 0; at + 7 <= c.length; at += 7) statuses.push(c[at + 6]!);
        });
        watch.end(frame(healthRequest('ratelimit')));
        await waitUntil('SERVING on Watch', () => statuses.includes(1));
        // an in-flight call: headers and half the message sent
        const f = frame(rlsRequest('inflight'));
        const inflight = s.request({
          ':method': 'POST',
          ':path': RLS,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        inflight.on('error', () => {});
        let inflightStatus: string | undefined;
        let inflightData = Buffer.alloc(0);
        inflight.on('response', (h) => (inflightStatus ??= h['grpc-status'] as string | undefined));
        inflight.on(
          'trailers',
          (h: IncomingHttpHeaders) => (inflightStatus ??= h['grpc-status'] as string | undefined),
        );
        inflight.on('data', (c: Buffer) => (inflightData = Buffer.concat([inflightData, c])));
        const inflightClosed = new Promise<void>((resolve) => inflight.on('close', () => resolve()));
        await new Promise<void>((resolve) => inflight.write(f.subarray(0, 10), () => resolve()));
        const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)));
        const stopping = victim.stop(); // SIGTERM now; resolves once the process exited
        assert.equal(await goaway, constants.NGHTTP2_NO_ERROR);
        await waitUntil('NOT_SERVING on Watch', () => statuses.includes(2));
        watch.close(constants.NGHTTP2_CANCEL);
        // a new stream on the drained connection is not served
        const refused = await rawCall(s, RLS, { chunks: [f] }).catch(() => undefined);
        assert.notEqual(refused?.grpcStatus, 0);
        // the in-flight call completes
        inflight.end(f.subarray(10));
        await inflightClosed;
        assert.equal(inflightStatus, '0');
        assert.equal(decodeResponse(inflightData).overall_code, 'OK');
        await stopping;
        assert.deepEqual(victim.proc.exitStatus, { code: 0, signal: null });
      } finally {
        s.destroy();
        await victim.stop();
      }
    });
  });
}
