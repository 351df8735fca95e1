import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** authz metrics, registered on the service registry. */
export interface AuthzMetrics {
  /** Decisions by transport, result (allow/deny/error), reason and rule. */
  readonly decisions: Counter<'transport' | 'result' | 'reason' | 'rule'>;
  /** Checks by transport and result (allow/deny/error), without reason or rule. */
  readonly checks: Counter<'transport' | 'result'>;
  /** Check latency in seconds by transport. */
  readonly duration: Histogram<'transport'>;
  /** Discovery and JWKS fetches by issuer and result (ok/error/invalid). */
  readonly jwksFetches: Counter<'issuer' | 'result'>;
  /** Verified-token cache lookups by result (hit/miss). */
  readonly tokenCache: Counter<'result'>;
  /** Policy reloads by result (ok/error). */
  readonly reloads: Counter<'result'>;
  /** 1 when the last policy reload succeeded, 0 when the last good policy is kept after a failure. */
  readonly reloadOk: Gauge;
  /** 1 when a provider's verification keys were obtained at least once, 0 while never. */
  readonly issuerKeysLoaded: Gauge<'provider'>;
  /** Uses of the /diag test form by result (allow/deny/error/invalid/limited). */
  readonly diagTests: Counter<'result'>;
  /** Browsers sent to the identity provider to sign in, by login block. */
  readonly loginRedirects: Counter<'login'>;
  /** Sign-in sessions issued (callback completed), by login block. */
  readonly loginSessions: Counter<'login'>;
  /** Session refreshes with the refresh token, by login block and result (ok/error). */
  readonly loginRefreshes: Counter<'login' | 'result'>;
  /** Sign-in failures by login block and reason (state_mismatch, code_rejected, ...). */
  readonly loginFailures: Counter<'login' | 'reason'>;
  /** Logouts by login block. */
  readonly loginLogouts: Counter<'login'>;
}

/** Creates the metrics on `registry`. */
export function createMetrics(registry: Registry): AuthzMetrics {
  const registers = [registry];
  return {
    decisions: new Counter({
      name: 'authz_decisions_total',
      help: 'Check decisions by transport, result, reason and rule.',
      labelNames: ['transport', 'result', 'reason', 'rule'],
      registers,
    }),
    checks: new Counter({
      name: 'authz_check_total',
      help: 'Checks by transport and result.',
      labelNames: ['transport', 'result'],
      registers,
    }),
    duration: new Histogram({
      name: 'authz_check_duration_seconds',
      help: 'Check latency inside authz, by transport.',
      labelNames: ['transport'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
      registers,
    }),
    jwksFetches: new Counter({
      name: 'authz_jwks_fetch_total',
      help: 'OIDC discovery and JWKS fetches by issuer and result.',
      labelNames: ['issuer', 'result'],
      registers,
    }),
    tokenCache: new Counter({
      name: 'authz_token_cache_total',
      help: 'Verified-token cache lookups by result.',
      labelNames: ['result'],
      registers,
    }),
    reloads: new Counter({
      name: 'authz_policy_reload_total',
      help: 'Policy reloads by result; on error the last good policy stays active.',
      labelNames: ['result'],
      registers,
    }),
    issuerKeysLoaded: new Gauge({
      name: 'authz_issuer_keys_loaded',
      help: "1 when the provider's verification keys were obtained at least once (inline keys count), 0 while never: its tokens are denied keys_unavailable.",
      labelNames: ['provider'],
      registers,
    }),
    diagTests: new Counter({
      name: 'authz_diag_test_total',
      help: 'Uses of the admin /diag "test a request" form by result; limited ones were answered 429.',
      labelNames: ['result'],
      registers,
    }),
    loginRedirects: new Counter({
      name: 'authz_login_redirects_total',
      help: 'Browser navigations without a session sent to the identity provider, by login block.',
      labelNames: ['login'],
      registers,
    }),
    loginSessions: new Counter({
      name: 'authz_login_sessions_total',
      help: 'Sign-in sessions issued after a completed callback, by login block.',
      labelNames: ['login'],
      registers,
    }),
    loginRefreshes: new Counter({
      name: 'authz_login_refresh_total',
      help: 'Session refreshes with the refresh token by login block and result (ok/error).',
      labelNames: ['login', 'result'],
      registers,
    }),
    loginFailures: new Counter({
      name: 'authz_login_failures_total',
      help: 'Sign-in, session and refresh failures by login block and reason.',
      labelNames: ['login', 'reason'],
      registers,
    }),
    loginLogouts: new Counter({
      name: 'authz_login_logouts_total',
      help: 'Logouts by login block.',
      labelNames: ['login'],
      registers,
    }),
    reloadOk: new Gauge({
      name: 'authz_policy_reload_ok',
      help: '1 when the last policy (re)load succeeded, 0 when a bad reload was rejected.',
      registers,
    }),
  };
}
