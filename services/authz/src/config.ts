import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { COMMON_OPTIONS } from '@extsvc/common/runtime';

/** Flags and environment variables of authz (see README.md). */
export const AUTHZ_OPTIONS = {
  ...COMMON_OPTIONS,
  'grpc-host': { kind: 'string', env: 'GRPC_HOST', default: '0.0.0.0', doc: 'gRPC Check listener host.' },
  'grpc-port': {
    kind: 'port',
    env: 'GRPC_PORT',
    default: 9001,
    doc: 'gRPC envoy.service.auth.v3.Authorization port.',
  },
  'http-host': {
    kind: 'string',
    env: 'HTTP_HOST',
    default: '0.0.0.0',
    doc: 'Raw HTTP ext_authz listener host.',
  },
  'http-port': {
    kind: 'port',
    env: 'HTTP_PORT',
    default: 9002,
    doc: 'Raw HTTP ext_authz port (Envoy http_service, Emissary proto: http).',
  },
  'admin-port': {
    kind: 'port',
    env: 'ADMIN_PORT',
    default: 9003,
    doc: 'Admin port: /healthz /readyz /metrics /config.',
  },
} as const;

/** Parsed authz configuration. */
export type AuthzConfig = Extract<ParseResult<typeof AUTHZ_OPTIONS>, { kind: 'options' }>['options'];

/** Parses authz options from argv and env; throws ConfigError with every problem. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult<typeof AUTHZ_OPTIONS> {
  return parseOptions(AUTHZ_OPTIONS, argv, env, {
    name: 'extsvc-authz',
    summary: 'Envoy ext_authz service (gRPC Check and raw HTTP) for Envoy and Emissary-ingress AuthService.',
  });
}
