import { errorMessage } from '@extsvc/common/errors';
import type { SecretRef } from '../host.ts';

/** A managed Host's tlsSecret as readiness waits for it. */
export interface WantedSecret {
  /** The Host, `namespace/name`. */
  readonly host: string;
  readonly secret: SecretRef;
  /**
   * The Host's status says Error: acme has said on the Host why it has no certificate (a Secret it
   * may not write, say). Readiness does not wait for such a Secret: it could wait forever.
   */
  readonly error: boolean;
}

/** Options of SecretReadiness. */
export interface SecretReadinessOptions {
  /** True when the Secret holds a certificate pair (temporary or real); throws when it cannot be read. */
  readonly exists: (ref: SecretRef) => Promise<boolean>;
  /** A Secret seen absent (or unreadable) is read again this often, ms. */
  readonly missingRecheckMs: number;
  /** Epoch ms; default Date.now. */
  readonly now?: () => number;
}

interface Seen {
  readonly present: boolean;
  readonly at: number;
  /** Why it could not be read (API error text, never Secret data). */
  readonly problem?: string;
}

const refKey = (r: SecretRef): string => `${r.namespace}/${r.name}`;

/**
 * Kubernetes-mode readiness of the certificates: every managed Host's tlsSecret has existed with a
 * certificate pair (temporary or real) since the Host named it, as seen by this replica. acme may
 * get but not list or watch Secrets (acme-rbac.yaml), so each wanted Secret is read when a Host names
 * it, then every `missingRecheckMs` until present, never again after that: a Secret deleted later
 * is the leader's to write again (its Secret check), not a readiness matter. Every replica would
 * turn unready at once, and the challenge Service would lose its endpoints just when the order
 * that follows a deletion (a forced reissue) needs them. Hosts in Error are named, not waited for.
 */
export class SecretReadiness {
  readonly #opts: SecretReadinessOptions;
  #wanted: readonly WantedSecret[] = [];
  readonly #seen = new Map<string, Seen>();
  readonly #listeners = new Set<() => void>();
  #checking: Promise<void> | undefined;
  #last = '';

  constructor(opts: SecretReadinessOptions) {
    this.#opts = opts;
  }

  /** Subscribes to changes of what is missing or waived; returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Replaces the wanted Secrets (the managed Hosts changed); Secrets no Host names are forgotten. */
  setWanted(wanted: readonly WantedSecret[]): void {
    this.#wanted = wanted;
    const keys = new Set(wanted.map((w) => refKey(w.secret)));
    for (const k of [...this.#seen.keys()]) if (!keys.has(k)) this.#seen.delete(k);
    this.#notify();
  }

  /** Records a Secret this replica just wrote (the leader's temporary or issued certificate). */
  markPresent(ref: SecretRef): void {
    this.#seen.set(refKey(ref), { present: true, at: this.#now() });
    this.#notify();
  }

  /** Reads every wanted Secret that is due; concurrent calls share one pass. */
  check(): Promise<void> {
    return (this.#checking ??= this.#check().finally(() => (this.#checking = undefined)));
  }

  async #check(): Promise<void> {
    const now = this.#now();
    const due = new Map<string, SecretRef>();
    for (const w of this.#wanted) {
      const k = refKey(w.secret);
      const s = this.#seen.get(k);
      if (s === undefined || (!s.present && now - s.at >= this.#opts.missingRecheckMs)) due.set(k, w.secret);
    }
    for (const [k, ref] of due) {
      const at = this.#now();
      let seen: Seen;
      try {
        seen = { present: await this.#opts.exists(ref), at };
      } catch (err) {
        seen = { present: false, at, problem: errorMessage(err) };
      }
      // A Host removed, or a write recorded while the read was on its way: keep the newer knowledge.
      const cur = this.#seen.get(k);
      if (this.#wanted.some((w) => refKey(w.secret) === k) && (cur === undefined || cur.at < at))
        this.#seen.set(k, seen);
    }
    this.#notify();
  }

  /** Hosts readiness waits for: `ns/host → ns/secret`, with why when the Secret cannot be read. */
  missing(): string[] {
    return this.#list(false);
  }

  /** Hosts in Error whose Secret is absent: reported on /readyz, not waited for. */
  waived(): string[] {
    return this.#list(true);
  }

  #list(error: boolean): string[] {
    const out: string[] = [];
    for (const w of this.#wanted) {
      if (w.error !== error) continue;
      const s = this.#seen.get(refKey(w.secret));
      if (s?.present === true) continue;
      const why = s === undefined ? ' (not read yet)' : s.problem !== undefined ? ` (${s.problem})` : '';
      out.push(`${w.host} → ${refKey(w.secret)}${why}`);
    }
    return out.sort();
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  #notify(): void {
    const sig = `${this.missing().join('|')}#${this.waived().join('|')}`;
    if (sig === this.#last) return;
    this.#last = sig;
    for (const l of this.#listeners) l();
  }
}
