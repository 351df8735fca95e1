import type { Logger } from '@extsvc/common/logger';
import { decide, type AuthRequest, type Decision } from './decision.ts';
import type { JsonFetcher } from './fetch.ts';
import { KeyStore, type FetchResult } from './keys.ts';
import type { Policy, Provider } from './policy.ts';
import { TokenCache, verifyToken } from './verifier.ts';
import { SignatureWorkers } from './verifier-node.ts';
import { Signin, type SigninEvent } from './signin/flow.ts';

/** Options of the authorizer. */
export interface AuthorizerOptions {
  readonly fetch: JsonFetcher;
  readonly now: () => number;
  readonly logger: Logger;
  /** Verified-token cache entries (0 disables). */
  readonly tokenCacheSize: number;
  /** Upper bound of a cache entry's life (ms); entries never outlive the token's exp. */
  readonly tokenCacheTtlMs: number;
  /** Worker threads checking ES/RS/PS signatures with node:crypto; 0: jose on the main thread. */
  readonly verifyThreads?: number;
  readonly onFetch?: (issuer: string, result: FetchResult) => void;
  readonly onCache?: (hit: boolean) => void;
  /** Browser sign-in events (sessions issued, refreshes, failures by reason). */
  readonly onSignin?: (e: SigninEvent) => void;
}

interface State {
  readonly policy: Policy;
  readonly keyStores: ReadonlyMap<string, KeyStore>;
  readonly cache: TokenCache;
  readonly signin: Signin | undefined;
}

const keyIdentity = (p: Provider): string => JSON.stringify([p.issuer, p.keys, p.cache]);

/**
 * Holds the active policy with its key stores and verified-token cache. A policy swap reuses the
 * key store of every provider whose key source is unchanged (no refetch storm on reload), closes
 * the others, and starts with an empty token cache.
 */
export class Authorizer {
  readonly #opts: AuthorizerOptions;
  readonly #signatures: SignatureWorkers | undefined;
  #state: State;

  constructor(policy: Policy, opts: AuthorizerOptions) {
    this.#opts = opts;
    this.#signatures = opts.verifyThreads ? new SignatureWorkers(opts.verifyThreads) : undefined;
    this.#state = this.#build(policy, new Map());
  }

  /** The active policy. */
  get policy(): Policy {
    return this.#state.policy;
  }

  /** Starts the first key fetches; resolves when they all settled. */
  async warm(): Promise<void> {
    await Promise.all([...this.#state.keyStores.values()].map((s) => s.start()));
  }

  /** Decides one request against the active policy. */
  decide(req: AuthRequest): Promise<Decision> {
    const s = this.#state;
    return decide(s.policy, req, {
      keyStores: s.keyStores,
      cache: s.cache,
      now: this.#opts.now,
      ...(this.#signatures ? { signatures: this.#signatures } : {}),
      ...(this.#opts.onCache ? { onCache: this.#opts.onCache } : {}),
      ...(s.signin ? { signin: s.signin } : {}),
    });
  }

  /** Activates a new policy. */
  replace(policy: Policy): void {
    const old = this.#state;
    const reusable = new Map<string, KeyStore>();
    for (const [name, store] of old.keyStores) {
      const p = old.policy.providers.get(name);
      if (p) reusable.set(keyIdentity(p), store);
    }
    this.#state = this.#build(policy, reusable);
    const kept = new Set(this.#state.keyStores.values());
    for (const s of old.keyStores.values()) if (!kept.has(s)) s.close();
    const previous = new Set(old.keyStores.values());
    for (const s of this.#state.keyStores.values()) if (!previous.has(s)) void s.start();
  }

  /** Key store status per provider (for /config). */
  keyStatus(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, s] of this.#state.keyStores) out[name] = s.status();
    return out;
  }

  /** Stops background refreshes and the signature workers. */
  close(): void {
    for (const s of this.#state.keyStores.values()) s.close();
    this.#signatures?.close();
  }

  #build(policy: Policy, reusable: ReadonlyMap<string, KeyStore>): State {
    const keyStores = new Map<string, KeyStore>();
    for (const [name, p] of policy.providers) {
      const store =
        reusable.get(keyIdentity(p)) ??
        new KeyStore(p, {
          fetch: this.#opts.fetch,
          now: this.#opts.now,
          logger: this.#opts.logger,
          ...(this.#opts.onFetch ? { onFetch: this.#opts.onFetch } : {}),
        });
      keyStores.set(name, store);
    }
    // ID tokens are checked with a cache of their own: one verified for the client id as audience
    // must never be found by a bearer check of the same provider, whose audiences differ.
    const idTokenDeps = {
      keyStores,
      cache: new TokenCache(0, 0),
      now: this.#opts.now,
      ...(this.#signatures ? { signatures: this.#signatures } : {}),
    };
    const signin =
      policy.logins.length === 0
        ? undefined
        : new Signin({
            now: this.#opts.now,
            logger: this.#opts.logger.child({ component: 'signin' }),
            providers: policy.providers,
            verifyIdToken: (token, p, clientId) =>
              verifyToken(token, [{ ...p, audiences: [clientId] }], idTokenDeps),
            ...(this.#opts.onSignin ? { onEvent: this.#opts.onSignin } : {}),
          });
    return {
      policy,
      keyStores,
      cache: new TokenCache(this.#opts.tokenCacheSize, this.#opts.tokenCacheTtlMs),
      signin,
    };
  }
}
