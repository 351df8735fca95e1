import { describe, it, before, after } from 'mocha';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Stack, type ServiceHandle } from '../harness/stack.ts';
import { waitUntil } from '../harness/proc.ts';
import { Issuer } from '../authz/issuer.ts';
import { writePolicy } from '../authz/policy.ts';
import { jaegerBin, startJaeger, type JaegerHandle, type JaegerSpan, type JaegerTrace } from './jaeger.ts';
import { startTracedEnvoy, type TracedEnvoy } from './envoy-tracing.ts';

const RULES = `domain: extsvc
descriptors:
  - key: generic_key
    value: per_client
    descriptors:
      - key: remote_address
        rate_limit: { unit: minute, requests_per_unit: 1000, name: per-address }
`;

const tag = (s: JaegerSpan, key: string): unknown => s.tags.find((t) => t.key === key)?.value;

describe('OpenTelemetry: one request through Envoy → authz → ratelimit → upstream is one trace in Jaeger', function () {
  this.timeout(120_000);
  const bin = jaegerBin();
  const stack = new Stack('tracing-e2e').install();
  const issuer = new Issuer();
  let jaeger: JaegerHandle;
  let envoy: TracedEnvoy;
  let envoyHttp: TracedEnvoy;
  let authz: ServiceHandle;

  before(async function () {
    // scripts/test.sh builds Jaeger in its setup phase (integration/tracing/build-jaeger.sh).
    if (!bin) this.skip();
    jaeger = await startJaeger(stack, bin);
    await issuer.start();
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttp, OTEL_BSP_SCHEDULE_DELAY: '100' };
    authz = await stack.service('authz', {
      args: ['--policy-file', writePolicy(stack.dir, issuer.issuer), '--http-path-prefix', '/extauth'],
      env: otel,
    });
    const dir = stack.mkdir('rl');
    writeFileSync(join(dir, 'rules.yaml'), RULES);
    const redis = await stack.redis();
    const rl = await stack.service('ratelimit', {
      args: ['--config-dir', dir],
      env: { ...otel, REDIS_URL: redis.url },
    });
    const echo = await stack.echo();
    envoy = await startTracedEnvoy(
      stack,
      {
        AUTHZ_GRPC: true,
        AUTHZ_GRPC_PORT: authz.ports.grpc ?? 0,
        RATELIMIT_GRPC_PORT: rl.ports.grpc ?? 0,
        RATELIMIT_TIMEOUT: '1s',
        AUTHZ_TIMEOUT: '2s',
        UPSTREAM_PORT: echo.port,
      },
      jaeger.otlpGrpcPort,
    );
    // Raw HTTP mode (Emissary's AuthService proto: http): Envoy's trace headers ride on the check request.
    envoyHttp = await startTracedEnvoy(
      stack,
      {
        AUTHZ_GRPC: false,
        AUTHZ_HTTP_PORT: authz.ports.http ?? 0,
        RATELIMIT_GRPC_PORT: rl.ports.grpc ?? 0,
        RATELIMIT_TIMEOUT: '1s',
        AUTHZ_TIMEOUT: '2s',
        UPSTREAM_PORT: echo.port,
      },
      jaeger.otlpGrpcPort,
    );
  });
  after(() => issuer.stop());

  it("authz's Check and ratelimit's ShouldRateLimit spans are children of Envoy's spans in Envoy's trace; no credential in any span", async () => {
    const traceId = randomBytes(16).toString('hex');
    const token = await issuer.token({ sub: 'alice' });
    const res = await fetch(envoy.url('/api/things'), {
      headers: {
        // The client's trace context: Envoy continues this trace (sampled) rather than starting one.
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        authorization: `Bearer ${token}`,
        cookie: 'session=cookie-secret-value',
        'x-api-key': 'partner-key-1',
      },
    });
    assert.equal(res.status, 200, await res.text());

    const services = (t: JaegerTrace): Set<string> =>
      new Set(t.spans.map((s) => t.processes[s.processID]?.serviceName ?? ''));
    const trace = await waitUntil(
      'the trace in Jaeger with envoy, authz and ratelimit spans',
      async () => {
        const t = await jaeger.trace(traceId);
        if (!t) return undefined;
        const s = services(t);
        return s.has('envoy') && s.has('extsvc-authz') && s.has('extsvc-ratelimit') ? t : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
    const service = (s: JaegerSpan): string => trace.processes[s.processID]?.serviceName ?? '';
    const parentOf = (s: JaegerSpan): JaegerSpan | undefined => {
      const ref = s.references.find((r) => r.refType === 'CHILD_OF');
      return ref ? byId.get(ref.spanID) : undefined;
    };

    const check = trace.spans.find((s) => s.operationName === 'authz Check');
    assert.ok(check, `an authz Check span in ${[...byId.values()].map((s) => s.operationName).join(', ')}`);
    assert.equal(check.traceID, traceId);
    const checkParent = parentOf(check);
    assert.ok(checkParent, 'the Check span has its parent in the trace');
    assert.equal(service(checkParent), 'envoy');
    assert.match(checkParent.operationName, /Authorization\.Check|ext_authz/i, "Envoy's ext_authz call span");
    assert.equal(tag(check, 'authz.result'), 'allow');
    assert.equal(tag(check, 'authz.rule'), 'api');
    assert.equal(tag(check, 'authz.subject'), 'alice');
    assert.equal(tag(check, 'url.path'), '/api/things');

    const rl = trace.spans.find((s) => s.operationName === 'ratelimit ShouldRateLimit');
    assert.ok(rl, 'a ShouldRateLimit span');
    assert.equal(rl.traceID, traceId);
    const rlParent = parentOf(rl);
    assert.ok(rlParent, 'the ShouldRateLimit span has its parent in the trace');
    assert.equal(service(rlParent), 'envoy');
    assert.match(
      rlParent.operationName,
      /RateLimitService\.ShouldRateLimit|ratelimit/i,
      "Envoy's rate limit call span",
    );
    assert.equal(tag(rl, 'ratelimit.domain'), 'extsvc');
    assert.equal(tag(rl, 'ratelimit.code'), 'OK');
    assert.match(String(tag(rl, 'ratelimit.descriptors')), /generic_key,remote_address/);

    // The Redis round trip is a child of the ShouldRateLimit span.
    const redis = trace.spans.find((s) => s.operationName === 'redis apply');
    assert.ok(redis, 'a redis apply span');
    assert.equal(parentOf(redis)?.spanID, rl.spanID);

    // Nothing secret anywhere in the trace: token (or its signature), cookie value, API key, and no
    // descriptor value (per_client, the client address) on our spans.
    const text = JSON.stringify(trace);
    assert.ok(!text.includes(token.split('.')[2] ?? '-'), 'no token signature in the trace');
    assert.ok(!text.includes(token.split('.')[1] ?? '-'), 'no token payload in the trace');
    assert.ok(!text.includes('cookie-secret-value'), 'no cookie value in the trace');
    assert.ok(!text.includes('partner-key-1'), 'no API key in the trace');
    const ours = trace.spans.filter((s) => service(s) === 'extsvc-ratelimit');
    assert.ok(!JSON.stringify(ours).includes('per_client'), 'no descriptor value on ratelimit spans');
  });

  it("HTTP mode: authz's check span is a child of Envoy's ext_authz HTTP call span, read from the check request's traceparent", async () => {
    const traceId = randomBytes(16).toString('hex');
    const res = await fetch(envoyHttp.url('/public/hello'), {
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    assert.equal(res.status, 200, await res.text());
    const trace = await waitUntil(
      'the HTTP-mode trace with an authz span',
      async () => {
        const t = await jaeger.trace(traceId);
        return t?.spans.some((s) => s.operationName === 'authz HTTP check') &&
          t.spans.some((s) => t.processes[s.processID]?.serviceName === 'envoy')
          ? t
          : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const check = trace.spans.find((s) => s.operationName === 'authz HTTP check');
    assert.ok(check);
    const ref = check.references.find((r) => r.refType === 'CHILD_OF');
    const parent = trace.spans.find((s) => s.spanID === ref?.spanID);
    assert.ok(parent, 'the parent span is in the trace (not the client-sent one)');
    assert.equal(trace.processes[parent.processID]?.serviceName, 'envoy');
    assert.equal(tag(check, 'authz.rule'), 'public');
    assert.equal(tag(check, 'url.path'), '/public/hello');
  });

  it('a JWKS fetch is a CLIENT span of authz with the key URL and no query', async () => {
    const traces = await waitUntil(
      'an authz key fetch span',
      async () => {
        const all = await jaeger.traces('extsvc-authz');
        return all.some((t) => t.spans.some((s) => s.operationName === 'authz key fetch')) ? all : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const fetchSpan = traces.flatMap((t) => t.spans).find((s) => s.operationName === 'authz key fetch');
    assert.ok(fetchSpan);
    assert.equal(tag(fetchSpan, 'span.kind'), 'client');
    assert.match(String(tag(fetchSpan, 'url.full')), /^http:\/\/127\.0\.0\.1:\d+\//);
    assert.ok(authz.proc.logs().includes('tracing on'), 'authz says tracing is on');
  });
});
