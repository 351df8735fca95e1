import { createHash, createPublicKey } from 'node:crypto';
import type { Logger } from '@extsvc/common/logger';
import { SpanKinds, type TraceSpan, type Tracing } from '@extsvc/common/otel';
import { errorMessage } from '@extsvc/common/errors';
import type { CaClient, ChallengeHooks, ChallengeToSolve } from './ca.ts';
import {
  type CertificateInfo,
  type KeyType,
  checkIssuedChain,
  createSelfSigned,
  generatePrivateKey,
  keyMatchesChain,
  readCertificate,
} from './certs.ts';
import { AcmeError, type AcmeErrorCode } from './errors.ts';
import {
  type AcmeProvider,
  type CertGroup,
  type ParsedHost,
  groupHosts,
  nameEncode,
  normalizeAuthority,
  rejectProviderConflicts,
} from './host.ts';
import {
  type AriPollPolicy,
  type BackoffPolicy,
  type RenewalPolicy,
  type RenewalWindow,
  DEFAULT_ARI_POLL,
  ariPollDelay,
  backoffDelay,
  formatDuration,
  renewalTime,
} from './renewal.ts';
import type { AccountStore, CertificateStore, ChallengeStore, FailureRecord } from './stores.ts';

/** Emissary Host status states. */
export type HostState = 'Initial' | 'Pending' | 'Ready' | 'Error';

/** Emissary Host status phases (Edge Stack's ACME state machine). */
export type HostPhase =
  'NA' | 'DefaultsFilled' | 'ACMEUserPrivateKeyCreated' | 'ACMEUserRegistered' | 'ACMECertificateChallenge';

/** Per-Host status: Emissary's vocabulary plus certificate facts. */
export interface HostStatus {
  readonly key: string;
  readonly hostname?: string;
  readonly tlsSecret?: string;
  readonly state: HostState;
  readonly phaseCompleted: HostPhase;
  readonly phasePending: HostPhase;
  readonly tlsCertificateSource: 'Unknown' | 'None' | 'Other' | 'ACME';
  readonly errorReason?: string;
  /** Stable code of the error (`ERR_ACME_TLS`...), the README's table of reasons and retry policies. */
  readonly errorCode?: string;
  /** ISO 8601. */
  readonly errorTimestamp?: string;
  /** Go duration string, e.g. `5m0s`. */
  readonly errorBackoff?: string;
  /** Certificate notAfter, ISO 8601. */
  readonly notAfter?: string;
  /** Next renewal (or retry) time, ISO 8601. */
  readonly nextRenewal?: string;
  /** Names of the certificate (all Hosts sharing the tlsSecret). */
  readonly names?: readonly string[];
  /** True while the stored certificate is the temporary self-signed one. */
  readonly temporaryCertificate?: boolean;
  /** Something the operator should know that does not block issuance. */
  readonly warning?: string;
  /** Certificate profile asked for (the Host's, else --default-profile). */
  readonly profile?: string;
  /** The CA's current ARI suggested window, ISO 8601. */
  readonly renewalWindow?: { readonly start: string; readonly end: string };
  /** Next ARI renewalInfo request, ISO 8601. */
  readonly nextRenewalInfoCheck?: string;
}

/** Time source and timers, injected (tests freeze and advance time). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

/** The real clock; timers are unref'd so they never keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Outcome of one order, for metrics. */
export type OrderResult = 'issued' | 'failed' | 'rate_limited';

/** Issuer options (validated by config.ts). */
export interface IssuerOptions {
  readonly renewal: RenewalPolicy;
  readonly backoff: BackoffPolicy;
  /** Orders running at once, at most. */
  readonly maxConcurrent: number;
  /** Key type of issued certificates. */
  readonly keyType: KeyType;
  /** Validity of the temporary self-signed certificate, ms. */
  readonly temporaryValidityMs: number;
  /** How long a published token stays servable at most, ms. */
  readonly challengeTtlMs: number;
  /** Use ARI windows when the CA offers them. */
  readonly ari: boolean;
  /** Bounds of the renewalInfo polling per certificate (Retry-After clamped to them); default DEFAULT_ARI_POLL. */
  readonly ariPoll?: AriPollPolicy;
  /** Certificate profile of Hosts that name none; undefined: the CA's default. */
  readonly defaultProfile?: string;
  /** Longest wait between two scheduler wake-ups, ms (bounds clock jumps). */
  readonly maxSleepMs: number;
  /** Issuing lock lifetime when the store has locks (file mode), ms; default 15 min. */
  readonly lockTtlMs?: number;
  /** While another instance holds the lock, how often to look for what it stored, ms; default 2 s. */
  readonly lockRecheckMs?: number;
}

/** Dependencies of the issuer core; all are small interfaces (file mode now, Kubernetes later). */
export interface IssuerDeps {
  readonly clock: Clock;
  /** Uniform in [0, 1). */
  readonly random: () => number;
  readonly ca: CaClient;
  readonly certs: CertificateStore;
  readonly accounts: AccountStore;
  readonly challenges: ChallengeStore;
  readonly logger: Logger;
  /** Optional HTTP-01 self-check before asking the CA to validate. */
  readonly selfCheck?: (c: ChallengeToSolve) => Promise<void>;
  /** Called after each order with its result and duration. */
  readonly onOrder?: (result: OrderResult, ms: number) => void;
  /** OpenTelemetry tracing: a span per order, a child span per challenge. */
  readonly tracing?: Tracing;
}

interface GroupRuntime {
  group: CertGroup;
  loaded: boolean;
  cert?: CertificateInfo & { temporary: boolean };
  /** The stored chain (public) and the CA that issued it: ARI requests and `replaces`. */
  chainPem?: string;
  authority?: string;
  window?: RenewalWindow;
  /** Next renewalInfo request, epoch ms (undefined: none planned). */
  ariCheckAt?: number;
  ariFailures: number;
  ariPolling: boolean;
  /** Fixed per certificate, so the jittered renewal time is stable. */
  jitter: number;
  renewAt?: number;
  failures: number;
  nextAttemptAt?: number;
  error?: { reason: string; at: number; backoffMs: number; code: AcmeErrorCode };
  state: HostState;
  phaseCompleted: HostPhase;
  phasePending: HostPhase;
  inFlight: boolean;
}

/** Account store id of a provider: the privateKeySecret, else Edge Stack's derived name. */
export function accountId(p: AcmeProvider): string {
  if (p.privateKeySecret) return `${p.privateKeySecret.namespace}.${p.privateKeySecret.name}`;
  return p.email ? `${nameEncode(p.authority)}--${nameEncode(p.email)}` : nameEncode(p.authority);
}

/** Fingerprint of an account key (SHA-256 of its public key), stored beside the account URL. */
export function accountKeyId(keyPem: string): string {
  const spki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64url');
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** A renewal policy that never comes before notAfter: renewalTime with it is the ARI window's pick alone. */
const WINDOW_ONLY: RenewalPolicy = { fraction: 1, jitter: 0 };

/**
 * Stored certificates read and checked at once when Hosts are (re)loaded. Reading all of them at once
 * held every file, parsed certificate and key of a large set in memory together: with 1,000 stored
 * certificates the process peaked at 194 MiB and kept 122 MiB, 176 / 117 MiB with 16 at a time, in
 * the same start-up time (bench/acme/bench.ts --stored-only; services/acme/README.md "Memory").
 */
export const LOAD_CONCURRENCY = 16;

/** A problem that does not fix itself in minutes (an untrusted CA certificate) waits this much longer. */
export const SLOW_RETRY_FACTOR = 12;

/**
 * The backoff of an error code: `--backoff-initial` doubling to `--backoff-max`, except for a CA
 * TLS certificate that fails verification, which starts SLOW_RETRY_FACTOR times later (5 min → 1 h):
 * it needs an operator (--ca-file, a renewed CA certificate), not another try.
 */
export function retryPolicy(code: AcmeErrorCode, base: BackoffPolicy): BackoffPolicy {
  if (code !== 'ERR_ACME_TLS') return base;
  const initialMs = base.initialMs * SLOW_RETRY_FACTOR;
  return { initialMs, maxMs: Math.max(base.maxMs, initialMs) };
}

function toAcmeError(err: unknown): AcmeError {
  if (err instanceof AcmeError) return err;
  return new AcmeError('ERR_ACME_ORDER', errorMessage(err), { cause: err });
}

/**
 * The issuer core: Hosts + clock + stored certificates → next action. One state machine per
 * certificate group (tlsSecret); a bounded number of orders at once; per-group backoff.
 */
export class Issuer {
  readonly #deps: IssuerDeps;
  readonly #opts: IssuerOptions;
  #hosts: readonly ParsedHost[] = [];
  readonly #groups = new Map<string, GroupRuntime>();
  /** Hosts with authority none: their tlsSecret exists (true), not (false), or cannot be read (why). */
  readonly #noneSecrets = new Map<string, boolean | string>();
  #running = 0;
  #timer: { cancel(): void } | undefined;
  #closed = false;
  readonly #inflight = new Set<Promise<void>>();
  readonly #listeners = new Set<() => void>();
  readonly #accountLocks = new Map<string, Promise<void>>();

  constructor(deps: IssuerDeps, opts: IssuerOptions) {
    this.#deps = deps;
    this.#opts = opts;
  }

  /** Subscribes to status changes. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Replaces the set of Hosts. New certificate groups load their stored certificate (writing the
   * temporary one when absent) before being scheduled; removed groups are forgotten (files kept).
   */
  async setHosts(given: readonly ParsedHost[]): Promise<void> {
    const hosts = rejectProviderConflicts(given);
    this.#hosts = hosts;
    const groups = groupHosts(hosts);
    const wanted = new Set(groups.map((g) => g.key));
    for (const key of [...this.#groups.keys()]) if (!wanted.has(key)) this.#groups.delete(key);
    const loads: Promise<void>[] = [];
    const fresh: GroupRuntime[] = [];
    for (const g of groups) {
      const rt = this.#groups.get(g.key);
      if (!rt) {
        const added: GroupRuntime = {
          group: g,
          loaded: false,
          jitter: this.#deps.random(),
          failures: 0,
          ariFailures: 0,
          ariPolling: false,
          state: 'Initial',
          phaseCompleted: 'NA',
          phasePending: 'DefaultsFilled',
          inFlight: false,
        };
        this.#groups.set(g.key, added);
        fresh.push(added);
      } else {
        const changed =
          rt.group.names.join(',') !== g.names.join(',') ||
          JSON.stringify(rt.group.provider) !== JSON.stringify(g.provider);
        const retry = rt.group.retryToken !== g.retryToken && g.retryToken !== '';
        const rescheduled = rt.group.renewBeforeMs !== g.renewBeforeMs;
        rt.group = g;
        if (rescheduled && rt.cert && !rt.cert.temporary) this.#setCert(rt, rt.cert);
        if (retry && !changed && rt.state === 'Error') {
          // The operator asked for one retry now (annotation acme.extsvc.dev/retry changed): the
          // backoff is skipped once; the failure count stays, so a new failure backs off further.
          delete rt.nextAttemptAt;
          this.#deps.logger.info({ tlsSecret: g.key }, 'retry requested by annotation: retrying now');
        }
        if (changed) {
          // A spec change bypasses the backoff (as cert-manager), the CA limits still apply.
          rt.failures = 0;
          delete rt.nextAttemptAt;
          delete rt.error;
        }
      }
    }
    for (const h of hosts) {
      if (h.kind === 'none' && h.tlsSecret) {
        const s = h.tlsSecret;
        // Emissary serves another namespace's Secret; acme does not probe it for a tenant.
        if (s.namespace !== h.namespace) continue;
        const { certs } = this.#deps;
        // A user-made Secret (kubectl, Helm, Edge Stack) is fine here: acme only needs it to exist.
        const present = certs.exists ? certs.exists(s) : certs.read(s).then((c) => c !== undefined);
        loads.push(
          present.then(
            (ok) => void this.#noneSecrets.set(`${s.namespace}/${s.name}`, ok),
            (err: unknown) => void this.#noneSecrets.set(`${s.namespace}/${s.name}`, errorMessage(err)),
          ),
        );
      }
    }
    let next = 0;
    const loader = async (): Promise<void> => {
      for (let rt = fresh[next++]; rt !== undefined; rt = fresh[next++]) await this.#load(rt);
    };
    for (let i = 0; i < Math.min(LOAD_CONCURRENCY, fresh.length); i++) loads.push(loader());
    await Promise.all(loads);
    this.#notify();
    this.#kick();
  }

  async #load(rt: GroupRuntime): Promise<void> {
    const { certs, clock, logger } = this.#deps;
    const g = rt.group;
    try {
      const stored = await certs.read(g.secret);
      if (stored && keyMatchesChain(stored.chainPem, stored.keyPem)) {
        const info = readCertificate(stored.chainPem);
        this.#setCert(rt, { ...info, temporary: stored.meta.temporary === true });
        if (!stored.meta.temporary) {
          rt.chainPem = stored.chainPem;
          if (stored.meta.authority !== undefined) rt.authority = stored.meta.authority;
        }
        if (!stored.meta.temporary && this.#covers(rt) && info.notAfter > clock.now()) {
          rt.state = 'Ready';
          rt.phaseCompleted = 'NA';
          rt.phasePending = 'NA';
          if (this.#opts.ari) await this.#refreshWindow(rt);
        }
      } else {
        // Envoy's listener (and Emissary's Host) needs a pair before the first issue.
        const tmp = createSelfSigned(g.names, clock.now(), this.#opts.temporaryValidityMs);
        await certs.write(g.secret, {
          ...tmp,
          meta: { temporary: true, names: g.names, issuedAt: iso(clock.now()) },
        });
        this.#setCert(rt, { ...readCertificate(tmp.chainPem), temporary: true });
        logger.info({ tlsSecret: g.key, names: g.names }, 'temporary self-signed certificate written');
      }
    } catch (err) {
      logger.error(
        { tlsSecret: g.key, err: errorMessage(err) },
        'cannot read or write the stored certificate',
      );
      rt.state = 'Error';
      rt.error = {
        reason: `certificate store: ${errorMessage(err)}`,
        at: clock.now(),
        backoffMs: this.#opts.backoff.initialMs,
        code: 'ERR_STORE',
      };
      rt.failures += 1;
      rt.nextAttemptAt = clock.now() + this.#opts.backoff.initialMs;
    }
    // A restart keeps the backoff (a crash loop must not turn into an order loop at the CA).
    const failure = await certs.readFailure?.(g.secret).catch(() => undefined);
    if (failure && failure.names.join(',') === g.names.join(',') && rt.state !== 'Ready') {
      this.#adoptFailure(rt, failure);
      rt.phasePending = 'ACMECertificateChallenge';
    }
    rt.loaded = true;
  }

  /** Takes a stored failure record (ours before a restart, or another instance's) as the group's Error and backoff. */
  #adoptFailure(rt: GroupRuntime, failure: FailureRecord): void {
    rt.failures = failure.failures;
    rt.error = {
      reason: failure.reason,
      at: failure.at,
      backoffMs: failure.backoffMs,
      code: failure.code as AcmeErrorCode,
    };
    rt.nextAttemptAt = failure.at + failure.backoffMs;
    rt.state = 'Error';
  }

  #setCert(rt: GroupRuntime, cert: CertificateInfo & { temporary: boolean }): void {
    if (rt.cert?.serial !== cert.serial) rt.jitter = this.#deps.random();
    rt.cert = cert;
    if (cert.temporary) delete rt.renewAt;
    else {
      const before = rt.group.renewBeforeMs;
      // renewBefore replaces the lifetime fraction (as cert-manager's; no jitter), unless it is not
      // shorter than the lifetime; an earlier ARI window still wins (the window's pick alone: the
      // lifetime fraction must not come back through it).
      rt.renewAt =
        before !== undefined && before < cert.notAfter - cert.notBefore
          ? Math.min(
              cert.notAfter - before,
              rt.window ? renewalTime(cert, WINDOW_ONLY, rt.jitter, rt.window) : Number.POSITIVE_INFINITY,
            )
          : renewalTime(cert, this.#opts.renewal, rt.jitter, rt.window);
    }
  }

  /**
   * Asks the CA for the current renewal window of the stored certificate and plans the next
   * request per its Retry-After (bounded, jittered): a window the CA moves later (an incident, a
   * mass revocation) moves the planned renewal without a restart.
   */
  async #refreshWindow(rt: GroupRuntime): Promise<void> {
    const { clock, logger, random } = this.#deps;
    const chainPem = rt.chainPem;
    if (chainPem === undefined) return;
    const serial = rt.cert?.serial;
    try {
      const info = await this.#deps.ca.renewalInfo(rt.group.provider.authority, chainPem);
      // A renewal that finished meanwhile owns the plan now.
      if (rt.chainPem !== chainPem) return;
      rt.ariFailures = 0;
      rt.ariCheckAt =
        clock.now() + ariPollDelay(this.#opts.ariPoll ?? DEFAULT_ARI_POLL, random(), info?.retryAfterMs);
      if (info) {
        const moved = rt.window?.start !== info.start || rt.window.end !== info.end;
        const before = rt.renewAt;
        rt.window = { start: info.start, end: info.end };
        // #setCert plans with the window (and the Host's renew-before); the serial is the same.
        if (rt.cert && !rt.cert.temporary) this.#setCert(rt, rt.cert);
        if (moved && rt.renewAt !== before)
          logger.info(
            {
              tlsSecret: rt.group.key,
              serial,
              window: { start: iso(info.start), end: iso(info.end) },
              renewAt: rt.renewAt !== undefined ? iso(rt.renewAt) : undefined,
            },
            'ARI renewal window: planned renewal moved',
          );
      } else {
        delete rt.window;
        if (rt.cert && !rt.cert.temporary) this.#setCert(rt, rt.cert);
      }
    } catch (err) {
      // ARI failures are never fatal: the lifetime policy (or the last window) still applies.
      if (rt.chainPem !== chainPem) return;
      rt.ariFailures += 1;
      rt.ariCheckAt =
        clock.now() +
        ariPollDelay(
          this.#opts.ariPoll ?? DEFAULT_ARI_POLL,
          random(),
          err instanceof AcmeError ? err.retryAfterMs : undefined,
          rt.ariFailures,
        );
      logger.warn({ tlsSecret: rt.group.key, err: errorMessage(err) }, 'ARI renewalInfo failed');
    }
  }

  /** When the group's next renewalInfo request is due (epoch ms), undefined when none is planned. */
  #ariDueAt(rt: GroupRuntime): number | undefined {
    if (!this.#opts.ari || !rt.loaded || rt.inFlight || rt.ariPolling) return undefined;
    if (rt.chainPem === undefined || !rt.cert || rt.cert.temporary) return undefined;
    return rt.ariCheckAt;
  }

  #poll(rt: GroupRuntime): void {
    rt.ariPolling = true;
    const p = this.#refreshWindow(rt).finally(() => {
      rt.ariPolling = false;
      this.#inflight.delete(p);
      this.#notify();
      this.#kick();
    });
    this.#inflight.add(p);
  }

  /**
   * True when the certificate names exactly the wanted set: a name added needs a new certificate,
   * and so does a name removed (a Host taken out of a shared tlsSecret must stop being served).
   */
  #covers(rt: GroupRuntime): boolean {
    const have = new Set(rt.cert?.names ?? []);
    return have.size === new Set(rt.group.names).size && rt.group.names.every((n) => have.has(n));
  }

  /** When the group should next be worked on (epoch ms), undefined when nothing is due. */
  #dueAt(rt: GroupRuntime): number | undefined {
    if (!rt.loaded || rt.inFlight) return undefined;
    const now = this.#deps.clock.now();
    const c = rt.cert;
    const needsIssue = !c || c.temporary || !this.#covers(rt) || c.notAfter <= now;
    const base = needsIssue ? now : (rt.renewAt ?? now);
    return Math.max(base, rt.nextAttemptAt ?? 0);
  }

  #kick(): void {
    if (this.#closed) return;
    const now = this.#deps.clock.now();
    const due = [...this.#groups.values()]
      .map((rt) => ({ rt, at: this.#dueAt(rt) }))
      .filter((x): x is { rt: GroupRuntime; at: number } => x.at !== undefined)
      .sort((a, b) => a.at - b.at);
    for (const { rt, at } of due) {
      if (at > now || this.#running >= this.#opts.maxConcurrent) break;
      this.#start(rt);
    }
    // renewalInfo requests are single GETs: not bounded by the order concurrency.
    let nextAri: number | undefined;
    for (const rt of this.#groups.values()) {
      const at = this.#ariDueAt(rt);
      if (at === undefined) continue;
      if (at <= now) this.#poll(rt);
      else nextAri = Math.min(nextAri ?? at, at);
    }
    this.#timer?.cancel();
    this.#timer = undefined;
    const next = due.find((x) => !x.rt.inFlight);
    let wakeAt: number | undefined;
    if (next && (next.at > now ? true : this.#running < this.#opts.maxConcurrent)) wakeAt = next.at;
    if (nextAri !== undefined) wakeAt = Math.min(wakeAt ?? nextAri, nextAri);
    if (wakeAt !== undefined) {
      const wait = Math.min(Math.max(0, wakeAt - now), this.#opts.maxSleepMs);
      this.#timer = this.#deps.clock.setTimeout(() => this.#kick(), wait);
    }
  }

  #start(rt: GroupRuntime): void {
    rt.inFlight = true;
    this.#running += 1;
    const p = this.#traced(rt).finally(() => {
      rt.inFlight = false;
      this.#running -= 1;
      this.#inflight.delete(p);
      this.#notify();
      this.#kick();
    });
    this.#inflight.add(p);
  }

  #phase(rt: GroupRuntime, completed: HostPhase, pending: HostPhase): void {
    rt.phaseCompleted = completed;
    rt.phasePending = pending;
    this.#notify();
  }

  /** #issue in an `acme order` span when tracing is on (the Hosts, names, order URL and outcome; no key). */
  async #traced(rt: GroupRuntime): Promise<void> {
    const tracing = this.#deps.tracing;
    if (!tracing) return this.#issue(rt);
    const g = rt.group;
    const span = tracing.startChild('acme order', SpanKinds.internal, {
      'acme.tls_secret': g.key,
      'acme.hosts': [...g.hostKeys],
      'acme.names': [...g.names],
      'acme.authority': g.provider.authority,
    });
    try {
      await tracing.run(span, () => this.#issue(rt, span));
    } finally {
      span.setAttributes({ 'acme.state': rt.state });
      if (rt.state === 'Error' && rt.error) span.fail(rt.error.code);
      span.end();
    }
  }

  async #issue(rt: GroupRuntime, span?: TraceSpan): Promise<void> {
    const { clock, accounts, ca, certs, logger } = this.#deps;
    const g = rt.group;
    const started = clock.now();
    // Every line of an order names its Hosts (namespace/name, or the file's host) and, once the CA
    // created it, the order URL.
    let log = logger.child({ tlsSecret: g.key, hosts: g.hostKeys });
    const wasReady = rt.state === 'Ready';
    rt.state = 'Pending';
    this.#phase(rt, 'DefaultsFilled', 'ACMEUserPrivateKeyCreated');
    log.info({ names: g.names, reason: this.#reason(rt) }, 'ordering certificate');
    let unlock: (() => Promise<void>) | undefined;
    // Released as soon as the outcome is stored, before the state changes (statuses() hides the
    // next renewal of a group still in flight).
    const release = async (): Promise<void> => {
      const u = unlock;
      unlock = undefined;
      await u?.().catch((err: unknown) =>
        log.warn({ err: errorMessage(err) }, 'cannot release the issuing lock (it expires by itself)'),
      );
    };
    try {
      // Never spend a CA order that cannot be stored (Let's Encrypt: 5 duplicates a week, 300 new
      // orders per 3 h): prove the write first; until it succeeds, each retry only probes again.
      await certs.probeWrite?.(g.secret).catch((err: unknown) => {
        throw new AcmeError(
          'ERR_STORE_UNWRITABLE',
          `certificate store: ${errorMessage(err)}; no certificate is ordered until it can be stored`,
          { cause: err },
        );
      });
      if (certs.lock) {
        // Instances sharing the store (one certificate directory) order each certificate once: the
        // lock holder orders, the others pick up what it stores.
        const lock = await certs.lock(g.secret, this.#opts.lockTtlMs ?? 15 * 60_000).catch((err: unknown) => {
          throw new AcmeError('ERR_STORE', `certificate store lock: ${errorMessage(err)}`, { cause: err });
        });
        if (lock.kind === 'busy') {
          if (await this.#adoptStored(rt, log, release)) return;
          rt.nextAttemptAt = clock.now() + (this.#opts.lockRecheckMs ?? 2000);
          if (wasReady) {
            rt.state = 'Ready';
            this.#phase(rt, 'NA', 'NA');
          }
          log.info({ holder: lock.holder }, 'another instance is ordering this certificate: waiting for it');
          return;
        }
        unlock = () => lock.release();
        if (await this.#adoptStored(rt, log, release)) return;
      }
      const id = accountId(g.provider);
      const directoryUrl = g.provider.authority;
      const email = g.provider.email;
      // Groups sharing an account run concurrently: key creation and registration are serialized per
      // account, or two orders would each create a key and store one key with the other's URL.
      const ensured = await this.#withAccountLock(id, async () => {
        let acct = await accounts.load(id).catch((err: unknown) => {
          throw new AcmeError('ERR_STORE', `account store: ${errorMessage(err)}`, { cause: err });
        });
        if (!acct) {
          acct = { keyPem: generatePrivateKey('ecdsa-p256') };
          await accounts.save(id, acct);
          log.info({ account: id }, 'ACME account key created');
        }
        this.#phase(rt, 'ACMEUserPrivateKeyCreated', 'ACMEUserRegistered');
        const keyId = accountKeyId(acct.keyPem);
        // A URL stored for another key or another CA is not used (it would fail signature checks).
        const usable =
          acct.accountUrl !== undefined &&
          acct.directoryUrl === directoryUrl &&
          (acct.keyId === undefined || acct.keyId === keyId);
        if (usable && acct.accountUrl !== undefined) return { keyPem: acct.keyPem, url: acct.accountUrl };
        const url = await this.#register(id, acct.keyPem, directoryUrl, email, log);
        return { keyPem: acct.keyPem, url };
      });
      const accountKeyPem = ensured.keyPem;
      const register = (): Promise<string> =>
        this.#withAccountLock(id, () => this.#register(id, accountKeyPem, directoryUrl, email, log));
      let accountUrl = ensured.url;
      this.#phase(rt, 'ACMEUserRegistered', 'ACMECertificateChallenge');
      const keyPem = generatePrivateKey(this.#opts.keyType);
      const hooks = this.#hooks(log, (orderUrl) => {
        log = log.child({ orderUrl });
        span?.setAttributes({ 'acme.order_url': orderUrl });
      });
      const profile = this.#profile(rt);
      // An ARI replacement (RFC 9773 §5) of the certificate this CA issued for the group: Let's
      // Encrypt exempts it from rate limits, and a CA can see which certificate is superseded.
      const replaces =
        this.#opts.ari &&
        rt.chainPem !== undefined &&
        rt.authority !== undefined &&
        normalizeAuthority(rt.authority) === normalizeAuthority(directoryUrl)
          ? rt.chainPem
          : undefined;
      const order = (url: string): Promise<string> =>
        ca.order({
          account: { directoryUrl, keyPem: accountKeyPem, accountUrl: url, ...(email ? { email } : {}) },
          names: g.names,
          keyPem,
          hooks,
          ...(replaces !== undefined ? { replaces } : {}),
          ...(profile !== undefined ? { profile } : {}),
        });
      let chainPem: string;
      try {
        chainPem = await order(accountUrl);
      } catch (err) {
        // The CA lost the account (reset, or the URL belongs to another CA): register once more.
        if (!(err instanceof AcmeError) || err.code !== 'ERR_ACME_ACCOUNT') throw err;
        log.warn({ account: id }, 'account unknown to the CA: registering again');
        // The account is the step that fails now (README: ERR_ACME_ACCOUNT is pending ACMEUserRegistered).
        this.#phase(rt, 'ACMEUserPrivateKeyCreated', 'ACMEUserRegistered');
        accountUrl = await register();
        this.#phase(rt, 'ACMEUserRegistered', 'ACMECertificateChallenge');
        chainPem = await order(accountUrl).catch((again: unknown) => {
          if (again instanceof AcmeError && again.code === 'ERR_ACME_ACCOUNT')
            this.#phase(rt, 'ACMEUserPrivateKeyCreated', 'ACMEUserRegistered');
          throw again;
        });
      }
      const problem = checkIssuedChain(chainPem, keyPem, g.names, clock.now());
      if (problem !== undefined) throw new AcmeError('ERR_CERT_INVALID', problem);
      const info = readCertificate(chainPem);
      await certs
        .write(g.secret, {
          chainPem,
          keyPem,
          meta: { temporary: false, names: g.names, authority: directoryUrl, issuedAt: iso(clock.now()) },
        })
        .catch((err: unknown) => {
          throw new AcmeError('ERR_STORE', `certificate store: ${errorMessage(err)}`, { cause: err });
        });
      await release();
      delete rt.window;
      delete rt.ariCheckAt;
      rt.chainPem = chainPem;
      rt.authority = directoryUrl;
      this.#setCert(rt, { ...info, temporary: false });
      if (this.#opts.ari) await this.#refreshWindow(rt);
      const hadFailures = rt.failures > 0;
      rt.failures = 0;
      delete rt.error;
      delete rt.nextAttemptAt;
      if (hadFailures) await certs.writeFailure?.(g.secret, undefined).catch(() => undefined);
      rt.state = 'Ready';
      this.#phase(rt, 'NA', 'NA');
      this.#deps.onOrder?.('issued', clock.now() - started);
      log.info(
        {
          names: info.names,
          notAfter: iso(info.notAfter),
          ...(profile !== undefined ? { profile } : {}),
          replacement: replaces !== undefined,
          renewAt: rt.renewAt ? iso(rt.renewAt) : undefined,
        },
        'certificate issued and stored',
      );
    } catch (raw) {
      const err = toAcmeError(raw);
      rt.failures += 1;
      const backoffMs = backoffDelay(
        rt.failures,
        retryPolicy(err.code, this.#opts.backoff),
        err.retryAfterMs,
      );
      const now = clock.now();
      rt.error = { reason: err.message, at: now, backoffMs, code: err.code };
      rt.nextAttemptAt = now + backoffMs;
      // The stored certificate is untouched; a still-valid one keeps serving.
      rt.state = 'Error';
      await certs
        .writeFailure?.(g.secret, {
          names: g.names,
          failures: rt.failures,
          at: now,
          backoffMs,
          reason: err.message,
          code: err.code,
        })
        .catch(() => undefined);
      // A refused store probe placed no order: not counted as one.
      if (err.code !== 'ERR_STORE_UNWRITABLE')
        this.#deps.onOrder?.(err.code === 'ERR_ACME_RATE_LIMITED' ? 'rate_limited' : 'failed', now - started);
      log.warn(
        {
          code: err.code,
          reason: err.message,
          failures: rt.failures,
          backoff: formatDuration(backoffMs),
          wasReady,
        },
        'certificate order failed',
      );
    } finally {
      await release();
    }
  }

  /**
   * Takes over what another instance sharing the store did: a newer valid certificate for exactly
   * these names (Ready, no order), or a newer failure whose backoff still runs (no second order at
   * a failing CA). True when there is nothing to order now.
   */
  async #adoptStored(rt: GroupRuntime, log: Logger, release: () => Promise<void>): Promise<boolean> {
    const { certs, clock } = this.#deps;
    const g = rt.group;
    const now = clock.now();
    const stored = await certs.read(g.secret).catch(() => undefined);
    if (stored && !stored.meta.temporary && keyMatchesChain(stored.chainPem, stored.keyPem)) {
      const info = readCertificate(stored.chainPem);
      if (info.serial !== rt.cert?.serial && info.notAfter > now) {
        delete rt.window;
        delete rt.ariCheckAt;
        this.#setCert(rt, { ...info, temporary: false });
        if (this.#covers(rt) && (rt.renewAt ?? 0) > now) {
          rt.chainPem = stored.chainPem;
          if (stored.meta.authority !== undefined) rt.authority = stored.meta.authority;
          await release();
          if (this.#opts.ari) await this.#refreshWindow(rt);
          rt.failures = 0;
          delete rt.error;
          delete rt.nextAttemptAt;
          rt.state = 'Ready';
          this.#phase(rt, 'NA', 'NA');
          log.info({ serial: info.serial }, 'certificate stored by another instance: using it');
          return true;
        }
      }
    }
    const failure = await certs.readFailure?.(g.secret).catch(() => undefined);
    if (
      failure &&
      failure.names.join(',') === g.names.join(',') &&
      failure.at > (rt.error?.at ?? Number.NEGATIVE_INFINITY) &&
      failure.at + failure.backoffMs > now
    ) {
      await release();
      this.#adoptFailure(rt, failure);
      this.#phase(rt, rt.phaseCompleted, 'ACMECertificateChallenge');
      return true;
    }
    return false;
  }

  async #register(
    id: string,
    keyPem: string,
    directoryUrl: string,
    email: string | undefined,
    log: Logger,
  ): Promise<string> {
    const url = await this.#deps.ca.account({ directoryUrl, keyPem, ...(email ? { email } : {}) });
    await this.#deps.accounts.save(id, {
      keyPem,
      accountUrl: url,
      directoryUrl,
      keyId: accountKeyId(keyPem),
    });
    log.info({ account: id, accountUrl: url }, 'ACME account registered');
    return url;
  }

  async #withAccountLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#accountLocks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#accountLocks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.#accountLocks.get(id) === tail) this.#accountLocks.delete(id);
    }
  }

  /** The group's certificate profile: its Hosts', else the operator's default. */
  #profile(rt: GroupRuntime): string | undefined {
    return rt.group.provider.profile ?? this.#opts.defaultProfile;
  }

  #reason(rt: GroupRuntime): string {
    const c = rt.cert;
    if (!c) return 'no certificate';
    if (c.temporary) return 'temporary certificate';
    if (!this.#covers(rt)) return 'names changed';
    if (c.notAfter <= this.#deps.clock.now()) return 'expired';
    return 'renewal time reached';
  }

  #hooks(orderLog: Logger, ordered: (orderUrl: string) => void): ChallengeHooks {
    const { challenges, clock, selfCheck, tracing } = this.#deps;
    // One `acme challenge` span per HTTP-01 challenge, from publication to removal (never the token).
    const spans = new Map<string, TraceSpan>();
    let log = orderLog;
    return {
      ordered: (url) => {
        ordered(url);
        log = log.child({ orderUrl: url });
      },
      present: (c) => {
        if (tracing)
          spans.set(
            c.token,
            tracing.startChild('acme challenge', SpanKinds.internal, { 'acme.identifier': c.name }),
          );
        log.debug({ identifier: c.name }, 'HTTP-01 challenge published');
        return challenges.put({
          token: c.token,
          keyAuthorization: c.keyAuthorization,
          name: c.name,
          expiresAt: clock.now() + this.#opts.challengeTtlMs,
        });
      },
      ...(selfCheck
        ? {
            selfCheck: (c: ChallengeToSolve) =>
              selfCheck(c).catch((err: unknown) => {
                spans.get(c.token)?.fail('ERR_SELF_CHECK');
                throw err;
              }),
          }
        : {}),
      remove: (c) => {
        spans.get(c.token)?.end();
        spans.delete(c.token);
        log.debug({ identifier: c.name }, 'HTTP-01 challenge removed');
        return challenges.remove(c.token);
      },
    };
  }

  #notify(): void {
    for (const l of this.#listeners) l();
  }

  /** Status of every Host, Emissary's vocabulary plus notAfter and next renewal. */
  statuses(): HostStatus[] {
    const out: HostStatus[] = [];
    const byHost = new Map<string, GroupRuntime>();
    for (const rt of this.#groups.values()) for (const k of rt.group.hostKeys) byHost.set(k, rt);
    for (const h of this.#hosts) {
      const tlsSecret =
        'tlsSecret' in h && h.tlsSecret ? `${h.tlsSecret.namespace}/${h.tlsSecret.name}` : undefined;
      const base = {
        key: h.key,
        ...(h.hostname !== undefined && h.hostname !== '' ? { hostname: h.hostname } : {}),
        ...(tlsSecret ? { tlsSecret } : {}),
      };
      switch (h.kind) {
        case 'invalid':
          out.push({
            ...base,
            state: 'Error',
            phaseCompleted: 'NA',
            phasePending: 'DefaultsFilled',
            tlsCertificateSource: 'Unknown',
            errorReason: h.reason,
          });
          break;
        case 'none': {
          const present = tlsSecret === undefined ? undefined : this.#noneSecrets.get(tlsSecret);
          const problem =
            present === false
              ? `tlsSecret ${tlsSecret} does not exist`
              : typeof present === 'string'
                ? `tlsSecret ${tlsSecret} cannot be read: ${present}`
                : undefined;
          out.push({
            ...base,
            state: problem !== undefined ? 'Error' : 'Ready',
            phaseCompleted: 'NA',
            phasePending: 'NA',
            tlsCertificateSource: tlsSecret ? 'Other' : 'None',
            ...(problem !== undefined ? { errorReason: problem } : {}),
          });
          break;
        }
        case 'acme': {
          const rt = byHost.get(h.key);
          if (!rt) break;
          const next = this.#dueAt(rt);
          const profile = this.#profile(rt);
          const ariAt = this.#opts.ari && rt.cert && !rt.cert.temporary ? rt.ariCheckAt : undefined;
          out.push({
            ...base,
            state: rt.state,
            phaseCompleted: rt.phaseCompleted,
            phasePending: rt.phasePending,
            tlsCertificateSource: 'ACME',
            ...(rt.state === 'Error' && rt.error
              ? {
                  errorReason: rt.error.reason,
                  errorCode: rt.error.code,
                  errorTimestamp: iso(rt.error.at),
                  errorBackoff: formatDuration(rt.error.backoffMs),
                }
              : {}),
            ...(rt.cert && !rt.cert.temporary ? { notAfter: iso(rt.cert.notAfter) } : {}),
            ...(next !== undefined ? { nextRenewal: iso(next) } : {}),
            names: rt.group.names,
            temporaryCertificate: rt.cert?.temporary ?? false,
            ...(profile !== undefined ? { profile } : {}),
            ...(rt.window ? { renewalWindow: { start: iso(rt.window.start), end: iso(rt.window.end) } } : {}),
            ...(ariAt !== undefined ? { nextRenewalInfoCheck: iso(ariAt) } : {}),
          });
          break;
        }
      }
    }
    return out;
  }

  /** Certificate facts per group (metrics). */
  certificates(): { secret: string; notAfter?: number; renewAt?: number; temporary: boolean }[] {
    return [...this.#groups.values()].map((rt) => ({
      secret: rt.group.key,
      ...(rt.cert ? { notAfter: rt.cert.notAfter } : {}),
      ...(rt.renewAt !== undefined ? { renewAt: rt.renewAt } : {}),
      temporary: rt.cert?.temporary ?? true,
    }));
  }

  /**
   * Certificate groups that have no stored pair yet (neither temporary nor real): readiness waits
   * for none, so Envoy (or Emissary) never starts on a listener whose certificate is missing.
   */
  unstored(): string[] {
    return [...this.#groups.values()].filter((rt) => !rt.loaded || !rt.cert).map((rt) => rt.group.key);
  }

  /** Number of orders running now. */
  get running(): number {
    return this.#running;
  }

  /** Resolves when no order is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }

  /**
   * Stops scheduling and waits up to `graceMs` for running orders (their results are stored). An
   * order cut short by exit is safe: the next start orders again, files are never half written.
   */
  async close(graceMs = 5000): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.idle(),
      new Promise<void>((r) => {
        timer = setTimeout(r, graceMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
}
