import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import * as oauth from 'oauth4webapi';
import type { Logger } from '@extsvc/common/logger';
import type { Provider } from '../policy.ts';
import type { VerifyResult } from '../verifier.ts';
import { EDGE_STACK_PATHS, type LoginSettings } from './config.ts';
import { checkCsrf, cookieValues, isNavigation, readCookie, requestOrigin, safeReturnPath } from './guard.ts';
import { Sealer } from './seal.ts';

/** Why a sign-in, refresh or session check failed (metrics label, /diag, logs). */
export type LoginFailure =
  | 'state_missing'
  | 'state_mismatch'
  | 'idp_error'
  | 'code_rejected'
  | 'id_token_invalid'
  | 'wrong_issuer'
  | 'idp_unavailable'
  | 'discovery_failed'
  | 'session_too_large'
  | 'session_invalid'
  | 'session_expired'
  | 'refresh_failed'
  | 'csrf'
  | 'cookie_duplicate';

/** Sign-in events, counted by the server (metrics and /diag). */
export type SigninEvent =
  | { readonly kind: 'redirect'; readonly login: string }
  | { readonly kind: 'session'; readonly login: string }
  | { readonly kind: 'refresh'; readonly login: string; readonly ok: boolean }
  | { readonly kind: 'logout'; readonly login: string }
  | { readonly kind: 'failure'; readonly login: string; readonly reason: LoginFailure };

/** The request fields sign-in reads (a subset of AuthRequest). */
export interface SigninRequest {
  readonly method: string;
  readonly host: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The ext_authz contract the request came through: HTTP mode cannot set cookies on an allow. */
  readonly transport?: 'grpc' | 'http';
}

/** An answer of sign-in to the browser: Envoy sends it as the denied response. */
export interface SigninAnswer {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
  /** deny reason: login_redirect, login_callback, login_failed, logout. */
  readonly reason: 'login_redirect' | 'login_callback' | 'login_failed' | 'logout';
}

/** The session found in a request. */
export type SessionState =
  | { readonly kind: 'none'; readonly hadCookie: boolean }
  | {
      readonly kind: 'valid';
      readonly provider: string;
      readonly claims: Readonly<Record<string, unknown>>;
      /** Set-Cookie headers for the response (a refreshed session). */
      readonly setCookie: readonly string[];
    }
  | { readonly kind: 'answer'; readonly answer: SigninAnswer };

/** Dependencies of sign-in. */
export interface SigninDeps {
  readonly now: () => number;
  readonly logger: Logger;
  /** The policy's providers (the login block names one). */
  readonly providers: ReadonlyMap<string, Provider>;
  /** Verifies an ID token with the provider's keys and rules (audience: the client id). */
  readonly verifyIdToken: (token: string, provider: Provider, clientId: string) => Promise<VerifyResult>;
  readonly onEvent?: (e: SigninEvent) => void;
}

/** The sealed session cookie content. */
interface SessionData {
  /** provider name */
  readonly p: string;
  /** ID token claims */
  readonly c: Record<string, unknown>;
  /** refresh token */
  readonly r?: string;
  /** token expiry (epoch s): refresh before it, the session ends at it without a refresh token */
  readonly e: number;
  /** end of the session (epoch s): sign-in + sessionTtl */
  readonly m: number;
}

/** The sealed sign-in state cookie content. */
interface StateData {
  readonly s: string;
  readonly n: string;
  readonly v: string;
  /** local path to return to */
  readonly u: string;
  /** expiry (epoch s) */
  readonly x: number;
}

/** Largest sealed session cookie (browsers keep 4096 bytes per cookie, name and attributes included). */
const MAX_COOKIE_BYTES = 3800;
/** ID token claims that say nothing about the user and are not kept in the session. */
const DROPPED_CLAIMS = ['nonce', 'at_hash', 'c_hash', 's_hash', 'sid', 'auth_time', 'acr', 'amr', 'azp'];
const DISCOVERY_TTL_MS = 600_000;

/**
 * True for a loopback address (127.0.0.0/8, ::1) or exactly `localhost`: the only hosts an http
 * discovery or token endpoint may be on without allowHttp. A name like `127.0.0.1.nip.io` is not one.
 */
export function isLoopbackHost(h: string): boolean {
  const host = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  if (host.toLowerCase() === 'localhost') return true;
  switch (isIP(host)) {
    case 4:
      return host.split('.')[0] === '127';
    case 6:
      return host === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(host);
    default:
      return false;
  }
}

/**
 * HTTP mode: Envoy's http_service passes a single Set-Cookie of a denied answer to the client (the
 * last one when several are sent, as seen with the Envoy of the integration tests), so only the
 * first, essential cookie is sent (state on a redirect to sign in, the session on the callback, its
 * removal on logout); the others expire on their own or are overwritten later.
 */
function oneCookieForHttp(req: SigninRequest, a: SigninAnswer): SigninAnswer {
  if (req.transport !== 'http') return a;
  let seen = false;
  const headers = a.headers.filter(([k]) => {
    if (k !== 'set-cookie') return true;
    if (seen) return false;
    seen = true;
    return true;
  });
  return { ...a, headers };
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** The answer to a logout path asked with another method than POST: 405 and a page that POSTs. */
function logoutPage(logoutPath: string): SigninAnswer {
  const action = logoutPath.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
  return {
    status: 405,
    headers: [
      ['allow', 'POST'],
      ['content-type', 'text/html; charset=utf-8'],
      ['cache-control', 'no-store'],
    ],
    body:
      '<!doctype html><html><head><meta charset="utf-8"><title>Sign out</title></head><body>' +
      `<form method="post" action="${action}"><button type="submit">Sign out</button></form>` +
      '</body></html>',
    reason: 'logout',
  };
}

/** Maps an oauth4webapi or fetch failure to a failure reason. */
function failureOf(err: unknown): LoginFailure {
  if (err instanceof oauth.AuthorizationResponseError) return 'idp_error';
  if (err instanceof oauth.ResponseBodyError) return 'code_rejected';
  if (err instanceof oauth.OperationProcessingError) {
    const e = err as { code?: string; cause?: unknown };
    const cause = e.cause as { claim?: string; parameter?: string } | undefined;
    if (cause?.claim === 'iss' || cause?.parameter === 'iss') return 'wrong_issuer';
    if (err.message.includes('"state"')) return 'state_mismatch';
    if (err.message.includes('"iss"') || err.message.includes('issuer')) return 'wrong_issuer';
    return 'id_token_invalid';
  }
  return 'idp_unavailable';
}

/**
 * Browser sign-in with the OIDC authorization code flow (PKCE S256, state, nonce) through
 * oauth4webapi. Sessions live in sealed cookies, so any replica with the same keys serves them.
 * Holds only caches: discovery documents and in-flight refreshes.
 */
export class Signin {
  readonly #deps: SigninDeps;
  readonly #sealers = new Map<string, Sealer>();
  readonly #discovery = new Map<string, { as: oauth.AuthorizationServer; at: number }>();
  readonly #refreshing = new Map<string, Promise<SessionData | undefined>>();

  constructor(deps: SigninDeps) {
    this.#deps = deps;
  }

  #sealer(l: LoginSettings): Sealer {
    let s = this.#sealers.get(l.id);
    if (!s) {
      s = new Sealer(l.sessionKeys.map((k) => Buffer.from(k, 'base64url')));
      this.#sealers.set(l.id, s);
    }
    return s;
  }

  #event(e: SigninEvent): void {
    this.#deps.onEvent?.(e);
  }

  #fail(l: LoginSettings, reason: LoginFailure): void {
    this.#event({ kind: 'failure', login: l.id, reason });
  }

  #provider(l: LoginSettings): Provider {
    const p = this.#deps.providers.get(l.provider);
    if (!p) throw new Error(`login provider '${l.provider}' is not configured`);
    return p;
  }

  #insecure(p: Provider, url: string): boolean {
    const u = new URL(url);
    return u.protocol === 'http:' && (p.cache.allowHttp || isLoopbackHost(u.hostname));
  }

  /** The provider's discovery document (cached 10 minutes; a failure is not cached). */
  async #server(l: LoginSettings): Promise<oauth.AuthorizationServer> {
    const p = this.#provider(l);
    const hit = this.#discovery.get(p.name);
    const now = this.#deps.now();
    if (hit && now - hit.at < DISCOVERY_TTL_MS) return hit.as;
    const issuer = new URL(p.issuer);
    const url =
      p.keys.kind === 'discovery'
        ? p.keys.url
        : `${p.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    if (new URL(url).protocol === 'http:' && !this.#insecure(p, url))
      throw new Error('http discovery refused');
    const res = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
      signal: AbortSignal.timeout(l.timeoutMs),
    });
    const as = await oauth.processDiscoveryResponse(issuer, res);
    this.#discovery.set(p.name, { as, at: now });
    return as;
  }

  #client(l: LoginSettings): oauth.Client {
    return { client_id: l.clientId };
  }

  #clientAuth(l: LoginSettings): oauth.ClientAuth {
    return l.clientAuth === 'post'
      ? oauth.ClientSecretPost(l.clientSecret)
      : oauth.ClientSecretBasic(l.clientSecret);
  }

  #options(l: LoginSettings, as: oauth.AuthorizationServer): oauth.TokenEndpointRequestOptions {
    const p = this.#provider(l);
    return {
      signal: AbortSignal.timeout(l.timeoutMs),
      ...(as.token_endpoint && this.#insecure(p, as.token_endpoint)
        ? { [oauth.allowInsecureRequests]: true }
        : {}),
    };
  }

  /** The request's origin (x-forwarded-proto + Host), or the fixed origin of an absolute redirectPath. */
  #origin(l: LoginSettings, req: SigninRequest): string {
    if (/^https?:\/\//.test(l.redirectPath)) return new URL(l.redirectPath).origin;
    return requestOrigin(req.host, req.headers, l.cookie.secure ? 'https' : 'http');
  }

  #redirectUri(l: LoginSettings, req: SigninRequest): string {
    return /^https?:\/\//.test(l.redirectPath) ? l.redirectPath : `${this.#origin(l, req)}${l.redirectPath}`;
  }

  #callbackPath(l: LoginSettings): string {
    return /^https?:\/\//.test(l.redirectPath) ? new URL(l.redirectPath).pathname : l.redirectPath;
  }

  /** `Set-Cookie` for `name` with the block's attributes; `maxAgeSec` 0 clears it. */
  #cookie(l: LoginSettings, name: string, value: string, maxAgeSec: number): string {
    const parts = [
      `${name}=${value}`,
      'Path=/',
      'HttpOnly',
      `SameSite=${l.cookie.sameSite[0]?.toUpperCase()}${l.cookie.sameSite.slice(1)}`,
    ];
    if (l.cookie.secure) parts.push('Secure');
    if (l.cookie.domain !== undefined) parts.push(`Domain=${l.cookie.domain}`);
    parts.push(`Max-Age=${Math.max(0, Math.floor(maxAgeSec))}`);
    return parts.join('; ');
  }

  #stateName(l: LoginSettings): string {
    return `${l.cookie.name}_state`;
  }

  /** True when `path` (without query) is the callback or logout path of `l`. */
  isEndpoint(l: LoginSettings, path: string): boolean {
    return (
      path === this.#callbackPath(l) ||
      path === l.logoutPath ||
      (l.edgeStack !== undefined && path === EDGE_STACK_PATHS.postLogout)
    );
  }

  /** Answers the callback or logout path of `l`. */
  async endpoint(l: LoginSettings, req: SigninRequest, path: string): Promise<SigninAnswer> {
    return oneCookieForHttp(
      req,
      await (path === l.logoutPath
        ? this.#logout(l, req)
        : l.edgeStack !== undefined && path === EDGE_STACK_PATHS.postLogout
          ? this.#postLogout(l, req)
          : this.#callback(l, req)),
    );
  }

  #redirect(location: string, cookies: readonly string[], reason: SigninAnswer['reason']): SigninAnswer {
    return {
      status: 302,
      headers: [
        ['location', location],
        ...cookies.map((c) => ['set-cookie', c] as const),
        ['content-type', 'text/plain'],
      ],
      body: '',
      reason,
    };
  }

  #failed(l: LoginSettings, reason: LoginFailure): SigninAnswer {
    this.#fail(l, reason);
    const body = JSON.stringify({ status: 403, error: 'access_denied', code: 'login_failed', reason });
    return {
      status: 403,
      headers: [
        ['content-type', 'application/json'],
        ['set-cookie', this.#cookie(l, this.#stateName(l), '', 0)],
      ],
      body,
      reason: 'login_failed',
    };
  }

  /**
   * The answer that sends a browser to the provider's authorization endpoint: PKCE S256, state and
   * nonce sealed with the return path into a short-lived cookie. `clearSession` also drops a bad
   * session cookie.
   */
  async startLogin(l: LoginSettings, req: SigninRequest, clearSession: boolean): Promise<SigninAnswer> {
    return oneCookieForHttp(req, await this.#startLogin(l, req, clearSession));
  }

  async #startLogin(l: LoginSettings, req: SigninRequest, clearSession: boolean): Promise<SigninAnswer> {
    let as: oauth.AuthorizationServer;
    try {
      as = await this.#server(l);
    } catch (err) {
      this.#deps.logger.warn(
        { login: l.id, err: String((err as Error).message) },
        'sign-in: discovery failed',
      );
      return this.#failed(l, 'discovery_failed');
    }
    if (!as.authorization_endpoint) return this.#failed(l, 'discovery_failed');
    const verifier = oauth.generateRandomCodeVerifier();
    const state: StateData = {
      s: oauth.generateRandomState(),
      n: oauth.generateRandomNonce(),
      v: verifier,
      u: safeReturnPath(req.path),
      x: Math.floor((this.#deps.now() + l.stateTtlMs) / 1000),
    };
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set('client_id', l.clientId);
    url.searchParams.set('redirect_uri', this.#redirectUri(l, req));
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', l.scopes.join(' '));
    url.searchParams.set('state', state.s);
    url.searchParams.set('nonce', state.n);
    url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
    url.searchParams.set('code_challenge_method', 'S256');
    const cookies = [
      this.#cookie(
        l,
        this.#stateName(l),
        this.#sealer(l).seal(this.#stateName(l), JSON.stringify(state)),
        l.stateTtlMs / 1000,
      ),
    ];
    if (clearSession) cookies.push(this.#cookie(l, l.cookie.name, '', 0));
    this.#event({ kind: 'redirect', login: l.id });
    return this.#redirect(url.toString(), cookies, 'login_redirect');
  }

  async #callback(l: LoginSettings, req: SigninRequest): Promise<SigninAnswer> {
    const sealed = readCookie(req.headers['cookie'], this.#stateName(l));
    const text = sealed === undefined ? undefined : this.#sealer(l).open(this.#stateName(l), sealed);
    let state: StateData | undefined;
    try {
      state = text === undefined ? undefined : (JSON.parse(text) as StateData);
    } catch {
      state = undefined;
    }
    if (!state || state.x * 1000 < this.#deps.now()) return this.#failed(l, 'state_missing');
    let as: oauth.AuthorizationServer;
    try {
      as = await this.#server(l);
    } catch {
      return this.#failed(l, 'idp_unavailable');
    }
    const client = this.#client(l);
    const redirectUri = this.#redirectUri(l, req);
    let tokens: oauth.TokenEndpointResponse;
    try {
      const params = oauth.validateAuthResponse(as, client, new URL(req.path, redirectUri), state.s);
      const res = await oauth.authorizationCodeGrantRequest(
        as,
        client,
        this.#clientAuth(l),
        params,
        redirectUri,
        state.v,
        this.#options(l, as),
      );
      tokens = await oauth.processAuthorizationCodeResponse(as, client, res, {
        expectedNonce: state.n,
        requireIdToken: true,
      });
    } catch (err) {
      const reason = failureOf(err);
      this.#deps.logger.info(
        {
          login: l.id,
          reason,
          error: err instanceof Error ? err.name : 'error',
          code: (err as { code?: string }).code,
        },
        'sign-in: callback failed',
      );
      return this.#failed(l, reason);
    }
    const session = await this.#sessionFrom(l, tokens, undefined);
    if (typeof session === 'string') return this.#failed(l, session);
    const cookie = this.#sealer(l).seal(l.cookie.name, JSON.stringify(session));
    if (cookie.length > MAX_COOKIE_BYTES) return this.#failed(l, 'session_too_large');
    this.#event({ kind: 'session', login: l.id });
    return this.#redirect(
      safeReturnPath(state.u),
      [
        this.#cookie(l, l.cookie.name, cookie, session.m - this.#deps.now() / 1000),
        this.#cookie(l, this.#stateName(l), '', 0),
      ],
      'login_callback',
    );
  }

  /** Builds session data from a token response; the ID token is verified with the provider's keys. */
  async #sessionFrom(
    l: LoginSettings,
    tokens: oauth.TokenEndpointResponse,
    previous: SessionData | undefined,
  ): Promise<SessionData | LoginFailure> {
    const p = this.#provider(l);
    let claims = previous?.c;
    let idExp: number | undefined;
    if (tokens.id_token !== undefined) {
      const v = await this.#deps.verifyIdToken(tokens.id_token, p, l.clientId);
      if (v.kind !== 'ok') {
        this.#deps.logger.info(
          { login: l.id, reason: v.kind === 'invalid' ? v.reason : 'keys_unavailable' },
          'sign-in: ID token refused',
        );
        return v.kind === 'invalid' && v.reason === 'wrong_issuer' ? 'wrong_issuer' : 'id_token_invalid';
      }
      if (previous && v.claims.sub !== previous.c['sub']) return 'id_token_invalid';
      claims = { ...v.claims };
      for (const k of DROPPED_CLAIMS) delete claims[k];
      idExp = typeof v.claims.exp === 'number' ? v.claims.exp : undefined;
    }
    if (!claims) return 'id_token_invalid';
    if (tokens.scope !== undefined && claims['scope'] === undefined) claims['scope'] = tokens.scope;
    const nowSec = Math.floor(this.#deps.now() / 1000);
    const expiresIn = typeof tokens.expires_in === 'number' ? nowSec + tokens.expires_in : undefined;
    const m = previous?.m ?? nowSec + Math.floor(l.sessionTtlMs / 1000);
    const e = Math.min(expiresIn ?? idExp ?? m, m);
    const r = tokens.refresh_token ?? previous?.r;
    return { p: p.name, c: claims, e, m, ...(r !== undefined ? { r } : {}) };
  }

  /** Reads, checks and (when due) refreshes the session of `l` in a request. */
  async session(l: LoginSettings, req: SigninRequest): Promise<SessionState> {
    const copies = cookieValues(req.headers['cookie'], l.cookie.name);
    // Two session cookies: one was planted (login CSRF, session fixation). Neither is used; the browser
    // is told so instead of being sent to sign in again (the planted copy would come back every time).
    if (copies.length > 1) {
      this.#fail(l, 'cookie_duplicate');
      const body = JSON.stringify({
        status: 400,
        error: 'invalid_request',
        code: 'login_failed',
        reason: 'cookie_duplicate',
      });
      return {
        kind: 'answer',
        answer: {
          status: 400,
          headers: [
            ['content-type', 'application/json'],
            ['set-cookie', this.#cookie(l, l.cookie.name, '', 0)],
          ],
          body,
          reason: 'login_failed',
        },
      };
    }
    const sealed = copies[0];
    if (sealed === undefined) return { kind: 'none', hadCookie: false };
    const text = this.#sealer(l).open(l.cookie.name, sealed);
    let s: SessionData | undefined;
    try {
      s = text === undefined ? undefined : (JSON.parse(text) as SessionData);
    } catch {
      s = undefined;
    }
    if (!s || typeof s.e !== 'number' || typeof s.m !== 'number' || s.p !== l.provider) {
      this.#fail(l, 'session_invalid');
      return { kind: 'none', hadCookie: true };
    }
    const now = this.#deps.now();
    if (s.m * 1000 <= now) {
      this.#fail(l, 'session_expired');
      return { kind: 'none', hadCookie: true };
    }
    const valid = (data: SessionData, setCookie: readonly string[]): SessionState => ({
      kind: 'valid',
      provider: data.p,
      claims: data.c,
      setCookie,
    });
    if (now < s.e * 1000 - l.refreshBeforeMs || s.r === undefined || s.e >= s.m) {
      if (now < s.e * 1000) return valid(s, []);
      this.#fail(l, 'session_expired');
      return { kind: 'none', hadCookie: true };
    }
    // HTTP mode cannot set a cookie on an allow (Envoy copies a 200's Set-Cookie upstream): refresh only
    // on navigations, answered with a redirect to the same URL that carries the new cookie.
    const http = req.transport === 'http';
    if (http && !isNavigation(req.method, req.headers)) {
      if (now < s.e * 1000) return valid(s, []);
      this.#fail(l, 'session_expired');
      return { kind: 'none', hadCookie: true };
    }
    const fresh = await this.#refresh(l, s);
    if (!fresh) {
      if (now < s.e * 1000) return valid(s, []);
      return { kind: 'none', hadCookie: true };
    }
    const cookie = this.#cookie(
      l,
      l.cookie.name,
      this.#sealer(l).seal(l.cookie.name, JSON.stringify(fresh)),
      fresh.m - now / 1000,
    );
    if (http)
      return { kind: 'answer', answer: this.#redirect(safeReturnPath(req.path), [cookie], 'login_callback') };
    return valid(fresh, [cookie]);
  }

  /** One refresh per refresh token at a time (a page's parallel requests share it). */
  #refresh(l: LoginSettings, s: SessionData): Promise<SessionData | undefined> {
    const key = createHash('sha256')
      .update(`${l.id}\0${s.r ?? ''}`)
      .digest('base64url');
    let p = this.#refreshing.get(key);
    if (!p) {
      p = this.#doRefresh(l, s).finally(() => {
        // Keep the result briefly for requests that still carry the old cookie.
        const t = setTimeout(() => this.#refreshing.delete(key), 10_000);
        t.unref();
      });
      this.#refreshing.set(key, p);
    }
    return p;
  }

  async #doRefresh(l: LoginSettings, s: SessionData): Promise<SessionData | undefined> {
    try {
      const as = await this.#server(l);
      const client = this.#client(l);
      const res = await oauth.refreshTokenGrantRequest(
        as,
        client,
        this.#clientAuth(l),
        s.r ?? '',
        this.#options(l, as),
      );
      const tokens = await oauth.processRefreshTokenResponse(as, client, res);
      const fresh = await this.#sessionFrom(l, tokens, s);
      if (typeof fresh === 'string') throw new Error(fresh);
      this.#event({ kind: 'refresh', login: l.id, ok: true });
      return fresh;
    } catch (err) {
      this.#event({ kind: 'refresh', login: l.id, ok: false });
      this.#fail(l, 'refresh_failed');
      this.#deps.logger.info(
        {
          login: l.id,
          error: err instanceof Error ? err.name : 'error',
          code: (err as { code?: string }).code,
        },
        'sign-in: refresh failed',
      );
      return undefined;
    }
  }

  /** Where the browser lands after logout, as an absolute URL. */
  #landing(l: LoginSettings, req: SigninRequest): string {
    return /^https?:\/\//.test(l.postLogoutRedirect)
      ? l.postLogoutRedirect
      : `${this.#origin(l, req)}${l.postLogoutRedirect}`;
  }

  /** Edge Stack's post-logout return path: on to the configured landing page. */
  #postLogout(l: LoginSettings, req: SigninRequest): SigninAnswer {
    return this.#redirect(this.#landing(l, req), [], 'logout');
  }

  async #logout(l: LoginSettings, req: SigninRequest): Promise<SigninAnswer> {
    const method = req.method.toUpperCase();
    // Logging out is a state change: a cross-site page (an <img>, a link, a form) may not do it for the
    // user. Only a POST with a same-origin Origin/Referer (or the csrfHeader) logs out; a GET gets a page
    // whose button sends that POST. Edge Stack's logout is a POST too (its _xsrf form field needs the
    // body, which ext_authz does not send by default: the same-origin check stands in for it).
    if (method !== 'POST') return logoutPage(l.logoutPath);
    if (checkCsrf(method, req.headers, this.#origin(l, req), l.csrfHeader) !== 'ok')
      return this.#failed(l, 'csrf');
    const clear = [this.#cookie(l, l.cookie.name, '', 0), this.#cookie(l, this.#stateName(l), '', 0)];
    this.#event({ kind: 'logout', login: l.id });
    // Edge Stack registered {origin}/.ambassador/oauth2/post-logout-redirect at the IdP: keep using it.
    const landing =
      l.edgeStack !== undefined
        ? `${this.#origin(l, req)}${EDGE_STACK_PATHS.postLogout}`
        : this.#landing(l, req);
    let as: oauth.AuthorizationServer | undefined;
    try {
      as = await this.#server(l);
    } catch {
      as = undefined;
    }
    if (as?.end_session_endpoint) {
      const u = new URL(as.end_session_endpoint);
      u.searchParams.set('client_id', l.clientId);
      u.searchParams.set('post_logout_redirect_uri', landing);
      return this.#redirect(u.toString(), clear, 'logout');
    }
    return this.#redirect(landing, clear, 'logout');
  }
}
