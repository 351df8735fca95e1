import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseOptions, type ParseResult } from '@extsvc/common/config';
import { ConfigError } from '@extsvc/common/errors';
import { COMMON_OPTIONS } from '@extsvc/common/runtime';
import { KEY_TYPES } from './certs.ts';
import { DEFAULT_ALLOWED_AUTHORITIES, LETS_ENCRYPT_PRODUCTION, normalizeAuthority } from './host.ts';

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
    doc: 'Admin port: /healthz /readyz /metrics /config /hosts.',
  },
  'hosts-file': {
    kind: 'file',
    env: 'HOSTS_FILE',
    doc: 'Multi-document YAML file of Emissary Host resources (getambassador.io/v3alpha1); watched. Unset: no Hosts (challenge server only).',
  },
  'hosts-poll-interval': {
    kind: 'duration',
    env: 'HOSTS_POLL_INTERVAL',
    default: 2000,
    doc: 'How often the Hosts file is checked for changes.',
  },
  'cert-dir': {
    kind: 'string',
    env: 'CERT_DIR',
    doc: 'Directory of certificates: <cert-dir>/<namespace>/<tlsSecret>/{tls.crt,tls.key,sds.yaml}; created if missing.',
  },
  'envoy-cert-dir': {
    kind: 'string',
    env: 'ENVOY_CERT_DIR',
    doc: 'The same directory as Envoy mounts it, used for the paths inside sds.yaml (default: cert-dir).',
  },
  'key-file-mode': {
    kind: 'string',
    env: 'KEY_FILE_MODE',
    default: '0600',
    doc: 'Octal mode of tls.key files (0640 lets an Envoy in the same group read them).',
  },
  'account-dir': {
    kind: 'string',
    env: 'ACCOUNT_DIR',
    doc: 'Directory of ACME account keys and URLs, 0700 (default: <cert-dir>/_accounts).',
  },
  'default-authority': {
    kind: 'string',
    env: 'DEFAULT_AUTHORITY',
    default: LETS_ENCRYPT_PRODUCTION,
    doc: 'ACME directory of Hosts without acmeProvider.authority; "none" manages only explicit ones.',
  },
  'allowed-authorities': {
    kind: 'list',
    env: 'ALLOWED_AUTHORITIES',
    default: [...DEFAULT_ALLOWED_AUTHORITIES],
    doc: "ACME directory URLs a Host may name (comma-separated; default Let's Encrypt production and staging; --default-authority is always allowed). Others are an Error on the Host and never contacted.",
  },
  'default-namespace': {
    kind: 'string',
    env: 'DEFAULT_NAMESPACE',
    default: 'default',
    doc: 'Namespace of Host documents without metadata.namespace.',
  },
  'ambassador-id': {
    kind: 'list',
    env: 'AMBASSADOR_ID',
    default: ['default'],
    doc: 'Only Hosts with one of these ambassador_id values (none given = "default"), as Emissary selects its resources; "*" for all. Kubernetes mode: Hosts with an acmeProvider and a matching ambassador_id are managed; empty: only Hosts annotated acme.extsvc.dev/manage: "true".',
  },
  'ca-file': {
    kind: 'file',
    env: 'ACME_CA_FILE',
    doc: 'Extra PEM roots trusted for the ACME directory (NODE_EXTRA_CA_CERTS works too).',
  },
  'key-type': {
    kind: 'enum',
    env: 'KEY_TYPE',
    values: KEY_TYPES,
    default: 'ecdsa-p256',
    doc: 'Private key type of issued certificates (a fresh key per certificate).',
  },
  'renew-fraction': {
    kind: 'float',
    env: 'RENEW_FRACTION',
    min: 0.1,
    max: 0.95,
    default: 2 / 3,
    doc: 'Renew after this fraction of the certificate lifetime.',
  },
  'renew-jitter': {
    kind: 'float',
    env: 'RENEW_JITTER',
    min: 0,
    max: 0.2,
    default: 0.02,
    doc: 'Renew up to this fraction of the lifetime earlier, at random per certificate.',
  },
  ari: {
    kind: 'bool',
    env: 'ACME_ARI',
    default: true,
    doc: 'Use the CA renewal window (RFC 9773 ARI) when its directory offers renewalInfo.',
  },
  'ari-poll-min': {
    kind: 'duration',
    env: 'ARI_POLL_MIN',
    default: 600_000,
    doc: "Shortest delay between two ARI renewalInfo requests for one certificate (the CA's Retry-After is clamped to it).",
  },
  'ari-poll-max': {
    kind: 'duration',
    env: 'ARI_POLL_MAX',
    default: 86_400_000,
    doc: 'Longest delay between two ARI renewalInfo requests (also used when the CA sends no Retry-After).',
  },
  'default-profile': {
    kind: 'string',
    env: 'DEFAULT_PROFILE',
    doc: "Certificate profile (e.g. classic, tlsserver, shortlived) of Hosts that name none; the CA must advertise it in meta.profiles. Unset: the CA's default.",
  },
  'backoff-initial': {
    kind: 'duration',
    env: 'BACKOFF_INITIAL',
    default: 300_000,
    doc: 'First retry delay after a failed order (doubles per failure).',
  },
  'backoff-max': {
    kind: 'duration',
    env: 'BACKOFF_MAX',
    default: 86_400_000,
    doc: 'Cap of the retry delay (a CA Retry-After may exceed it).',
  },
  'max-concurrent-orders': {
    kind: 'int',
    env: 'MAX_CONCURRENT_ORDERS',
    min: 1,
    max: 100,
    default: 4,
    doc: 'Orders running at once, at most.',
  },
  'self-check-address': {
    kind: 'string',
    env: 'SELF_CHECK_ADDRESS',
    doc: 'host:port to GET the token through (Host header = the name) before asking the CA; unset = no self-check.',
  },
  'self-check-attempts': {
    kind: 'int',
    env: 'SELF_CHECK_ATTEMPTS',
    min: 1,
    max: 100,
    default: 5,
    doc: 'Self-check attempts (1 s apart) before the order fails.',
  },
  'eab-kid': {
    kind: 'string',
    env: 'EAB_KID',
    doc: 'External account binding key id (CAs that require EAB).',
  },
  'eab-hmac-key': {
    kind: 'string',
    env: 'EAB_HMAC_KEY',
    secret: true,
    doc: 'External account binding HMAC key, base64url.',
  },
  'acme-timeout': {
    kind: 'duration',
    env: 'ACME_TIMEOUT',
    default: 30_000,
    doc: 'Timeout of one HTTP request to the CA.',
  },
  'acme-retries': {
    kind: 'int',
    env: 'ACME_RETRIES',
    min: 0,
    max: 10,
    default: 2,
    doc: 'Retries of one ACME step when the CA is unreachable or answers 5xx (1 s, doubling).',
  },
  'poll-interval': {
    kind: 'duration',
    env: 'POLL_INTERVAL',
    default: 500,
    doc: 'First delay when polling a pending challenge or order (doubles, capped at 10 s, 12 polls).',
  },
  'temporary-validity': {
    kind: 'duration',
    env: 'TEMPORARY_VALIDITY',
    default: 7 * 86_400_000,
    doc: 'Validity of the temporary self-signed certificate written before the first issue.',
  },
  'host-source': {
    kind: 'enum',
    env: 'HOST_SOURCE',
    values: ['file', 'kubernetes'],
    default: 'file',
    doc: 'Where Hosts come from: the --hosts-file, or Host resources in the Kubernetes API (then --store=kubernetes).',
  },
  store: {
    kind: 'enum',
    env: 'STORE',
    values: ['directory', 'kubernetes'],
    default: 'directory',
    doc: 'Where certificates, account keys and challenge tokens live: --cert-dir files, or Secrets/ConfigMaps.',
  },
  kubeconfig: {
    kind: 'file',
    env: 'KUBECONFIG',
    doc: 'Kubeconfig for the Kubernetes mode; unset: in-cluster service account.',
  },
  'watch-namespaces': {
    kind: 'list',
    env: 'WATCH_NAMESPACES',
    default: [],
    doc: 'Namespaces whose Hosts are watched (comma-separated); empty: all namespaces.',
  },
  'adopt-field-managers': {
    kind: 'list',
    env: 'ADOPT_FIELD_MANAGERS',
    default: [],
    doc: 'Kubernetes mode: field managers whose TLS Secrets acme may take over (amb-sidecar = Edge Stack, kubectl-create = kubectl create secret tls); default none. Helm and cert-manager Secrets are never taken over.',
  },
  'pod-namespace': {
    kind: 'string',
    env: 'POD_NAMESPACE',
    default: 'extsvc',
    doc: "acme's own namespace: its Lease, challenge ConfigMaps and derived account Secrets.",
  },
  'pod-name': {
    kind: 'string',
    env: 'POD_NAME',
    default: hostname(),
    doc: "This replica's identity in the leader-election Lease (default: the host name).",
  },
  'lease-name': {
    kind: 'string',
    env: 'LEASE_NAME',
    default: 'extsvc-acme',
    doc: 'Name of the leader-election Lease.',
  },
  'lease-duration': {
    kind: 'duration',
    env: 'LEASE_DURATION',
    default: 15_000,
    doc: 'Lease duration: a dead leader is replaced after at most this long.',
  },
  'renew-deadline': {
    kind: 'duration',
    env: 'RENEW_DEADLINE',
    default: 10_000,
    doc: 'A leader that cannot renew its Lease within this long steps down.',
  },
  'retry-period': {
    kind: 'duration',
    env: 'RETRY_PERIOD',
    default: 2_000,
    doc: 'Interval of Lease attempts and renewals.',
  },
  'secret-check-interval': {
    kind: 'duration',
    env: 'SECRET_CHECK_INTERVAL',
    default: 30_000,
    doc: 'How often the leader checks that its Secrets still exist (a deleted Secret is reissued).',
  },
  'challenge-mapping-service': {
    kind: 'string',
    env: 'CHALLENGE_MAPPING_SERVICE',
    doc: 'When set (name.namespace:port of acme), the leader creates the per-Host challenge Mapping for Emissary.',
  },
} as const;

/** Parsed acme configuration. */
export type AcmeConfig = Extract<ParseResult<typeof ACME_OPTIONS>, { kind: 'options' }>['options'];

/** The authorities Hosts may name: the allowlist plus the operator's default authority. */
export function allowedAuthorities(o: Pick<AcmeConfig, 'allowedAuthorities' | 'defaultAuthority'>): string[] {
  const out = [...o.allowedAuthorities];
  if (o.defaultAuthority.toLowerCase() !== 'none') out.push(o.defaultAuthority);
  return out;
}

/** Parses acme options from argv and env; throws ConfigError with every problem. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ParseResult<typeof ACME_OPTIONS> {
  const parsed = parseOptions(ACME_OPTIONS, argv, env, {
    name: 'extsvc-acme',
    summary: 'HTTP-01 ACME certificate automation for Emissary-ingress Host resources.',
  });
  if (parsed.kind === 'help') return parsed;
  const o = parsed.options;
  const problems: { field: string; message: string }[] = [];
  if (o.hostsFile !== undefined && o.certDir === undefined)
    problems.push({ field: '--cert-dir', message: 'required with --hosts-file (or set CERT_DIR)' });
  if ((o.eabKid === undefined) !== (o.eabHmacKey === undefined))
    problems.push({ field: '--eab-kid', message: 'EAB needs both --eab-kid and --eab-hmac-key' });
  if (o.eabHmacKey !== undefined && !/^[A-Za-z0-9_-]+={0,2}$/.test(o.eabHmacKey))
    problems.push({ field: '--eab-hmac-key', message: 'must be base64url' });
  if (
    o.selfCheckAddress !== undefined &&
    !/^[^\s:]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i.test(o.selfCheckAddress)
  )
    problems.push({
      field: '--self-check-address',
      message: `must be host:port, got '${o.selfCheckAddress}'`,
    });
  if (!/^0?[0-7]{3}$/.test(o.keyFileMode) || (parseInt(o.keyFileMode, 8) & 0o400) === 0)
    problems.push({
      field: '--key-file-mode',
      message: `must be an octal mode readable by the owner, got '${o.keyFileMode}'`,
    });
  if (o.ariPollMax < o.ariPollMin)
    problems.push({ field: '--ari-poll-max', message: 'must be >= --ari-poll-min' });
  if (o.defaultProfile !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(o.defaultProfile))
    problems.push({
      field: '--default-profile',
      message: `must be a profile name (letters, digits, . _ -), got '${o.defaultProfile}'`,
    });
  if (o.backoffMax < o.backoffInitial)
    problems.push({ field: '--backoff-max', message: 'must be >= --backoff-initial' });
  if (o.caFile !== undefined) {
    const pem = readFileSync(o.caFile, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----'))
      problems.push({ field: `${o.caFile}: --ca-file`, message: 'contains no PEM certificate' });
  }
  if (o.hostSource === 'kubernetes' && o.store !== 'kubernetes')
    problems.push({ field: '--store', message: "must be 'kubernetes' with --host-source=kubernetes" });
  if (o.hostSource === 'file' && o.store === 'kubernetes')
    problems.push({ field: '--store', message: "'kubernetes' needs --host-source=kubernetes" });
  if (o.hostSource === 'kubernetes' && o.hostsFile !== undefined)
    problems.push({ field: '--hosts-file', message: 'not used with --host-source=kubernetes' });
  for (const a of o.allowedAuthorities) {
    const n = normalizeAuthority(a);
    if (n === undefined || !n.startsWith('https://'))
      problems.push({ field: '--allowed-authorities', message: `'${a}' is not an https:// URL` });
  }
  if (o.leaseDuration <= o.renewDeadline)
    problems.push({ field: '--lease-duration', message: 'must be longer than --renew-deadline' });
  if (problems.length > 0) throw new ConfigError(problems);
  return parsed;
}
