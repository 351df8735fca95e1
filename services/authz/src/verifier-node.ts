import type { webcrypto } from 'node:crypto';
import { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { base64url, UnsecuredJWT, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { WorkerReply, WorkerRequest } from './verifier-worker.ts';

/** WebCrypto parameters jose binds to each algorithm the fast path handles (jose's lib/jws_algorithms). */
const FAST_ALGS: ReadonlyMap<
  string,
  { name: string; hash: string; namedCurve?: string; minRsaBits?: number }
> = new Map([
  ['ES256', { name: 'ECDSA', hash: 'SHA-256', namedCurve: 'P-256' }],
  ['ES384', { name: 'ECDSA', hash: 'SHA-384', namedCurve: 'P-384' }],
  ['ES512', { name: 'ECDSA', hash: 'SHA-512', namedCurve: 'P-521' }],
  ['RS256', { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', minRsaBits: 2048 }],
  ['RS384', { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384', minRsaBits: 2048 }],
  ['RS512', { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-512', minRsaBits: 2048 }],
  ['PS256', { name: 'RSA-PSS', hash: 'SHA-256', minRsaBits: 2048 }],
  ['PS384', { name: 'RSA-PSS', hash: 'SHA-384', minRsaBits: 2048 }],
  ['PS512', { name: 'RSA-PSS', hash: 'SHA-512', minRsaBits: 2048 }],
]);

/** Header members the fast path understands; any other member (crit, b64, jku, jwk...) goes to jose. */
const PLAIN_HEADER = new Set(['alg', 'kid', 'typ']);
/** After this many keys a worker's key table starts over (key rotation must not grow it forever). */
const MAX_WORKER_KEYS = 256;
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const NONE_HEADER = base64url.encode('{"alg":"none"}');
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

interface Pending {
  readonly resolve: (ok: boolean) => void;
  readonly reject: (err: Error) => void;
}

class Thread {
  readonly worker: Worker;
  keyIds = new WeakMap<KeyObject, number>();
  keyCount = 0;
  readonly batches = new Map<number, Pending[]>();
  ready = false;
  dead = false;
  constructor(url: URL) {
    this.worker = new Worker(url);
    this.worker.unref();
    this.worker.on('message', (m: WorkerReply) => {
      if (m.type === 'ready') {
        this.ready = true;
        return;
      }
      const waiters = this.batches.get(m.id);
      if (!waiters) return;
      this.batches.delete(m.id);
      for (let i = 0; i < waiters.length; i++) (waiters[i] as Pending).resolve(m.results[i] === 1);
    });
    const die = (err: Error): void => {
      if (this.dead) return;
      this.dead = true;
      for (const ws of this.batches.values()) for (const w of ws) w.reject(err);
      this.batches.clear();
    };
    this.worker.on('error', die);
    this.worker.on('exit', (code) => die(new Error(`signature worker exited with code ${code}`)));
  }
}

/** Rejection of a call made while no worker is ready (the caller verifies with jose instead). */
export class WorkersNotReady extends Error {
  readonly code = 'ERR_WORKERS_NOT_READY' as const;
  constructor() {
    super('no signature worker ready');
    this.name = 'WorkersNotReady';
  }
}

/**
 * Verifies JWS signatures with node:crypto in worker threads. Calls made in one turn of the event
 * loop travel as one message, so the main thread pays a few microseconds per token instead of a
 * crypto job dispatch. The workers start on the first call and are unref'd (they never hold the
 * process); until one has said it is ready, and after one died, calls reject (the caller falls back
 * to jose) and a replacement is started: a slow worker start never delays a check.
 */
export class SignatureWorkers {
  readonly #size: number;
  readonly #url: URL;
  readonly #maxKeys: number;
  #threads: Thread[] = [];
  #next = 0;
  #batchId = 0;
  #items: Array<readonly [alg: string, data: string, sig: Uint8Array]> = [];
  #waiters: Pending[] = [];
  #keys: KeyObject[] = [];
  #scheduled = false;
  #closed = false;

  /** `threads` workers (at least 1); `url` and `maxKeys` (keys a worker holds) for tests. */
  constructor(
    threads: number,
    url: URL = new URL('./verifier-worker.ts', import.meta.url),
    maxKeys = MAX_WORKER_KEYS,
  ) {
    this.#size = Math.max(1, threads);
    this.#url = url;
    this.#maxKeys = maxKeys;
  }

  /** True once a worker is ready (starting the workers if needed). */
  ready(): boolean {
    if (this.#closed) return false;
    let any = false;
    for (let i = 0; i < this.#size; i++) {
      let t = this.#threads[i];
      if (!t || t.dead) {
        t = new Thread(this.#url);
        this.#threads[i] = t;
      }
      any ||= t.ready;
    }
    return any;
  }

  /**
   * Resolves true when `sig` is a valid `alg` signature of `data` (an ASCII string: the JWS signing
   * input) under `key`; rejects if no worker can.
   */
  verify(alg: string, key: KeyObject, data: string, sig: Uint8Array): Promise<boolean> {
    if (this.#closed) return Promise.reject(new Error('signature workers closed'));
    if (!this.ready()) return Promise.reject(new WorkersNotReady());
    return new Promise<boolean>((resolve, reject) => {
      this.#items.push([alg, data, sig]);
      this.#keys.push(key);
      this.#waiters.push({ resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Stops the workers; pending calls reject. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const t of this.#threads) void t.worker.terminate();
    this.#threads = [];
  }

  /** The next ready worker, round robin. */
  #thread(): Thread | undefined {
    for (let n = 0; n < this.#size; n++) {
      const t = this.#threads[this.#next++ % this.#size];
      if (t && t.ready && !t.dead) return t;
    }
    return undefined;
  }

  #flush(): void {
    this.#scheduled = false;
    const items = this.#items;
    const waiters = this.#waiters;
    const keys = this.#keys;
    this.#items = [];
    this.#waiters = [];
    this.#keys = [];
    const t = this.#closed ? undefined : this.#thread();
    if (!t) {
      for (const w of waiters) w.reject(new WorkersNotReady());
      return;
    }
    const post = (m: WorkerRequest): void => t.worker.postMessage(m);
    // Key rotation must not grow the worker's key table forever: start it over between batches
    // (the worker handles messages in order, so batches already sent keep their keys).
    if (t.keyCount >= this.#maxKeys) {
      post({ type: 'reset' });
      t.keyIds = new WeakMap();
      t.keyCount = 0;
    }
    let total = 0;
    for (const [, data, sig] of items) total += data.length + sig.length;
    // One fresh buffer, transferred: a pooled Buffer would be cloned with its whole 8 KiB pool slab.
    const bytes = Buffer.allocUnsafeSlow(total);
    const layout = new Uint32Array(items.length * 5);
    const algs: string[] = [];
    let at = 0;
    for (let i = 0; i < items.length; i++) {
      const key = keys[i] as KeyObject;
      let id = t.keyIds.get(key);
      if (id === undefined) {
        id = ++t.keyCount;
        t.keyIds.set(key, id);
        post({ type: 'key', id, key });
      }
      const [alg, data, sig] = items[i] as (typeof items)[number];
      const o = i * 5;
      layout[o] = id;
      layout[o + 1] = at;
      layout[o + 2] = bytes.write(data, at, 'latin1');
      at += data.length;
      layout[o + 3] = at;
      layout[o + 4] = sig.length;
      bytes.set(sig, at);
      at += sig.length;
      algs.push(alg);
    }
    const batch = ++this.#batchId;
    t.batches.set(batch, waiters);
    const m: WorkerRequest = { type: 'batch', id: batch, bytes: bytes.buffer, layout, algs };
    t.worker.postMessage(m, [bytes.buffer, layout.buffer]);
  }
}

/** Outcome of the fast path: verified claims, a bad signature, or "let jose decide". */
export type FastResult =
  | { readonly kind: 'ok'; readonly claims: JWTPayload }
  | { readonly kind: 'bad_signature' }
  | { readonly kind: 'fallback' };

interface WebCryptoAlgorithm {
  readonly name?: string;
  readonly hash?: { readonly name?: string };
  readonly namedCurve?: string;
  readonly modulusLength?: number;
}

const keyObjects = new WeakMap<webcrypto.CryptoKey, KeyObject>();

/**
 * jose's jwtVerify for the common case, with the signature checked by SignatureWorkers: a compact
 * JWS whose protected header holds only alg/kid/typ, with an ES/RS/PS algorithm, whose key jose's
 * own JWKS resolver picks (kid, kty, crv, use, key_ops, alg of the JWK). jose's checks on that key
 * (algorithm parameters, verify usage, RSA ≥ 2048 bits) are repeated here, and the claims are
 * validated by jose itself (UnsecuredJWT.decode runs the same claims-set validation as jwtVerify).
 * Anything else, or any doubt, answers `fallback` and the caller runs jwtVerify: this path may only
 * ever be stricter than jose, never more lenient (cross-checked in test/verifier-node.test.ts).
 * Claim failures throw jose's own errors, as jwtVerify would.
 */
export async function fastVerify(
  token: string,
  resolver: JWTVerifyGetKey,
  options: JWTVerifyOptions,
  workers: SignatureWorkers,
): Promise<FastResult> {
  if (!COMPACT.test(token) || options.typ !== undefined || options.crit !== undefined)
    return { kind: 'fallback' };
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  const headerSeg = token.slice(0, dot1);
  const payloadSeg = token.slice(dot1 + 1, dot2);
  const sigSeg = token.slice(dot2 + 1);
  let header: unknown;
  let sig: Uint8Array;
  try {
    header = JSON.parse(strictUtf8.decode(base64url.decode(headerSeg)));
    sig = base64url.decode(sigSeg);
  } catch {
    return { kind: 'fallback' };
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) return { kind: 'fallback' };
  const h = header as Record<string, unknown>;
  for (const k of Object.keys(h)) if (!PLAIN_HEADER.has(k)) return { kind: 'fallback' };
  const alg = h['alg'];
  if (typeof alg !== 'string') return { kind: 'fallback' };
  const params = FAST_ALGS.get(alg);
  if (!params || !options.algorithms?.includes(alg)) return { kind: 'fallback' };
  if (h['kid'] !== undefined && typeof h['kid'] !== 'string') return { kind: 'fallback' };

  let resolved: unknown;
  try {
    resolved = await resolver(h as { alg: string }, {
      payload: payloadSeg,
      signature: sigSeg,
      protected: headerSeg,
    });
  } catch {
    return { kind: 'fallback' };
  }
  if (!(resolved instanceof CryptoKey)) return { kind: 'fallback' };
  const cryptoKey = resolved;
  const a = cryptoKey.algorithm as WebCryptoAlgorithm;
  if (
    a.name !== params.name ||
    (params.namedCurve !== undefined && a.namedCurve !== params.namedCurve) ||
    (params.name !== 'ECDSA' && a.hash?.name !== params.hash) ||
    !cryptoKey.usages.includes('verify') ||
    (params.minRsaBits !== undefined && !((a.modulusLength ?? 0) >= params.minRsaBits))
  )
    return { kind: 'fallback' };
  let key = keyObjects.get(cryptoKey);
  if (!key) {
    try {
      key = KeyObject.from(cryptoKey);
    } catch {
      return { kind: 'fallback' };
    }
    if (key.type !== 'public') return { kind: 'fallback' };
    keyObjects.set(cryptoKey, key);
  }
  let ok: boolean;
  try {
    ok = await workers.verify(alg, key, token.slice(0, dot2), sig);
  } catch {
    return { kind: 'fallback' };
  }
  if (!ok) return { kind: 'bad_signature' };
  // jose's claims-set validation on the verified payload, exactly as jwtVerify runs it.
  const { payload } = UnsecuredJWT.decode(`${NONE_HEADER}.${payloadSeg}.`, options);
  return { kind: 'ok', claims: payload };
}
