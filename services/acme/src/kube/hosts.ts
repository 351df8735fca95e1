import type { KubernetesObject } from '@kubernetes/client-node';
import { type HostDefaults, type ParsedHost, parseHost } from '../host.ts';
import type { HostStatus } from '../issuer.ts';
import { MANAGE_ANNOTATION } from './api.ts';

/** A getambassador.io Host as the informer delivers it. */
export interface HostObject extends KubernetesObject {
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** Which Hosts acme manages. */
export interface OptIn {
  /**
   * Hosts with an acmeProvider and one of these ambassador_id values (a Host without one has
   * "default", as Emissary reads it) are managed; "*" for all. Empty: only Hosts annotated
   * `acme.extsvc.dev/manage: "true"`. The annotation "false" always opts a Host out.
   */
  readonly ambassadorIds: readonly string[];
}

/** The ambassador_id values of a Host as Emissary reads them (string or list; absent: "default"). */
export function hostAmbassadorIds(spec: Record<string, unknown> | undefined): string[] {
  const raw = spec?.['ambassador_id'];
  return typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw.map(String) : ['default'];
}

/**
 * True when acme manages `h`: selected the way Emissary selects resources (ambassador_id) among
 * Hosts that ask for ACME (spec.acmeProvider present), or opted in or out by annotation.
 */
export function isManaged(h: HostObject, optIn: OptIn): boolean {
  const a = h.metadata?.annotations?.[MANAGE_ANNOTATION];
  if (a === 'true') return true;
  if (a === 'false') return false;
  if (optIn.ambassadorIds.length === 0) return false;
  // A Host without acmeProvider has its TLS handled elsewhere (cert-manager, by hand): not ours.
  const provider = h.spec?.['acmeProvider'];
  if (typeof provider !== 'object' || provider === null) return false;
  if (optIn.ambassadorIds.includes('*')) return true;
  return hostAmbassadorIds(h.spec).some((id) => optIn.ambassadorIds.includes(id));
}

/** Parses a Host object with the issuer core's validation (one bad Host never affects others). */
export function parseHostObject(h: HostObject, defaults: HostDefaults): ParsedHost {
  const ns = h.metadata?.namespace ?? defaults.namespace;
  return parseHost(
    h as unknown as Record<string, unknown>,
    { file: `Host ${ns}/${h.metadata?.name ?? '?'}`, index: 0 },
    defaults,
  );
}

/** The fields of Emissary's HostStatus acme owns; null removes a field (merge patch). */
export type EmissaryStatus = Record<
  | 'state'
  | 'phaseCompleted'
  | 'phasePending'
  | 'tlsCertificateSource'
  | 'errorReason'
  | 'errorTimestamp'
  | 'errorBackoff',
  string | null
>;

/** Emissary's status for an issuer status: error fields only while in Error. */
export function emissaryStatus(s: HostStatus): EmissaryStatus {
  const err = s.state === 'Error';
  return {
    state: s.state,
    phaseCompleted: s.phaseCompleted,
    phasePending: s.phasePending,
    tlsCertificateSource: s.tlsCertificateSource,
    errorReason: err ? (s.errorReason ?? 'error') : null,
    errorTimestamp: err ? (s.errorTimestamp ?? null) : null,
    errorBackoff: err ? (s.errorBackoff ?? null) : null,
  };
}

/** True when the Host's current status already says `want`. */
export function statusMatches(current: Record<string, unknown> | undefined, want: EmissaryStatus): boolean {
  const cur = current ?? {};
  return (Object.keys(want) as (keyof EmissaryStatus)[]).every((k) => {
    const c = cur[k];
    const w = want[k];
    if (w === null) return c === undefined || c === null;
    // The API server normalizes date-times (drops milliseconds): compare instants.
    if (k === 'errorTimestamp' && typeof c === 'string')
      return Math.floor(Date.parse(c) / 1000) === Math.floor(Date.parse(w) / 1000);
    return c === w;
  });
}

/** The challenge Mapping for a Host: exact prefix, rewrite "", exact hostname, the Host's labels and ambassador_id. */
export function challengeMapping(
  h: HostObject,
  hostname: string,
  service: string,
  extraLabels: Readonly<Record<string, string>>,
): Record<string, unknown> {
  const spec = h.spec ?? {};
  const selector = (spec['mappingSelector'] ?? spec['selector']) as
    { matchLabels?: Record<string, string> } | undefined;
  const ambassadorId = spec['ambassador_id'];
  const name = h.metadata?.name ?? '';
  return {
    apiVersion: 'getambassador.io/v3alpha1',
    kind: 'Mapping',
    metadata: {
      name: `${name.slice(0, 230)}-acme-challenge`,
      namespace: h.metadata?.namespace,
      labels: { ...(selector?.matchLabels ?? {}), ...extraLabels },
      ownerReferences: [
        {
          apiVersion: 'getambassador.io/v3alpha1',
          kind: 'Host',
          name,
          uid: h.metadata?.uid,
          controller: false,
          blockOwnerDeletion: false,
        },
      ],
    },
    spec: {
      ...(ambassadorId !== undefined
        ? { ambassador_id: typeof ambassadorId === 'string' ? [ambassadorId] : ambassadorId }
        : {}),
      hostname,
      prefix: '/.well-known/acme-challenge/',
      rewrite: '',
      service,
      bypass_auth: true,
      timeout_ms: 5000,
    },
  };
}
