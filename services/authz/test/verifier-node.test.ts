import { after, describe, it } from 'mocha';
import assert from 'node:assert/strict';
import {
  constants,
  createHmac,
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

// The node:crypto fast path must decide every token exactly as jose does: it may only be used when it
// gives the same answer (same kind, same deny reason, same claims). Each token below goes through
// verifyToken twice, once with jose alone and once with the fast path, and the results are compared.

const T0 = 1_800_000_000_000;
const NOW_S = T0 / 1000;

const gen = (type: 'ec' | 'rsa', opt: { namedCurve?: string; modulusLength?: number }) =>
  generateKeyPairSync(type as 'ec', opt as { namedCurve: string });
const e1 = gen('ec', { namedCurve: 'P-256' });
const e2 = gen('ec', { namedCurve: 'P-256' });
const e3 = gen('ec', { namedCurve: 'P-384' });
const e5 = gen('ec', { namedCurve: 'P-521' });
const r1 = gen('rsa', { modulusLength: 2048 });
const r0 = gen('rsa', { modulusLength: 1024 });
const solo = gen('ec', { namedCurve: 'P-256' });
const stranger = gen('ec', { namedCurve: 'P-256' });
const jwk = (k: KeyObject, extra: Record<string, unknown> = {}): JsonWebKey => ({
  ...k.export({ format: 'jwk' }),
  ...extra,
});

const POLICY = {
  providers: {
    main: {
      issuer: 'https://iss.test',
      audiences: ['api'],
      algorithms: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'PS256', 'PS512'],
      clockSkew: '60s',
      maxLifetime: '1h',
      jwks: {
        keys: [
          jwk(e1.publicKey, { kid: 'e1', use: 'sig' }),
          jwk(e2.publicKey, { kid: 'e2', alg: 'ES256' }),
          jwk(e3.publicKey, { kid: 'e3' }),
          jwk(e5.publicKey, { kid: 'e5' }),
          jwk(r1.publicKey, { kid: 'r1' }),
          jwk(r0.publicKey, { kid: 'r0' }),
          jwk(e1.publicKey, { kid: 'u1', use: 'enc' }),
          jwk(e1.publicKey, { kid: 'o1', key_ops: ['encrypt'] }),
          jwk(e1.publicKey, { kid: 'a1', alg: 'ES384' }),
          jwk(e1.publicKey, { kid: 'dup' }),
          jwk(e2.publicKey, { kid: 'dup' }),
        ],
      },
    },
    solo: {
      issuer: 'https://solo.test',
      requireExp: false,
      clockSkew: '0s',
      jwks: { keys: [jwk(solo.publicKey)] },
    },
  },
  rules: [],
};

function providers(): Provider[] {
  return [...parsePolicy(JSON.stringify(POLICY), 'p.yaml').providers.values()];
}

const b64 = (v: unknown): string =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

type Signer = { alg: string; key: KeyObject } | { alg: 'HS'; secret: Buffer } | { alg: 'none'; key?: never };

function signature(s: Signer, input: string): string {
  if ('secret' in s) return createHmac('sha256', s.secret).update(input).digest('base64url');
  if (s.key === undefined) return '';
  const hash = `sha${s.alg.slice(2)}`;
  const data = Buffer.from(input);
  switch (s.alg.slice(0, 2)) {
    case 'ES':
      return cryptoSign(hash, data, { key: s.key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    case 'RS':
      return cryptoSign(hash, data, s.key).toString('base64url');
    default:
      return cryptoSign(hash, data, {
        key: s.key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: Number(s.alg.slice(2)) / 8,
      }).toString('base64url');
  }
}

/** A compact token: header and payload as objects (JSON) or as raw encoded segments. */
function token(header: unknown, payload: unknown, s: Signer, raw = false): string {
  const input = raw ? `${header as string}.${payload as string}` : `${b64(header)}.${b64(payload)}`;
  return `${input}.${signature(s, input)}`;
}

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  iss: 'https://iss.test',
  aud: 'api',
  sub: 'u',
  iat: NOW_S - 10,
  exp: NOW_S + 600,
  ...extra,
});
const ES256 = { alg: 'ES256', key: e1.privateKey };

/** Hand-made attacks and edge cases. */
function cases(): string[] {
  const out: string[] = [];
  const h = (extra: Record<string, unknown> = {}) => ({ alg: 'ES256', kid: 'e1', ...extra });
  // Valid tokens of every fast algorithm, and the same keys under the wrong algorithm.
  out.push(token(h(), claims(), ES256));
  out.push(token(h({ typ: 'JWT' }), claims(), ES256));
  out.push(token(h({ typ: 5 }), claims(), ES256));
  out.push(token({ alg: 'ES256', kid: 'e2' }, claims(), { alg: 'ES256', key: e2.privateKey }));
  out.push(token({ alg: 'ES384', kid: 'e3' }, claims(), { alg: 'ES384', key: e3.privateKey }));
  out.push(token({ alg: 'ES512', kid: 'e5' }, claims(), { alg: 'ES512', key: e5.privateKey }));
  out.push(token({ alg: 'RS256', kid: 'r1' }, claims(), { alg: 'RS256', key: r1.privateKey }));
  out.push(token({ alg: 'RS384', kid: 'r1' }, claims(), { alg: 'RS384', key: r1.privateKey }));
  out.push(token({ alg: 'PS256', kid: 'r1' }, claims(), { alg: 'PS256', key: r1.privateKey }));
  out.push(token({ alg: 'PS512', kid: 'r1' }, claims(), { alg: 'PS512', key: r1.privateKey }));
  out.push(token({ alg: 'RS512', kid: 'r1' }, claims(), { alg: 'RS512', key: r1.privateKey })); // not allowed
  out.push(token({ alg: 'PS256', kid: 'r1' }, claims(), { alg: 'RS256', key: r1.privateKey })); // PKCS1 as PSS
  out.push(token({ alg: 'RS256', kid: 'r1' }, claims(), { alg: 'PS256', key: r1.privateKey }));
  out.push(token({ alg: 'RS256', kid: 'r0' }, claims(), { alg: 'RS256', key: r0.privateKey })); // 1024 bits
  out.push(token({ alg: 'ES384', kid: 'e1' }, claims(), { alg: 'ES384', key: e1.privateKey })); // curve
  out.push(token({ alg: 'ES256', kid: 'e3' }, claims(), { alg: 'ES256', key: e3.privateKey }));
  out.push(token({ alg: 'RS256', kid: 'e1' }, claims(), { alg: 'RS256', key: r1.privateKey }));
  out.push(token({ alg: 'ES256', kid: 'r1' }, claims(), ES256));
  // alg none and HMAC confusion with the public key as the secret.
  out.push(token({ alg: 'none', kid: 'e1' }, claims(), { alg: 'none' }));
  out.push(token({ alg: 'none' }, claims(), ES256));
  const pem = Buffer.from(e1.publicKey.export({ type: 'spki', format: 'pem' }));
  out.push(token({ alg: 'HS256', kid: 'e1' }, claims(), { alg: 'HS', secret: pem }));
  out.push(token({ alg: 'ES256', kid: 'e1' }, claims(), { alg: 'HS', secret: pem }));
  // kid: unknown, mismatched, ambiguous, on a key for encryption / other ops / another alg, absent.
  out.push(token(h({ kid: 'nope' }), claims(), ES256));
  out.push(token(h({ kid: 'e2' }), claims(), ES256));
  out.push(token(h({ kid: 'dup' }), claims(), ES256));
  out.push(token(h({ kid: 'dup' }), claims(), { alg: 'ES256', key: e2.privateKey }));
  out.push(token(h({ kid: 'u1' }), claims(), ES256));
  out.push(token(h({ kid: 'o1' }), claims(), ES256));
  out.push(token(h({ kid: 'a1' }), claims(), ES256));
  out.push(token({ alg: 'ES256', kid: 'e2' }, claims(), { alg: 'ES256', key: stranger.privateKey }));
  out.push(token({ alg: 'ES256' }, claims(), ES256));
  out.push(token({ alg: 'ES256' }, { iss: 'https://solo.test' }, { alg: 'ES256', key: solo.privateKey }));
  out.push(token({ alg: 'ES256' }, { iss: 'https://solo.test' }, ES256));
  out.push(token({ alg: 'ES384' }, { iss: 'https://solo.test' }, { alg: 'ES384', key: solo.privateKey }));
  // crit, b64=false, and other header members jose treats specially.
  out.push(token(h({ crit: ['exp'] }), claims(), ES256));
  out.push(token(h({ crit: ['b64'], b64: false }), claims(), ES256));
  out.push(token(h({ crit: ['b64'], b64: true }), claims(), ES256));
  out.push(token(h({ b64: false }), claims(), ES256));
  out.push(token(h({ crit: [] }), claims(), ES256));
  out.push(token(h({ jku: 'https://evil.test/jwks' }), claims(), ES256));
  out.push(token(h({ jwk: jwk(stranger.publicKey) }), claims(), { alg: 'ES256', key: stranger.privateKey }));
  out.push(token(h({ x5c: ['AAAA'] }), claims(), ES256));
  out.push(token(h({ kid: 5 }), claims(), ES256));
  out.push(token(h({ alg: ['ES256'] }), claims(), ES256));
  out.push(token(b64('{"alg":"ES256","kid":"e1","alg":"none"}'), b64(claims()), ES256, true));
  out.push(token(b64('{"alg":"none","kid":"e1","alg":"ES256"}'), b64(claims()), ES256, true));
  out.push(token(b64('["ES256"]'), b64(claims()), ES256, true));
  out.push(token(b64('null'), b64(claims()), ES256, true));
  out.push(token(b64(' {"alg":"ES256","kid":"e1"} '), b64(claims()), ES256, true));
  out.push(token(b64('\ufeff{"alg":"ES256","kid":"e1"}'), b64(claims()), ES256, true));
  // Invalid UTF-8 in the header and in the payload (jose decodes both strictly).
  const badUtf8 = (json: string) =>
    Buffer.concat([Buffer.from(json.slice(0, -2)), Buffer.from([0xc3, 0x28]), Buffer.from(json.slice(-2))]);
  out.push(
    token(badUtf8('{"alg":"ES256","kid":"e1","typ":"x"}').toString('base64url'), b64(claims()), ES256, true),
  );
  out.push(token(b64(h()), badUtf8(JSON.stringify(claims({ n: 'xx' }))).toString('base64url'), ES256, true));
  // Payloads that are not claim sets.
  for (const p of ['null', '[]', '5', '"s"', '{', ''])
    out.push(token(b64(h()), Buffer.from(p).toString('base64url') || 'AA', ES256, true));
  // Claims: time edges with the 60 s skew and the 1 h maximum age, types, presence.
  for (const c of [
    { exp: NOW_S - 60 },
    { exp: NOW_S - 59 },
    { exp: NOW_S - 60.5 },
    { exp: NOW_S - 59.5 },
    { exp: `${NOW_S + 600}` },
    { exp: null },
    { exp: undefined },
    { nbf: NOW_S + 60 },
    { nbf: NOW_S + 61 },
    { nbf: 'soon' },
    { iat: NOW_S + 60 },
    { iat: NOW_S + 61 },
    { iat: NOW_S - 3660 },
    { iat: NOW_S - 3661 },
    { iat: 'x' },
    { iat: undefined },
    { iss: 'https://iss.test/' },
    { aud: ['x', 'api'] },
    { aud: ['x'] },
    { aud: 'API' },
    { aud: undefined },
    { aud: [] },
    { aud: 5 },
    { sub: 5 },
  ])
    out.push(token(h(), claims(c), ES256));
  // A number JSON can spell but not hold (exp: Infinity).
  out.push(token(b64(h()), b64(JSON.stringify(claims()).replace(/"exp":\d+/, '"exp":1e400')), ES256, true));
  // Signature encodings: DER, truncated, one byte more, high S, empty, non-canonical last character,
  // a segment length base64url cannot have, the signature of another token.
  const good = token(h(), claims(), ES256);
  const [hs, ps, ss] = good.split('.') as [string, string, string];
  const der = cryptoSign('sha256', Buffer.from(`${hs}.${ps}`), e1.privateKey).toString('base64url');
  out.push(`${hs}.${ps}.${der}`);
  const sig = Buffer.from(ss, 'base64url');
  out.push(`${hs}.${ps}.${sig.subarray(0, 63).toString('base64url')}`);
  out.push(`${hs}.${ps}.${Buffer.concat([sig, Buffer.from([0])]).toString('base64url')}`);
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  const highS = Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex');
  out.push(`${hs}.${ps}.${Buffer.concat([sig.subarray(0, 32), highS]).toString('base64url')}`);
  out.push(`${hs}.${ps}.`);
  out.push(`${hs}.${ps}.AA`);
  out.push(`${hs}.${ps}.${ss}A`);
  out.push(`${hs}.${ps}.${ss}AAAA`);
  out.push(`${hs}.${ps}.${ss.slice(0, -1)}${ss.endsWith('A') ? 'B' : 'A'}`);
  out.push(`${hs}.${ps}.${ss.slice(0, -1)}${ss.endsWith('w') ? 'x' : 'w'}`);
  out.push(`${hs}.${ps}A.${ss}`);
  out.push(`${hs}A.${ps}.${ss}`);
  out.push(`${hs}.${ps}.${ss}.`);
  out.push(`${hs}.${b64(claims({ sub: 'v' }))}.${ss}`);
  out.push(`${b64(h({ typ: 'JWT' }))}.${ps}.${ss}`);
  out.push(`${hs}.${ps}.${ss.replace(/-/g, '+')}`);
  // Oversized tokens.
  out.push(token(h(), claims({ pad: 'x'.repeat(9000) }), ES256));
  out.push(token(h({ pad: 'x'.repeat(2000) }), claims(), ES256));
  return out;
}

/** Deterministic mutations of valid tokens: one character replaced, removed or added, segments swapped. */
function mutations(count: number): string[] {
  let seed = 42;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
  const bases = [
    token({ alg: 'ES256', kid: 'e1' }, claims(), ES256),
    token({ alg: 'ES256', kid: 'e1', typ: 'JWT' }, claims({ aud: ['api'] }), ES256),
    token({ alg: 'RS256', kid: 'r1' }, claims(), { alg: 'RS256', key: r1.privateKey }),
    token({ alg: 'PS256', kid: 'r1' }, claims(), { alg: 'PS256', key: r1.privateKey }),
    token({ alg: 'ES384', kid: 'e3' }, claims(), { alg: 'ES384', key: e3.privateKey }),
  ];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const t = bases[rand(bases.length)] as string;
    const at = rand(t.length);
    const c = alphabet[rand(alphabet.length)] as string;
    switch (rand(4)) {
      case 0:
        out.push(t.slice(0, at) + c + t.slice(at + 1));
        break;
      case 1:
        out.push(t.slice(0, at) + t.slice(at + 1));
        break;
      case 2:
        out.push(t.slice(0, at) + c + t.slice(at));
        break;
      default: {
        const o = (bases[rand(bases.length)] as string).split('.');
        const p = t.split('.');
        const seg = rand(3);
        p[seg] = o[seg] as string;
        out.push(p.join('.'));
      }
    }
  }
  return out;
}

/** Counts the signatures the workers answered (calls before a worker is ready fall back to jose). */
class CountingWorkers extends SignatureWorkers {
  calls = 0;
  override verify(alg: string, key: KeyObject, data: string, sig: Uint8Array): Promise<boolean> {
    return super.verify(alg, key, data, sig).then((ok) => {
      this.calls += 1;
      return ok;
    });
  }
}

async function whenReady(w: SignatureWorkers): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!w.ready()) {
    if (Date.now() > deadline) throw new Error('signature worker never ready');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('authz verifier: node:crypto fast path against jose', () => {
  const ps = providers();
  const keyStores = new Map(
    ps.map((p) => [
      p.name,
      new KeyStore(p, { fetch: () => Promise.reject(new Error('no')), now: () => T0, logger: silent }),
    ]),
  );
  const workers = new CountingWorkers(2);
  after(() => workers.close());
  const joseDeps: VerifierDeps = { keyStores, cache: new TokenCache(0, 0), now: () => T0 };
  const fastDeps: VerifierDeps = { ...joseDeps, signatures: workers };

  async function compare(tokens: readonly string[], deps: VerifierDeps): Promise<Map<string, number>> {
    const tally = new Map<string, number>();
    for (let i = 0; i < tokens.length; i += 64) {
      const chunk = tokens.slice(i, i + 64);
      // Concurrently, as under load: the fast path batches the signatures of one event-loop turn.
      const [a, b] = await Promise.all([
        Promise.all(chunk.map((t) => verifyToken(t, ps, joseDeps))),
        Promise.all(chunk.map((t) => verifyToken(t, ps, deps))),
      ]);
      for (const [j, t] of chunk.entries()) {
        const x = a[j] as VerifyResult;
        assert.deepEqual(b[j], x, `token ${i + j}: ${t.slice(0, 80)}…`);
        const label = x.kind === 'invalid' ? x.reason : x.kind;
        tally.set(label, (tally.get(label) ?? 0) + 1);
      }
    }
    return tally;
  }

  it('decides every hand-made attack and edge case exactly as jose', async () => {
    await whenReady(workers);
    const before = workers.calls;
    const tally = await compare(cases(), fastDeps);
    // The comparison must have exercised both outcomes of the fast path, not only its fallbacks.
    assert.ok((tally.get('ok') ?? 0) >= 12, JSON.stringify([...tally]));
    assert.ok((tally.get('bad_signature') ?? 0) >= 8, JSON.stringify([...tally]));
    for (const r of [
      'token_expired',
      'token_not_yet_valid',
      'token_too_old',
      'wrong_audience',
      'malformed_token',
    ])
      assert.ok(tally.has(r), `${r} missing from ${JSON.stringify([...tally])}`);
    assert.ok(workers.calls - before >= 40, `fast path used ${workers.calls - before} times`);
  });

  it('decides 1,500 mutated tokens exactly as jose', async function () {
    this.timeout(60_000); // 3,000 verifications and a worker start: seconds on a loaded CI machine
    const before = workers.calls;
    const tally = await compare(mutations(1500), fastDeps);
    assert.ok(
      (tally.get('ok') ?? 0) > 0 && (tally.get('bad_signature') ?? 0) > 100,
      JSON.stringify([...tally]),
    );
    assert.ok(workers.calls - before > 500, `fast path used ${workers.calls - before} times`);
  });

  it('a worker that cannot run leaves every decision to jose', async () => {
    const broken = new SignatureWorkers(1, new URL('./does-not-exist.ts', import.meta.url));
    try {
      const tally = await compare(cases().slice(0, 12), { ...joseDeps, signatures: broken });
      assert.ok((tally.get('ok') ?? 0) >= 8, JSON.stringify([...tally]));
    } finally {
      broken.close();
    }
  });

  it('a worker holding fewer keys than the issuer has starts its key table over, with the same answers', async () => {
    const small = new CountingWorkers(1, undefined, 2);
    try {
      await whenReady(small);
      const tokens = [];
      for (let i = 0; i < 6; i++) {
        tokens.push(token({ alg: 'ES256', kid: 'e1' }, claims({ n: i }), ES256));
        tokens.push(
          token({ alg: 'ES256', kid: 'e2' }, claims({ n: i }), { alg: 'ES256', key: e2.privateKey }),
        );
        tokens.push(
          token({ alg: 'ES384', kid: 'e3' }, claims({ n: i }), { alg: 'ES384', key: e3.privateKey }),
        );
        tokens.push(
          token({ alg: 'RS256', kid: 'r1' }, claims({ n: i }), { alg: 'RS256', key: r1.privateKey }),
        );
      }
      // One at a time: one batch per token, so the table is reset between batches.
      for (const t of tokens) {
        const r = await verifyToken(t, ps, { ...joseDeps, signatures: small });
        assert.equal(r.kind, 'ok');
      }
      assert.equal(small.calls, tokens.length);
    } finally {
      small.close();
    }
  });

  it('no worker ready yet: the first tokens are verified by jose, without waiting for a worker', async () => {
    const cold = new CountingWorkers(1);
    try {
      const r = await verifyToken(token({ alg: 'ES256', kid: 'e1' }, claims(), ES256), ps, {
        ...joseDeps,
        signatures: cold,
      });
      assert.equal(r.kind, 'ok');
      assert.equal(cold.calls, 0);
      await whenReady(cold);
      const r2 = await verifyToken(token({ alg: 'ES256', kid: 'e1' }, claims({ n: 2 }), ES256), ps, {
        ...joseDeps,
        signatures: cold,
      });
      assert.equal(r2.kind, 'ok');
      assert.equal(cold.calls, 1);
    } finally {
      cold.close();
    }
  });

  it('after close, tokens are still verified (by jose)', async () => {
    const closed = new SignatureWorkers(1);
    closed.close();
    const r = await verifyToken(token({ alg: 'ES256', kid: 'e1' }, claims(), ES256), ps, {
      ...joseDeps,
      signatures: closed,
    });
    assert.equal(r.kind, 'ok');
  });
});
