import { AuthzError } from './errors.ts';

/** A fetched JSON document and its freshness lifetime from Cache-Control (seconds), if any. */
export interface FetchedJson {
  readonly json: unknown;
  readonly maxAgeSec: number | undefined;
}

/** Fetches a JSON document; injectable so unit tests need no network. */
export type JsonFetcher = (
  url: string,
  opts: { readonly timeoutMs: number; readonly maxBytes: number },
) => Promise<FetchedJson>;

/** Reads `max-age` (or `s-maxage`) from Cache-Control; `no-store`/`no-cache` mean 0. */
export function cacheControlMaxAge(header: string | null): number | undefined {
  if (!header) return undefined;
  const h = header.toLowerCase();
  if (/(^|[,\s])(no-store|no-cache)\b/.test(h)) return 0;
  const m = /(?:^|[,\s])(?:s-)?max-age\s*=\s*"?(\d+)/.exec(h);
  return m ? Number(m[1]) : undefined;
}

/**
 * GETs a JSON document with a deadline covering the whole body, a byte limit, and no redirects
 * (a redirect to an internal address would be an SSRF vector). Anything but 200 is an error.
 */
export const fetchJson: JsonFetcher = async (url, { timeoutMs, maxBytes }) => {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  timer.unref();
  try {
    const res = await fetch(url, {
      redirect: 'manual',
      signal: ctl.signal,
      headers: { accept: 'application/json, application/jwk-set+json' },
    });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw new AuthzError('ERR_JWKS_FETCH', `unexpected status ${res.status}`);
    }
    const declared = Number(res.headers.get('content-length') ?? '0');
    if (declared > maxBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw new AuthzError('ERR_JWKS_FETCH', `response larger than ${maxBytes} bytes`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    if (res.body) {
      // Leaving the loop early cancels the stream: a huge document is never fully read.
      for await (const value of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += value.byteLength;
        if (total > maxBytes)
          throw new AuthzError('ERR_JWKS_FETCH', `response larger than ${maxBytes} bytes`);
        chunks.push(value);
      }
    }
    let json: unknown;
    try {
      json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      throw new AuthzError('ERR_JWKS_INVALID', 'response is not JSON', { cause: err });
    }
    return { json, maxAgeSec: cacheControlMaxAge(res.headers.get('cache-control')) };
  } catch (err) {
    if (err instanceof AuthzError) throw err;
    const msg = ctl.signal.aborted ? `timed out after ${timeoutMs} ms` : 'request failed';
    throw new AuthzError('ERR_JWKS_FETCH', msg, { cause: err });
  } finally {
    clearTimeout(timer);
  }
};
