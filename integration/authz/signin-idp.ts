import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, exportJWK, type JWK } from 'jose';
import { Provider, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

/** Options of the test OpenID Provider. */
export interface IdpOptions {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUris: readonly string[];
  readonly postLogoutRedirectUris: readonly string[];
  /** Access and ID token lifetime (seconds). */
  readonly tokenTtlSec: number;
}

/**
 * A certified OpenID Provider (oidc-provider, in-memory adapter) on a loopback port: its dev
 * interactions login form takes any user name and password; consent is granted automatically.
 * The signing key is fixed per instance, so stop/start keeps the issuer's keys.
 */
export class TestIdp {
  readonly #opts: IdpOptions;
  #server: Server | undefined;
  #port = 0;
  #jwk: JWK | undefined;
  #downAfter: string | undefined;

  constructor(opts: IdpOptions) {
    this.#opts = opts;
  }

  /** The issuer URL. */
  get issuer(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Starts (or restarts on the same port). */
  async start(): Promise<void> {
    if (!this.#jwk) {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      this.#jwk = { ...(await exportJWK(privateKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
    }
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(this.#port, '127.0.0.1', resolve));
    this.#port = (server.address() as AddressInfo).port;
    const o = this.#opts;
    const config: Configuration = {
      clients: [
        {
          client_id: o.clientId,
          client_secret: o.clientSecret,
          redirect_uris: [...o.redirectUris],
          post_logout_redirect_uris: [...o.postLogoutRedirectUris],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
          id_token_signed_response_alg: 'ES256',
        },
      ],
      jwks: { keys: [this.#jwk] },
      cookies: { keys: ['test-idp-cookie-key-not-a-secret'] },
      features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
      pkce: { required: () => true },
      claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
      conformIdTokenClaims: false,
      ttl: {
        AccessToken: o.tokenTtlSec,
        IdToken: o.tokenTtlSec,
        RefreshToken: 3600,
        Session: 3600,
        Grant: 3600,
      },
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      findAccount: (_ctx, id) => ({
        accountId: id,
        claims: () => ({ sub: id, email: `${id}@example.test`, name: `User ${id}` }),
      }),
      // Consent is implied: a grant for every requested scope (the test signs in, it does not consent).
      loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
        const oidc = ctx.oidc;
        const client = oidc.client;
        const accountId = oidc.session?.accountId;
        if (!client || !accountId) return undefined;
        const existing = oidc.result?.consent?.grantId ?? oidc.session?.grantIdFor(client.clientId);
        if (existing) return oidc.provider.Grant.find(existing);
        const grant = new oidc.provider.Grant({ clientId: client.clientId, accountId });
        grant.addOIDCScope('openid email profile offline_access');
        grant.addOIDCClaims(['sub', 'email', 'name']);
        await grant.save();
        return grant;
      },
    };
    const provider = new Provider(this.issuer, config);
    const handle = provider.callback();
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      res.on('finish', () => {
        const loc = res.getHeader('location');
        const down = this.#downAfter;
        if (down !== undefined && typeof loc === 'string' && loc.startsWith(down)) {
          this.#downAfter = undefined;
          void this.stop();
        }
      });
      handle(req, res);
    });
    this.#server = server;
  }

  /** Goes down right after it redirects a browser to a URL starting with `prefix` (the callback). */
  downAfterRedirectTo(prefix: string): void {
    this.#downAfter = prefix;
  }

  /** Stops listening (connections closed); start() again serves the same issuer and keys. */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
