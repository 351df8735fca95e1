import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Log key names used across the services (STYLE.md: key names are constants). */
export const LogKeys = {
  component: 'component',
  err: 'err',
  reason: 'reason',
  rule: 'rule',
  domain: 'domain',
  host: 'host',
  issuer: 'issuer',
  durationMs: 'durationMs',
} as const;

/** Paths whose values are never written, whatever a caller passes in. */
const REDACT = [
  'token',
  'authorization',
  'password',
  'secret',
  'key',
  'privateKey',
  'accountKey',
  '*.token',
  '*.authorization',
  '*.password',
  '*.secret',
  '*.privateKey',
  '*.accountKey',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
];

/** Creates the service's one logger: JSON on stdout (or a given destination), secrets redacted. */
export function createLogger(opts: {
  service: string;
  level: LevelWithSilent;
  destination?: NodeJS.WritableStream;
}): Logger {
  return pino(
    {
      name: opts.service,
      level: opts.level,
      base: { service: opts.service },
      redact: { paths: REDACT, censor: '(redacted)' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? pino.destination({ sync: true }),
  );
}
