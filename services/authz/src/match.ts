/** Matches a request host: exact (`api.example.com`), suffix wildcard (`*.example.com`) or any (`*`). */
export type HostMatcher =
  | { readonly kind: 'exact'; readonly host: string }
  | { readonly kind: 'suffix'; readonly suffix: string }
  | { readonly kind: 'any' };

/** Matches a normalized request path (without query string). */
export type PathMatcher =
  | { readonly kind: 'exact'; readonly path: string }
  | { readonly kind: 'prefix'; readonly prefix: string }
  | { readonly kind: 'regex'; readonly regex: RegExp };

/** Parses a host pattern; lower-cased, port ignored. */
export function hostMatcher(pattern: string): HostMatcher {
  const p = pattern.trim().toLowerCase();
  if (p === '*') return { kind: 'any' };
  if (p.startsWith('*.')) return { kind: 'suffix', suffix: p.slice(1) };
  return { kind: 'exact', host: p };
}

/** Lower-cases a host and drops its port (IPv6 brackets kept). */
export function normalizeHost(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  const bare = colon === -1 ? h : h.slice(0, colon);
  return bare.endsWith('.') ? bare.slice(0, -1) : bare;
}

/** True when the normalized host matches. A wildcard needs at least one label before the suffix. */
export function matchHost(m: HostMatcher, host: string): boolean {
  switch (m.kind) {
    case 'any':
      return true;
    case 'exact':
      return host === m.host;
    case 'suffix':
      return host.length > m.suffix.length && host.endsWith(m.suffix);
  }
}

/** True when the path matches. */
export function matchPath(m: PathMatcher, path: string): boolean {
  switch (m.kind) {
    case 'exact':
      return path === m.path;
    case 'prefix':
      return path.startsWith(m.prefix);
    case 'regex':
      return m.regex.test(path);
  }
}

const UNRESERVED = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g;

/** A request target split for matching. */
export interface SplitTarget {
  /** The normalized path, without query string. */
  readonly path: string;
  readonly query: string;
  /**
   * A dot segment carried path parameters (`..;x`, `%2e;`): upstreams disagree on its meaning
   * (servlet containers resolve it, most others serve a literal segment), so it is refused.
   */
  readonly ambiguous: boolean;
}

/**
 * Splits a request target into a normalized path and its query string. Normalization makes
 * `/public/../admin`, `//admin`, `/%61dmin` and `/admin;jsessionid=1` match the rules for `/admin`,
 * as most upstreams would resolve them: percent-encoded unreserved characters are decoded (never
 * `%2F`, never `%3B`), path parameters (`;…`, up to the next `/`) removed from every segment as
 * servlet containers do, empty and `.` segments dropped, `..` resolved. An absolute-form target
 * keeps only its path.
 */
export function splitTarget(target: string): SplitTarget {
  let t = target;
  const hash = t.indexOf('#');
  if (hash !== -1) t = t.slice(0, hash);
  const q = t.indexOf('?');
  const rawPath = q === -1 ? t : t.slice(0, q);
  const query = q === -1 ? '' : t.slice(q + 1);
  let p = rawPath;
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*/.exec(p);
  if (scheme) p = p.slice(scheme[0].length);
  p = p.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  const out: string[] = [];
  let ambiguous = false;
  let last = '';
  for (const raw of p.replace(/\\/g, '/').split('/')) {
    const semi = raw.indexOf(';');
    const seg = semi === -1 ? raw : raw.slice(0, semi);
    if (semi !== -1 && (seg === '.' || seg === '..')) ambiguous = true;
    last = seg;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const trailing = out.length > 0 && (last === '' || last === '.' || last === '..');
  return { path: '/' + out.join('/') + (trailing ? '/' : ''), query, ambiguous };
}

/** Reads a claim by dotted path (`realm_access.roles`); a key containing dots is tried whole first. */
export function claimAt(claims: Readonly<Record<string, unknown>>, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    if (!Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** A header value template: literal text and `{{ claim.path }}` references. */
export interface Template {
  readonly parts: ReadonlyArray<{ readonly literal: string } | { readonly claim: string }>;
}

/** Parses `x-{{ sub }}`; returns an error message when a reference is malformed. */
export function parseTemplate(src: string): Template | string {
  const parts: Array<{ literal: string } | { claim: string }> = [];
  let rest = src;
  while (rest.length > 0) {
    const open = rest.indexOf('{{');
    if (open === -1) {
      parts.push({ literal: rest });
      break;
    }
    if (open > 0) parts.push({ literal: rest.slice(0, open) });
    const close = rest.indexOf('}}', open);
    if (close === -1) return 'unclosed {{';
    const name = rest.slice(open + 2, close).trim();
    if (!/^[A-Za-z0-9_:/.-]+$/.test(name)) return `bad claim reference '${name}'`;
    parts.push({ claim: name });
    rest = rest.slice(close + 2);
  }
  return { parts };
}

/** Renders a claim value for a header: arrays joined with commas, objects as JSON. */
export function claimText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(',');
  return JSON.stringify(v);
}

/** Header values may not carry control characters (CR, LF, NUL...). */
export function sanitizeHeaderValue(v: string): string {
  // eslint-disable-next-line no-control-regex
  return v.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '');
}

/** Renders a template; undefined when a referenced claim is absent (the header is then not set). */
export function renderTemplate(t: Template, claims: Readonly<Record<string, unknown>>): string | undefined {
  let out = '';
  for (const part of t.parts) {
    if ('literal' in part) out += part.literal;
    else {
      const text = claimText(claimAt(claims, part.claim));
      if (text === undefined) return undefined;
      out += text;
    }
  }
  return sanitizeHeaderValue(out);
}
