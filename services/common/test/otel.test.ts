import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { ConfigError } from '../src/errors.ts';
import { otelSettings, SpanKinds, startTracing } from '../src/otel.ts';

const silent = pino({ level: 'silent' });

/** An OTLP/HTTP receiver that keeps the raw protobuf bodies it gets. */
async function receiver(): Promise<{ url: string; bodies: Buffer[]; close(): Promise<void> }> {
  const bodies: Buffer[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('common/otel', () => {
  it('is off by default and loads nothing: no endpoint, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none', async () => {
    assert.equal(otelSettings({}).enabled, false);
    assert.equal(
      await startTracing(otelSettings({}), { service: 's', version: '1', logger: silent }),
      undefined,
    );
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' };
    assert.equal(otelSettings(on).enabled, true);
    assert.equal(otelSettings(on).tracesUrl, 'http://collector:4318/v1/traces');
    assert.equal(
      otelSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom' }).tracesUrl,
      'http://c:4318/custom',
    );
    assert.equal(otelSettings({ ...on, OTEL_SDK_DISABLED: 'true' }).enabled, false);
    assert.equal(otelSettings({ ...on, OTEL_TRACES_EXPORTER: 'none' }).enabled, false);
    assert.equal(otelSettings(on).sampler, 'parentbased_always_on');
    const ratio = otelSettings({
      ...on,
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.01',
    });
    assert.equal(ratio.sampler, 'parentbased_traceidratio');
    assert.equal(ratio.ratio, 0.01);
  });

  it('a bad OTEL_* variable is a ConfigError naming it', () => {
    const fields = (env: Record<string, string>): string[] => {
      try {
        otelSettings(env);
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems.map((p) => p.field);
      }
      return [];
    };
    assert.deepEqual(fields({ OTEL_TRACES_SAMPLER: 'sometimes' }), ['OTEL_TRACES_SAMPLER']);
    assert.deepEqual(fields({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }), [
      'OTEL_TRACES_SAMPLER_ARG',
    ]);
    assert.deepEqual(fields({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), ['OTEL_EXPORTER_OTLP_PROTOCOL']);
    assert.deepEqual(fields({ OTEL_TRACES_EXPORTER: 'zipkin' }), ['OTEL_TRACES_EXPORTER']);
    assert.deepEqual(fields({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
    ]);
    assert.deepEqual(fields({ OTEL_BSP_SCHEDULE_DELAY: 'soon' }), ['OTEL_BSP_SCHEDULE_DELAY']);
  });

  it("exports a server span as a child of the caller's W3C or B3 context, and a child span made current by run", async () => {
    const r = await receiver();
    try {
      const tracing = await startTracing(otelSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: r.url }), {
        service: 'extsvc-test',
        version: '1',
        logger: silent,
      });
      assert.ok(tracing);
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parent = '00f067aa0ba902b7';
      const server = tracing.startServer('test Check', {
        traceId,
        spanId: parent,
        sampled: true,
        format: 'b3',
      });
      assert.equal(server.traceId, traceId, 'the span joins the caller trace');
      await tracing.run(server, async () => {
        await Promise.resolve();
        const child = tracing.startChild('test fetch', SpanKinds.client);
        assert.equal(child.traceId, traceId);
        child.end();
      });
      server.setAttributes({ 'authz.rule': 'api' });
      server.end();
      // Not sampled by the caller: parent-based sampling drops it.
      const dropped = tracing.startServer('dropped', {
        traceId: 'a'.repeat(32),
        spanId: 'b'.repeat(16),
        sampled: false,
      });
      dropped.end();
      await tracing.shutdown();
      const body = Buffer.concat(r.bodies);
      assert.ok(body.includes(Buffer.from(traceId, 'hex')), 'the trace id is exported');
      assert.ok(body.includes(Buffer.from(parent, 'hex')), "the caller's span is the parent");
      assert.ok(
        body.includes(Buffer.from(server.spanId, 'hex')),
        'the child names the server span as parent',
      );
      assert.ok(body.includes(Buffer.from('test Check')) && body.includes(Buffer.from('test fetch')));
      assert.ok(body.includes(Buffer.from('extsvc-test')), 'service.name');
      assert.ok(!body.includes(Buffer.from('dropped')), 'an unsampled parent is followed');
    } finally {
      await r.close();
    }
  });
});
