import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { credentials, type Client, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadProtos } from '@extsvc/common/proto';
import { createRuntime } from '@extsvc/common/runtime';
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { start, type RatelimitService } from '../src/server.ts';
import { FIXTURES } from './helpers.ts';

type Unary = (
  req: unknown,
  cb: (err: (Error & { code?: number; details?: string }) | null, res?: Record<string, unknown>) => void,
) => void;

function ctor(root: ReturnType<typeof loadProtos>, name: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const p of name.split('.')) node = (node as Record<string, unknown>)[p];
  return node as ServiceClientConstructor;
}

describe('ratelimit/server', () => {
  let svc: RatelimitService;
  let rls: Client & { ShouldRateLimit: Unary };
  let health: Client & { Check: Unary };
  const call = (c: { [k: string]: Unary }, m: string, req: unknown) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      c[m]!.call(c, req, (err, res) => (err ? reject(err) : resolve(res ?? {}))),
    );

  before(async () => {
    const parsed = loadConfig(
      [
        '--config-dir',
        join(FIXTURES, 'good'),
        '--merge-domain-config',
        '--grpc-port=0',
        '--http-port=0',
        '--admin-port=0',
        '--grpc-host=127.0.0.1',
        '--http-host=127.0.0.1',
        '--admin-host=127.0.0.1',
        '--drain-ms=0',
        '--log-level=silent',
      ],
      { LIMIT_RESPONSE_HEADERS_ENABLED: 'true' },
    );
    assert.equal(parsed.kind, 'options');
    if (parsed.kind !== 'options') return;
    svc = await start(
      parsed.options,
      createRuntime({ service: 'ratelimit', version: 't', logLevel: 'silent' }),
      { now: () => 2222_000 },
    );
    const protos = loadProtos(['envoy/service/ratelimit/v3/rls.proto', 'grpc/health/v1/health.proto']);
    const RLS = ctor(protos, 'envoy.service.ratelimit.v3.RateLimitService');
    const Health = ctor(protos, 'grpc.health.v1.Health');
    rls = new RLS(`127.0.0.1:${svc.grpcPort}`, credentials.createInsecure()) as never;
    health = new Health(`127.0.0.1:${svc.grpcPort}`, credentials.createInsecure()) as never;
  });
  after(async () => {
    rls?.close();
    health?.close();
    await svc?.close();
  });

  it('answers ShouldRateLimit over gRPC with statuses, limits and headers', async () => {
    const req = { domain: 'modes', descriptors: [{ entries: [{ key: 'detailed', value: 'g' }] }] };
    let res: Record<string, unknown> = {};
    for (let i = 0; i < 11; i++) res = await call(rls as never, 'ShouldRateLimit', req);
    assert.equal(res['overall_code'], 'OVER_LIMIT');
    const st = (res['statuses'] as Array<Record<string, unknown>>)[0];
    assert.deepEqual(st?.['current_limit'], { name: '', requests_per_unit: 10, unit: 'MINUTE' });
    assert.equal(st?.['limit_remaining'], 0);
    assert.deepEqual(st?.['duration_until_reset'], { seconds: 58, nanos: 0 });
    assert.deepEqual(
      (res['response_headers_to_add'] as Array<{ key: string; value: string }>).map((h) => [h.key, h.value]),
      [
        ['RateLimit-Limit', '10'],
        ['RateLimit-Remaining', '0'],
        ['RateLimit-Reset', '58'],
      ],
    );
  });

  it('returns a gRPC error with the reference message for an empty domain', async () => {
    await assert.rejects(
      call(rls as never, 'ShouldRateLimit', { domain: '', descriptors: [] }),
      (e: Error & { details?: string }) => e.details === 'rate limit domain must not be empty',
    );
    await assert.rejects(
      call(rls as never, 'ShouldRateLimit', { domain: 'x', descriptors: [] }),
      (e: Error & { details?: string }) => e.details === 'rate limit descriptor list must not be empty',
    );
  });

  it('serves gRPC health for "ratelimit"', async () => {
    assert.deepEqual(await call(health as never, 'Check', { service: 'ratelimit' }), { status: 'SERVING' });
  });

  it('POST /json: 200, 429, 400', async () => {
    const url = `http://127.0.0.1:${svc.httpPort}/json`;
    const body = JSON.stringify({ domain: 'merged', descriptors: [{ entries: [{ key: 'a', value: 'j' }] }] });
    const r1 = await fetch(url, { method: 'POST', body });
    assert.equal(r1.status, 200);
    assert.deepEqual(await r1.json(), {
      overallCode: 'OK',
      statuses: [
        { code: 'OK', currentLimit: { requestsPerUnit: 1, unit: 'SECOND' }, durationUntilReset: '1s' },
      ],
      responseHeadersToAdd: [
        { key: 'RateLimit-Limit', value: '1' },
        { key: 'RateLimit-Remaining', value: '0' },
        { key: 'RateLimit-Reset', value: '1' },
      ],
    });
    const r2 = await fetch(url, { method: 'POST', body });
    assert.equal(r2.status, 429);
    assert.equal(((await r2.json()) as { overallCode: string }).overallCode, 'OVER_LIMIT');
    const r3 = await fetch(url, { method: 'POST', body: '{not json' });
    assert.equal(r3.status, 400);
    assert.equal(await r3.text(), 'Bad Request\n');
    const r4 = await fetch(url, { method: 'POST', body: JSON.stringify({ domain: '' }) });
    assert.equal(r4.status, 400);
  });

  it('GET /healthcheck says OK; admin shows the active configuration', async () => {
    const h = await fetch(`http://127.0.0.1:${svc.httpPort}/healthcheck`);
    assert.equal(h.status, 200);
    assert.equal(await h.text(), 'OK');
    const c = (await (await fetch(`http://127.0.0.1:${svc.adminPort}/config`)).json()) as {
      rules: { domains: string[] };
    };
    assert.ok(c.rules.domains.includes('test-domain'));
    const m = await (await fetch(`http://127.0.0.1:${svc.adminPort}/metrics`)).text();
    assert.match(m, /ratelimit_service_config_load_total\{result="success",service="ratelimit"\} 1/);
  });
});

describe('ratelimit/config', () => {
  it('accepts the reference spellings of LOG_LEVEL and DEBUG_PORT', () => {
    const r = loadConfig([], { LOG_LEVEL: 'WARNING', DEBUG_PORT: '7000', REDIS_TYPE: 'SINGLE' });
    assert.ok(r.kind === 'options' && r.options.logLevel === 'warn' && r.options.adminPort === 7000);
    assert.throws(
      () => loadConfig([], { REDIS_TYPE: 'ring' }),
      /REDIS_TYPE: must be single, sentinel or cluster/,
    );
  });
});
