import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '@extsvc/common/logger';
import type { AccountParams, CaClient, ChallengeHooks } from '../src/ca.ts';
import { createCertificateForKey, generatePrivateKey } from '../src/certs.ts';
import type { AcmeError } from '../src/errors.ts';
import { type Clock, Issuer, type IssuerDeps, type IssuerOptions, type OrderResult } from '../src/issuer.ts';
import type { RenewalInfo } from '../src/renewal.ts';
import {
  type AccountStore,
  type CertificateStore,
  type FailureRecord,
  type IssueLock,
  MemoryChallengeStore,
  type StoredAccount,
  type StoredCertificate,
} from '../src/stores.ts';
import { type ParsedHost, type SecretRef, parseHostsText } from '../src/host.ts';

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

const DAY_MS = 86_400_000;
const MIN_MS = 60_000;

/**
 * Issuer options of the unit tests: renew at 2/3 without jitter, backoff 5 min doubling to 24 h, four
 * orders at once, ARI off (a test turns it on), sleeps of at most an hour.
 */
export function testIssuerOptions(over: Partial<IssuerOptions> = {}): IssuerOptions {
  return {
    renewal: { fraction: 2 / 3, jitter: 0 },
    backoff: { initialMs: 5 * MIN_MS, maxMs: 24 * 60 * MIN_MS },
    maxConcurrent: 4,
    keyType: 'ecdsa-p256',
    temporaryValidityMs: 7 * DAY_MS,
    challengeTtlMs: 10 * MIN_MS,
    ari: false,
    maxSleepMs: 60 * MIN_MS,
    ...over,
  };
}

/** A store with the optional file-mode hooks (write probe; lock and existence via withLock/withExists), each scriptable. */
export class HookedStore extends MemoryCertificateStore {
  probeError: Error | undefined;
  probes = 0;
  lockResult: (() => Promise<IssueLock>) | undefined;
  locks: { secret: string; ttlMs: number }[] = [];
  releases = 0;
  releaseError: Error | undefined;
  existsResult: ((s: SecretRef) => Promise<boolean>) | undefined;
  readError: Error | undefined;
  readFailureError: Error | undefined;
  writeError: Error | undefined;
  writeFailureError: Error | undefined;
  failureWrites: (FailureRecord | undefined)[] = [];
  async probeWrite(_s: SecretRef): Promise<void> {
    this.probes += 1;
    if (this.probeError) throw this.probeError;
  }
  override async read(s: SecretRef): Promise<StoredCertificate | undefined> {
    if (this.readError) throw this.readError;
    return super.read(s);
  }
  override async write(s: SecretRef, c: StoredCertificate): Promise<void> {
    if (this.writeError) throw this.writeError;
    return super.write(s, c);
  }
  override async readFailure(s: SecretRef): Promise<FailureRecord | undefined> {
    if (this.readFailureError) throw this.readFailureError;
    return super.readFailure(s);
  }
  override async writeFailure(s: SecretRef, f: FailureRecord | undefined): Promise<void> {
    this.failureWrites.push(f);
    if (this.writeFailureError) throw this.writeFailureError;
    return super.writeFailure(s, f);
  }
}

/** Gives the store an issuing lock (held unless `lockResult` says otherwise; releases counted). */
export function withLock(store: HookedStore): void {
  Object.assign(store, {
    lock: (s: SecretRef, ttlMs: number): Promise<IssueLock> => {
      store.locks.push({ secret: `${s.namespace}/${s.name}`, ttlMs });
      return store.lockResult
        ? store.lockResult()
        : Promise.resolve({
            kind: 'held',
            release: async () => {
              store.releases += 1;
              if (store.releaseError) throw store.releaseError;
            },
          });
    },
  });
}

/** Gives the store an existence check (true unless `existsResult` says otherwise). */
export function withExists(store: HookedStore): void {
  Object.assign(store, {
    exists: (s: SecretRef): Promise<boolean> =>
      store.existsResult ? store.existsResult(s) : Promise.resolve(true),
  });
}

/** One log line as pino writes it. */
export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger at debug level that keeps its lines (parsed) for assertions. */
export function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n'))
        if (l.trim() !== '') lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

/** A Host document (authority https://ca.example/dir, e-mail ops@example.com) named `name`, hostname `name.example.com`. */
export function testHost(
  name: string,
  extra: { annotations?: string; provider?: string; secret?: string; hostname?: string } = {},
): string {
  return [
    'apiVersion: getambassador.io/v3alpha1',
    'kind: Host',
    `metadata: {name: ${name}${extra.annotations !== undefined ? `, annotations: {${extra.annotations}}` : ''}}`,
    'spec:',
    `  hostname: ${extra.hostname ?? `${name}.example.com`}`,
    `  acmeProvider: {authority: 'https://ca.example/dir', email: ops@example.com${extra.provider ?? ''}}`,
    `  tlsSecret: {name: ${extra.secret ?? `${name}-tls`}}`,
  ].join('\n');
}

/** Parses Host documents (namespace default, CA https://ca.example/dir allowed); throws when they are not ok. */
export function parseTestHosts(...docs: string[]): ParsedHost[] {
  const r = parseHostsText(docs.join('\n---\n'), 'hosts.yaml', {
    namespace: 'default',
    authority: 'none',
    ambassadorIds: ['default'],
    allowedAuthorities: ['https://ca.example/dir'],
  });
  if (r.kind !== 'ok') throw new Error(`test Hosts do not parse: ${JSON.stringify(r)}`);
  return [...r.hosts];
}

/** An Issuer on a FakeClock and FakeCa with in-memory stores; `orders` collects onOrder results. */
export function testIssuer(
  over: Partial<IssuerOptions> = {},
  deps: Partial<IssuerDeps> & { certs?: MemoryCertificateStore } = {},
) {
  const clock = deps.clock instanceof FakeClock ? deps.clock : new FakeClock();
  const ca = deps.ca instanceof FakeCa ? deps.ca : new FakeCa(clock);
  const certs = deps.certs ?? new HookedStore();
  const accounts = deps.accounts instanceof MemoryAccountStore ? deps.accounts : new MemoryAccountStore();
  const challenges = new MemoryChallengeStore();
  const orders: { result: OrderResult; ms: number }[] = [];
  const issuer = new Issuer(
    {
      random: () => 0,
      logger: silentLogger,
      onOrder: (result, ms) => orders.push({ result, ms }),
      ...deps,
      clock,
      ca,
      certs,
      accounts,
      challenges,
    },
    testIssuerOptions(over),
  );
  return { clock, ca, certs, accounts, challenges, issuer, orders };
}

/** A real (non-temporary) stored pair as another instance or a previous run would have written it (null: no authority recorded). */
export function storedPair(
  names: readonly string[],
  notBefore: number,
  lifetimeMs: number,
  authority: string | null = 'https://ca.example/dir',
): StoredCertificate {
  const keyPem = generatePrivateKey('ecdsa-p256');
  return {
    chainPem: createCertificateForKey(names, keyPem, notBefore, notBefore + lifetimeMs, 'Fake CA'),
    keyPem,
    meta: {
      temporary: false,
      names,
      ...(authority !== null ? { authority } : {}),
      issuedAt: new Date(notBefore).toISOString(),
    },
  };
}
