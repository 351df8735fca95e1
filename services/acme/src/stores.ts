import type { SecretRef } from './host.ts';

/** Metadata stored beside a certificate (file mode: meta.json; Kubernetes: Secret annotations). */
export interface CertificateMeta {
  /** True for the temporary self-signed certificate written before the first issue. */
  readonly temporary: boolean;
  /** Names the certificate was requested for, sorted. */
  readonly names: readonly string[];
  /** ACME directory URL that issued it (absent for temporary ones). */
  readonly authority?: string;
  /** Issue time, ISO 8601. */
  readonly issuedAt: string;
}

/** A certificate pair as stored. */
export interface StoredCertificate {
  /** Leaf first, then intermediates (PEM). */
  readonly chainPem: string;
  /** Private key (PEM). Never logged. */
  readonly keyPem: string;
  readonly meta: CertificateMeta;
}

/** The last failures of a certificate group, kept so that a restart does not reset the backoff. */
export interface FailureRecord {
  /** Names the failing order was for (a different set starts afresh). */
  readonly names: readonly string[];
  /** Consecutive failures. */
  readonly failures: number;
  /** Last failure, epoch ms. */
  readonly at: number;
  /** Delay before the next attempt, ms. */
  readonly backoffMs: number;
  readonly reason: string;
  readonly code: string;
}

/** Where certificates go: a directory per tlsSecret (file mode) or Kubernetes Secrets (issue 6). */
export interface CertificateStore {
  /** The stored pair, undefined when absent. Throws only on I/O failures other than absence. */
  read(secret: SecretRef): Promise<StoredCertificate | undefined>;
  /**
   * Optional: whether the Secret exists and is readable, whoever manages it (Hosts with authority
   * `none` only need it to exist). Throws when it cannot be read (e.g. 403).
   */
  exists?(secret: SecretRef): Promise<boolean>;
  /** Replaces the pair atomically: readers see the old pair or the new one, never a mix. */
  write(secret: SecretRef, cert: StoredCertificate): Promise<void>;
  /**
   * Optional: proves that `write(secret)` would be accepted (Kubernetes: a dry-run of the exact
   * write) without changing anything; throws the reason when it would not. Called before every
   * order, so a certificate that could not be stored is never ordered.
   */
  probeWrite?(secret: SecretRef): Promise<void>;
  /**
   * Optional: takes the issuing lock of `secret` for at most `ttlMs`, so that instances sharing
   * the store (file mode: compose `scale: 2`, an overlapping restart) never order the same
   * certificate twice. `busy` names the live holder. Kubernetes mode needs none (a Lease).
   */
  lock?(secret: SecretRef, ttlMs: number): Promise<IssueLock>;
  /** Optional: the persisted failure record (Kubernetes mode keeps it in Host status instead). */
  readFailure?(secret: SecretRef): Promise<FailureRecord | undefined>;
  /** Optional: persists (or clears, with undefined) the failure record. */
  writeFailure?(secret: SecretRef, failure: FailureRecord | undefined): Promise<void>;
}

/** The outcome of CertificateStore.lock. */
export type IssueLock =
  { readonly kind: 'held'; release(): Promise<void> } | { readonly kind: 'busy'; readonly holder: string };

/** A stored ACME account. */
export interface StoredAccount {
  /** Account private key PEM (never logged). */
  readonly keyPem: string;
  /** Account URL returned by the CA (kid), when registered. */
  readonly accountUrl?: string;
  /** Directory the account URL belongs to. */
  readonly directoryUrl?: string;
  /** Fingerprint of the key the URL was registered with (a URL of another key is not used). */
  readonly keyId?: string;
}

/** Where ACME account keys and URLs live (files 0600 now, an Opaque Secret `user.key` later). */
export interface AccountStore {
  /** The account stored under `id`, undefined when absent. Throws when present but unreadable. */
  load(id: string): Promise<StoredAccount | undefined>;
  /** Saves the account (key and URL), restrictively. */
  save(id: string, account: StoredAccount): Promise<void>;
}

/** A pending HTTP-01 challenge. */
export interface PendingChallenge {
  readonly token: string;
  readonly keyAuthorization: string;
  /** The name being validated (the Host header must match it). */
  readonly name: string;
  /** Epoch ms after which the token is no longer served even if not removed. */
  readonly expiresAt: number;
}

/** Challenge tokens served while pending (memory now; shared by replicas in Kubernetes mode). */
export interface ChallengeStore {
  put(challenge: PendingChallenge): Promise<void>;
  /** The challenge for `token`, if pending and not expired at `now`. */
  get(token: string, now: number): Promise<PendingChallenge | undefined>;
  remove(token: string): Promise<void>;
}

/** In-memory challenge store for one replica. */
export class MemoryChallengeStore implements ChallengeStore {
  readonly #items = new Map<string, PendingChallenge>();
  async put(challenge: PendingChallenge): Promise<void> {
    this.#items.set(challenge.token, challenge);
  }
  async get(token: string, now: number): Promise<PendingChallenge | undefined> {
    const c = this.#items.get(token);
    if (!c) return undefined;
    if (c.expiresAt <= now) {
      this.#items.delete(token);
      return undefined;
    }
    return c;
  }
  async remove(token: string): Promise<void> {
    this.#items.delete(token);
  }
  /** Number of pending tokens (metrics, tests). */
  get size(): number {
    return this.#items.size;
  }
}
