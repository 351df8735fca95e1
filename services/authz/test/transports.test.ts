import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { Decision } from '../src/decision.ts';
import { checkRequestToAuth, decisionToCheckResponse } from '../src/grpc-check.ts';
import { startHttpCheck, stripPathPrefix, type HttpCheckServer } from '../src/http-check.ts';
import { silent } from './helpers.ts';

const allow: Decision = {
  kind: 'allow',
  reason: 'jwt',
  rule: 'api',
  headers: [['x-user-id', 'alice']],
  removeHeaders: ['x-user-roles'],
  removeQuery: [],
  metadata: { sub: 'alice', policy: 'default' },
};
const deny: Decision = {
  kind: 'deny',
  reason: 'token_expired',
  rule: 'api',
  status: 401,
  headers: [
    ['content-type', 'application/json'],
    ['www-authenticate', 'Bearer realm="r", error="invalid_token"'],
  ],
  body: '{"code":"token_expired"}',
};

describe('gRPC adapter', () => {
  it('strips the HTTP path prefix only at a segment boundary; a target without it is undefined', () => {
    assert.equal(stripPathPrefix('/extauth/api/x?y=1', '/extauth'), '/api/x?y=1');
    assert.equal(stripPathPrefix('/extauth', '/extauth'), '/');
    assert.equal(stripPathPrefix('/extauth?q', '/extauth'), '/?q');
    assert.equal(stripPathPrefix('/extauthadmin', '/extauth'), undefined);
    assert.equal(stripPathPrefix('/api/x', '/extauth'), undefined);
    assert.equal(stripPathPrefix('/extauth/api', '/extauth/'), '/api');
    assert.equal(stripPathPrefix('/api/x', ''), '/api/x');
  });

  it('reads method, host, path, headers, raw header_map and context_extensions', () => {
    const r = checkRequestToAuth({
      attributes: {
        request: {
          http: {
            method: 'POST',
            host: 'h.example',
            path: '/a?b=1',
            headers: { Authorization: 'Bearer x' },
            header_map: { headers: [{ key: 'x-raw', value: '', raw_value: Buffer.from('v') }] },
          },
        },
        context_extensions: { policy: 'p' },
      },
    } as never);
    assert.deepEqual(r, {
      method: 'POST',
      host: 'h.example',
      path: '/a?b=1',
      headers: { authorization: 'Bearer x', 'x-raw': 'v' },
      contextExtensions: { policy: 'p' },
      transport: 'grpc',
    });
  });

  it('sets identity headers with overwrite semantics, removes reserved ones, emits metadata', () => {
    const res = decisionToCheckResponse(allow);
    assert.deepEqual(res.status, { code: 0 });
    assert.deepEqual(res.ok_response?.headers, [
      {
        header: { key: 'x-user-id', value: 'alice' },
        append: { value: false },
        append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
      },
    ]);
    assert.deepEqual(res.ok_response?.headers_to_remove, ['x-user-roles']);
    assert.deepEqual(res.dynamic_metadata, {
      fields: { sub: { stringValue: 'alice' }, policy: { stringValue: 'default' } },
    });
  });

  it('answers a deny as an OK RPC with a non-zero status and denied_response', () => {
    const res = decisionToCheckResponse(deny);
    assert.equal(res.status?.code, 16);
    assert.equal(res.denied_response?.status?.code, 401);
    assert.equal(res.denied_response?.body, '{"code":"token_expired"}');
    assert.equal(res.denied_response?.headers?.length, 2);
    assert.deepEqual(res.dynamic_metadata, {
      fields: { rule: { stringValue: 'api' }, reason: { stringValue: 'token_expired' } },
    });
  });
});

describe('HTTP adapter', () => {
  let server: HttpCheckServer;
  let next: Decision = allow;
  const seen: Array<{ method: string; path: string; host: string }> = [];

  before(async () => {
    server = await startHttpCheck(
      { host: '127.0.0.1', port: 0, pathPrefix: '/extauth', maxHeaderBytes: 131072, keepAliveMs: 5000 },
      async (req) => {
        seen.push({ method: req.method, path: req.path, host: req.host });
        return next;
      },
      () => undefined,
      silent,
    );
  });
  after(() => server.close());

  const send = (method: string, path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: server.port, method, path, headers, agent: false },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  it('allows with exactly 200, identity headers and x-envoy-auth-headers-to-remove', async () => {
    next = allow;
    const r = await send('PATCH', '/extauth/api/x?y=1', { host: 'app.example' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-user-id'], 'alice');
    assert.equal(r.headers['x-envoy-auth-headers-to-remove'], 'x-user-roles');
    assert.deepEqual(seen.at(-1), { method: 'PATCH', path: '/api/x?y=1', host: 'app.example' });
  });

  it('denies with the status, challenge and JSON body', async () => {
    next = deny;
    const r = await send('GET', '/extauth/');
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="r", error="invalid_token"');
    assert.equal(r.body, '{"code":"token_expired"}');
  });

  it('answers 503 only for an infrastructure error', async () => {
    next = { kind: 'error', reason: 'keys_unavailable', rule: 'api' };
    assert.equal((await send('GET', '/extauth/x')).status, 503);
  });

  it('answers a CONNECT check with a decision instead of dropping the connection', async () => {
    next = deny;
    const text = await new Promise<string>((resolve, reject) => {
      const sock = connect(server.port, '127.0.0.1', () => {
        sock.write('CONNECT app.example:443 HTTP/1.1\r\nhost: app.example:443\r\n\r\n');
      });
      let buf = '';
      sock.on('data', (c: Buffer) => (buf += c.toString()));
      sock.on('end', () => resolve(buf));
      sock.on('error', reject);
    });
    assert.match(text, /^HTTP\/1\.1 401 Unauthorized\r\n/);
    assert.match(text, /\r\n\r\n\{"code":"token_expired"\}$/);
    assert.equal(seen.at(-1)?.method, 'CONNECT');
  });

  it("accepts 60 KiB of headers (Envoy's default limit) and answers a larger block with 431, not a reset", async () => {
    next = allow;
    const big = { 'x-big': 'a'.repeat(60 * 1024) };
    assert.equal((await send('GET', '/extauth/x', big)).status, 200);
    const huge = { 'x-huge': 'a'.repeat(200 * 1024) };
    assert.equal((await send('GET', '/extauth/x', huge)).status, 431);
  });
});

describe('HTTP adapter with non-Latin-1 claims', () => {
  it('sends UTF-8 header values instead of failing the response', async () => {
    const server = await startHttpCheck(
      { host: '127.0.0.1', port: 0, pathPrefix: '', maxHeaderBytes: 65536, keepAliveMs: 5000 },
      async () => ({ ...allow, headers: [['x-user-name', 'Zoë 日本']] }),
      () => undefined,
      silent,
    );
    try {
      const res = await new Promise<{ status: number; raw: string }>((resolve, reject) => {
        request({ host: '127.0.0.1', port: server.port, path: '/', agent: false }, (r) => {
          r.resume();
          const v = r.headers['x-user-name'];
          resolve({ status: r.statusCode ?? 0, raw: Buffer.from(String(v), 'latin1').toString('utf8') });
        })
          .on('error', reject)
          .end();
      });
      assert.equal(res.status, 200);
      assert.equal(res.raw, 'Zoë 日本');
    } finally {
      await server.close();
    }
  });
});
