import { pino } from 'pino';
import type { AccountParams, CaClient, ChallengeHooks } from '../src/ca.ts';
import { createCertificateForKey } from '../src/certs.ts';
import type { AcmeError } from '../src/errors.ts';
import type { Clock } from '../src/issuer.ts';
import type { RenewalInfo } from '../src/renewal.ts';
import type {
  AccountStore,
  CertificateStore,
  FailureRecord,
  StoredAccount,
  StoredCertificate,
} from '../src/stores.ts';
import type { SecretRef } from '../src/host.ts';

/** A frozen clock whose timers fire only when the test advances time. */
export class FakeClock implements Clock {
  #now: number;
  #timers: { at: number; fn: () => void; id: number }[] = [];
  #id = 0;
  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): { cancel(): void } {
    const id = ++this.#id;
    this.#timers.push({ at: this.#now + ms, fn, id });
    return { cancel: () => (this.#timers = this.#timers.filter((t) => t.id !== id)) };
  }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const next = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.#timers = this.#timers.filter((t) => t.id !== next.id);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = end;
  }
  /** Pending timer count. */
  get pending(): number {
    return this.#timers.length;
  }
}

/** A silent logger. */
export const silentLogger = pino({ level: 'silent' });

/** What the fake CA does for one order. */
export type FakeOutcome =
  | { kind: 'issue'; lifetimeMs: number; names?: readonly string[] }
  | { kind: 'fail'; error: AcmeError }
  | { kind: 'wrong-key'; lifetimeMs: number };

/** An in-memory CA: issues self-signed leaves for the CSR key, counts calls, can fail on demand. */
export class FakeCa implements CaClient {
  readonly accounts: AccountParams[] = [];
  readonly orders: {
    names: readonly string[];
    accountUrl: string;
    replaces?: string;
    profile?: string;
  }[] = [];
  readonly outcomes: FakeOutcome[] = [];
  defaultOutcome: FakeOutcome = { kind: 'issue', lifetimeMs: 90 * 86_400_000 };
  window: RenewalInfo | undefined;
  /** renewalInfo requests seen (chain PEMs). */
  readonly renewalInfoCalls: string[] = [];
  running = 0;
  maxRunning = 0;
  /** Each order waits for this before finishing (tests of concurrency). */
  gate: Promise<void> | undefined;
  /** Tokens seen servable while the order ran. */
  readonly presented: string[] = [];
  readonly clock: Clock;
  #n = 0;
  constructor(clock: Clock) {
    this.clock = clock;
  }
  async account(a: AccountParams): Promise<string> {
    this.accounts.push(a);
    return `https://ca.example/acct/${this.accounts.length}`;
  }
  async order(req: {
    account: AccountParams & { accountUrl: string };
    names: readonly string[];
    keyPem: string;
    hooks: ChallengeHooks;
    replaces?: string;
    profile?: string;
  }): Promise<string> {
    this.orders.push({
      names: req.names,
      accountUrl: req.account.accountUrl,
      ...(req.replaces !== undefined ? { replaces: req.replaces } : {}),
      ...(req.profile !== undefined ? { profile: req.profile } : {}),
    });
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      const token = `token-${String(++this.#n).padStart(4, '0')}-0123456789abcdef`;
      const c = { token, keyAuthorization: `${token}.thumb`, name: req.names[0] as string };
      await req.hooks.present(c);
      this.presented.push(token);
      try {
        if (this.gate) await this.gate;
      } finally {
        await req.hooks.remove(c);
      }
      const outcome = this.outcomes.shift() ?? this.defaultOutcome;
      const now = this.clock.now();
      switch (outcome.kind) {
        case 'fail':
          throw outcome.error;
        case 'issue':
          return createCertificateForKey(
            outcome.names ?? req.names,
            req.keyPem,
            now,
            now + outcome.lifetimeMs,
            'Fake CA',
          );
        case 'wrong-key': {
          const { generatePrivateKey } = await import('../src/certs.ts');
          return createCertificateForKey(
            req.names,
            generatePrivateKey('ecdsa-p256'),
            now,
            now + outcome.lifetimeMs,
            'Fake CA',
          );
        }
      }
    } finally {
      this.running -= 1;
    }
  }
  async renewalInfo(_directoryUrl: string, chainPem: string): Promise<RenewalInfo | undefined> {
    this.renewalInfoCalls.push(chainPem);
    return this.window;
  }
  async close(): Promise<void> {}
}

/** In-memory certificate store (with the optional failure records). */
export class MemoryCertificateStore implements CertificateStore {
  readonly items = new Map<string, StoredCertificate>();
  readonly failures = new Map<string, FailureRecord>();
  async readFailure(s: SecretRef): Promise<FailureRecord | undefined> {
    return this.failures.get(`${s.namespace}/${s.name}`);
  }
  async writeFailure(s: SecretRef, f: FailureRecord | undefined): Promise<void> {
    if (f) this.failures.set(`${s.namespace}/${s.name}`, f);
    else this.failures.delete(`${s.namespace}/${s.name}`);
  }
  writes = 0;
  async read(s: SecretRef): Promise<StoredCertificate | undefined> {
    return this.items.get(`${s.namespace}/${s.name}`);
  }
  async write(s: SecretRef, c: StoredCertificate): Promise<void> {
    this.writes += 1;
    this.items.set(`${s.namespace}/${s.name}`, c);
  }
}

/** In-memory account store. */
export class MemoryAccountStore implements AccountStore {
  readonly items = new Map<string, StoredAccount>();
  async load(id: string): Promise<StoredAccount | undefined> {
    return this.items.get(id);
  }
  async save(id: string, a: StoredAccount): Promise<void> {
    this.items.set(id, a);
  }
}

/** Lets pending promise callbacks run (the issuer works in microtasks and I/O-free awaits). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}
