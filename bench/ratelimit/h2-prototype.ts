// Measurement-only prototype of the issue-16 lever "ShouldRateLimit on a minimal unary gRPC handler over
// node:http2", not a shipped mode: the whole ratelimit service starts as usual with its gRPC listener on an
// ephemeral port, and a bare node:http2 server on GRPC_PORT answers ShouldRateLimit with the service's own
// codec and decision core (no grpc-js on that path; no deadlines, metadata, compression, metrics or
// health: only what the bench exercises).
//   node bench/ratelimit/bench.ts … --ours-entry bench/ratelimit/h2-prototype.ts
import { createServer, type ServerHttp2Stream } from 'node:http2';
import { runMain } from '@extsvc/common/lifecycle';
import { createRuntime } from '@extsvc/common/runtime';
import { loadConfig } from '../../services/ratelimit/src/config.ts';
import { start } from '../../services/ratelimit/src/server.ts';
import { decodeRequest, encodeResponse } from '../../services/ratelimit/src/codec.ts';

const PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

function fail(stream: ServerHttp2Stream, code: number, message: string): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(code),
      'grpc-message': message,
    },
    { endStream: true },
  );
}

runMain('ratelimit-h2-prototype', async () => {
  const port = Number(process.env['GRPC_PORT'] ?? '8081');
  const parsed = loadConfig(process.argv.slice(2), { ...process.env, GRPC_PORT: '0' });
  if (parsed.kind === 'help') return 'help';
  const rt = createRuntime({ service: 'ratelimit', version: 'prototype', logLevel: parsed.options.logLevel });
  const rl = await start(parsed.options, rt);
  const h2 = createServer({ settings: { maxConcurrentStreams: 1000 } });
  h2.on('sessionError', () => {});
  h2.on('stream', (stream, headers) => {
    if (headers[':path'] !== PATH) {
      fail(stream, 12, 'unimplemented');
      return;
    }
    // a call cancelled by the client (ghz at the end of a run) resets its stream
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      if (buf.length < 5 || buf[0] !== 0 || buf.readUInt32BE(1) !== buf.length - 5) {
        fail(stream, 13, 'bad frame');
        return;
      }
      let req;
      try {
        req = decodeRequest(buf.subarray(5));
      } catch {
        fail(stream, 13, 'bad message');
        return;
      }
      rl.service.shouldRateLimit(req).then(
        (r) => {
          const body = encodeResponse(r);
          if (body === undefined) {
            fail(stream, 13, 'not covered by the prototype');
            return;
          }
          if (stream.closed || stream.destroyed) return;
          const frame = Buffer.allocUnsafe(5 + body.length);
          frame[0] = 0;
          frame.writeUInt32BE(body.length, 1);
          body.copy(frame, 5);
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(frame);
        },
        () => fail(stream, 14, 'unavailable'),
      );
    });
  });
  await new Promise<void>((resolve) => h2.listen(port, process.env['GRPC_HOST'] ?? '127.0.0.1', resolve));
  return {
    logger: rt.logger,
    service: {
      close: async () => {
        h2.close();
        await rl.close();
      },
    },
  };
});
