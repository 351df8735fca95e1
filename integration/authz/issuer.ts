import { createServer, type Server, type ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';

interface Key {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

/** Behaviour switches of the fixture issuer. */
export interface IssuerMode {
  /** Every request fails: 'reset' destroys the socket, 'status' answers 503. */
  down: false | 'reset' | 'status';
  /** Delay before answering JWKS requests (ms). */
  slowMs: number;
  /** Extra padding bytes in the JWKS response (a huge document). */
  hugeBytes: number;
  /** Cache-Control max-age of the JWKS (seconds). */
  maxAgeSec: number;
}

/**
 * A local OIDC issuer: discovery document + JWKS with ES256 keys, key rotation, an outage switch,
 * a slow mode, a huge-response mode and per-path request counters.
 */
export class Issuer {
  readonly mode: IssuerMode = { down: false, slowMs: 0, hugeBytes: 0, maxAgeSec: 300 };
  readonly counts = new Map<string, number>();
  #keys: Key[] = [];
  #server: Server | undefined;
  #port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** The issuer identifier (also the `iss` of the tokens it signs). */
  get issuer(): string {
    return this.url;
  }

  /** Requests seen on a path. */
  count(path: string): number {
    return this.counts.get(path) ?? 0;
  }

  /** Starts listening on an ephemeral loopback port with one key. */
  async start(): Promise<this> {
    await this.addKey();
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      this.counts.set(path, this.count(path) + 1);
      req.resume();
      if (this.mode.down === 'reset') {
        req.socket.destroy();
        return;
      }
      if (this.mode.down === 'status') {
        res.writeHead(503).end('down');
        return;
      }
      if (path === '/.well-known/openid-configuration') {
        this.#json(res, { issuer: this.issuer, jwks_uri: `${this.url}/jwks` });
        return;
      }
      if (path === '/jwks' || path === '/huge' || path === '/slow') {
        const send = (): void => {
          const body: Record<string, unknown> = { keys: this.#keys.map((k) => k.jwk) };
          if (path === '/huge' || this.mode.hugeBytes > 0)
            body['padding'] = 'x'.repeat(this.mode.hugeBytes || 4_000_000);
          this.#json(res, body, { 'cache-control': `public, max-age=${this.mode.maxAgeSec}` });
        };
        const wait = path === '/slow' ? 10_000 : this.mode.slowMs;
        if (wait > 0) {
          const t = setTimeout(send, wait);
          res.on('close', () => clearTimeout(t));
        } else send();
        return;
      }
      res.writeHead(404).end();
    });
    this.#server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    const addr = this.#server.address();
    this.#port = typeof addr === 'object' && addr ? addr.port : 0;
    return this;
  }

  #json(res: ServerResponse, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  /** Adds a new signing key (it becomes the current one). */
  async addKey(): Promise<string> {
    const kid = `k${this.#keys.length + 1}-${Math.random().toString(36).slice(2, 8)}`;
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    this.#keys.push({
      kid,
      privateKey,
      jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' },
    });
    return kid;
  }

  /** Rotates: a new current key, the old ones removed from the JWKS. */
  async rotate(): Promise<string> {
    const kid = await this.addKey();
    this.#keys = this.#keys.slice(-1);
    return kid;
  }

  /** The current key id. */
  get kid(): string {
    return this.#current().kid;
  }

  #current(): Key {
    const k = this.#keys[this.#keys.length - 1];
    if (!k) throw new Error('no key');
    return k;
  }

  /** Signs a token with the current key: iss, aud 'api', sub 'alice', iat, exp +10 min by default. */
  async token(
    claims: JWTPayload & Record<string, unknown> = {},
    header: Record<string, unknown> = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const k = this.#current();
    return new SignJWT({ iss: this.issuer, aud: 'api', sub: 'alice', iat: now, exp: now + 600, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: k.kid, ...header })
      .sign(k.privateKey);
  }

  /** Stops the server and its connections. */
  async stop(): Promise<void> {
    const s = this.#server;
    if (!s) return;
    this.#server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
