/** Renewal policy: when to renew a valid certificate. */
export interface RenewalPolicy {
  /** Fraction of the lifetime after which to renew (default 2/3, as Edge Stack and cert-manager). */
  readonly fraction: number;
  /** Up to this fraction of the lifetime is taken off the renewal time at random (spreads load). */
  readonly jitter: number;
}

/** Exponential backoff policy for failed issuance, per certificate group. */
export interface BackoffPolicy {
  /** First delay after a failure, ms (Edge Stack: 5 min). */
  readonly initialMs: number;
  /** Cap of the exponential delay, ms (Edge Stack: 24 h). A CA's Retry-After may exceed it. */
  readonly maxMs: number;
}

/** An ARI (RFC 9773) suggested renewal window, epoch ms. */
export interface RenewalWindow {
  readonly start: number;
  readonly end: number;
}

/** An ARI renewalInfo answer: the window and the CA's Retry-After (when to ask again), ms. */
export interface RenewalInfo extends RenewalWindow {
  readonly retryAfterMs?: number;
}

/** Bounds of the ARI renewalInfo polling. */
export interface AriPollPolicy {
  /** Shortest delay between two renewalInfo requests for one certificate, ms. */
  readonly minMs: number;
  /** Longest delay (also the delay when the CA sends no Retry-After), ms. */
  readonly maxMs: number;
}

/** Default renewalInfo polling: Retry-After clamped to [10 min, 24 h] (Let's Encrypt sends 6 h). */
export const DEFAULT_ARI_POLL: AriPollPolicy = Object.freeze({ minMs: 600_000, maxMs: 86_400_000 });

/**
 * Delay before the next renewalInfo request for a certificate (RFC 9773 §4.3): the CA's Retry-After
 * clamped to [min, max], max when it sent none; after `failures` failed requests in a row, min
 * doubling per failure (capped at max), or the failure's own Retry-After (429, 503) when longer. Up to a tenth is taken off at random (`random` in
 * [0, 1)) so that certificates loaded together do not poll together.
 */
export function ariPollDelay(
  policy: AriPollPolicy,
  random: number,
  retryAfterMs?: number,
  failures = 0,
): number {
  const clamped = Math.min(policy.maxMs, Math.max(policy.minMs, retryAfterMs ?? policy.maxMs));
  const base =
    failures > 0
      ? Math.max(
          Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(failures - 1, 40)),
          retryAfterMs !== undefined ? clamped : 0,
        )
      : clamped;
  return Math.max(policy.minMs, Math.floor(base - base * 0.1 * random));
}

/**
 * Time to renew a certificate valid from notBefore to notAfter (epoch ms). `random` is in [0, 1).
 * With an ARI window the time is a uniform pick inside the window, unless the lifetime policy says
 * earlier (the CA may only move the time earlier, never past our own margin).
 */
export function renewalTime(
  cert: { readonly notBefore: number; readonly notAfter: number },
  policy: RenewalPolicy,
  random: number,
  window?: RenewalWindow,
): number {
  const lifetime = Math.max(0, cert.notAfter - cert.notBefore);
  const byLifetime = cert.notBefore + lifetime * policy.fraction - lifetime * policy.jitter * random;
  if (window && window.end >= window.start) {
    const byAri = window.start + (window.end - window.start) * random;
    return Math.floor(Math.min(byAri, byLifetime));
  }
  return Math.floor(byLifetime);
}

/**
 * Delay before the next attempt after `failures` consecutive failures (1 = first failure):
 * initial · 2^(failures−1), capped; at least the CA's Retry-After when it gave one.
 */
export function backoffDelay(failures: number, policy: BackoffPolicy, retryAfterMs?: number): number {
  const n = Math.max(1, failures);
  const exp = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(n - 1, 40));
  return Math.max(exp, retryAfterMs ?? 0);
}

/** Formats a duration as Go does for errorBackoff (`1h2m3s`, `300ms`), the format Emissary shows. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}
