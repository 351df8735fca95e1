import { isIP } from 'node:net';
import { parseAllDocuments } from 'yaml';
import type { ConfigProblem } from '@extsvc/common/errors';

/** Let's Encrypt production directory: the authority of a Host that names none (as Edge Stack). */
export const LETS_ENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory';

/** Let's Encrypt staging directory. */
export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory';

/** ACME directories a Host may name when the operator sets no allowlist. */
export const DEFAULT_ALLOWED_AUTHORITIES: readonly string[] = [LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING];

/** API versions read as Emissary Host resources. */
export const HOST_API_VERSIONS = ['getambassador.io/v3alpha1', 'getambassador.io/v2'] as const;

/** A reference to a Secret (tlsSecret, privateKeySecret), namespace resolved. */
export interface SecretRef {
  readonly namespace: string;
  readonly name: string;
}

/** The ACME provider of a valid Host that asks for certificates. */
export interface AcmeProvider {
  /** ACME directory URL. */
  readonly authority: string;
  /** Account contact, optional. */
  readonly email?: string;
  /** Where the account key lives (default derived from authority and email). */
  readonly privateKeySecret?: SecretRef;
  /** True when privateKeySecret is Edge Stack's derived name, not one the Host names. */
  readonly privateKeySecretDerived?: boolean;
  /** Certificate profile to ask the CA for (annotation acme.extsvc.dev/profile); absent: the default. */
  readonly profile?: string;
}

/**
 * Host annotation naming the certificate profile (`classic`, `shortlived`...). An annotation, so
 * that Emissary's Host schema needs no new field; file mode also reads `spec.acmeProvider.profile`.
 */
export const PROFILE_ANNOTATION = 'acme.extsvc.dev/profile';

const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Where a Host came from: file and document index, for messages. */
export interface HostOrigin {
  readonly file: string;
  readonly index: number;
}

/** A Host that passed validation. */
export interface ValidHost {
  readonly kind: 'acme' | 'none';
  /** `namespace/name`. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly hostname: string;
  /** Present when kind is 'acme'. */
  readonly acme?: AcmeProvider;
  readonly tlsSecret?: SecretRef;
  readonly origin: HostOrigin;
  /** Annotation `acme.extsvc.dev/renew-before`: renew this long before notAfter, ms (cert-manager's renewBefore). */
  readonly renewBeforeMs?: number;
  /** Annotation `acme.extsvc.dev/retry`: a new value asks for one immediate retry of an Error Host. */
  readonly retryToken?: string;
}

/** Annotation: per-Host renewal window, a Go duration (`720h`, `1h30m`), as cert-manager's renewBefore. */
export const RENEW_BEFORE_ANNOTATION = 'acme.extsvc.dev/renew-before';
/** Annotation: any new value triggers one immediate retry of a Host in Error (its backoff is skipped once). */
export const RETRY_ANNOTATION = 'acme.extsvc.dev/retry';

/** Parses a Go duration (`720h`, `1h30m`, `90s`, `500ms`) into ms; undefined when invalid or zero. */
export function parseGoDuration(raw: string): number | undefined {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  const text = raw.trim();
  if (!/^(\d+(\.\d+)?(h|ms|m|s))+$/.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g))
    ms += Number(m[1]) * (units[m[2] as string] ?? 0);
  return ms > 0 ? Math.round(ms) : undefined;
}

/** A Host that failed validation: it gets state Error with `reason`, others are unaffected. */
export interface InvalidHost {
  readonly kind: 'invalid';
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly hostname?: string;
  readonly reason: string;
  readonly origin: HostOrigin;
}

/** One parsed Host document. */
export type ParsedHost = ValidHost | InvalidHost;

/** Defaults applied while parsing Hosts. */
export interface HostDefaults {
  /** Namespace of Hosts without metadata.namespace. */
  readonly namespace: string;
  /** Authority of Hosts without acmeProvider.authority; 'none' to manage only explicit ones. */
  readonly authority: string;
  /** Accepted ambassador_id values; a Host without ambassador_id has ['default']. '*' accepts all. */
  readonly ambassadorIds: readonly string[];
  /**
   * ACME directory URLs a Host may name (compared after URL normalization). Any other authority
   * is an Error on the Host and is never contacted: the URL comes from whoever may write Hosts.
   */
  readonly allowedAuthorities: readonly string[];
  /**
   * Kubernetes mode: a Host without acmeProvider.privateKeySecret gets Edge Stack's derived account
   * Secret (`NameEncode(authority)[--NameEncode(email)]`) in its own namespace. Default false (file
   * mode keeps derived accounts under --account-dir).
   */
  readonly accountSecretInHostNamespace?: boolean;
}

/** Result of reading a Hosts file: the Hosts, or file-level problems (YAML syntax) that block the file. */
export type HostsFileResult =
  | { readonly kind: 'ok'; readonly hosts: readonly ParsedHost[]; readonly ignored: number }
  | { readonly kind: 'error'; readonly problems: readonly ConfigProblem[] };

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

/** Why `hostname` cannot get an HTTP-01 certificate, or undefined when it can. */
export function hostnameProblem(hostname: string): string | undefined {
  if (hostname === '' || hostname === '*') return 'spec.hostname is required (Emissary defaults it to "*")';
  if (hostname.includes('*'))
    return `wildcard hostname "${hostname}" cannot be validated with HTTP-01 (wildcards need DNS-01)`;
  if (isIP(hostname) !== 0) return `hostname "${hostname}" is an IP address; ACME HTTP-01 needs a DNS name`;
  if (hostname.length > 253) return `hostname "${hostname.slice(0, 40)}..." is longer than 253 characters`;
  const labels = hostname.split('.');
  if (labels.length < 2) return `hostname "${hostname}" is not a fully qualified domain name`;
  if (hostname === 'localhost' || hostname.endsWith('.localhost'))
    return `hostname "${hostname}" does not qualify for a public certificate`;
  for (const label of labels)
    if (!DNS_LABEL.test(label)) return `hostname "${hostname}" is not a valid DNS name (label "${label}")`;
  return undefined;
}

/** The normalized form of an authority URL (scheme and host lower-cased), or undefined when not a URL. */
export function normalizeAuthority(authority: string): string | undefined {
  try {
    return new URL(authority).href;
  } catch {
    return undefined;
  }
}

function authorityProblem(authority: string, allowed: readonly string[]): string | undefined {
  let url: URL;
  try {
    url = new URL(authority);
  } catch {
    return `spec.acmeProvider.authority "${authority}" is not a URL`;
  }
  if (url.protocol !== 'https:')
    return `spec.acmeProvider.authority "${authority}" must be an https:// ACME directory URL`;
  if (!allowed.some((a) => normalizeAuthority(a) === url.href))
    return `spec.acmeProvider.authority "${authority}" is not in the operator's allowed authorities (--allowed-authorities); it is not contacted`;
  return undefined;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates one Host document (already known to be kind Host). Per-Host problems become an
 * InvalidHost; they never affect other Hosts.
 */
export function parseHost(
  doc: Record<string, unknown>,
  origin: HostOrigin,
  defaults: HostDefaults,
): ParsedHost {
  const meta = isRecord(doc['metadata']) ? doc['metadata'] : {};
  const spec = isRecord(doc['spec']) ? doc['spec'] : {};
  const rawName = meta['name'];
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : defaults.namespace;
  const name = typeof rawName === 'string' ? rawName : `#${origin.index}`;
  const key = `${namespace}/${name}`;
  const rawHostname = spec['hostname'];
  const hostname = typeof rawHostname === 'string' ? rawHostname.trim().toLowerCase() : '';
  const invalid = (reason: string): InvalidHost => ({
    kind: 'invalid',
    key,
    namespace,
    name,
    ...(hostname !== '' ? { hostname } : {}),
    reason,
    origin,
  });
  const apiVersion = doc['apiVersion'];
  if (typeof apiVersion !== 'string' || !(HOST_API_VERSIONS as readonly string[]).includes(apiVersion))
    return invalid(`apiVersion must be one of ${HOST_API_VERSIONS.join(', ')}`);
  if (typeof rawName !== 'string' || !DNS_SUBDOMAIN.test(rawName))
    return invalid('metadata.name is required and must be a DNS subdomain name');
  if (!DNS_LABEL.test(namespace)) return invalid('metadata.namespace must be a DNS label');
  if (rawHostname !== undefined && typeof rawHostname !== 'string')
    return invalid('spec.hostname must be a string');

  const provider = spec['acmeProvider'];
  if (provider !== undefined && !isRecord(provider)) return invalid('spec.acmeProvider must be an object');
  const p = provider ?? {};
  const rawAuthority = p['authority'];
  if (rawAuthority !== undefined && typeof rawAuthority !== 'string')
    return invalid('spec.acmeProvider.authority must be a string');
  const authority = (rawAuthority ?? defaults.authority).trim();

  let tlsSecret: SecretRef | undefined;
  const ts = spec['tlsSecret'];
  if (ts !== undefined) {
    if (!isRecord(ts) || typeof ts['name'] !== 'string' || ts['name'] === '')
      return invalid('spec.tlsSecret.name must be a non-empty string');
    const tsNs = ts['namespace'] === undefined || ts['namespace'] === '' ? namespace : ts['namespace'];
    if (typeof tsNs !== 'string' || !DNS_LABEL.test(tsNs))
      return invalid('spec.tlsSecret.namespace must be a DNS label');
    if (!DNS_SUBDOMAIN.test(ts['name']))
      return invalid(`spec.tlsSecret.name "${ts['name']}" must be a DNS subdomain name`);
    tlsSecret = { namespace: tsNs, name: ts['name'] };
  }

  if (authority.toLowerCase() === 'none') {
    return {
      kind: 'none',
      key,
      namespace,
      name,
      hostname,
      ...(tlsSecret ? { tlsSecret } : {}),
      origin,
    };
  }
  const hostProblem = hostnameProblem(hostname);
  if (hostProblem !== undefined) return invalid(hostProblem);
  // Edge Stack's rule: an ACME Host writes only to a Secret of its own namespace. Anything else
  // lets whoever may create a Host in one namespace rewrite another namespace's certificate.
  if (tlsSecret && tlsSecret.namespace !== namespace)
    return invalid(
      `spec.tlsSecret.namespace "${tlsSecret.namespace}" must be the Host's own namespace "${namespace}" (or be left out)`,
    );
  const authProblem = authorityProblem(authority, defaults.allowedAuthorities);
  if (authProblem !== undefined) return invalid(authProblem);
  // The Host CRD's documented default (crd_host.go: "If ACME is enabled, then the default is
  // $hostname"), named as Edge Stack names it (NameEncode), so Hosts written from Emissary's docs
  // (no tlsSecret) and the Secrets Edge Stack already made keep working.
  tlsSecret ??= { namespace, name: nameEncode(hostname) };
  const email = p['email'];
  if (email !== undefined && (typeof email !== 'string' || !/^[^\s@]+@[^\s@]+$/.test(email)))
    return invalid('spec.acmeProvider.email must be an e-mail address');
  let privateKeySecret: SecretRef | undefined;
  const pks = p['privateKeySecret'];
  if (pks !== undefined) {
    if (!isRecord(pks) || typeof pks['name'] !== 'string')
      return invalid('spec.acmeProvider.privateKeySecret.name must be a string');
    if (pks['name'] !== '') {
      if (!DNS_SUBDOMAIN.test(pks['name']))
        return invalid('spec.acmeProvider.privateKeySecret.name must be a DNS subdomain name');
      privateKeySecret = { namespace, name: pks['name'] };
    }
  }
  const annotations = isRecord(meta['annotations']) ? meta['annotations'] : {};
  const byAnnotation = annotations[PROFILE_ANNOTATION];
  const bySpec = p['profile'];
  if (byAnnotation !== undefined && (typeof byAnnotation !== 'string' || !PROFILE_NAME.test(byAnnotation)))
    return invalid(
      `metadata.annotations["${PROFILE_ANNOTATION}"] must be a profile name (letters, digits, . _ -)`,
    );
  if (bySpec !== undefined && (typeof bySpec !== 'string' || !PROFILE_NAME.test(bySpec)))
    return invalid('spec.acmeProvider.profile must be a profile name (letters, digits, . _ -)');
  if (byAnnotation !== undefined && bySpec !== undefined && byAnnotation !== bySpec)
    return invalid(
      `metadata.annotations["${PROFILE_ANNOTATION}"] "${byAnnotation}" and spec.acmeProvider.profile "${bySpec}" differ; name the profile once`,
    );
  const profile = byAnnotation ?? bySpec;
  // Edge Stack keeps the derived account key in the Host's namespace too: one account per
  // namespace, never shared with another tenant.
  const derived = privateKeySecret === undefined && defaults.accountSecretInHostNamespace === true;
  if (derived) privateKeySecret = { namespace, name: derivedAccountName(authority, email) };
  // Annotations, not spec fields: Emissary's Host schema prunes unknown spec fields.
  const rawRenewBefore = annotations[RENEW_BEFORE_ANNOTATION];
  let renewBeforeMs: number | undefined;
  if (rawRenewBefore !== undefined) {
    renewBeforeMs = typeof rawRenewBefore === 'string' ? parseGoDuration(rawRenewBefore) : undefined;
    if (renewBeforeMs === undefined)
      return invalid(
        `metadata.annotations["${RENEW_BEFORE_ANNOTATION}"] must be a positive duration such as 720h or 1h30m`,
      );
  }
  const rawRetry = annotations[RETRY_ANNOTATION];
  const retryToken = typeof rawRetry === 'string' && rawRetry !== '' ? rawRetry : undefined;
  return {
    kind: 'acme',
    key,
    namespace,
    name,
    hostname,
    ...(renewBeforeMs !== undefined ? { renewBeforeMs } : {}),
    ...(retryToken !== undefined ? { retryToken } : {}),
    acme: {
      authority,
      ...(typeof email === 'string' ? { email } : {}),
      ...(privateKeySecret ? { privateKeySecret } : {}),
      ...(derived ? { privateKeySecretDerived: true } : {}),
      ...(typeof profile === 'string' ? { profile } : {}),
    },
    tlsSecret,
    origin,
  };
}

function ambassadorIdMatches(doc: Record<string, unknown>, accepted: readonly string[]): boolean {
  if (accepted.includes('*')) return true;
  const spec = isRecord(doc['spec']) ? doc['spec'] : {};
  const raw = spec['ambassador_id'];
  const ids = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.map(String) : ['default'];
  return ids.some((id) => accepted.includes(id));
}

/**
 * Parses a multi-document YAML text of Emissary resources. Documents of other kinds, and Hosts of
 * another ambassador_id, are ignored (counted). A YAML syntax error rejects the whole file: its
 * Hosts cannot be told apart reliably.
 */
export function parseHostsText(text: string, file: string, defaults: HostDefaults): HostsFileResult {
  const docs = parseAllDocuments(text);
  const problems: ConfigProblem[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((d, i) => {
    for (const e of d.errors)
      problems.push({ field: `${file}: document ${i}`, message: e.message.split('\n')[0] ?? e.message });
  });
  if (problems.length > 0) return { kind: 'error', problems };
  const hosts: ParsedHost[] = [];
  const seen = new Set<string>();
  let ignored = 0;
  list.forEach((d, index) => {
    const value: unknown = d.toJS();
    if (value === null || value === undefined) return;
    if (!isRecord(value) || value['kind'] !== 'Host' || !ambassadorIdMatches(value, defaults.ambassadorIds)) {
      ignored += 1;
      return;
    }
    let parsed = parseHost(value, { file, index }, defaults);
    if (seen.has(parsed.key)) {
      parsed = {
        kind: 'invalid',
        key: `${parsed.key}#${index}`,
        namespace: parsed.namespace,
        name: parsed.name,
        reason: `duplicate Host ${parsed.key} (document ${index}); the first one is used`,
        origin: { file, index },
      };
    }
    seen.add(parsed.key);
    hosts.push(parsed);
  });
  return { kind: 'ok', hosts, ignored };
}

/** Edge Stack's name of an account key Secret: `NameEncode(authority)[--NameEncode(email)]`. */
export function derivedAccountName(authority: string, email?: string): string {
  return email ? `${nameEncode(authority)}--${nameEncode(email)}` : nameEncode(authority);
}

/** Encodes a string the way Edge Stack names derived Secrets: keep [a-z0-9.], others `-%02x`. */
export function nameEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s.toLowerCase(), 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[a-z0-9.]/.test(c) ? c : `-${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Hosts that share one certificate: the same tlsSecret in their (common) namespace. */
export interface CertGroup {
  /** `namespace/name` of the tlsSecret. */
  readonly key: string;
  readonly secret: SecretRef;
  /** Sorted, unique hostnames covered by the certificate. */
  readonly names: readonly string[];
  /** Keys of the Hosts in the group. */
  readonly hostKeys: readonly string[];
  /** The provider every Host of the group names. */
  readonly provider: AcmeProvider;
  /** The longest renew-before of its Hosts, ms (the earliest renewal any of them asks for). */
  readonly renewBeforeMs?: number;
  /** The retry tokens of its Hosts (key=value, sorted): a change asks for one immediate retry. */
  readonly retryToken: string;
}

const providerId = (p: AcmeProvider): string =>
  JSON.stringify([
    normalizeAuthority(p.authority) ?? p.authority,
    p.email ?? '',
    p.privateKeySecret?.namespace ?? '',
    p.privateKeySecret?.name ?? '',
    p.profile ?? '',
  ]);

// Hosts of different namespaces never share a certificate, whatever their tlsSecret says.
const groupKey = (h: ValidHost): string => `${h.namespace}/${(h.tlsSecret as SecretRef).name}`;

/**
 * Hosts sharing a tlsSecret must name the same acmeProvider (authority, email, privateKeySecret, profile).
 * When they do not, every one of them becomes invalid, naming the others: no vote, so one Host
 * can never choose the CA or the account of another Host's certificate.
 */
export function rejectProviderConflicts(hosts: readonly ParsedHost[]): ParsedHost[] {
  const byKey = new Map<string, ValidHost[]>();
  for (const h of hosts) {
    if (h.kind !== 'acme' || !h.tlsSecret) continue;
    const list = byKey.get(groupKey(h)) ?? [];
    list.push(h);
    byKey.set(groupKey(h), list);
  }
  const reasons = new Map<string, string>();
  for (const [key, members] of byKey) {
    const ids = new Set(members.map((h) => providerId(h.acme as AcmeProvider)));
    if (ids.size < 2) continue;
    // A derived privateKeySecret differs only because authority or email do: not named again.
    const named = (h: ValidHost, f: 'authority' | 'email' | 'privateKeySecret' | 'profile'): unknown =>
      f === 'privateKeySecret' && h.acme?.privateKeySecretDerived === true ? null : (h.acme?.[f] ?? null);
    const fields = (['authority', 'email', 'privateKeySecret', 'profile'] as const).filter(
      (f) => new Set(members.map((h) => JSON.stringify(named(h, f)))).size > 1,
    );
    for (const h of members) {
      const others = members.filter((o) => o.key !== h.key).map((o) => o.key);
      reasons.set(
        h.key,
        `spec.acmeProvider (${fields.join(', ')}) differs between the Hosts sharing tlsSecret ${key} (${others.join(', ')}); make them identical`,
      );
    }
  }
  if (reasons.size === 0) return [...hosts];
  return hosts.map((h): ParsedHost => {
    const reason = reasons.get(h.key);
    if (reason === undefined) return h;
    return {
      kind: 'invalid',
      key: h.key,
      namespace: h.namespace,
      name: h.name,
      ...(h.hostname !== undefined && h.hostname !== '' ? { hostname: h.hostname } : {}),
      reason,
      origin: h.origin,
    };
  });
}

/**
 * Groups ACME Hosts by (namespace, tlsSecret); one certificate per group with all names (as Edge
 * Stack). Groups whose Hosts disagree on the provider are left out (see rejectProviderConflicts).
 */
export function groupHosts(hosts: readonly ParsedHost[]): CertGroup[] {
  const byKey = new Map<string, ValidHost[]>();
  for (const h of hosts) {
    if (h.kind !== 'acme' || !h.tlsSecret || h.tlsSecret.namespace !== h.namespace) continue;
    const list = byKey.get(groupKey(h)) ?? [];
    list.push(h);
    byKey.set(groupKey(h), list);
  }
  const groups: CertGroup[] = [];
  for (const [key, members] of [...byKey.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const first = members[0] as ValidHost;
    const provider = first.acme as AcmeProvider;
    if (members.some((h) => providerId(h.acme as AcmeProvider) !== providerId(provider))) continue;
    groups.push({
      key,
      secret: first.tlsSecret as SecretRef,
      names: [...new Set(members.map((h) => h.hostname))].sort(),
      hostKeys: members.map((h) => h.key).sort(),
      provider,
      ...(members.some((h) => h.renewBeforeMs !== undefined)
        ? { renewBeforeMs: Math.max(...members.map((h) => h.renewBeforeMs ?? 0)) }
        : {}),
      retryToken: members
        .filter((h) => h.retryToken !== undefined)
        .map((h) => `${h.key}=${h.retryToken ?? ''}`)
        .sort()
        .join(','),
    });
  }
  return groups;
}
