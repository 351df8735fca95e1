/**
 * Stable reason codes of authz decisions. They appear in deny bodies (`code`), in metrics (`reason`)
 * and in logs; callers switch on them, never on messages.
 */
export const DenyReasons = {
  missing_credentials: 'No credentials were presented',
  malformed_token: 'The access token is malformed',
  token_too_large: 'The access token is too large',
  unknown_issuer: 'The access token issuer is not accepted',
  alg_not_allowed: 'The access token algorithm is not allowed',
  bad_signature: 'The access token signature is invalid',
  unknown_kid: 'The access token key is unknown',
  token_expired: 'The access token expired',
  token_not_yet_valid: 'The access token is not yet valid',
  token_issued_in_future: 'The access token was issued in the future',
  token_too_old: 'The access token is too old',
  wrong_issuer: 'The access token issuer is wrong',
  wrong_audience: 'The access token audience is not accepted',
  missing_claim: 'The access token lacks a required claim',
  unsupported_token: 'The access token uses an unsupported feature',
  invalid_token: 'The access token is invalid',
  keys_expired: 'The issuer keys are too old to be trusted',
  keys_unavailable: 'The issuer keys are not available to check the access token',
  insufficient_scope: 'The access token lacks a required scope',
  claim_mismatch: 'The credentials lack a required claim value',
  invalid_api_key: 'The API key is invalid',
  policy_deny: 'Access is denied by policy',
  no_matching_rule: 'No rule allows this request',
  unknown_policy: 'The route names an unknown policy or rule',
  ambiguous_path: 'The request path has a dot segment with parameters',
  too_many_headers: 'The request has too many headers',
  bad_request: 'The check request is malformed',
  path_prefix_mismatch: 'The authorization check did not carry the expected path prefix',
  internal_error: 'The request could not be authorized',
  login_required: 'Sign-in is required',
  login_redirect: 'Sign-in is required: redirected to the identity provider',
  login_callback: 'Signed in: redirected back',
  login_failed: 'Sign-in failed',
  logout: 'Signed out',
  csrf: 'A cross-site request with the session cookie was refused',
} as const;

/** A reason for a deny. */
export type DenyReason = keyof typeof DenyReasons;

/** Reasons for an allow (metrics label). */
export type AllowReason = 'public' | 'jwt' | 'api_key' | 'cors_preflight' | 'anonymous' | 'session';

/** Reasons for an infrastructure error (Envoy's failure mode decides). */
export type ErrorReason = 'keys_unavailable' | 'internal';

/** Stable codes of errors thrown inside authz (never shown to clients). */
export type AuthzErrorCode = 'ERR_JWKS_FETCH' | 'ERR_JWKS_INVALID' | 'ERR_DISCOVERY_INVALID';

/** An error with a stable code and a cause. */
export class AuthzError extends Error {
  readonly code: AuthzErrorCode;
  constructor(code: AuthzErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuthzError';
    this.code = code;
  }
}
