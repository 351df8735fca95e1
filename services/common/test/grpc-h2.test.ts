import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import {
  GrpcCode,
  GrpcStatusError,
  grpcFrame,
  startGrpcH2Server,
  type GrpcCall,
  type GrpcH2Server,
} from '../src/grpc-h2.ts';
import { decodeHealthRequest } from '../src/grpc-h2-health.ts';

interface Answer {
  status: number | undefined;
  message: string | undefined;
  body: Buffer;
}

function call(
  s: ClientHttp2Session,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve) => {
    const req = s.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      ...headers,
    });
    const out: Answer = { status: undefined, message: undefined, body: Buffer.alloc(0) };
    const take = (h: IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) out.status = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) out.message = String(h['grpc-message']);
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', (c: Buffer) => (out.body = Buffer.concat([out.body, c])));
    req.on('error', () => {});
    req.on('close', () => resolve(out));
    req.end(grpcFrame(body));
  });
}

describe('common/grpc-h2', () => {
  let server: GrpcH2Server;
  let session: ClientHttp2Session;
  const internal: unknown[] = [];
  let release: (() => void) | undefined;
  let cancelledCall: GrpcCall | undefined;
  let cancelSeen: Promise<void> | undefined;

  before(async () => {
    server = await startGrpcH2Server({
      host: '127.0.0.1',
      port: 0,
      onInternalError: (err) => internal.push(err),
      routes: {
        '/t.T/Echo': { kind: 'unary', handle: (req) => Buffer.concat([Buffer.from('echo:'), req]) },
        '/t.T/Fail': {
          kind: 'unary',
          handle: () => {
            throw new GrpcStatusError(GrpcCode.INVALID_ARGUMENT, 'bad 100% ünïcode\n');
          },
        },
        '/t.T/Crash': {
          kind: 'unary',
          handle: () => Promise.reject(new Error('secret internal detail')),
        },
        '/t.T/Wait': {
          kind: 'unary',
          handle: (_req, c) => {
            cancelledCall = c;
            cancelSeen = new Promise((resolve) => c.onCancel(resolve));
            return new Promise<Buffer>((resolve) => (release = () => resolve(Buffer.from('late'))));
          },
        },
      },
    });
    session = connect(`http://127.0.0.1:${server.port}`);
  });
  after(async () => {
    session?.close();
    await server?.close(100);
  });

  it('answers a unary call with the handler bytes, framed, status OK', async () => {
    const a = await call(session, '/t.T/Echo', Buffer.from('hi'));
    assert.equal(a.status, 0);
    assert.deepEqual(a.body, grpcFrame(Buffer.from('echo:hi')));
  });

  it('a GrpcStatusError is the status; its message is percent-encoded as the protocol says', async () => {
    const a = await call(session, '/t.T/Fail', Buffer.from(''));
    assert.equal(a.status, GrpcCode.INVALID_ARGUMENT);
    assert.equal(a.message, 'bad 100%25 %C3%BCn%C3%AFcode%0A');
  });

  it('any other failure is INTERNAL without its message, and reported to onInternalError', async () => {
    const a = await call(session, '/t.T/Crash', Buffer.from(''));
    assert.equal(a.status, GrpcCode.INTERNAL);
    assert.equal(a.message, 'Internal error');
    assert.match(String(internal[0]), /secret internal detail/);
  });

  it('the deadline ends a call whose handler is still running: DEADLINE_EXCEEDED, the handler sees the cancel, its late answer is dropped', async () => {
    const a = await call(session, '/t.T/Wait', Buffer.from(''), { 'grpc-timeout': '50m' });
    assert.equal(a.status, GrpcCode.DEADLINE_EXCEEDED);
    await cancelSeen;
    assert.equal(cancelledCall?.cancelled, true);
    release?.();
    // the connection still serves
    assert.equal((await call(session, '/t.T/Echo', Buffer.from('x'))).status, 0);
  });

  it('close(): GOAWAY, an in-flight call still gets its answer', async () => {
    const s2 = connect(`http://127.0.0.1:${server.port}`);
    s2.on('error', () => {});
    const pending = call(s2, '/t.T/Wait', Buffer.from(''));
    await new Promise<void>((resolve) => {
      const poll = (): void =>
        release && cancelledCall && !cancelledCall.cancelled ? resolve() : void setTimeout(poll, 5);
      release = undefined;
      poll();
    });
    const goaway = new Promise<void>((resolve) => s2.once('goaway', () => resolve()));
    const closed = server.close(5000);
    await goaway;
    release?.();
    const a = await pending;
    assert.equal(a.status, 0);
    assert.deepEqual(a.body, grpcFrame(Buffer.from('late')));
    s2.close();
    session.close();
    await closed;
  });

  it('decodeHealthRequest reads field 1, skips unknown fields, refuses truncated input', () => {
    assert.equal(decodeHealthRequest(Buffer.from([0x0a, 0x02, 0x61, 0x62])), 'ab');
    assert.equal(decodeHealthRequest(Buffer.from([0x10, 0x05, 0x0a, 0x01, 0x7a])), 'z');
    assert.equal(decodeHealthRequest(Buffer.alloc(0)), '');
    assert.throws(() => decodeHealthRequest(Buffer.from([0x0a, 0x05, 0x61])), GrpcStatusError);
    assert.throws(() => decodeHealthRequest(Buffer.from([0x0f])), GrpcStatusError);
  });
});
