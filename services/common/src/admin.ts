import Fastify, { type FastifyInstance } from 'fastify';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { HealthState } from './health.ts';
import { boundPort } from './net.ts';

/** Options of the admin HTTP server. */
export interface AdminOptions {
  readonly service: string;
  readonly version: string;
  readonly host: string;
  readonly port: number;
  readonly health: HealthState;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Returns the active configuration with secrets already redacted. */
  readonly configView: () => unknown;
  /** Adds service-specific routes (diagnostics) before listening. */
  readonly routes?: (app: FastifyInstance) => void;
}

/** A started admin server. */
export interface AdminServer {
  readonly port: number;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** Creates the per-service metrics registry with process metrics, prefixed by nothing (names are per service). */
export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Starts the admin server: /healthz, /readyz, /metrics and /config (redacted). */
export async function startAdmin(opts: AdminOptions): Promise<AdminServer> {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.get('/healthz', async () => ({ status: 'ok', service: opts.service }));
  app.get('/readyz', async (_req, reply) => {
    const snap = opts.health.snapshot();
    return reply
      .code(snap.serving ? 200 : 503)
      .send({ status: snap.serving ? 'ready' : 'not ready', ...snap });
  });
  app.get('/metrics', async (_req, reply) => {
    const body = await opts.registry.metrics();
    return reply.header('content-type', opts.registry.contentType).send(body);
  });
  app.get('/config', async () => opts.configView());
  app.get('/version', async () => ({
    service: opts.service,
    version: opts.version,
    node: process.versions.node,
    uptimeSeconds: Math.round((Date.now() - opts.health.startedAt) / 1000),
  }));
  opts.routes?.(app);
  await app.listen({ host: opts.host, port: opts.port });
  const port = boundPort(app.server, opts.port);
  opts.logger.info({ component: 'admin', port }, 'admin server listening');
  let closing: Promise<void> | undefined;
  return {
    port,
    app,
    close: () => (closing ??= app.close()),
  };
}
