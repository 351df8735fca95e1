import { existsSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntil } from '../harness/proc.ts';
import type { Stack } from '../harness/stack.ts';

/** The Jaeger v2 binary built by integration/tracing/build-jaeger.sh (undefined when not built). */
export function jaegerBin(): string | undefined {
  const version = (process.env['JAEGER_VERSION'] ?? 'v1.76.0').replace(/^v/, '');
  const bin = join(
    process.env['EXTSVC_CACHE'] ?? join(homedir(), '.cache', 'extsvc'),
    'jaeger',
    version,
    'jaeger',
  );
  return existsSync(bin) ? bin : undefined;
}

/** A span as Jaeger's query API (/api/traces) returns it. */
export interface JaegerSpan {
  readonly traceID: string;
  readonly spanID: string;
  readonly operationName: string;
  readonly references: ReadonlyArray<{
    readonly refType: string;
    readonly traceID: string;
    readonly spanID: string;
  }>;
  readonly tags: ReadonlyArray<{ readonly key: string; readonly type: string; readonly value: unknown }>;
  readonly processID: string;
}

/** A trace from the query API, with the service name of each process. */
export interface JaegerTrace {
  readonly traceID: string;
  readonly spans: readonly JaegerSpan[];
  readonly processes: Readonly<Record<string, { readonly serviceName: string }>>;
}

/** A running Jaeger: OTLP receivers and the query API, all on loopback ephemeral ports. */
export interface JaegerHandle {
  /** OTLP/HTTP base URL (http://127.0.0.1:port), for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly otlpHttp: string;
  /** OTLP/gRPC port, for Envoy's OpenTelemetry tracer. */
  readonly otlpGrpcPort: number;
  /** GET /api/traces/<id>; undefined while Jaeger has no span of it. */
  trace(traceId: string): Promise<JaegerTrace | undefined>;
  /** GET /api/traces?service=<name>: the recent traces with a span of that service. */
  traces(service: string): Promise<readonly JaegerTrace[]>;
}

/** Starts Jaeger v2 (in-memory storage) with a config of loopback ports; the stack stops it. */
export async function startJaeger(stack: Stack, bin: string): Promise<JaegerHandle> {
  const [health, query, queryGrpc, grpc, http] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const config = join(stack.mkdir('jaeger'), 'config.yaml');
  // Without `metrics: level: none` the collector's own Prometheus endpoint takes port 8888.
  writeFileSync(
    config,
    `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces: { receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter] }
  telemetry:
    metrics: { level: none }
    logs: { level: warn }
extensions:
  healthcheckv2: { use_v2: true, http: { endpoint: "127.0.0.1:${health}" } }
  jaeger_query:
    storage: { traces: mem }
    http: { endpoint: "127.0.0.1:${query}" }
    grpc: { endpoint: "127.0.0.1:${queryGrpc}" }
  jaeger_storage:
    backends:
      mem: { memory: { max_traces: 10000 } }
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:${grpc}" }
      http: { endpoint: "127.0.0.1:${http}" }
processors:
  batch: { timeout: 100ms }
exporters:
  jaeger_storage_exporter: { trace_storage: mem }
`,
  );
  const proc = stack.spawn('jaeger', bin, ['--config', `file:${config}`]);
  await waitUntil(
    'jaeger healthy',
    async () => (await fetch(`http://127.0.0.1:${health}/status`)).status === 200,
    { timeoutMs: 30_000, abort: () => (proc.exitStatus ? `exited early:\n${proc.logs()}` : undefined) },
  );
  const api = `http://127.0.0.1:${query}/api`;
  return {
    otlpHttp: `http://127.0.0.1:${http}`,
    otlpGrpcPort: grpc,
    async trace(traceId) {
      const res = await fetch(`${api}/traces/${traceId}`);
      if (res.status === 404) {
        await res.text();
        return undefined;
      }
      const doc = (await res.json()) as { data?: JaegerTrace[] };
      return doc.data?.[0];
    },
    async traces(service) {
      const res = await fetch(`${api}/traces?service=${encodeURIComponent(service)}&limit=100&lookback=1h`);
      const doc = (await res.json()) as { data?: JaegerTrace[] | null };
      return doc.data ?? [];
    },
  };
}
