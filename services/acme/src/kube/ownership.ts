import type { Logger } from '@extsvc/common/logger';
import type { ParsedHost, SecretRef } from '../host.ts';
import type { Issuer } from '../issuer.ts';

/** What the ownership check and the Secret check read from the certificate store. */
export interface OwnershipStore {
  /** Why acme must not write the Secret (another manager owns it), or undefined when it may. */
  refusal(ref: SecretRef): Promise<string | undefined>;
  /** True when the Secret changed since acme last read or wrote it. */
  changedSinceSeen(ref: SecretRef): Promise<boolean>;
}

/**
 * The leader's foreign-tlsSecret bookkeeping. A Host whose tlsSecret belongs to someone else is
 * handed to the issuer as an invalid Host: the issuer then never orders a certificate it could not
 * store (that would only burn the CA's rate limits).
 */
export class SecretOwnership {
  readonly #log: Logger;
  /** Foreign tlsSecrets so far, `namespace/name` -> reason. */
  #foreign = new Map<string, string>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Foreign tlsSecrets as last evaluated, `namespace/name` -> reason. */
  get foreign(): ReadonlyMap<string, string> {
    return this.#foreign;
  }

  /**
   * Re-reads the ownership of every acme Host's tlsSecret and returns the Hosts with those whose
   * Secret is foreign turned invalid. A Secret that cannot be read keeps its last verdict.
   */
  async apply(parsed: readonly ParsedHost[], store: OwnershipStore | undefined): Promise<ParsedHost[]> {
    const next = new Map<string, string>();
    const out: ParsedHost[] = [];
    for (const p of parsed) {
      if (p.kind !== 'acme' || !p.tlsSecret || !store) {
        out.push(p);
        continue;
      }
      const key = `${p.tlsSecret.namespace}/${p.tlsSecret.name}`;
      const reason = next.has(key)
        ? next.get(key)
        : await store.refusal(p.tlsSecret).catch(() => this.#foreign.get(key));
      if (reason === undefined) {
        out.push(p);
        continue;
      }
      next.set(key, reason);
      out.push({
        kind: 'invalid',
        key: p.key,
        namespace: p.namespace,
        name: p.name,
        hostname: p.hostname,
        reason,
        origin: p.origin,
      });
    }
    for (const [k, r] of next)
      if (!this.#foreign.has(k))
        this.#log.warn({ tlsSecret: k, reason: r }, 'tlsSecret managed by someone else');
    this.#foreign = next;
    return out;
  }
}

/** What one round of the leader's Secret check needs. */
export interface SecretCheckContext {
  readonly issuer: Pick<Issuer, 'setHosts' | 'running'>;
  readonly store: OwnershipStore;
  readonly ownership: SecretOwnership;
  /** The managed Hosts, parsed, as the informers see them now. */
  readonly hosts: () => ParsedHost[];
  readonly log: Logger;
  /** Asks for the Hosts' statuses to be written. */
  readonly scheduleStatus: () => void;
}

/**
 * One round of the leader's Secret check (acme may not list Secrets, so it polls what it saw): a
 * foreign Secret deleted or released becomes acme's to fill, and a Secret changed or deleted
 * outside acme is reloaded (deleted: reissued).
 */
export async function checkSecretsOnce(ctx: SecretCheckContext): Promise<void> {
  const { issuer, store, ownership, log } = ctx;
  // One ownership read per round, and any change of the verdicts is handed to the issuer at once:
  // a Secret released (annotated adopt=true, or deleted) becomes acme's to fill, one taken over is
  // no longer written. The verdicts must never change without the issuer being told: nothing else
  // would tell it (a Secret change is no Host event), so a Host would stay in Error for good.
  const before = [...ownership.foreign.keys()].join(',');
  const parsed = await ownership.apply(ctx.hosts(), store);
  if ([...ownership.foreign.keys()].join(',') !== before) {
    await issuer.setHosts(parsed);
    ctx.scheduleStatus();
  }
  const refs = new Map<string, SecretRef>();
  for (const p of parsed)
    if (p.kind === 'acme' && p.tlsSecret)
      refs.set(`${p.tlsSecret.namespace}/${p.tlsSecret.name}`, p.tlsSecret);
  const changed: string[] = [];
  for (const [key, ref] of refs) {
    if (issuer.running > 0) return; // an order may be writing; check again next round
    if (await store.changedSinceSeen(ref).catch(() => false)) changed.push(key);
  }
  if (changed.length === 0) return;
  log.info({ secrets: changed }, 'tlsSecret changed or deleted outside acme: reloading');
  const keep = parsed.filter(
    (p) =>
      !(p.kind === 'acme' && p.tlsSecret && changed.includes(`${p.tlsSecret.namespace}/${p.tlsSecret.name}`)),
  );
  await issuer.setHosts(keep);
  await issuer.setHosts(parsed);
  ctx.scheduleStatus();
}
