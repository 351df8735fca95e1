// Worker thread of SignatureWorkers (verifier-node.ts): verifies batches of JWS signatures with
// node:crypto, synchronously, off the main thread. Messages are the WorkerRequest union below.
import { constants, verify, type KeyObject } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/** A message from the main thread: register a key, forget every key, or verify a batch. */
export type WorkerRequest =
  | { readonly type: 'key'; readonly id: number; readonly key: KeyObject }
  | { readonly type: 'reset' }
  | {
      readonly type: 'batch';
      readonly id: number;
      /** Signing inputs (ASCII `header.payload`) and signatures, back to back (transferred, not copied). */
      readonly bytes: ArrayBuffer;
      /** Per item: key id, input offset, input length, signature offset, signature length. */
      readonly layout: Uint32Array;
      /** Per item: the algorithm. */
      readonly algs: readonly string[];
    };

/** `ready` once the worker listens; per batch: 1 where the signature verified, 0 elsewhere (also for errors). */
export type WorkerReply =
  { readonly type: 'ready' } | { readonly type: 'batch'; readonly id: number; readonly results: Uint8Array };

const keys = new Map<number, KeyObject>();

function check(alg: string, key: KeyObject, data: Uint8Array, sig: Uint8Array): boolean {
  const bits = alg.slice(2);
  const hash = `sha${bits}`;
  switch (alg.slice(0, 2)) {
    case 'ES':
      return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'RS':
      return verify(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, sig);
    case 'PS':
      // WebCrypto's RSA-PSS as jose calls it: MGF1 with the same hash, salt length = hash length.
      return verify(
        hash,
        data,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(bits) / 8 },
        sig,
      );
    default:
      return false;
  }
}

parentPort?.on('message', (m: WorkerRequest) => {
  switch (m.type) {
    case 'key':
      keys.set(m.id, m.key);
      return;
    case 'reset':
      keys.clear();
      return;
    case 'batch': {
      const n = m.algs.length;
      const results = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const o = i * 5;
        const key = keys.get(m.layout[o] as number);
        const data = Buffer.from(m.bytes, m.layout[o + 1], m.layout[o + 2]);
        const sig = Buffer.from(m.bytes, m.layout[o + 3], m.layout[o + 4]);
        try {
          results[i] = key !== undefined && check(m.algs[i] as string, key, data, sig) ? 1 : 0;
        } catch {
          results[i] = 0; // a malformed signature (wrong length...) is a failed verification, as in WebCrypto
        }
      }
      const reply: WorkerReply = { type: 'batch', id: m.id, results };
      parentPort?.postMessage(reply, [results.buffer]);
      return;
    }
  }
});

const ready: WorkerReply = { type: 'ready' };
parentPort?.postMessage(ready);
