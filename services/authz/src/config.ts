import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { COMMON_OPTIONS } from '@extsvc/common/runtime';

/**
 * What the shipped Envoy template's http_service delivers upstream: Emissary's fixed list plus the
 * `x-user-*` family and `x-jwt-payload` (deploy/envoy/envoy.template.yaml, allowed_upstream_headers).
 */
export const DEFAULT_HTTP_UPSTREAM_HEADERS = [
  'authorization',
  'location',
  'proxy-authenticate',
  'set-cookie',
  'www-authenticate',
  'x-user-*',
  'x-jwt-payload',
] as const;

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
  'grpc-max-receive-bytes': {
    kind: 'int',
    env: 'GRPC_MAX_RECEIVE_BYTES',
    default: 1_048_576,
    min: 65_536,
    doc: "Largest CheckRequest accepted. Keep it above what Envoy can send (max_request_headers_kb, 60 KiB by default, plus with_request_body bytes): a larger request is an RPC error, where Envoy's failure mode decides.",
  },
  'grpc-max-concurrent-streams': {
    kind: 'int',
    env: 'GRPC_MAX_CONCURRENT_STREAMS',
    default: 1000,
    min: 1,
    doc: 'Concurrent Check streams per HTTP/2 connection (Envoy opens another connection beyond it).',
  },
  'grpc-transport': {
    kind: 'enum',
    env: 'GRPC_TRANSPORT',
    default: 'http2',
    values: ['http2', 'grpc-js'],
    doc: "The gRPC port's server: 'http2' (a minimal gRPC server on node:http2, services/common grpc-h2) or 'grpc-js' (the previous one, kept as a fallback).",
  },
  'grpc-receive-timeout': {
    kind: 'duration',
    env: 'GRPC_RECEIVE_TIMEOUT',
    default: 30_000,
    doc: "With the 'http2' transport: a CheckRequest must arrive whole within this time, whatever its grpc-timeout (a client that never ends its request is answered DEADLINE_EXCEEDED and reset).",
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
  'http-enabled': {
    kind: 'bool',
    env: 'HTTP_ENABLED',
    default: true,
    doc: 'Start the raw HTTP ext_authz listener; false for gRPC-only deployments (no HTTP-mode policy checks).',
  },
  'http-upstream-headers': {
    kind: 'list',
    env: 'HTTP_UPSTREAM_HEADERS',
    default: [...DEFAULT_HTTP_UPSTREAM_HEADERS],
    doc: "HTTP mode: the headers Envoy copies from authz's answer to the upstream (its allowed_upstream_headers, Emissary's allowed_authorization_headers): exact names or `prefix*`. A policy that sets any other header is refused.",
  },
  'admin-port': {
    kind: 'port',
    env: 'ADMIN_PORT',
    default: 9003,
    doc: 'Admin port: /healthz /readyz /metrics /config.',
  },
  'policy-file': {
    kind: 'file',
    env: 'POLICY_FILE',
    doc: 'Policy YAML (providers, apiKeys, identity, rules, policies); without it every request is denied.',
  },
  'policy-poll-ms': {
    kind: 'duration',
    env: 'POLICY_POLL_MS',
    default: 1000,
    doc: 'How often the policy file and the files it references are checked for changes (0 disables reload).',
  },
  'http-path-prefix': {
    kind: 'string',
    env: 'HTTP_PATH_PREFIX',
    default: '',
    doc: 'HTTP mode: the path_prefix Envoy/Emissary prepends to the original path; stripped before matching.',
  },
  'http-max-header-bytes': {
    kind: 'int',
    env: 'HTTP_MAX_HEADER_BYTES',
    default: 131072,
    min: 61440,
    doc: "HTTP mode: largest accepted request header block; keep it >= Envoy's max_request_headers_kb (60 KiB).",
  },
  'http-keepalive-ms': {
    kind: 'duration',
    env: 'HTTP_KEEPALIVE_MS',
    default: 3_700_000,
    doc: "HTTP mode: idle keep-alive; longer than Envoy's upstream idle_timeout (1 h) so Envoy closes first.",
  },
  'require-issuer-keys': {
    kind: 'bool',
    env: 'REQUIRE_ISSUER_KEYS',
    default: false,
    doc: "Readiness fails while a provider's keys were never obtained (default: reported on /readyz, not failing).",
  },
  'diag-test-per-minute': {
    kind: 'int',
    env: 'DIAG_TEST_PER_MINUTE',
    default: 20,
    min: 0,
    doc: 'Budget of the admin /diag "test a request" form (a decision oracle): runs per minute, then 429; 0 turns it off.',
  },
  'token-cache-size': {
    kind: 'int',
    env: 'TOKEN_CACHE_SIZE',
    default: 10000,
    min: 0,
    doc: 'Verified-token cache entries (0 disables the cache).',
  },
  'token-cache-ttl': {
    kind: 'duration',
    env: 'TOKEN_CACHE_TTL',
    default: 300_000,
    doc: "Longest life of a verified-token cache entry; never beyond the token's exp.",
  },
  'jwt-verify-threads': {
    kind: 'int',
    env: 'JWT_VERIFY_THREADS',
    default: 1,
    min: 0,
    max: 16,
    doc: 'Worker threads that check ES/RS/PS token signatures with node:crypto, in batches, off the main thread (started on first use); 0 checks them with jose (WebCrypto) on the main thread. Claims are validated by jose either way.',
  },
  'decision-log': {
    kind: 'string',
    env: 'DECISION_LOG',
    doc: "Decision log: one JSON line per decision (request id, trace id, method, host, path without query, rule, result, reason, subject/issuer/API key name; never a credential) to 'stdout' or appended to a file path. Off when unset.",
  },
  'decision-log-sample-rate': {
    kind: 'float',
    env: 'DECISION_LOG_SAMPLE_RATE',
    default: 1,
    min: 0,
    max: 1,
    doc: 'Fraction of decisions written to the decision log (1: every decision).',
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
