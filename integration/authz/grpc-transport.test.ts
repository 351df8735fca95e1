import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { credentials, type Client, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadProtos } from '@extsvc/common/proto';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { AuthzClient, type CheckOutcome } from './client.ts';
import { Issuer } from './issuer.ts';
import { writePolicy } from './policy.ts';

// The gRPC port on node:http2 (the default) and on grpc-js (--grpc-transport=grpc-js) must give the
// same answers: the same requests go to one authz of each kind and the outcomes are compared.

type Outcome = CheckOutcome | { ok: false; code: number };

function healthClient(port: number): Client & Record<string, unknown> {
  let node: unknown = loadProtos(['grpc/health/v1/health.proto']);
  for (const p of ['grpc', 'health', 'v1', 'Health']) node = (node as Record<string, unknown>)[p];
  const Ctor = node as ServiceClientConstructor;
  return new Ctor(`127.0.0.1:${port}`, credentials.createInsecure());
}

function health(c: Client & Record<string, unknown>, service: string): Promise<string | number> {
  return new Promise((resolve) => {
    const fn = c['Check'] as (
      r: { service: string },
      o: { deadline: number },
      cb: (err: { code: number } | null, res?: { status: string }) => void,
    ) => void;
    fn.call(c, { service }, { deadline: Date.now() + 5000 }, (err, res) =>
      resolve(err ? err.code : (res?.status ?? '')),
    );
  });
}

describe('authz gRPC transports: node:http2 and grpc-js answer alike', function () {
  const stack = new Stack('authz-grpc-transport').install();
  const issuer = new Issuer();
  const services: Record<'http2' | 'grpc-js', ServiceHandle | undefined> = {
    http2: undefined,
    'grpc-js': undefined,
  };
  const clients: AuthzClient[] = [];

  before(async function () {
    this.timeout(60_000);
    await issuer.start();
    const policy = writePolicy(stack.dir, issuer.issuer);
    for (const transport of ['http2', 'grpc-js'] as const)
      services[transport] = await stack.service('authz', {
        args: ['--policy-file', policy, '--grpc-max-receive-bytes', '65536'],
        env: { LOG_LEVEL: 'warn', GRPC_TRANSPORT: transport },
      });
    for (const s of Object.values(services)) clients.push(new AuthzClient(s?.ports.grpc ?? 0));
  });
  after(async () => {
    for (const c of clients) c.close();
    await issuer.stop();
  });

  /** The same Check on both; returns the http2 outcome after asserting the grpc-js one equals it. */
  async function both(run: (c: AuthzClient) => Promise<Outcome>): Promise<Outcome> {
    const [a, b] = await Promise.all(clients.map(run));
    assert.deepEqual(b, a);
    return a as Outcome;
  }

  it('allow, deny and a context extension: the same CheckResponses', async () => {
    const token = await issuer.token();
    const ok = await both((c) => c.checkHttp({ authorization: `Bearer ${token}` }));
    assert.ok(ok.ok && ok.res.status?.code === 0 && ok.res.ok_response, JSON.stringify(ok));
    const denied = await both((c) => c.checkHttp({}));
    assert.ok(
      denied.ok && denied.res.denied_response?.status?.code === 'Unauthorized',
      JSON.stringify(denied),
    );
    const bad = await both((c) => c.checkHttp({ authorization: `Bearer ${token.slice(0, -4)}AAAA` }));
    assert.ok(bad.ok && bad.res.denied_response, JSON.stringify(bad));
    const ctx = await both((c) => c.checkHttp({}, '/public/x', 'GET', { policy: 'none' }));
    assert.ok(ctx.ok, JSON.stringify(ctx));
  });

  it('a request above --grpc-max-receive-bytes is RESOURCE_EXHAUSTED on both', async () => {
    const big = await both((c) => c.checkHttp({ 'x-pad': 'x'.repeat(70_000) }));
    assert.deepEqual(big, { ok: false, code: 8 });
  });

  it('health: the service name SERVING, an unknown name NOT_FOUND', async () => {
    for (const s of Object.values(services)) {
      const h = healthClient(s?.ports.grpc ?? 0);
      try {
        assert.equal(await health(h, 'envoy.service.auth.v3.Authorization'), 'SERVING');
        assert.equal(await health(h, ''), 'SERVING');
        assert.equal(await health(h, 'nope'), 5);
      } finally {
        h.close();
      }
    }
  });
});
