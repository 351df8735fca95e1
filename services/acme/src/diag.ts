import { registerDiag, type DiagSection, type DiagValue } from '@extsvc/common/diag';
import { errorMessage } from '@extsvc/common/errors';
import type { HealthState } from '@extsvc/common/health';
import type { ParsedHost } from './host.ts';
import { accountId, type HostStatus } from './issuer.ts';
import type { AccountStore } from './stores.ts';

/** What the acme diagnostics read: live objects of the server, as closures. No actions. */
export interface AcmeDiagSource {
  /** Status of every Host (issuer.statuses()). */
  readonly statuses: () => readonly HostStatus[];
  /** The active Hosts (the last good Hosts file or the watched Host resources), for accounts per authority. */
  readonly hosts?: () => readonly ParsedHost[];
  /** Account store, read to tell registered accounts (URL only; the key is never shown). */
  readonly accounts?: AccountStore;
  /** Orders running now (issuer.running). */
  readonly running?: () => number;
  /** Facts about the setup (Hosts source, certificate store, default authority...), already redacted. */
  readonly settings?: ReadonlyArray<readonly [string, DiagValue]>;
}

/** A URL without userinfo, query or fragment. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
  }
}

interface AccountGroup {
  readonly id: string;
  readonly authority: string;
  readonly email: string;
  readonly hosts: string[];
}

function accountGroups(hosts: readonly ParsedHost[]): AccountGroup[] {
  const groups = new Map<string, AccountGroup>();
  for (const h of hosts) {
    if (h.kind !== 'acme' || !h.acme) continue;
    const id = accountId(h.acme);
    let g = groups.get(id);
    if (!g) {
      g = { id, authority: h.acme.authority, email: h.acme.email ?? '', hosts: [] };
      groups.set(id, g);
    }
    g.hosts.push(h.key);
  }
  return [...groups.values()].sort(
    (a, b) => a.authority.localeCompare(b.authority) || a.id.localeCompare(b.id),
  );
}

async function accountRows(src: AcmeDiagSource): Promise<DiagValue[][]> {
  const groups = accountGroups(src.hosts?.() ?? []);
  return Promise.all(
    groups.map(async (g): Promise<DiagValue[]> => {
      let state = 'unknown';
      let url = '';
      if (src.accounts) {
        try {
          const a = await src.accounts.load(g.id);
          state = !a ? 'not created' : a.accountUrl ? 'registered' : 'key only';
          url = a?.accountUrl ?? '';
        } catch (err) {
          state = 'error';
          url = errorMessage(err);
        }
      }
      return [safeUrl(g.authority), g.email, g.id, state, url, g.hosts.join(', ')];
    }),
  );
}

/** Builds the acme sections: summary, Hosts (state, phases, names, notAfter, renewal, error, backoff), accounts per authority. */
export async function acmeDiagSections(src: AcmeDiagSource): Promise<DiagSection[]> {
  const statuses = src.statuses();
  const counts: Record<string, number> = { Initial: 0, Pending: 0, Ready: 0, Error: 0 };
  for (const s of statuses) counts[s.state] = (counts[s.state] ?? 0) + 1;
  const summary: Array<readonly [string, DiagValue]> = [
    ['hosts', statuses.length],
    ...Object.entries(counts).map(([state, n]): readonly [string, DiagValue] => [state, n]),
    ...(src.running ? [['orders running', src.running()] as const] : []),
    ...(src.settings ?? []),
  ];
  const hosts = [...statuses]
    .sort((a, b) => a.key.localeCompare(b.key))
    .map((s): DiagValue[] => [
      s.key,
      s.state,
      s.hostname ?? '',
      (s.names ?? []).join(', '),
      s.temporaryCertificate ? 'temporary' : (s.notAfter ?? ''),
      s.nextRenewal ?? '',
      s.errorReason ?? '',
      s.errorCode ?? '',
      s.errorBackoff ?? '',
      s.errorTimestamp ?? '',
      s.phaseCompleted,
      s.phasePending,
      s.tlsCertificateSource,
      s.tlsSecret ?? '',
      s.warning ?? '',
    ]);
  const sections: DiagSection[] = [
    { kind: 'kv', title: 'Issuer', entries: summary },
    {
      kind: 'table',
      title: 'Hosts',
      columns: [
        'host',
        'state',
        'hostname',
        'names',
        'notAfter',
        'next renewal',
        'last error',
        'error code',
        'backoff',
        'error at',
        'phase completed',
        'phase pending',
        'certificate source',
        'tlsSecret',
        'warning',
      ],
      rows: hosts,
      empty: 'no Hosts',
    },
  ];
  if (src.hosts)
    sections.push({
      kind: 'table',
      title: 'Accounts',
      columns: ['authority', 'email', 'account', 'state', 'account URL', 'hosts'],
      rows: await accountRows(src),
      empty: 'no ACME Hosts, no accounts',
    });
  return sections;
}

/** Registers GET /diag and GET /diag.json on the admin server (no actions from the page). */
export function registerAcmeDiag(
  app: Parameters<typeof registerDiag>[0],
  opts: { service: string; version: string; health: HealthState; source: AcmeDiagSource },
): void {
  registerDiag(app, {
    service: opts.service,
    version: opts.version,
    health: opts.health,
    sections: () => acmeDiagSections(opts.source),
  });
}
