/** Stable error codes of the acme service; callers switch on `code`, never on the message. */
export type AcmeErrorCode =
  /** The CA answered 5xx, or the connection failed in a way none of the codes below names (reset...). */
  | 'ERR_ACME_UNREACHABLE'
  /** The CA's TLS certificate failed verification (untrusted root, expired, wrong name): retried slowly. */
  | 'ERR_ACME_TLS'
  /** The CA's host name did not resolve (ENOTFOUND, EAI_AGAIN). */
  | 'ERR_ACME_DNS'
  /** The CA refused the connection (nothing listening, ECONNREFUSED). */
  | 'ERR_ACME_REFUSED'
  /** The CA did not answer within --acme-timeout (connect, TLS handshake or response). */
  | 'ERR_ACME_TIMEOUT'
  /** The CA answered 429 / rateLimited; `retryAfterMs` holds its Retry-After. */
  | 'ERR_ACME_RATE_LIMITED'
  /** The account is unknown to the CA (lost, or the CA was reset): register again. */
  | 'ERR_ACME_ACCOUNT'
  /** The Host asks for a certificate profile the CA's directory does not advertise (meta.profiles). */
  | 'ERR_ACME_PROFILE'
  /** The order became invalid (a challenge failed at the CA) or the CA refused it. */
  | 'ERR_ACME_ORDER'
  /** Our own HTTP-01 self-check could not fetch the token through the configured address. */
  | 'ERR_SELF_CHECK'
  /** The issued chain does not cover the names, does not match the key, or does not parse. */
  | 'ERR_CERT_INVALID'
  /** Writing the certificate or account failed. */
  | 'ERR_STORE'
  /** The certificate could not be stored (proved before ordering): no order is placed until it can. */
  | 'ERR_STORE_UNWRITABLE';

/** A failed issuance step. `message` is safe to show in Host status and logs (no key material). */
export class AcmeError extends Error {
  readonly code: AcmeErrorCode;
  /** ACME problem type (`urn:ietf:params:acme:error:...`) when the CA sent one. */
  readonly problemType?: string;
  /** The CA's Retry-After in ms, when it sent one. */
  readonly retryAfterMs?: number;
  constructor(
    code: AcmeErrorCode,
    message: string,
    extra: { problemType?: string; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'AcmeError';
    this.code = code;
    if (extra.problemType !== undefined) this.problemType = extra.problemType;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
  }
}
