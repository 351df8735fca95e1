import type { LoginFailure, SigninEvent } from './flow.ts';

/** Counts of one login block since start. */
export interface LoginCounts {
  redirects: number;
  sessions: number;
  refreshes: number;
  refreshFailures: number;
  logouts: number;
  readonly failures: Map<LoginFailure, number>;
  lastFailure?: { readonly reason: LoginFailure; readonly at: string };
}

/** Sign-in counters per login block for /diag (the same events feed the authz_login_* metrics). */
export class SigninStats {
  readonly #byLogin = new Map<string, LoginCounts>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Counts one event. */
  record(e: SigninEvent): void {
    let c = this.#byLogin.get(e.login);
    if (!c) {
      c = { redirects: 0, sessions: 0, refreshes: 0, refreshFailures: 0, logouts: 0, failures: new Map() };
      this.#byLogin.set(e.login, c);
    }
    switch (e.kind) {
      case 'redirect':
        c.redirects += 1;
        break;
      case 'session':
        c.sessions += 1;
        break;
      case 'refresh':
        if (e.ok) c.refreshes += 1;
        else c.refreshFailures += 1;
        break;
      case 'logout':
        c.logouts += 1;
        break;
      case 'failure':
        c.failures.set(e.reason, (c.failures.get(e.reason) ?? 0) + 1);
        c.lastFailure = { reason: e.reason, at: new Date(this.#now()).toISOString() };
        break;
    }
  }

  /** Counts of a login block (zeros when it saw nothing). */
  get(login: string): LoginCounts {
    return (
      this.#byLogin.get(login) ?? {
        redirects: 0,
        sessions: 0,
        refreshes: 0,
        refreshFailures: 0,
        logouts: 0,
        failures: new Map(),
      }
    );
  }
}

/** `reason: n, ...` of a failure map, largest first. */
export function failuresText(m: ReadonlyMap<LoginFailure, number>): string {
  return [...m]
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r}: ${n}`)
    .join(', ');
}
