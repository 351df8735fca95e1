import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { Logger, LevelWithSilent } from 'pino';
import { createLogger } from './logger.ts';
import { HealthState } from './health.ts';
import { createRegistry } from './admin.ts';
import type { OptionSpec } from './config.ts';

/** What every service gets from the shared runtime. */
export interface Runtime {
  readonly service: string;
  readonly version: string;
  readonly logger: Logger;
  readonly health: HealthState;
  readonly registry: Registry;
}

/** Options every service accepts, with the same flags and variables. */
export const COMMON_OPTIONS = {
  'log-level': {
    kind: 'enum',
    env: 'LOG_LEVEL',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    doc: 'Minimum log level (JSON logs on stdout).',
  },
  'admin-host': {
    kind: 'string',
    env: 'ADMIN_HOST',
    default: '127.0.0.1',
    doc: 'Admin HTTP server host (loopback by default: set 0.0.0.0 where probes and Prometheus must reach it).',
  },
  'drain-ms': {
    kind: 'duration',
    env: 'DRAIN_MS',
    default: 1000,
    doc: 'On SIGTERM, time between readiness turning NOT_SERVING and closing the listeners.',
  },
} as const satisfies Record<string, OptionSpec>;

/** Reads the version of the package that owns `packageJsonUrl`. */
export function packageVersion(packageJsonUrl: URL): string {
  try {
    return (JSON.parse(readFileSync(packageJsonUrl, 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Creates logger, health and metrics registry for a service. */
export function createRuntime(opts: {
  service: string;
  version: string;
  logLevel: string;
  destination?: NodeJS.WritableStream;
}): Runtime {
  const logger = createLogger({
    service: opts.service,
    level: opts.logLevel as LevelWithSilent,
    ...(opts.destination ? { destination: opts.destination } : {}),
  });
  return {
    service: opts.service,
    version: opts.version,
    logger,
    health: new HealthState(),
    registry: createRegistry(opts.service),
  };
}
