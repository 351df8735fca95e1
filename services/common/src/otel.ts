/**
 * OpenTelemetry traces, off by default. The standard OTEL_* variables turn them on; only then is
 * the SDK loaded (a dynamic import), so a service without tracing pays neither its memory nor any
 * per-request cost: its hot paths test one `if (tracing)`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
import type { Sampler } from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import { ProblemCollector } from './errors.ts';
import type { Correlation } from './trace.ts';

/** The sampler named by OTEL_TRACES_SAMPLER (the specification's names). */
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

/** Tracing settings read from the environment; `enabled: false` means the SDK is never loaded. */
export interface OtelSettings {
  /** True when an OTLP endpoint is set (or OTEL_TRACES_EXPORTER=otlp) and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none says otherwise. */
  readonly enabled: boolean;
  /** OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (default http://localhost:4318/v1/traces). */
  readonly tracesUrl: string;
  /** OTEL_TRACES_SAMPLER (default parentbased_always_on: Envoy's sampling decision is followed). */
  readonly sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers, 0..1 (default 1). */
  readonly ratio: number;
  /** OTEL_BSP_SCHEDULE_DELAY: ms between two exports (default 5000). */
  readonly scheduleDelayMs: number;
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans kept while the collector is slow; more are dropped (default 2048). */
  readonly maxQueueSize: number;
  /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE (default 512). */
  readonly maxExportBatchSize: number;
  /** OTEL_BSP_EXPORT_TIMEOUT: ms (default 30000). */
  readonly exportTimeoutMs: number;
}

/** The OTEL_* variables read here (the exporter and resource detector also read theirs: endpoint, headers, service name, resource attributes). */
export const OTEL_ENV_DOC = [
  'OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: OTLP/HTTP (protobuf) collector; setting one turns tracing on',
  'OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG: sampler (default parentbased_always_on) and its ratio',
  'OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: resource (service.name defaults to the service)',
  'OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: off whatever else is set',
] as const;

function intEnv(
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  def: number,
  problems: ProblemCollector,
): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    problems.add(name, `must be a positive integer, got '${raw}'`);
    return def;
  }
  return n;
}

/**
 * Reads the tracing settings from the standard OTEL_* variables; throws a ConfigError (exit 2)
 * naming the variable for an unknown sampler, a ratio outside 0..1, an unsupported protocol or
 * exporter.
 */
export function otelSettings(env: Readonly<Record<string, string | undefined>>): OtelSettings {
  const problems = new ProblemCollector();
  const exporter = env['OTEL_TRACES_EXPORTER']?.trim().toLowerCase();
  if (exporter !== undefined && exporter !== '' && exporter !== 'otlp' && exporter !== 'none')
    problems.add('OTEL_TRACES_EXPORTER', `must be 'otlp' or 'none', got '${exporter}'`);
  for (const name of ['OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']) {
    const p = env[name]?.trim();
    if (p !== undefined && p !== '' && p !== 'http/protobuf')
      problems.add(name, `only 'http/protobuf' is supported (OTLP over HTTP, port 4318), got '${p}'`);
  }
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim() ?? '';
  const signal = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim() ?? '';
  const endpoint = base !== '' || signal !== '';
  const tracesUrl =
    signal !== ''
      ? signal
      : `${(base !== '' ? base : 'http://localhost:4318').replace(/\/+$/, '')}/v1/traces`;
  for (const [name, url] of [
    ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', signal],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', base],
  ] as const)
    if (url !== '' && !/^https?:\/\/[^/]/.test(url))
      problems.add(name, 'must be an http:// or https:// URL (OTLP over HTTP)');
  const disabled = env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true' || exporter === 'none';
  const rawSampler = env['OTEL_TRACES_SAMPLER']?.trim().toLowerCase();
  let sampler: SamplerName = 'parentbased_always_on';
  if (rawSampler !== undefined && rawSampler !== '') {
    if ((SAMPLERS as readonly string[]).includes(rawSampler)) sampler = rawSampler as SamplerName;
    else problems.add('OTEL_TRACES_SAMPLER', `must be one of ${SAMPLERS.join(', ')}, got '${rawSampler}'`);
  }
  let ratio = 1;
  const rawArg = env['OTEL_TRACES_SAMPLER_ARG']?.trim();
  if (rawArg !== undefined && rawArg !== '' && sampler.endsWith('traceidratio')) {
    const n = Number(rawArg);
    if (!Number.isFinite(n) || n < 0 || n > 1)
      problems.add('OTEL_TRACES_SAMPLER_ARG', `must be a number from 0 to 1, got '${rawArg}'`);
    else ratio = n;
  }
  const settings: OtelSettings = {
    enabled: !disabled && (endpoint || exporter === 'otlp'),
    tracesUrl,
    sampler,
    ratio,
    scheduleDelayMs: intEnv(env, 'OTEL_BSP_SCHEDULE_DELAY', 5000, problems),
    maxQueueSize: intEnv(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 2048, problems),
    maxExportBatchSize: intEnv(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512, problems),
    exportTimeoutMs: intEnv(env, 'OTEL_BSP_EXPORT_TIMEOUT', 30_000, problems),
  };
  if (settings.maxExportBatchSize > settings.maxQueueSize)
    problems.add('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'must not exceed OTEL_BSP_MAX_QUEUE_SIZE');
  problems.throwIfAny();
  return Object.freeze(settings);
}

/** Span kinds used here (the values of @opentelemetry/api's SpanKind). */
export const SpanKinds = { internal: 0, server: 1, client: 2 } as const;

/** One span: attributes are ids, names and outcomes only, never a token, key or header value. */
export interface TraceSpan {
  /** Adds attributes (string, number, boolean or arrays of them). */
  setAttributes(attrs: Attributes): void;
  /** Marks the span failed with a short message (an error code, never a credential). */
  fail(message: string): void;
  /** Ends the span (idempotent). */
  end(): void;
  /** The span's trace id (32 hex digits). */
  readonly traceId: string;
  /** The span's id (16 hex digits). */
  readonly spanId: string;
}

/** A started tracer provider and the small API the services use. */
export interface Tracing {
  /**
   * Starts a SERVER span for a call from Envoy: a child of `parent` (the trace context Envoy sent),
   * or a root span when there is none.
   */
  startServer(name: string, parent: Correlation | undefined, attrs?: Attributes): TraceSpan;
  /** Starts a span that is a child of the span made current by `run` (a root span outside one). */
  startChild(name: string, kind: 0 | 1 | 2, attrs?: Attributes): TraceSpan;
  /** Runs `fn` with `span` current: spans started by startChild inside (and after its awaits) are its children. */
  run<T>(span: TraceSpan, fn: () => T): T;
  /** Exports what is queued and stops (idempotent). */
  shutdown(): Promise<void>;
}

/** What startTracing needs besides the settings. */
export interface TracingOptions {
  /** service.name when OTEL_SERVICE_NAME is unset, e.g. `extsvc-authz`. */
  readonly service: string;
  readonly version: string;
  /** Receives the SDK's warnings and errors (an unreachable collector). */
  readonly logger: Logger;
}

const SPAN = Symbol('span');

interface Wrapped extends TraceSpan {
  readonly [SPAN]: Span;
}

/**
 * Loads the OpenTelemetry SDK and starts a tracer provider exporting OTLP/HTTP (protobuf) with a
 * batch processor; returns undefined without loading anything when tracing is off. Nothing is
 * registered globally: the spans of this service come from the returned object only.
 */
export async function startTracing(
  settings: OtelSettings,
  opts: TracingOptions,
): Promise<Tracing | undefined> {
  if (!settings.enabled) return undefined;
  const [api, sdk, resources, exporterMod] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  const log = opts.logger.child({ component: 'otel' });
  // The SDK's own diagnostics (export failures) go to our log, at warn and above only.
  api.diag.setLogger(
    {
      error: (msg) => log.warn({ detail: msg }, 'tracing: export problem'),
      warn: (msg) => log.warn({ detail: msg }, 'tracing: SDK warning'),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    api.DiagLogLevel.WARN,
  );
  const ratio = new sdk.TraceIdRatioBasedSampler(settings.ratio);
  const sampler = ((): Sampler => {
    switch (settings.sampler) {
      case 'always_on':
        return new sdk.AlwaysOnSampler();
      case 'always_off':
        return new sdk.AlwaysOffSampler();
      case 'traceidratio':
        return ratio;
      case 'parentbased_always_on':
        return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
      case 'parentbased_always_off':
        return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
      case 'parentbased_traceidratio':
        return new sdk.ParentBasedSampler({ root: ratio });
    }
  })();
  const detected = resources.detectResources({ detectors: [resources.envDetector] });
  const resource = resources
    .resourceFromAttributes({ 'service.name': opts.service, 'service.version': opts.version })
    .merge(detected);
  const provider = new sdk.TracerProvider({
    sampler,
    resource,
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter: new exporterMod.OTLPTraceExporter({ url: settings.tracesUrl }),
        scheduledDelayMillis: settings.scheduleDelayMs,
        maxQueueSize: settings.maxQueueSize,
        maxExportBatchSize: settings.maxExportBatchSize,
        exportTimeoutMillis: settings.exportTimeoutMs,
      }),
    ],
  });
  const tracer: Tracer = provider.getTracer(`@extsvc/${opts.service}`, opts.version);
  const current = new AsyncLocalStorage<Context>();

  const wrap = (span: Span): Wrapped => {
    const ctx = span.spanContext();
    let ended = false;
    return {
      [SPAN]: span,
      traceId: ctx.traceId,
      spanId: ctx.spanId,
      setAttributes: (attrs) => {
        span.setAttributes(attrs);
      },
      fail: (message) => {
        span.setStatus({ code: api.SpanStatusCode.ERROR, message });
      },
      end: () => {
        if (ended) return;
        ended = true;
        span.end();
      },
    };
  };

  let closed: Promise<void> | undefined;
  log.info(
    {
      sampler: settings.sampler,
      ...(settings.sampler.endsWith('traceidratio') ? { ratio: settings.ratio } : {}),
    },
    'tracing on: exporting spans over OTLP/HTTP',
  );
  return {
    startServer(name, parent, attrs) {
      let ctx = api.ROOT_CONTEXT;
      if (parent?.traceId !== undefined && parent.spanId !== undefined)
        ctx = api.trace.setSpanContext(ctx, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          // A B3 context without a sampling state defers the decision: treated as not sampled by
          // the parent-based samplers (Envoy always sends one).
          traceFlags: parent.sampled === true ? api.TraceFlags.SAMPLED : api.TraceFlags.NONE,
          isRemote: true,
        });
      return wrap(
        tracer.startSpan(name, { kind: SpanKinds.server, ...(attrs ? { attributes: attrs } : {}) }, ctx),
      );
    },
    startChild(name, kind, attrs) {
      const ctx = current.getStore() ?? api.ROOT_CONTEXT;
      return wrap(tracer.startSpan(name, { kind, ...(attrs ? { attributes: attrs } : {}) }, ctx));
    },
    run(span, fn) {
      const inner = (span as Wrapped)[SPAN];
      return current.run(api.trace.setSpan(current.getStore() ?? api.ROOT_CONTEXT, inner), fn);
    },
    shutdown() {
      closed ??= provider.shutdown().catch((err: unknown) => {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'tracing: shutdown failed');
      });
      return closed;
    },
  };
}
