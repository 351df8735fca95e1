import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { pino } from 'pino';
import type { FetchedJson, JsonFetcher } from '../src/fetch.ts';

/** A silent logger for unit tests. */
export const silent = pino({ level: 'silent' });

/** A signing key with its public JWK. */
export interface TestKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

/** Generates a key pair for `alg` with a public JWK carrying kid and alg. */
export async function makeKey(alg: 'ES256' | 'RS256' | 'EdDSA', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, jwk };
}

/** Signs a JWT with sensible defaults (iss, aud, iat, exp in 10 min); `extra` overrides claims. */
export async function sign(
  key: TestKey,
  claims: JWTPayload & Record<string, unknown>,
  header: Record<string, unknown> = {},
  nowSec = Math.floor(Date.now() / 1000),
): Promise<string> {
  const body: JWTPayload = { iat: nowSec, exp: nowSec + 600, ...claims };
  return new SignJWT(body).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

/** A controllable fake fetcher: a map of URL to handler, and a call log. */
export class FakeFetcher {
  readonly calls: string[] = [];
  readonly routes = new Map<string, () => Promise<FetchedJson> | FetchedJson>();
  readonly fetch: JsonFetcher = async (url) => {
    this.calls.push(url);
    const h = this.routes.get(url);
    if (!h) throw new Error(`no route ${url}`);
    return h();
  };
  count(url: string): number {
    return this.calls.filter((c) => c === url).length;
  }
}

/** A manual clock (ms). */
export class Clock {
  t = Date.now();
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}
