/**
 * Request checks of browser sign-in that hold no state: where the browser may be sent back to, what
 * counts as a navigation, and the cross-site request check of cookie-authenticated requests.
 */

/** Methods that change nothing (RFC 9110 safe methods): they need no cross-site check. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/**
 * The local path-and-query the browser may be sent back to after sign-in, or `/`. Only a path on
 * the same host passes: an absolute URL, a scheme-relative `//evil`, a backslash form `/\evil`
 * (browsers read `\` as `/`), control characters or anything not starting with `/` give `/`.
 */
export function safeReturnPath(target: string | undefined): string {
  if (target === undefined || target.length > 2048) return '/';
  if (!target.startsWith('/')) return '/';
  // Browsers strip tab/CR/LF inside URLs, so `/\t/evil` would become `//evil`: refuse every control char.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(target)) return '/';
  const second = target[1];
  if (second === '/' || second === '\\') return '/';
  // A percent-encoded second slash or backslash is decoded by some servers before redirecting again.
  if (/^\/%(2f|5c)/i.test(target)) return '/';
  try {
    // The same-origin test the browser will do: resolving against a fixed origin must stay on it.
    const u = new URL(target, 'http://same.invalid');
    if (u.origin !== 'http://same.invalid') return '/';
  } catch {
    return '/';
  }
  return target;
}

/** True for a request a browser makes to show a page: GET or HEAD accepting text/html. */
export function isNavigation(method: string, headers: Readonly<Record<string, string>>): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  const accept = headers['accept'] ?? '';
  return /(^|,)\s*text\/html\s*(;|,|$)/i.test(accept);
}

/** The origin (`scheme://host[:port]`) a URL-valued header names, or undefined when unreadable. */
function originOf(v: string): string | undefined {
  if (v === 'null') return 'null';
  try {
    return new URL(v).origin;
  } catch {
    return undefined;
  }
}

/** Outcome of the cross-site request check. */
export type CsrfResult = 'ok' | 'cross_site' | 'no_origin';

/**
 * The cross-site request check of a request authenticated by the session cookie: a safe method
 * passes; otherwise `Origin` (else `Referer`) must name `expectedOrigin`, or the request must carry
 * the header `csrfHeader` (a header a cross-site form cannot send without a CORS preflight).
 */
export function checkCsrf(
  method: string,
  headers: Readonly<Record<string, string>>,
  expectedOrigin: string,
  csrfHeader: string | undefined,
): CsrfResult {
  if (SAFE_METHODS.has(method)) return 'ok';
  if (csrfHeader !== undefined && (headers[csrfHeader] ?? '') !== '') return 'ok';
  const origin = headers['origin'];
  if (origin !== undefined) return originOf(origin) === expectedOrigin ? 'ok' : 'cross_site';
  const referer = headers['referer'];
  if (referer !== undefined) return originOf(referer) === expectedOrigin ? 'ok' : 'cross_site';
  return 'no_origin';
}

/** The request's own origin from Envoy's `x-forwarded-proto` and the Host. */
export function requestOrigin(
  host: string,
  headers: Readonly<Record<string, string>>,
  fallbackScheme: string,
): string {
  const proto = (headers['x-forwarded-proto'] ?? '').split(',')[0]?.trim().toLowerCase();
  const scheme = proto === 'http' || proto === 'https' ? proto : fallbackScheme;
  try {
    return new URL(`${scheme}://${host}`).origin;
  } catch {
    return `${scheme}://invalid.invalid`;
  }
}

/**
 * Every non-empty value of the cookie `name` in a Cookie header. Several Cookie headers arrive
 * joined (`; ` per RFC 6265 by Node, `,` in Envoy's merged CheckRequest header map): both
 * separators are accepted.
 */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(/;\s*|,\s*/)) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      const v = part
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
      if (v !== '') out.push(v);
    }
  }
  return out;
}

/**
 * Reads one cookie from a Cookie header; undefined when it is absent or present more than once.
 * A second copy means another site (a sibling subdomain, a cookie value holding `,name=`) planted
 * one: neither is trusted, so a planted session can never win over, or stand in for, the real one.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  const values = cookieValues(header, name);
  return values.length === 1 ? values[0] : undefined;
}
