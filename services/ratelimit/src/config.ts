import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { ConfigError } from '@extsvc/common/errors';
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
  'http-host': {
    kind: 'string',
    env: 'HOST',
    default: '0.0.0.0',
    doc: 'HTTP listener host (/json, /healthcheck).',
  },
  'http-port': {
    kind: 'port',
    env: 'PORT',
    default: 8080,
    doc: 'HTTP port: POST /json and GET /healthcheck, as the reference.',
  },
  'admin-port': {
    kind: 'port',
    env: 'ADMIN_PORT',
    default: 6070,
    doc: 'Admin port: /healthz /readyz /metrics /config /rlconfig.',
  },
  'config-dir': {
    kind: 'dir',
    env: 'CONFIG_DIR',
    doc: 'Directory of rate limit YAML files; when unset, RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY.',
  },
  'runtime-root': {
    kind: 'string',
    env: 'RUNTIME_ROOT',
    default: '/srv/runtime_data/current',
    doc: 'Reference layout: runtime root.',
  },
  'runtime-subdirectory': {
    kind: 'string',
    env: 'RUNTIME_SUBDIRECTORY',
    default: '',
    doc: 'Reference layout: subdirectory of the root.',
  },
  'runtime-appdirectory': {
    kind: 'string',
    env: 'RUNTIME_APPDIRECTORY',
    default: 'config',
    doc: 'Reference layout: directory holding the YAML files.',
  },
  'runtime-ignoredotfiles': {
    kind: 'bool',
    env: 'RUNTIME_IGNOREDOTFILES',
    default: true,
    doc: 'Skip files and directories whose name starts with a dot (`..data` entries are always skipped).',
  },
  'runtime-watch-root': {
    kind: 'bool',
    env: 'RUNTIME_WATCH_ROOT',
    default: true,
    doc: 'As the reference: true names files by runtime key (config.<file>) in errors, false by file name. The directory is always polled, which sees symlink swaps.',
  },
  'config-poll-interval': {
    kind: 'duration',
    env: 'CONFIG_POLL_INTERVAL',
    default: 1000,
    doc: 'How often the config directory is checked for changes.',
  },
  'merge-domain-config': {
    kind: 'bool',
    env: 'MERGE_DOMAIN_CONFIG',
    default: false,
    doc: 'Merge files that declare the same domain instead of rejecting them.',
  },
  'healthy-with-at-least-one-config-loaded': {
    kind: 'bool',
    env: 'HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED',
    default: false,
    doc: 'Health requires a loaded configuration with at least one domain.',
  },
  'redis-url': {
    kind: 'string',
    env: 'REDIS_URL',
    // A redis:// URL may carry a password: never shown in /config, --help or error messages.
    secret: true,
    doc: 'Redis address (host:port, unix path, redis:// URL; sentinel: master,host:port,...; cluster: host:port,...). Unset: in-memory counters.',
  },
  'redis-type': {
    kind: 'string',
    env: 'REDIS_TYPE',
    default: 'single',
    doc: 'single, sentinel or cluster (case-insensitive).',
  },
  'redis-socket-type': { kind: 'string', env: 'REDIS_SOCKET_TYPE', default: 'tcp', doc: 'tcp or unix.' },
  'redis-auth': { kind: 'string', env: 'REDIS_AUTH', secret: true, doc: 'password or user:password.' },
  'redis-sentinel-auth': {
    kind: 'string',
    env: 'REDIS_SENTINEL_AUTH',
    secret: true,
    doc: 'Sentinel password.',
  },
  'redis-tls': { kind: 'bool', env: 'REDIS_TLS', default: false, doc: 'Connect to Redis with TLS.' },
  'redis-timeout': { kind: 'duration', env: 'REDIS_TIMEOUT', default: 10_000, doc: 'Redis connect timeout.' },
  'redis-op-timeout': {
    kind: 'duration',
    env: 'REDIS_OP_TIMEOUT',
    default: 100,
    doc: 'Deadline of the Redis call of one request; past it the request fails (or passes with fail-open).',
  },
  'redis-fail-open': {
    kind: 'bool',
    env: 'REDIS_FAIL_OPEN',
    default: false,
    doc: 'Answer OK when Redis fails instead of a gRPC error (UNAVAILABLE) that Envoy failure_mode_deny decides on.',
  },
  'cache-key-prefix': {
    kind: 'string',
    env: 'CACHE_KEY_PREFIX',
    default: '',
    doc: 'Prefix of every counter key.',
  },
  'expiration-jitter-max-seconds': {
    kind: 'int',
    env: 'EXPIRATION_JITTER_MAX_SECONDS',
    default: 300,
    min: 0,
    doc: 'Random extra TTL seconds on counter keys.',
  },
  'local-cache-size': {
    kind: 'int',
    env: 'LOCAL_CACHE_SIZE',
    min: 0,
    doc: 'Entries of the local over-limit cache (0: off).',
  },
  'local-cache-size-in-bytes': {
    kind: 'int',
    env: 'LOCAL_CACHE_SIZE_IN_BYTES',
    default: 0,
    min: 0,
    doc: 'Reference setting; when LOCAL_CACHE_SIZE is unset, enables the cache with bytes/128 entries.',
  },
  'near-limit-ratio': {
    kind: 'float',
    env: 'NEAR_LIMIT_RATIO',
    default: 0.8,
    min: 0,
    max: 1,
    doc: 'Share of a limit above which hits count as near_limit.',
  },
  'stop-cache-key-increment-when-overlimit': {
    kind: 'bool',
    env: 'STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT',
    default: false,
    doc: 'As the reference: read the counters first; a request that a limit rejects does not consume the other limits of the request (only the limits going over are incremented). Costs one more Redis round trip.',
  },
  'shadow-mode': {
    kind: 'bool',
    env: 'SHADOW_MODE',
    default: false,
    doc: 'Global shadow mode: overall_code is always OK (statuses unchanged).',
  },
  'quota-mode': {
    kind: 'bool',
    env: 'QUOTA_MODE',
    default: false,
    doc: 'Treat every descriptor as quota_mode.',
  },
  'response-dynamic-metadata': {
    kind: 'bool',
    env: 'RESPONSE_DYNAMIC_METADATA',
    default: false,
    doc: 'Return dynamic_metadata (domain, descriptors, metadata).',
  },
  'limit-response-headers-enabled': {
    kind: 'bool',
    env: 'LIMIT_RESPONSE_HEADERS_ENABLED',
    default: false,
    doc: 'Add RateLimit-Limit / -Remaining / -Reset to response_headers_to_add.',
  },
  'limit-limit-header': {
    kind: 'string',
    env: 'LIMIT_LIMIT_HEADER',
    default: 'RateLimit-Limit',
    doc: 'Name of the limit header.',
  },
  'limit-remaining-header': {
    kind: 'string',
    env: 'LIMIT_REMAINING_HEADER',
    default: 'RateLimit-Remaining',
    doc: 'Name of the remaining header.',
  },
  'limit-reset-header': {
    kind: 'string',
    env: 'LIMIT_RESET_HEADER',
    default: 'RateLimit-Reset',
    doc: 'Name of the reset header.',
  },
  'max-descriptors': {
    kind: 'int',
    env: 'MAX_DESCRIPTORS',
    default: 256,
    min: 1,
    doc: 'Most descriptors in one request; more is refused with INVALID_ARGUMENT before any counter is touched.',
  },
  'max-descriptor-entries': {
    kind: 'int',
    env: 'MAX_DESCRIPTOR_ENTRIES',
    default: 64,
    min: 1,
    doc: 'Most entries in one descriptor; more is refused with INVALID_ARGUMENT.',
  },
  'max-descriptor-value-length': {
    kind: 'int',
    env: 'MAX_DESCRIPTOR_VALUE_LENGTH',
    default: 65_536,
    min: 1,
    doc: "Longest domain, entry key or entry value in characters (above Envoy's default 60 KiB of request headers); longer is refused with INVALID_ARGUMENT.",
  },
  'max-hits-addend': {
    kind: 'int',
    env: 'MAX_HITS_ADDEND',
    default: 4_294_967_295,
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    doc: 'Largest request or per-descriptor hits_addend; larger is refused with INVALID_ARGUMENT. At most 2^53-1 (exact in Lua and JavaScript numbers).',
  },
  'grpc-max-concurrent-streams': {
    kind: 'int',
    env: 'GRPC_MAX_CONCURRENT_STREAMS',
    default: 1000,
    min: 1,
    doc: 'HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of the gRPC listener (Envoy opens more connections when it needs more).',
  },
  'grpc-max-receive-message-bytes': {
    kind: 'int',
    env: 'GRPC_MAX_RECEIVE_MESSAGE_BYTES',
    default: 1024 * 1024,
    min: 1024,
    doc: 'Largest gRPC request message; larger is refused with RESOURCE_EXHAUSTED before it is decoded.',
  },
  'grpc-transport': {
    kind: 'enum',
    env: 'GRPC_TRANSPORT',
    default: 'http2',
    values: ['http2', 'grpc-js'],
    doc: "The gRPC port's server: 'http2' (a minimal gRPC server on node:http2, about half the CPU per call) or 'grpc-js' (the previous one, kept as a fallback).",
  },
  'grpc-receive-timeout': {
    kind: 'duration',
    env: 'GRPC_RECEIVE_TIMEOUT',
    default: 30_000,
    doc: "With the 'http2' transport: a request must arrive whole within this time, whatever its grpc-timeout (a client that never ends its request is answered DEADLINE_EXCEEDED and reset).",
  },
  'memory-store-max-bytes': {
    kind: 'int',
    env: 'MEMORY_STORE_MAX_BYTES',
    default: 32 * 1024 * 1024,
    min: 1024,
    doc: 'Memory mode (no REDIS_URL): bound of the in-process counters, in estimated heap bytes (about 170 + 2 per key character per counter; RSS grows by up to twice this). When full, existing counters keep counting and a new one is answered OVER_LIMIT.',
  },
  'metrics-max-keys': {
    kind: 'int',
    env: 'METRICS_MAX_KEYS',
    default: 1000,
    min: 1,
    doc: 'Bound on distinct per-rule metric label sets; further keys are counted under key="_overflow".',
  },
} as const;

/** Parsed ratelimit configuration. */
export type RatelimitConfig = Extract<ParseResult<typeof RATELIMIT_OPTIONS>, { kind: 'options' }>['options'];

const LOG_LEVELS: Readonly<Record<string, string>> = { warning: 'warn', panic: 'fatal' };

/**
 * Accepts the reference's spellings so that a deployment can switch images without edits:
 * LOG_LEVEL in any case (WARN, debug, warning), DEBUG_HOST / DEBUG_PORT for the admin listener.
 */
function referenceEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  const level = env['LOG_LEVEL']?.toLowerCase();
  if (level) out['LOG_LEVEL'] = LOG_LEVELS[level] ?? level;
  out['ADMIN_PORT'] ??= env['DEBUG_PORT'];
  out['ADMIN_HOST'] ??= env['DEBUG_HOST'];
  return out;
}

/** Parses ratelimit options from argv and env; throws ConfigError with every problem. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult<typeof RATELIMIT_OPTIONS> {
  const r = parseOptions(RATELIMIT_OPTIONS, argv, referenceEnv(env), {
    name: 'extsvc-ratelimit',
    summary: 'Envoy RLS v3 rate limit service, compatible with envoyproxy/ratelimit configuration files.',
  });
  if (r.kind === 'options') {
    const problems = [];
    if (!['single', 'sentinel', 'cluster'].includes(r.options.redisType.toLowerCase()))
      problems.push({
        field: 'REDIS_TYPE',
        message: `must be single, sentinel or cluster, got '${r.options.redisType}'`,
      });
    if (!['tcp', 'unix'].includes(r.options.redisSocketType.toLowerCase()))
      problems.push({
        field: 'REDIS_SOCKET_TYPE',
        message: `must be tcp or unix, got '${r.options.redisSocketType}'`,
      });
    if (problems.length > 0) throw new ConfigError(problems);
  }
  return r;
}

/** Entries of the local over-limit cache from LOCAL_CACHE_SIZE, else LOCAL_CACHE_SIZE_IN_BYTES / 128. */
export function localCacheEntries(c: RatelimitConfig): number {
  return c.localCacheSize ?? Math.floor(c.localCacheSizeInBytes / 128);
}
