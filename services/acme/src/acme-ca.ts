import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { X509Certificate } from 'node:crypto';
import { Agent } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import { Client, axios as acmeAxios, crypto as acmeCrypto } from 'acme-client';
import type { Authorization, Order } from 'acme-client';
import type { AxiosResponse, InternalAxiosRequestConfig } from 'axios';
import { errorMessage } from '@extsvc/common/errors';
import type { AccountParams, CaClient, ChallengeHooks } from './ca.ts';
import { splitPemChain } from './certs.ts';
import { AcmeError } from './errors.ts';
import type { RenewalInfo } from './renewal.ts';

/** Options of the acme-client adapter. */
export interface AcmeCaOptions {
  /** Extra PEM roots trusted for the ACME directory (besides the system ones and NODE_EXTRA_CA_CERTS). */
  readonly caPem?: string;
  /** Timeout of one HTTP request to the CA, ms. */
  readonly requestTimeoutMs: number;
  /** External account binding for CAs that require it. */
  readonly eab?: { readonly kid: string; readonly hmacKey: string };
  /** Retries of one step when the CA is unreachable or answers 5xx. */
  readonly retries: number;
  /** First delay between those retries, ms (doubles). */
  readonly retryDelayMs: number;
  /** Polling of pending challenges/orders: first delay, cap (ms) and attempts. */
  readonly poll: { readonly minMs: number; readonly maxMs: number; readonly attempts: number };
  /** Called for every HTTP exchange with the CA (metrics). */
  readonly onRequest?: (op: string, status: string, seconds: number) => void;
}

interface Exchange {
  method: string;
  url: string;
  start: number;
  status?: number;
  problemType?: string;
  retryAfterMs?: number;
  network?: string;
  /** The network error's own message (never key material: it names hosts, ports and TLS checks). */
  networkDetail?: string;
}
interface StepContext {
  step: string;
  last?: Exchange;
  /** The CA answered 404 to a request of this step. */
  notFound?: boolean;
}

/**
 * Steps that read or act on a URL the CA has just created (the order's authorizations, their
 * challenges, the finalize and certificate URLs). A CA behind replicas can answer 404 for a moment
 * (Let's Encrypt, cert-manager#8939): retried LAG_DELAYS_MS.length times, ~3.5 s in all, far within
 * an order's lifetime (days at Let's Encrypt), before the attempt fails.
 */
const LAG_STEPS = new Set(['authorizations', 'challenge', 'challenge-poll', 'finalize', 'certificate']);
const LAG_DELAYS_MS = [250, 1000, 2250];

/** Parses Retry-After (seconds or HTTP date) into ms from `now`. */
export function parseRetryAfter(value: unknown, now: number): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const PROBLEM = 'urn:ietf:params:acme:error:';

/** What the client reads from an ACME directory. */
interface Directory {
  /** When it was read, epoch ms. */
  readonly at: number;
  /** ARI base URL (RFC 9773), absent when the CA has no ARI. */
  readonly renewalInfo?: string;
  /** Profile names of `meta.profiles` (draft-ietf-acme-profiles), empty when none. */
  readonly profiles: readonly string[];
}

/** Reads the renewalInfo URL and the advertised profiles of a directory object. */
export function readDirectory(data: unknown, at: number): Directory {
  const d = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
  const url = d['renewalInfo'];
  const meta = d['meta'];
  const profiles =
    typeof meta === 'object' && meta !== null ? (meta as Record<string, unknown>)['profiles'] : undefined;
  return {
    at,
    ...(typeof url === 'string' ? { renewalInfo: url } : {}),
    profiles:
      typeof profiles === 'object' && profiles !== null && !Array.isArray(profiles)
        ? Object.keys(profiles).sort()
        : [],
  };
}

/** True when the CA answered a `replaces` order with a problem (not a rate limit, not a lost account). */
function replacementRefused(err: unknown): boolean {
  return (
    err instanceof AcmeError &&
    err.problemType !== undefined &&
    err.code !== 'ERR_ACME_RATE_LIMITED' &&
    err.code !== 'ERR_ACME_ACCOUNT'
  );
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'ENODATA']);
const TIMEOUT_CODES = new Set(['ECONNABORTED', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** True for Node's TLS verification codes (OpenSSL X509_V_ERR_* names and Node's own). */
function isTlsVerifyCode(code: string): boolean {
  return (
    (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|INVALID_CA|PATH_LENGTH|HOSTNAME_MISMATCH/.test(
      code,
    ) &&
      !code.startsWith('E')) ||
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
  );
}

/** A failed connection to the CA, by cause: each has its own code, reason and retry policy. */
function networkError(code: string, detail: string | undefined, where: string, cause: unknown): AcmeError {
  // Node appends advice about --use-system-ca to some verification messages; --ca-file is ours.
  detail = detail?.replace(/; if the root CA is installed locally.*$/, '');
  const why =
    detail !== undefined && detail !== '' && !detail.includes(code)
      ? `${detail} (${code})`
      : (detail ?? code);
  if (isTlsVerifyCode(code))
    return new AcmeError(
      'ERR_ACME_TLS',
      `the CA's TLS certificate failed verification (${where}): ${why}; trust its root with --ca-file`,
      { cause },
    );
  if (DNS_CODES.has(code))
    return new AcmeError(
      'ERR_ACME_DNS',
      `ACME server unreachable: its host name did not resolve (${where}): ${why}`,
      { cause },
    );
  if (code === 'ECONNREFUSED')
    return new AcmeError(
      'ERR_ACME_REFUSED',
      `ACME server unreachable: connection refused (${where}): ${why}`,
      { cause },
    );
  if (TIMEOUT_CODES.has(code))
    return new AcmeError(
      'ERR_ACME_TIMEOUT',
      `ACME server unreachable: no answer within the timeout (${where}): ${why}`,
      { cause },
    );
  return new AcmeError('ERR_ACME_UNREACHABLE', `ACME server unreachable (${where}): ${why}`, { cause });
}

/** Codes retried within a step (`--acme-retries`): the ones that a second try can fix. */
function retriedInStep(e: AcmeError): boolean {
  if (e.code === 'ERR_ACME_UNREACHABLE' || e.code === 'ERR_ACME_REFUSED' || e.code === 'ERR_ACME_TIMEOUT')
    return true;
  // EAI_AGAIN is a resolver hiccup; ENOTFOUND is an answer.
  return e.code === 'ERR_ACME_DNS' && e.message.includes('EAI_AGAIN');
}

function classify(err: unknown, ctx: StepContext): AcmeError {
  if (err instanceof AcmeError) return err;
  const last = ctx.last;
  const where = last ? `${last.method.toUpperCase()} ${last.url}` : ctx.step;
  const msg = errorMessage(err);
  if (last?.network !== undefined) return networkError(last.network, last.networkDetail, where, err);
  const extra = {
    ...(last?.problemType !== undefined ? { problemType: last.problemType } : {}),
    ...(last?.retryAfterMs !== undefined ? { retryAfterMs: last.retryAfterMs } : {}),
    cause: err,
  };
  if (last?.status === 429 || last?.problemType === `${PROBLEM}rateLimited`) {
    const after =
      last.retryAfterMs !== undefined ? `; retry after ${Math.ceil(last.retryAfterMs / 1000)}s` : '';
    return new AcmeError(
      'ERR_ACME_RATE_LIMITED',
      `rate limited by the CA (${ctx.step}): ${msg}${after}`,
      extra,
    );
  }
  if (last?.status !== undefined && last.status >= 500)
    return new AcmeError(
      'ERR_ACME_UNREACHABLE',
      `ACME server error ${last.status} (${where}): ${msg}`,
      extra,
    );
  if (last?.problemType === `${PROBLEM}accountDoesNotExist`)
    return new AcmeError('ERR_ACME_ACCOUNT', `account unknown to the CA: ${msg}`, extra);
  return new AcmeError('ERR_ACME_ORDER', `${ctx.step}: ${msg}`, extra);
}

function authorityKeyId(der: Buffer): Buffer | undefined {
  // extnID 2.5.29.35, [critical], extnValue OCTET STRING { SEQUENCE { [0] keyIdentifier } }
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);
  let i = der.indexOf(oid);
  if (i < 0) return undefined;
  i += oid.length;
  if (der[i] === 0x01) i += 3;
  if (der[i] !== 0x04) return undefined;
  i += 2;
  if (der[i] !== 0x30) return undefined;
  i += 2;
  if (der[i] !== 0x80) return undefined;
  const n = der[i + 1] ?? 0;
  return der.subarray(i + 2, i + 2 + n);
}

/** RFC 9773 CertID of a leaf: base64url(AKI keyIdentifier) "." base64url(serial DER content). */
export function ariCertId(chainPem: string): string | undefined {
  const first = splitPemChain(chainPem)[0];
  if (!first) return undefined;
  const leaf = new X509Certificate(first);
  const aki = authorityKeyId(leaf.raw);
  if (!aki) return undefined;
  let hex = leaf.serialNumber;
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let serial = Buffer.from(hex, 'hex');
  if ((serial[0] ?? 0) & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${aki.toString('base64url')}.${serial.toString('base64url')}`;
}

type Adapter = (config: InternalAxiosRequestConfig) => Promise<AxiosResponse>;
// acme-client's own axios (its dependency): its Node http adapter, which acme-ca wraps per request.
const acmeRequire = createRequire(createRequire(import.meta.url).resolve('acme-client'));
const httpAdapter = (acmeRequire('axios') as { getAdapter(name: string): Adapter }).getAdapter('http');

/** Notes the socket-level cause of a request that got no HTTP answer. */
function recordNetworkError(exchange: Exchange, err: unknown): void {
  // acme-client's validateStatus rejects every answer in the adapter: those carry a response.
  if (exchange.status !== undefined || (err as { response?: unknown }).response !== undefined) return;
  const code = (err as { code?: unknown }).code;
  // axios keeps the socket error in `cause` for some failures; a specific code wins.
  const causeCode = (err as { cause?: { code?: unknown } }).cause?.code;
  exchange.network =
    typeof code === 'string' && code !== 'ERR_BAD_RESPONSE' && code !== 'ERR_NETWORK'
      ? code
      : typeof causeCode === 'string'
        ? causeCode
        : typeof code === 'string'
          ? code
          : 'connection failed';
  const message = (err as { message?: unknown }).message;
  if (typeof message === 'string') exchange.networkDetail = message;
}

/**
 * The CaClient over acme-client's low-level API (not auto(): its challenge pre-check resolves names
 * through system DNS). acme-client's own HTTP retry loop is turned off: it sleeps through any
 * Retry-After on timers nobody can cancel. Transient failures are retried here per step; a 429 ends
 * the attempt with ERR_ACME_RATE_LIMITED so the issuer backs off at least Retry-After.
 */
export function createAcmeCa(opts: AcmeCaOptions): CaClient {
  const als = new AsyncLocalStorage<StepContext>();
  // One TLS context for every connection: passing `ca` per connection makes Node build a new
  // certificate store for each (about 7 MB of native memory per order at 50 orders in the bench).
  const secureContext = createSecureContext(
    opts.caPem !== undefined ? { ca: [...rootCertificates, opts.caPem] } : {},
  );
  const agent = new Agent({ keepAlive: true, secureContext });
  const defaults = acmeAxios.defaults as typeof acmeAxios.defaults & {
    acmeSettings: { retryMaxAttempts: number };
  };
  defaults.acmeSettings.retryMaxAttempts = 0;
  defaults.timeout = opts.requestTimeoutMs;
  defaults.httpsAgent = agent;
  const reqId = acmeAxios.interceptors.request.use((config) => {
    const ctx = als.getStore();
    if (ctx) {
      const exchange: Exchange = {
        method: config.method ?? 'get',
        url: config.url ?? '',
        start: performance.now(),
      };
      ctx.last = exchange;
      // acme-client's retry interceptor replaces a network error by a TypeError before ours runs:
      // the adapter is where the socket's own code (ECONNREFUSED, a TLS verification code...) is seen.
      config.adapter = (c) =>
        httpAdapter(c).catch((err: unknown) => {
          recordNetworkError(exchange, err);
          throw err;
        });
    }
    return config;
  });
  const observe = (status: string): void => {
    const ctx = als.getStore();
    if (ctx?.last) opts.onRequest?.(ctx.step, status, (performance.now() - ctx.last.start) / 1000);
  };
  const record = (resp: { status: number; data?: unknown; headers: Record<string, unknown> }): void => {
    const ctx = als.getStore();
    if (ctx?.last) {
      ctx.last.status = resp.status;
      if (resp.status === 404) ctx.notFound = true;
      const data: unknown = resp.data;
      if (typeof data === 'object' && data !== null && typeof (data as { type?: unknown }).type === 'string')
        ctx.last.problemType = (data as { type: string }).type;
      const ra = parseRetryAfter(resp.headers['retry-after'], Date.now());
      if (ra !== undefined) ctx.last.retryAfterMs = ra;
    }
    observe(String(resp.status));
  };
  const resId = acmeAxios.interceptors.response.use(
    (resp) => {
      record(resp);
      return resp;
    },
    (err: unknown) => {
      // Our own GETs (directory, renewalInfo) reject a non-2xx answer: keep its status, problem and
      // Retry-After (a 429 on renewalInfo is honoured like one on an order).
      const resp = (err as { response?: { status?: unknown; data?: unknown; headers?: unknown } }).response;
      if (
        resp &&
        typeof resp.status === 'number' &&
        typeof resp.headers === 'object' &&
        resp.headers !== null
      ) {
        record({ status: resp.status, data: resp.data, headers: resp.headers as Record<string, unknown> });
        throw err;
      }
      // acme-client turns a network error into a TypeError once its retries are off; the cause is
      // the request that has no status.
      const ctx = als.getStore();
      if (ctx?.last && ctx.last.status === undefined && ctx.last.network === undefined)
        recordNetworkError(ctx.last, err);
      observe('error');
      throw err;
    },
  );
  // What the issuer needs from each directory (renewalInfo URL, advertised profiles), refreshed daily:
  // one GET for all stored certificates.
  const directories = new Map<string, Directory>();
  const directory = async (url: string, fresh = false): Promise<Directory> => {
    const cached = directories.get(url);
    if (cached && !fresh && Date.now() - cached.at <= 86_400_000) return cached;
    const dir = await step('directory', () => acmeAxios.get<Record<string, unknown>>(url));
    const info = readDirectory(dir.data, Date.now());
    directories.set(url, info);
    return info;
  };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    let lagRetries = 0;
    for (let attempt = 0; ; attempt++) {
      const ctx: StepContext = { step: name };
      try {
        return await als.run(ctx, fn);
      } catch (err) {
        const e = classify(err, ctx);
        const lagDelay = LAG_DELAYS_MS[lagRetries];
        if (
          ctx.notFound === true &&
          e.code === 'ERR_ACME_ORDER' &&
          LAG_STEPS.has(name) &&
          lagDelay !== undefined
        ) {
          lagRetries += 1;
          attempt -= 1;
          await sleep(lagDelay);
          continue;
        }
        // A long Retry-After is not slept through here: the issuer's backoff honours it.
        if (retriedInStep(e) && attempt < opts.retries && (e.retryAfterMs ?? 0) <= 10_000) {
          await sleep(Math.max(opts.retryDelayMs * 2 ** attempt, e.retryAfterMs ?? 0));
          continue;
        }
        throw e;
      }
    }
  };

  const client = (a: AccountParams): Client =>
    new Client({
      directoryUrl: a.directoryUrl,
      accountKey: a.keyPem,
      ...(a.accountUrl !== undefined ? { accountUrl: a.accountUrl } : {}),
      ...(opts.eab ? { externalAccountBinding: { kid: opts.eab.kid, hmacKey: opts.eab.hmacKey } } : {}),
      backoffAttempts: opts.poll.attempts,
      backoffMin: opts.poll.minMs,
      backoffMax: opts.poll.maxMs,
    });

  const solve = async (c: Client, authz: Authorization, hooks: ChallengeHooks): Promise<void> => {
    if (authz.status === 'valid') return;
    const name = authz.identifier.value;
    const ch = authz.challenges.find((x) => x.type === 'http-01');
    if (!ch) throw new AcmeError('ERR_ACME_ORDER', `the CA offers no http-01 challenge for ${name}`);
    const keyAuthorization = await c.getChallengeKeyAuthorization(ch);
    const solved = { token: ch.token, keyAuthorization, name };
    await hooks.present(solved);
    let completed = false;
    try {
      if (hooks.selfCheck) await hooks.selfCheck(solved);
      await step('challenge', () => c.completeChallenge(ch));
      completed = true;
      await step('challenge-poll', () => c.waitForValidStatus(ch)).catch((err: unknown) => {
        const e = err instanceof AcmeError ? err : undefined;
        throw new AcmeError(
          e?.code ?? 'ERR_ACME_ORDER',
          `challenge for ${name} failed: ${errorMessage(err)}`,
          {
            ...(e?.problemType !== undefined ? { problemType: e.problemType } : {}),
            ...(e?.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
            cause: err,
          },
        );
      });
    } catch (err) {
      // Leaving the authorization pending would let it be reused half-solved; the CA counts it anyway.
      if (!completed) await step('deactivate', () => c.deactivateAuthorization(authz)).catch(() => undefined);
      throw err;
    } finally {
      await hooks.remove(solved);
    }
  };

  return {
    async account(a) {
      const c = client({ directoryUrl: a.directoryUrl, keyPem: a.keyPem });
      try {
        // Re-registering an existing key makes acme-client send an empty update, which Pebble
        // rejects: look the account up first.
        await step('account-lookup', () => c.createAccount({ onlyReturnExisting: true }));
        return c.getAccountUrl();
      } catch (err) {
        if (!(err instanceof AcmeError) || err.problemType !== `${PROBLEM}accountDoesNotExist`) throw err;
      }
      const c2 = client({ directoryUrl: a.directoryUrl, keyPem: a.keyPem });
      await step('account', () =>
        c2.createAccount({
          termsOfServiceAgreed: true,
          ...(a.email !== undefined ? { contact: [`mailto:${a.email}`] } : {}),
        }),
      );
      return c2.getAccountUrl();
    },

    async order(req) {
      const c = client(req.account);
      const needDirectory = req.profile !== undefined || req.replaces !== undefined;
      let dir = needDirectory ? await directory(req.account.directoryUrl) : undefined;
      if (req.profile !== undefined && !dir?.profiles.includes(req.profile)) {
        // A day-old directory may predate a new profile: look again before refusing.
        dir = await directory(req.account.directoryUrl, true);
        if (!dir.profiles.includes(req.profile))
          throw new AcmeError(
            'ERR_ACME_PROFILE',
            `certificate profile "${req.profile}" is not offered by ${req.account.directoryUrl} (${
              dir.profiles.length > 0
                ? `its directory advertises: ${dir.profiles.join(', ')}`
                : 'its directory advertises no profiles'
            })`,
          );
      }
      // RFC 9773 §5: `replaces` only to a CA that implements ARI.
      const replaces =
        req.replaces !== undefined && dir?.renewalInfo !== undefined ? ariCertId(req.replaces) : undefined;
      const payload = {
        identifiers: req.names.map((value) => ({ type: 'dns', value })),
        ...(req.profile !== undefined ? { profile: req.profile } : {}),
      };
      // acme-client 5.4 types newOrder without `profile` and `replaces`; it sends the payload as given.
      const create = (p: object): Promise<Order> =>
        step('new-order', () => c.createOrder(p as Parameters<Client['createOrder']>[0]));
      let order: Order;
      if (replaces === undefined) order = await create(payload);
      else {
        try {
          order = await create({ ...payload, replaces });
        } catch (err) {
          // The CA refused the replacement (alreadyReplaced after an earlier failed attempt, a
          // certificate it does not know): a plain order still renews, only without the exemption.
          if (!replacementRefused(err)) throw err;
          order = await create(payload);
        }
      }
      req.hooks.ordered?.(order.url);
      if (order.status === 'invalid')
        throw new AcmeError('ERR_ACME_ORDER', 'the CA created the order as invalid');
      const authzs = await step('authorizations', () => c.getAuthorizations(order));
      const results = await Promise.allSettled(authzs.map((a) => solve(c, a, req.hooks)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const [, csr] = await acmeCrypto.createCsr(
        { commonName: req.names[0] as string, altNames: [...req.names] },
        req.keyPem,
      );
      const finalized = await step('finalize', () => c.finalizeOrder(order, csr));
      return step('certificate', () => c.getCertificate(finalized));
    },

    async renewalInfo(directoryUrl, chainPem) {
      const certId = ariCertId(chainPem);
      if (!certId) return undefined;
      const base = (await directory(directoryUrl)).renewalInfo;
      if (base === undefined) return undefined;
      const resp = await step('renewal-info', () =>
        acmeAxios.get<{ suggestedWindow?: { start?: string; end?: string } }>(
          `${base.replace(/\/$/, '')}/${certId}`,
        ),
      );
      if (resp.status !== 200) return undefined;
      const start = Date.parse(resp.data.suggestedWindow?.start ?? '');
      const end = Date.parse(resp.data.suggestedWindow?.end ?? '');
      if (Number.isNaN(start) || Number.isNaN(end) || end < start) return undefined;
      const retryAfterMs = parseRetryAfter(resp.headers['retry-after'], Date.now());
      const info: RenewalInfo = { start, end, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
      return info;
    },

    async close() {
      acmeAxios.interceptors.request.eject(reqId);
      acmeAxios.interceptors.response.eject(resId);
      agent.destroy();
    },
  };
}
