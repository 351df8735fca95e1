import type { RenewalInfo } from './renewal.ts';

/** An ACME account as the CA client needs it. */
export interface AccountParams {
  /** ACME directory URL. */
  readonly directoryUrl: string;
  /** Account private key PEM. */
  readonly keyPem: string;
  /** Account URL (kid) when already registered. */
  readonly accountUrl?: string;
  /** Contact e-mail. */
  readonly email?: string;
}

/** An HTTP-01 challenge to publish. */
export interface ChallengeToSolve {
  readonly token: string;
  readonly keyAuthorization: string;
  /** The identifier being validated. */
  readonly name: string;
}

/** What the issuer provides to solve HTTP-01 challenges. */
export interface ChallengeHooks {
  /** Called once the CA created the order, with its URL (for logs and traces). */
  ordered?(orderUrl: string): void;
  /** Publishes the token (the challenge server answers it from now on). */
  present(c: ChallengeToSolve): Promise<void>;
  /** Optional self-check before asking the CA to validate; throws AcmeError ERR_SELF_CHECK. */
  selfCheck?(c: ChallengeToSolve): Promise<void>;
  /** Stops serving the token (valid or not). */
  remove(c: ChallengeToSolve): Promise<void>;
}

/** The ACME protocol as the issuer core sees it; acme-client behind it (acme-ca.ts), fakes in tests. */
export interface CaClient {
  /** Finds the account of this key (onlyReturnExisting) or registers it; returns the account URL. */
  account(account: AccountParams): Promise<string>;
  /**
   * Orders a certificate for `names`, solves HTTP-01 through `hooks`, finalizes with a CSR for
   * `keyPem`; returns the chain PEM (leaf first). Throws AcmeError.
   */
  order(req: {
    readonly account: AccountParams & { readonly accountUrl: string };
    readonly names: readonly string[];
    readonly keyPem: string;
    readonly hooks: ChallengeHooks;
    /**
     * The chain being renewed: its ARI CertID is sent as `replaces` (RFC 9773 §5) when the CA's
     * directory offers renewalInfo; a CA that refuses the replacement gets a plain order instead.
     */
    readonly replaces?: string;
    /**
     * Certificate profile to request (the newOrder `profile` field). Must be one the directory's
     * `meta.profiles` advertises, else the order is not placed (AcmeError ERR_ACME_PROFILE).
     */
    readonly profile?: string;
  }): Promise<string>;
  /**
   * The CA's suggested renewal window for a chain (RFC 9773) with its Retry-After, undefined when
   * the CA has no ARI.
   */
  renewalInfo(directoryUrl: string, chainPem: string): Promise<RenewalInfo | undefined>;
  /** Releases connections. */
  close(): Promise<void>;
}
