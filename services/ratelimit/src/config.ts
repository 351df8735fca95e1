import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { COMMON_OPTIONS } from '@extsvc/common/runtime';

/** Flags and environment variables of ratelimit; names follow envoyproxy/ratelimit where the meaning is the same. */
export const RATELIMIT_OPTIONS = {
  ...COMMON_OPTIONS,
  'grpc-host': {
    kind: 'string',
    env: 'GRPC_HOST',
    default: '0.0.0.0',
    doc: 'gRPC RateLimitService listener host.',
  },
  'grpc-port': {
    kind: 'port',
    env: 'GRPC_PORT',
    default: 8081,
    doc: 'gRPC envoy.service.ratelimit.v3.RateLimitService port.',
  },
  'admin-port': {
    kind: 'port',
    env: 'ADMIN_PORT',
    default: 6070,
    doc: 'Admin port: /healthz /readyz /metrics /config.',
  },
} as const;

/** Parsed ratelimit configuration. */
export type RatelimitConfig = Extract<ParseResult<typeof RATELIMIT_OPTIONS>, { kind: 'options' }>['options'];

/** Parses ratelimit options from argv and env; throws ConfigError with every problem. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult<typeof RATELIMIT_OPTIONS> {
  return parseOptions(RATELIMIT_OPTIONS, argv, env, {
    name: 'extsvc-ratelimit',
    summary: 'Envoy RLS v3 rate limit service, compatible with envoyproxy/ratelimit configuration files.',
  });
}
