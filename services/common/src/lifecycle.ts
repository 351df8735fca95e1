import type { Logger } from 'pino';
import { ConfigError, errorMessage } from './errors.ts';
import { compactAfterStart } from './memory.ts';

/** Something that can be closed; close() must be idempotent. */
export interface Closable {
  close(): Promise<void>;
}

/** Exit codes shared by every service. */
export const ExitCode = { ok: 0, failure: 1, config: 2, secondSignal: 130 } as const;

/** Minimal process surface, injectable for tests. */
export interface ProcessLike {
  on(event: 'SIGTERM' | 'SIGINT', listener: () => void): unknown;
  on(event: 'unhandledRejection' | 'uncaughtException', listener: (err: unknown) => void): unknown;
  exit(code: number): never;
  readonly stderr: { write(s: string): boolean };
}

/**
 * Runs a service's composition root: `boot` parses configuration and starts the service. A
 * ConfigError exits 2 with one line on stderr; the first SIGTERM/SIGINT closes the service and exits
 * 0; a second exits 130; an unhandled rejection is logged and exits 1. Once started, `afterStart`
 * runs on the next turn of the event loop (by default one heap compaction: memory.ts).
 */
export function runMain(
  service: string,
  boot: () => Promise<{ logger: Logger; service: Closable } | 'help'>,
  proc: ProcessLike = process,
  afterStart: (logger: Logger) => void = compactAfterStart,
): void {
  let logger: Logger | undefined;
  const fatal = (kind: string) => (err: unknown) => {
    if (logger) logger.fatal({ err }, kind);
    else proc.stderr.write(`${service}: ${kind}: ${errorMessage(err)}\n`);
    if (logger) logger.flush();
    proc.exit(ExitCode.failure);
  };
  proc.on('unhandledRejection', fatal('unhandled rejection'));
  proc.on('uncaughtException', fatal('uncaught exception'));
  boot().then(
    (started) => {
      if (started === 'help') return;
      logger = started.logger;
      let signals = 0;
      const onSignal = (): void => {
        signals += 1;
        if (signals > 1) {
          started.logger.warn('second signal: exiting now');
          started.logger.flush();
          proc.exit(ExitCode.secondSignal);
          return;
        }
        started.logger.info('signal received: draining');
        started.service.close().then(
          () => {
            started.logger.info('stopped');
            started.logger.flush();
            proc.exit(ExitCode.ok);
          },
          (err: unknown) => {
            started.logger.error({ err }, 'error while stopping');
            started.logger.flush();
            proc.exit(ExitCode.failure);
          },
        );
      };
      proc.on('SIGTERM', onSignal);
      proc.on('SIGINT', onSignal);
      setImmediate(() => afterStart(started.logger));
    },
    (err: unknown) => {
      if (err instanceof ConfigError) {
        proc.stderr.write(`${service}: configuration error: ${err.message}\n`);
        proc.exit(ExitCode.config);
        return;
      }
      proc.stderr.write(`${service}: failed to start: ${errorMessage(err)}\n`);
      proc.exit(ExitCode.failure);
    },
  );
}

/** Closes components in order, collecting errors; resolves after all were attempted. */
export async function closeAll(items: ReadonlyArray<Closable | undefined>): Promise<void> {
  const errors: unknown[] = [];
  for (const item of items) {
    if (!item) continue;
    try {
      await item.close();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'errors while closing');
}

/** Resolves after `ms` unless the timer is cleared; the timer does not keep the process alive. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
