import type { Ctx as PolicyContext, Provider } from '../policy.ts';
import { parseKeyFile } from './seal.ts';

/** SameSite attribute of the sign-in cookies. */
export type SameSite = 'lax' | 'strict' | 'none';

/** Cookie settings of a login block. */
export interface LoginCookie {
  /** Session cookie name (default `authz_session`); the sign-in state cookie is `<name>_state`. */
  readonly name: string;
  /** Domain attribute; unset (default) is a host-only cookie. */
  readonly domain: string | undefined;
  /** Secure attribute (default true). */
  readonly secure: boolean;
  /** SameSite attribute (default lax: the IdP's redirect back is a top-level GET that must carry it). */
  readonly sameSite: SameSite;
}

/** Edge Stack OAuth2 filter compatibility: its paths, cookie names and logout form. */
export interface EdgeStackPreset {
  /** The Filter's metadata.name and metadata.namespace (they name the cookies). */
  readonly name: string;
  readonly namespace: string;
}

/** A browser sign-in (OIDC authorization code flow) block of a policy or rule. */
export interface LoginSettings {
  /** Field path of the block (`rules[2].login`): its identity on /diag and in logs. */
  readonly id: string;
  /** Provider entry (issuer with discovery) whose verifier checks the ID token. */
  readonly provider: string;
  readonly clientId: string;
  /** Client secret (from a file or the environment; never shown). */
  readonly clientSecret: string;
  /** Token endpoint client authentication: `basic` (default, Edge Stack HeaderPassword) or `post`. */
  readonly clientAuth: 'basic' | 'post';
  /** Requested scopes, `openid` first and always. */
  readonly scopes: readonly string[];
  /** Callback path, or an absolute callback URL (then its origin is fixed). */
  readonly redirectPath: string;
  /** Logout path (GET, or POST with the xsrf form field under the Edge Stack preset). */
  readonly logoutPath: string;
  /** Where the browser lands after logout: a local path or an absolute URL. */
  readonly postLogoutRedirect: string;
  readonly cookie: LoginCookie;
  /** Session cookie keys (AES-256-GCM, base64url of 32 bytes: strings survive deepFreeze), the first seals, all open; never shown. */
  readonly sessionKeys: readonly string[];
  /** Longest session from sign-in (ms), default 8 h; refreshes never extend it. */
  readonly sessionTtlMs: number;
  /** Refresh this long before the tokens expire (ms), default 60 s. */
  readonly refreshBeforeMs: number;
  /** Life of the sign-in state cookie (ms), default 10 min. */
  readonly stateTtlMs: number;
  /** A request header that passes the cross-site check of unsafe methods (e.g. x-requested-with). */
  readonly csrfHeader: string | undefined;
  /** Answer non-navigation requests without a session with this status instead of 401. */
  readonly insteadOfRedirect:
    { readonly header: string; readonly value: RegExp | undefined; readonly status: number } | undefined;
  /** Timeout of discovery and token endpoint calls (ms), default 5 s. */
  readonly timeoutMs: number;
  /** Edge Stack OAuth2 filter compatibility, when set. */
  readonly edgeStack: EdgeStackPreset | undefined;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The Edge Stack OAuth2 filter paths (callback, logout, post-logout landing). */
export const EDGE_STACK_PATHS = {
  callback: '/.ambassador/oauth2/redirection-endpoint',
  logout: '/.ambassador/oauth2/logout',
  postLogout: '/.ambassador/oauth2/post-logout-redirect',
} as const;

/** A secret that must come from a file or the environment (no inline value in the policy file). */
function externalSecret(
  ctx: PolicyContext,
  v: unknown,
  field: string,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  if (v === undefined || v === null) {
    ctx.add(field, 'required ({file} or {env})');
    return undefined;
  }
  if (!isObj(v) || v['value'] !== undefined) {
    ctx.add(field, 'must be {file: path} or {env: NAME} (no inline secrets in the policy file)');
    return undefined;
  }
  return ctx.secret(v, field, env);
}

function localPath(ctx: PolicyContext, v: unknown, field: string, def: string): string {
  if (v === undefined || v === null) return def;
  const s = ctx.str(v, field);
  if (s === undefined) return def;
  if (!s.startsWith('/') || s.startsWith('//') || /[?#\s\\]/.test(s)) {
    ctx.add(field, "must be a path starting with '/' (no query, no '//')");
    return def;
  }
  return s;
}

/**
 * Parses a `login` block. `providers` are the policy's providers: the block names one of them,
 * whose issuer is used for discovery and whose verifier checks the ID token.
 */
export function parseLogin(
  ctx: PolicyContext,
  v: unknown,
  field: string,
  providers: ReadonlyMap<string, Provider>,
  env: Readonly<Record<string, string | undefined>>,
): LoginSettings | undefined {
  if (!isObj(v)) {
    ctx.add(field, 'must be a mapping');
    return undefined;
  }
  ctx.keys(v, field, [
    'provider',
    'clientId',
    'clientSecret',
    'clientAuth',
    'scopes',
    'redirectPath',
    'logoutPath',
    'postLogoutRedirect',
    'cookie',
    'sessionKeys',
    'sessionTtl',
    'refreshBefore',
    'stateTtl',
    'csrfHeader',
    'insteadOfRedirect',
    'timeout',
    'edgeStack',
  ]);
  const provider = ctx.str(v['provider'], `${field}.provider`, { required: true });
  const p = provider === undefined ? undefined : providers.get(provider);
  if (provider !== undefined && !p) ctx.add(`${field}.provider`, `unknown provider '${provider}'`);
  else if (p && p.keys.kind !== 'discovery')
    ctx.add(
      `${field}.provider`,
      `provider '${provider}' must use issuer discovery (no jwks, jwksUri, jwksFile or hmacSecret)`,
    );
  const clientId = ctx.str(v['clientId'], `${field}.clientId`, { required: true });
  const clientSecret = externalSecret(ctx, v['clientSecret'], `${field}.clientSecret`, env);
  const clientAuth = v['clientAuth'] ?? 'basic';
  if (clientAuth !== 'basic' && clientAuth !== 'post')
    ctx.add(`${field}.clientAuth`, 'must be basic or post');
  const rawScopes =
    typeof v['scopes'] === 'string'
      ? v['scopes'].split(/\s+/).filter((s) => s !== '')
      : (ctx.strList(v['scopes'], `${field}.scopes`) ?? []);
  const scopes = ['openid', ...rawScopes.filter((s) => s !== 'openid')];
  let edgeStack: EdgeStackPreset | undefined;
  if (v['edgeStack'] !== undefined) {
    const e = v['edgeStack'];
    if (!isObj(e)) ctx.add(`${field}.edgeStack`, 'must be {name, namespace} (the Filter it replaces)');
    else {
      ctx.keys(e, `${field}.edgeStack`, ['name', 'namespace']);
      const name = ctx.str(e['name'], `${field}.edgeStack.name`, { required: true });
      const namespace = ctx.str(e['namespace'], `${field}.edgeStack.namespace`, { required: true });
      if (name !== undefined && namespace !== undefined) edgeStack = { name, namespace };
    }
  }
  const c = v['cookie'] ?? {};
  let cookie: LoginCookie = {
    name: edgeStack ? `ambassador_session.${edgeStack.name}.${edgeStack.namespace}` : 'authz_session',
    domain: undefined,
    secure: true,
    sameSite: 'lax',
  };
  if (!isObj(c)) ctx.add(`${field}.cookie`, 'must be a mapping');
  else {
    ctx.keys(c, `${field}.cookie`, ['name', 'domain', 'secure', 'sameSite']);
    const name = c['name'] === undefined ? cookie.name : ctx.str(c['name'], `${field}.cookie.name`);
    if (name !== undefined && !COOKIE_NAME.test(name))
      ctx.add(`${field}.cookie.name`, 'not a valid cookie name');
    const domain = c['domain'] === undefined ? undefined : ctx.str(c['domain'], `${field}.cookie.domain`);
    if (domain !== undefined && !/^\.?[a-z0-9.-]+$/i.test(domain))
      ctx.add(`${field}.cookie.domain`, 'not a valid domain');
    const sameSite =
      typeof c['sameSite'] === 'string'
        ? c['sameSite'].toLowerCase()
        : c['sameSite'] === undefined
          ? 'lax'
          : '?';
    if (sameSite !== 'lax' && sameSite !== 'strict' && sameSite !== 'none')
      ctx.add(`${field}.cookie.sameSite`, 'must be lax, strict or none');
    const secure = ctx.bool(c['secure'], `${field}.cookie.secure`, true);
    if (sameSite === 'none' && !secure) ctx.add(`${field}.cookie.sameSite`, 'none requires secure: true');
    cookie = {
      name: name ?? cookie.name,
      domain,
      secure,
      sameSite: sameSite === 'strict' ? 'strict' : sameSite === 'none' ? 'none' : 'lax',
    };
  }
  let sessionKeys: string[] = [];
  const keyText = externalSecret(ctx, v['sessionKeys'], `${field}.sessionKeys`, env);
  if (keyText !== undefined) {
    const parsed = parseKeyFile(keyText);
    if (typeof parsed === 'string') ctx.add(`${field}.sessionKeys`, parsed);
    else sessionKeys = parsed.map((k) => Buffer.from(k).toString('base64url'));
  }
  let redirectPath = edgeStack ? EDGE_STACK_PATHS.callback : '/oauth2/callback';
  if (typeof v['redirectPath'] === 'string' && /^https?:\/\//.test(v['redirectPath'])) {
    try {
      const u = new URL(v['redirectPath']);
      if (u.search !== '' || u.hash !== '') throw new Error('query');
      redirectPath = u.toString();
    } catch {
      ctx.add(`${field}.redirectPath`, 'must be a path or an http(s) URL without query');
    }
  } else redirectPath = localPath(ctx, v['redirectPath'], `${field}.redirectPath`, redirectPath);
  const logoutPath = localPath(
    ctx,
    v['logoutPath'],
    `${field}.logoutPath`,
    edgeStack ? EDGE_STACK_PATHS.logout : '/oauth2/logout',
  );
  let postLogoutRedirect = '/';
  if (v['postLogoutRedirect'] !== undefined) {
    const s = ctx.str(v['postLogoutRedirect'], `${field}.postLogoutRedirect`);
    if (s !== undefined && /^https?:\/\//.test(s)) postLogoutRedirect = s;
    else postLogoutRedirect = localPath(ctx, s, `${field}.postLogoutRedirect`, '/');
  }
  let insteadOfRedirect: LoginSettings['insteadOfRedirect'];
  const ior = v['insteadOfRedirect'];
  if (ior !== undefined) {
    if (!isObj(ior))
      ctx.add(`${field}.insteadOfRedirect`, 'must be {ifRequestHeader: {name, value}, httpStatusCode}');
    else {
      const f = `${field}.insteadOfRedirect`;
      ctx.keys(ior, f, ['ifRequestHeader', 'httpStatusCode']);
      const h = ior['ifRequestHeader'];
      let header: string | undefined;
      let value: RegExp | undefined;
      if (!isObj(h)) ctx.add(`${f}.ifRequestHeader`, 'must be {name, value?}');
      else {
        ctx.keys(h, `${f}.ifRequestHeader`, ['name', 'value']);
        header = ctx.headerName(h['name'], `${f}.ifRequestHeader.name`);
        if (h['value'] !== undefined) {
          const src = ctx.str(h['value'], `${f}.ifRequestHeader.value`);
          if (src !== undefined)
            try {
              value = new RegExp(`^(?:${src})$`, 'u');
            } catch {
              ctx.add(`${f}.ifRequestHeader.value`, 'invalid regular expression');
            }
        }
      }
      const status = ctx.int(ior['httpStatusCode'], `${f}.httpStatusCode`, 403, 400);
      if (status > 499) ctx.add(`${f}.httpStatusCode`, 'must be a 4xx status');
      if (header !== undefined) insteadOfRedirect = { header, value, status };
    }
  }
  const csrfHeader =
    v['csrfHeader'] === undefined ? undefined : ctx.headerName(v['csrfHeader'], `${field}.csrfHeader`);
  const sessionTtlMs = ctx.duration(v['sessionTtl'], `${field}.sessionTtl`, 8 * 3600_000);
  const refreshBeforeMs = ctx.duration(v['refreshBefore'], `${field}.refreshBefore`, 60_000);
  const stateTtlMs = ctx.duration(v['stateTtl'], `${field}.stateTtl`, 600_000);
  const timeoutMs = ctx.duration(v['timeout'], `${field}.timeout`, 5000);
  if (sessionTtlMs < 1000) ctx.add(`${field}.sessionTtl`, 'must be at least 1s');
  if (stateTtlMs < 1000) ctx.add(`${field}.stateTtl`, 'must be at least 1s');
  if (timeoutMs <= 0) ctx.add(`${field}.timeout`, 'must be positive');
  if (redirectPath === logoutPath) ctx.add(`${field}.logoutPath`, 'must differ from redirectPath');
  if (
    provider === undefined ||
    clientId === undefined ||
    clientSecret === undefined ||
    sessionKeys.length === 0
  )
    return undefined;
  return {
    id: field,
    provider,
    clientId,
    clientSecret,
    clientAuth: clientAuth === 'post' ? 'post' : 'basic',
    scopes,
    redirectPath,
    logoutPath,
    postLogoutRedirect,
    cookie,
    sessionKeys,
    sessionTtlMs,
    refreshBeforeMs,
    stateTtlMs,
    csrfHeader,
    insteadOfRedirect,
    timeoutMs,
    edgeStack,
  };
}
