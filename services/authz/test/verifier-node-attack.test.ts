import { after, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  constants,
  generateKeyPairSync,
  sign as cryptoSign,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { KeyStore } from '../src/keys.ts';
import { parsePolicy, type Provider } from '../src/policy.ts';
import { SignatureWorkers } from '../src/verifier-node.ts';
import { TokenCache, verifyToken, type VerifierDeps, type VerifyResult } from '../src/verifier.ts';
import { silent } from './helpers.ts';

// An attacker's tokens against the node:crypto fast path, jose's decision as the oracle: the fast
// path accepting one token jose refuses would be an authentication bypass. Complements
// verifier-node.test.ts with signature-level forgeries (ECDSA r/s out of range, P1363 vs DER on
// every curve, PSS salt lengths, RSA signature lengths, short RSA keys, JWK alg vs header alg) and
// with the batching (results attributed to the right token when key tables start over, a worker
// that dies mid-batch).

const T0 = 1_800_000_000_000;
const NOW_S = T0 / 1000;

const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve });
const rsa = (modulusLength: number) => generateKeyPairSync('rsa', { modulusLength });
const p256 = ec('P-256');
const p384 = ec('P-384');
const p521 = ec('P-521');
const r2048 = rsa(2048);
const r2040 = rsa(2040);
const jwk = (k: KeyObject, extra: Record<string, unknown>): JsonWebKey => ({
  ...k.export({ format: 'jwk' }),
  ...extra,
});

const POLICY = {
  providers: {
    main: {
      issuer: 'https://iss.test',
      audiences: ['api'],
      algorithms: ['ES256', 'ES384', 'ES512', 'RS256', 'RS512', 'PS256', 'PS384', 'PS512'],
      clockSkew: '60s',
      maxLifetime: '1h',
      jwks: {
        keys: [
          jwk(p256.publicKey, { kid: 'p256' }),
          jwk(p384.publicKey, { kid: 'p384' }),
          jwk(p521.publicKey, { kid: 'p521' }),
          jwk(r2048.publicKey, { kid: 'r' }),
          jwk(r2040.publicKey, { kid: 'r2040' }),
          // a JWK whose alg differs from what the header will say
          jwk(r2048.publicKey, { kid: 'r-ps', alg: 'PS256' }),
          jwk(r2048.publicKey, { kid: 'r-rs', alg: 'RS256' }),
          jwk(p256.publicKey, { kid: 'p256-es512', alg: 'ES512' }),
          jwk(p521.publicKey, { kid: 'p521-es256', alg: 'ES256' }),
        ],
      },
    },
  },
  rules: [],
};

const providers = (): Provider[] => [...parsePolicy(JSON.stringify(POLICY), 'p.yaml').providers.values()];
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const claims = (n = 0): Record<string, unknown> => ({
  iss: 'https://iss.test',
  aud: 'api',
  sub: 'u',
  iat: NOW_S - 10,
  exp: NOW_S + 600,
  n,
});

const ORDER: Record<string, bigint> = {
  'P-256': BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'),
  'P-384': BigInt(
    '0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973',
  ),
  'P-521': BigInt(
    '0x01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409',
  ),
};
const ES = {
  ES256: { key: p256, kid: 'p256', crv: 'P-256', size: 32, hash: 'sha256' },
  ES384: { key: p384, kid: 'p384', crv: 'P-384', size: 48, hash: 'sha384' },
  ES512: { key: p521, kid: 'p521', crv: 'P-521', size: 66, hash: 'sha512' },
} as const;

const hex = (v: bigint, size: number): Buffer => Buffer.from(v.toString(16).padStart(size * 2, '0'), 'hex');
const big = (b: Buffer): bigint => BigInt(`0x${b.toString('hex') || '0'}`);

function input(alg: string, kid: string, n: number): string {
  return `${b64({ alg, kid })}.${b64(claims(n))}`;
}
const tok = (data: string, sig: Buffer): string => `${data}.${sig.toString('base64url')}`;

/** ECDSA forgeries and encodings on each curve. */
function ecdsaCases(): string[] {
  const out: string[] = [];
  let n = 0;
  for (const [alg, c] of Object.entries(ES)) {
    const data = input(alg, c.kid, n++);
    const raw = cryptoSign(c.hash, Buffer.from(data), { key: c.key.privateKey, dsaEncoding: 'ieee-p1363' });
    const der = cryptoSign(c.hash, Buffer.from(data), c.key.privateKey);
    const r = raw.subarray(0, c.size);
    const s = raw.subarray(c.size);
    const q = ORDER[c.crv] as bigint;
    out.push(tok(data, raw)); // valid
    out.push(tok(data, der)); // DER: jose needs raw r||s
    out.push(tok(data, Buffer.concat([hex(0n, c.size), s]))); // r = 0
    out.push(tok(data, Buffer.concat([r, hex(0n, c.size)]))); // s = 0
    out.push(tok(data, Buffer.alloc(c.size * 2))); // all zero
    out.push(tok(data, Buffer.concat([hex(q, c.size), s]))); // r = n
    out.push(tok(data, Buffer.concat([r, hex(q, c.size)]))); // s = n
    out.push(
      tok(data, Buffer.concat([r, hex(q + big(s) < 2n ** BigInt(c.size * 8) ? q + big(s) : big(s), c.size)])),
    ); // s + n
    out.push(tok(data, Buffer.concat([r, hex(q - big(s), c.size)]))); // high S (jose accepts: WebCrypto does)
    out.push(tok(data, Buffer.alloc(c.size * 2, 0xff)));
    // r||s with one integer's leading byte dropped or a byte added: wrong length
    out.push(tok(data, Buffer.concat([r.subarray(1), s])));
    out.push(tok(data, Buffer.concat([Buffer.from([0]), r, s])));
    out.push(tok(data, Buffer.concat([r, s, Buffer.from([0])])));
    // another curve's signature length
    out.push(tok(data, Buffer.concat([raw, raw]).subarray(0, 64)));
    out.push(tok(data, Buffer.concat([raw, raw]).subarray(0, 96)));
    out.push(tok(data, Buffer.concat([raw, raw]).subarray(0, 132)));
    // curve/alg confusion: this curve's key signs, the header names another ES alg
    for (const [other, o] of Object.entries(ES)) {
      if (other === alg) continue;
      const d2 = input(other, c.kid, n++);
      out.push(
        tok(d2, cryptoSign(o.hash, Buffer.from(d2), { key: c.key.privateKey, dsaEncoding: 'ieee-p1363' })),
      );
    }
  }
  // JWK alg other than the header's, on the right curve and on the wrong one
  for (const [kid, alg, signer] of [
    ['p256-es512', 'ES256', ES.ES256],
    ['p256-es512', 'ES512', ES.ES256],
    ['p521-es256', 'ES512', ES.ES512],
    ['p521-es256', 'ES256', ES.ES512],
  ] as const) {
    const d = input(alg, kid, n++);
    out.push(
      tok(
        d,
        cryptoSign(`sha${alg.slice(2)}`, Buffer.from(d), {
          key: signer.key.privateKey,
          dsaEncoding: 'ieee-p1363',
        }),
      ),
    );
  }
  return out;
}

function rsaSign(alg: string, key: KeyObject, data: string, saltLength?: number): Buffer {
  const hash = `sha${alg.slice(2)}`;
  if (alg.startsWith('RS')) return cryptoSign(hash, Buffer.from(data), key);
  return cryptoSign(hash, Buffer.from(data), {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: saltLength ?? Number(alg.slice(2)) / 8,
  });
}

/** RSA: PSS salt lengths, PKCS#1 vs PSS, hash confusion, signature lengths, short keys, JWK alg. */
function rsaCases(): string[] {
  const out: string[] = [];
  const k = r2048.privateKey;
  let n = 1000;
  for (const alg of ['PS256', 'PS384', 'PS512']) {
    const hashLen = Number(alg.slice(2)) / 8;
    for (const salt of [hashLen, 0, 20, hashLen - 1, hashLen + 1, constants.RSA_PSS_SALTLEN_MAX_SIGN]) {
      const d = input(alg, 'r', n++);
      out.push(tok(d, rsaSign(alg, k, d, salt)));
    }
  }
  for (const [header, signed] of [
    ['RS256', 'RS512'],
    ['RS512', 'RS256'],
    ['PS256', 'PS384'],
    ['RS256', 'PS256'],
    ['PS256', 'RS256'],
  ]) {
    const d = input(header as string, 'r', n++);
    out.push(tok(d, rsaSign(signed as string, k, d)));
  }
  // a 2040-bit key: below jose's 2048
  for (const alg of ['RS256', 'PS256']) {
    const d = input(alg, 'r2040', n++);
    out.push(tok(d, rsaSign(alg, r2040.privateKey, d)));
  }
  // JWK alg PS256 with an RS256 header, and the reverse; and each with its own alg
  for (const [kid, alg] of [
    ['r-ps', 'RS256'],
    ['r-ps', 'PS256'],
    ['r-rs', 'PS256'],
    ['r-rs', 'RS256'],
  ]) {
    const d = input(alg as string, kid as string, n++);
    out.push(tok(d, rsaSign(alg as string, k, d)));
  }
  // signature lengths: a zero byte prepended; a signature whose first byte is 0, with it removed
  const d = input('RS256', 'r', n);
  const sig = rsaSign('RS256', k, d);
  out.push(tok(d, Buffer.concat([Buffer.from([0]), sig])));
  out.push(tok(d, sig.subarray(1)));
  let found = 0;
  for (let i = 0; i < 5000 && found < 2; i++) {
    const alg = found === 0 ? 'RS256' : 'PS256';
    const di = input(alg, 'r', 10_000 + i);
    const si = rsaSign(alg, k, di);
    if (si[0] !== 0) continue;
    found++;
    out.push(tok(di, si));
    out.push(tok(di, si.subarray(1)));
  }
  assert.equal(found, 2, 'no RSA signature with a leading zero byte in 5,000 tries');
  return out;
}

async function whenReady(w: SignatureWorkers): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!w.ready()) {
    if (Date.now() > deadline) throw new Error('signature worker never ready');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Counts the signatures the workers answered. */
class CountingWorkers extends SignatureWorkers {
  calls = 0;
  override verify(alg: string, key: KeyObject, data: string, sig: Uint8Array): Promise<boolean> {
    return super.verify(alg, key, data, sig).then((ok) => {
      this.calls += 1;
      return ok;
    });
  }
}

describe('authz verifier: node:crypto fast path against forged signatures (jose as the oracle)', function () {
  // RSA signing, zlib and worker start-up on a loaded 2-core CI machine
  this.timeout(60_000);
  const ps = providers();
  const keyStores = new Map(
    ps.map((p) => [
      p.name,
      new KeyStore(p, { fetch: () => Promise.reject(new Error('no')), now: () => T0, logger: silent }),
    ]),
  );
  const joseDeps: VerifierDeps = { keyStores, cache: new TokenCache(0, 0), now: () => T0 };
  const opened: SignatureWorkers[] = [];
  after(() => {
    for (const w of opened) w.close();
  });

  async function compare(
    tokens: readonly string[],
    workers: SignatureWorkers,
    chunk = 64,
  ): Promise<Map<string, number>> {
    const fastDeps: VerifierDeps = { ...joseDeps, signatures: workers };
    const tally = new Map<string, number>();
    for (let i = 0; i < tokens.length; i += chunk) {
      const part = tokens.slice(i, i + chunk);
      const [a, b] = await Promise.all([
        Promise.all(part.map((t) => verifyToken(t, ps, joseDeps))),
        Promise.all(part.map((t) => verifyToken(t, ps, fastDeps))),
      ]);
      for (const [j, t] of part.entries()) {
        const x = a[j] as VerifyResult;
        assert.deepEqual(b[j], x, `token ${i + j}: ${t.slice(0, 100)}…`);
        const label = x.kind === 'invalid' ? x.reason : x.kind;
        tally.set(label, (tally.get(label) ?? 0) + 1);
      }
    }
    return tally;
  }

  it('ECDSA: r or s zero or >= n, high S, DER, wrong lengths, curve vs alg, JWK alg vs header: same as jose', async () => {
    const w = new CountingWorkers(1);
    opened.push(w);
    await whenReady(w);
    const tokens = ecdsaCases();
    const tally = await compare(tokens, w);
    // the valid ones and the high-S ones (WebCrypto accepts both) on 3 curves, plus matching JWK algs
    assert.ok((tally.get('ok') ?? 0) >= 6, JSON.stringify([...tally]));
    assert.ok((tally.get('bad_signature') ?? 0) >= 36, JSON.stringify([...tally]));
    assert.ok(w.calls >= 40, `fast path answered ${w.calls} of ${tokens.length}`);
  });

  it('RSA: PSS salt lengths, PKCS#1 vs PSS, hash swaps, 2040-bit key, JWK alg vs header, signature lengths: same as jose', async () => {
    const w = new CountingWorkers(1);
    opened.push(w);
    await whenReady(w);
    const tokens = rsaCases();
    const tally = await compare(tokens, w);
    assert.ok((tally.get('ok') ?? 0) >= 5, JSON.stringify([...tally]));
    assert.ok((tally.get('bad_signature') ?? 0) >= 15, JSON.stringify([...tally]));
    assert.ok(w.calls >= 25, `fast path answered ${w.calls} of ${tokens.length}`);
  });

  it("batching: forged and valid tokens of many keys interleaved, key tables starting over every batch, each answer is its own token's", async () => {
    // maxKeys 1: every batch after the first starts its worker's key table over; 2 workers, round robin
    const w = new CountingWorkers(2, undefined, 1);
    opened.push(w);
    await whenReady(w);
    const tokens: string[] = [];
    const signers = [
      [
        'ES256',
        'p256',
        (d: string) =>
          cryptoSign('sha256', Buffer.from(d), { key: p256.privateKey, dsaEncoding: 'ieee-p1363' }),
      ],
      [
        'ES384',
        'p384',
        (d: string) =>
          cryptoSign('sha384', Buffer.from(d), { key: p384.privateKey, dsaEncoding: 'ieee-p1363' }),
      ],
      [
        'ES512',
        'p521',
        (d: string) =>
          cryptoSign('sha512', Buffer.from(d), { key: p521.privateKey, dsaEncoding: 'ieee-p1363' }),
      ],
      ['RS256', 'r', (d: string) => rsaSign('RS256', r2048.privateKey, d)],
      ['PS256', 'r', (d: string) => rsaSign('PS256', r2048.privateKey, d)],
    ] as const;
    for (let i = 0; i < 120; i++) {
      const [alg, kid, sign] = signers[i % signers.length] as (typeof signers)[number];
      const d = input(alg, kid, 20_000 + i);
      const good = sign(d);
      // every third token carries the valid signature of its neighbour: right key, wrong data
      if (i % 3 === 2) tokens.push(tok(d, sign(input(alg, kid, 30_000 + i))));
      else tokens.push(tok(d, good));
    }
    // odd chunk sizes, so batches and key resets fall at different places
    for (const chunk of [1, 7, 13, 120]) {
      const tally = await compare(tokens, w, chunk);
      assert.equal(tally.get('ok'), 80, JSON.stringify([...tally]));
      assert.equal(tally.get('bad_signature'), 40, JSON.stringify([...tally]));
    }
    assert.ok(w.calls >= 400, `fast path answered ${w.calls}`);
  });

  it('a worker that dies in the middle of a batch: its tokens are decided by jose (forged ones refused)', async () => {
    const w = new SignatureWorkers(1, new URL('./fixtures/verifier-crash-worker.ts', import.meta.url));
    opened.push(w);
    await whenReady(w);
    const d = input('ES256', 'p256', 40_000);
    const good = tok(
      d,
      cryptoSign('sha256', Buffer.from(d), { key: p256.privateKey, dsaEncoding: 'ieee-p1363' }),
    );
    const forged = tok(d, Buffer.alloc(64, 1));
    const fastDeps: VerifierDeps = { ...joseDeps, signatures: w };
    const [a, b] = await Promise.all([verifyToken(good, ps, fastDeps), verifyToken(forged, ps, fastDeps)]);
    assert.equal(a.kind, 'ok');
    assert.deepEqual(b, await verifyToken(forged, ps, joseDeps));
    assert.notEqual(b.kind, 'ok');
  });
});
