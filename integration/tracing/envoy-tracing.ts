import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { ENVOY_DEFAULTS, renderEnvoyConfig, type EnvoyVars } from '../../deploy/envoy/render.ts';
import { freePort, waitUntil, type ManagedProcess } from '../harness/proc.ts';
import { envoyBin, type Stack } from '../harness/stack.ts';

type Yaml = Record<string, unknown>;

/**
 * The shipped Envoy bootstrap (deploy/envoy/envoy.template.yaml, as the harness renders it) with
 * Envoy's OpenTelemetry tracer on every HTTP connection manager: every request sampled, spans sent
 * over OTLP/gRPC to `otlpGrpcPort`, flushed every 200 ms instead of 5 s.
 */
export function tracingEnvoyConfig(vars: EnvoyVars, otlpGrpcPort: number): string {
  const doc = parse(renderEnvoyConfig(vars)) as Yaml;
  const resources = doc['static_resources'] as { listeners: Yaml[]; clusters: Yaml[] };
  for (const listener of resources.listeners)
    for (const chain of listener['filter_chains'] as Yaml[])
      for (const filter of chain['filters'] as Yaml[]) {
        if (filter['name'] !== 'envoy.filters.network.http_connection_manager') continue;
        (filter['typed_config'] as Yaml)['tracing'] = {
          random_sampling: { value: 100 },
          provider: {
            name: 'envoy.tracers.opentelemetry',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
              grpc_service: { envoy_grpc: { cluster_name: 'otlp' }, timeout: '2s' },
              service_name: 'envoy',
            },
          },
        };
      }
  resources.clusters.push({
    name: 'otlp',
    type: 'STATIC',
    connect_timeout: '1s',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: {
      cluster_name: 'otlp',
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: otlpGrpcPort } } } },
          ],
        },
      ],
    },
  });
  doc['layered_runtime'] = {
    layers: [{ name: 'static', static_layer: { 'tracing.opentelemetry.flush_interval_ms': 200 } }],
  };
  return stringify(doc);
}

/** A running traced Envoy. */
export interface TracedEnvoy {
  readonly proc: ManagedProcess;
  /** http://127.0.0.1:<port><path> */
  url(path: string): string;
}

/** Starts Envoy with tracingEnvoyConfig on loopback ephemeral ports; the stack stops it. */
export async function startTracedEnvoy(
  stack: Stack,
  vars: Partial<EnvoyVars>,
  otlpGrpcPort: number,
): Promise<TracedEnvoy> {
  const full: EnvoyVars = {
    ...ENVOY_DEFAULTS,
    ADMIN_PORT: await freePort(),
    HTTP_PORT: await freePort(),
    HTTPS_PORT: await freePort(),
    LISTEN_ADDRESS: '127.0.0.1',
    ...vars,
  };
  const configPath = join(stack.mkdir(`envoy-traced-${full.HTTP_PORT}`), 'envoy.yaml');
  writeFileSync(configPath, tracingEnvoyConfig(full, otlpGrpcPort));
  const proc = stack.spawn(`envoy-traced-${full.HTTP_PORT}`, envoyBin(), [
    '-c',
    configPath,
    '--use-dynamic-base-id',
    '--log-level',
    'warn',
    '--concurrency',
    '1',
  ]);
  await waitUntil(
    'envoy /ready',
    async () => (await fetch(`http://127.0.0.1:${full.ADMIN_PORT}/ready`)).status === 200,
    { timeoutMs: 30_000, abort: () => (proc.exitStatus ? `exited early:\n${proc.logs()}` : undefined) },
  );
  return { proc, url: (path) => `http://127.0.0.1:${full.HTTP_PORT}${path}` };
}
