import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { COMMON_OPTIONS } from '@extsvc/common/runtime';

/** Flags and environment variables of acme (see README.md). */
export const ACME_OPTIONS = {
  ...COMMON_OPTIONS,
  'challenge-host': {
    kind: 'string',
    env: 'CHALLENGE_HOST',
    default: '0.0.0.0',
    doc: 'HTTP-01 challenge listener host.',
  },
  'challenge-port': {
    kind: 'port',
    env: 'CHALLENGE_PORT',
    default: 8089,
    doc: 'HTTP-01 challenge port that Envoy routes /.well-known/acme-challenge/ to.',
  },
  'admin-port': {
    kind: 'port',
    env: 'ADMIN_PORT',
    default: 8090,
    doc: 'Admin port: /healthz /readyz /metrics /config.',
  },
} as const;

/** Parsed acme configuration. */
export type AcmeConfig = Extract<ParseResult<typeof ACME_OPTIONS>, { kind: 'options' }>['options'];

/** Parses acme options from argv and env; throws ConfigError with every problem. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult<typeof ACME_OPTIONS> {
  return parseOptions(ACME_OPTIONS, argv, env, {
    name: 'extsvc-acme',
    summary: 'HTTP-01 ACME certificate automation for Emissary-ingress Host resources.',
  });
}
