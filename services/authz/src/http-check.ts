import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '@extsvc/common/logger';
import type { AuthRequest, Decision } from './decision.ts';
import { INTERNAL_DENY, joinCookies, type CheckObserver } from './grpc-check.ts';
import { boundPort } from '@extsvc/common/net';
import { headerListed } from './policy.ts';

/** Options of the raw HTTP ext_authz listener. */
export interface HttpCheckOptions {
  readonly host: string;
  readonly port: number;
  /** Envoy http_service path_prefix (Emissary AuthService path_prefix), stripped when present. */
  readonly pathPrefix: string;
  /** At or above Envoy's max_request_headers_kb (60 KiB by default). */
  readonly maxHeaderBytes: number;
  /** Idle keep-alive; longer than Envoy's upstream idle timeout so Envoy closes first. */
  readonly keepAliveMs: number;
  /** Answer headers Envoy copies upstream (exact or `prefix*`); default: every header. */
  readonly upstreamHeaders?: readonly string[];
  /** Called with the first path segment of a check that lacks pathPrefix (denied). */
  readonly onPrefixMismatch?: (firstSegment: string) => void;
}

/** A running HTTP listener. */
export interface HttpCheckServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The original request target under Envoy's path_prefix (`/extauth` + `/api/x?y`), or undefined when
 * the target does not carry the prefix (`/api/x`, `/extauthx`): Envoy and authz disagree on it.
 */
export function stripPathPrefix(target: string, prefix: string): string | undefined {
  // CONNECT's authority form (`host:443`) carries no path Envoy could have prefixed: decided as sent.
  if (prefix === '' || !target.startsWith('/')) return target;
  if (!target.startsWith(prefix)) return undefined;
  const rest = target.slice(prefix.length);
  if (prefix.endsWith('/')) return `/${rest}`;
  if (rest === '') return '/';
  if (rest.startsWith('?')) return `/${rest}`;
  return rest.startsWith('/') ? rest : undefined;
}

/** A check whose path lacks the configured prefix: a deny that says so (the log names the prefix). */
export const PREFIX_DENY: Extract<Decision, { kind: 'deny' }> = {
  kind: 'deny',
  reason: 'path_prefix_mismatch',
  rule: '-',
  status: 403,
  headers: [['content-type', 'application/json']],
  body: JSON.stringify({
    status: 403,
    error: 'access_denied',
    code: 'path_prefix_mismatch',
    message: 'The authorization check did not carry the path prefix this service expects',
  }),
};

/**
 * Builds the AuthRequest of an HTTP-mode check: method and Host as sent, path without the prefix;
 * undefined when the prefix is configured and missing.
 */
export function httpRequestToAuth(req: IncomingMessage, pathPrefix: string): AuthRequest | undefined {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    headers[k] = Array.isArray(v) ? v.join(',') : v;
  }
  // Node joins repeated Cookie headers with `; `; Envoy's http_service sends its `,`-joined copy.
  if (headers['cookie'] !== undefined) headers['cookie'] = joinCookies(headers['cookie']);
  const path = stripPathPrefix(req.url ?? '/', pathPrefix);
  if (path === undefined) return undefined;
  return {
    method: req.method ?? 'GET',
    host: headers['host'] ?? headers[':authority'] ?? '',
    path,
    headers,
    contextExtensions: {},
    transport: 'http',
  };
}

/**
 * The headers of an HTTP-mode allow. A header Envoy would not copy upstream is removed instead
 * (the policy refuses identity headers outside the list, so this is the rewritten Cookie of
 * removeCredentials: without `cookie` in the list the whole header goes). Query parameters
 * cannot be removed in this mode; the policy refuses that combination.
 */
export function httpAllowHeaders(
  d: Extract<Decision, { kind: 'allow' }>,
  upstream: readonly string[] | undefined,
): { set: Array<readonly [string, string]>; remove: string[] } {
  const set: Array<readonly [string, string]> = [];
  const remove = new Set(d.removeHeaders);
  for (const [k, v] of d.headers) {
    if (upstream === undefined || headerListed(k, upstream)) set.push([k, v]);
    else remove.add(k);
  }
  return { set, remove: [...remove] };
}

/** The first path segment only (never the query string, which may carry a token), for the log. */
function firstSegment(target: string): string {
  const m = /^\/?[^/?#]{0,64}/.exec(target);
  return m ? m[0] : '';
}

function send(res: ServerResponse, d: Decision, upstream: readonly string[] | undefined): void {
  if (d.kind === 'allow') {
    // Envoy allows on exactly 200; x-envoy-auth-headers-to-remove strips client copies of identity headers.
    // Claims may hold non-Latin-1 text: send its UTF-8 bytes (Node would throw on code points > 255).
    const h = httpAllowHeaders(d, upstream);
    for (const [k, v] of h.set) res.setHeader(k, Buffer.from(v, 'utf8').toString('latin1'));
    if (h.remove.length > 0) res.setHeader('x-envoy-auth-headers-to-remove', h.remove.join(', '));
    res.writeHead(200, { 'content-length': '0' }).end();
  } else if (d.kind === 'deny') {
    for (const [k, v] of d.headers) res.setHeader(k, v);
    res.writeHead(d.status, { 'content-length': Buffer.byteLength(d.body) }).end(d.body);
  } else {
    // Only an infrastructure failure is a 5xx: Envoy's status_on_error / failure_mode_allow decides.
    const body = JSON.stringify({ status: 503, error: 'unavailable', code: d.reason });
    res
      .writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      .end(body);
  }
}

const REASON: Readonly<Record<number, string>> = {
  200: 'OK',
  401: 'Unauthorized',
  403: 'Forbidden',
  503: 'Service Unavailable',
};

/** A whole HTTP/1.1 response for a decision, for sockets Node does not wrap in a ServerResponse. */
export function rawResponse(d: Decision, upstream?: readonly string[]): string {
  const headers: Array<readonly [string, string]> = [];
  let status = 200;
  let body = '';
  if (d.kind === 'allow') {
    const h = httpAllowHeaders(d, upstream);
    headers.push(...h.set.map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('latin1')] as const));
    if (h.remove.length > 0) headers.push(['x-envoy-auth-headers-to-remove', h.remove.join(', ')]);
  } else if (d.kind === 'deny') {
    status = d.status;
    headers.push(...d.headers);
    body = d.body;
  } else {
    status = 503;
    body = JSON.stringify({ status: 503, error: 'unavailable', code: d.reason });
    headers.push(['content-type', 'application/json']);
  }
  const lines = [
    `HTTP/1.1 ${status} ${REASON[status] ?? 'Denied'}`,
    ...headers.map(([k, v]) => `${k}: ${v}`),
  ];
  lines.push(`content-length: ${Buffer.byteLength(body)}`, 'connection: close');
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** Starts the HTTP-mode listener: every method and path is a check. */
export async function startHttpCheck(
  opts: HttpCheckOptions,
  decide: (req: AuthRequest) => Promise<Decision>,
  observe: CheckObserver,
  logger: Logger,
): Promise<HttpCheckServer> {
  const server: Server = createServer(
    { maxHeaderSize: opts.maxHeaderBytes, requireHostHeader: false, keepAliveTimeout: opts.keepAliveMs },
    (req, res) => {
      const started = process.hrtime.bigint();
      res.sendDate = false; // nothing but the decision's headers (an allow-all upstream list would copy Date)
      req.resume(); // the body (with_request_body) is not used; drain it
      let auth: AuthRequest | undefined;
      try {
        auth = httpRequestToAuth(req, opts.pathPrefix);
      } catch (err) {
        logger.warn({ err }, 'unreadable HTTP check');
        observe('http', INTERNAL_DENY, started);
        send(res, INTERNAL_DENY, opts.upstreamHeaders);
        return;
      }
      if (!auth) {
        opts.onPrefixMismatch?.(firstSegment(req.url ?? '/'));
        observe('http', PREFIX_DENY, started);
        send(res, PREFIX_DENY, opts.upstreamHeaders);
        return;
      }
      decide(auth)
        .catch((err: unknown): Decision => {
          logger.error({ err }, 'decision failed');
          return INTERNAL_DENY;
        })
        .then((d) => {
          observe('http', d, started, auth);
          try {
            send(res, d, opts.upstreamHeaders);
          } catch (err) {
            logger.error({ err }, 'cannot send the decision');
            if (!res.headersSent) {
              res.removeHeader('x-envoy-auth-headers-to-remove');
              for (const [k] of d.kind === 'allow' ? d.headers : []) res.removeHeader(k);
              send(res, INTERNAL_DENY, opts.upstreamHeaders);
            }
          }
        })
        .catch((err: unknown) => logger.error({ err }, 'cannot answer HTTP check'));
    },
  );
  server.keepAliveTimeout = opts.keepAliveMs;
  // Node silently drops headers beyond 2000 by default: see them all (maxHeaderBytes bounds the work)
  // so that the decision's header-count bound and reserved families apply to every one.
  server.maxHeadersCount = 0;
  server.headersTimeout = Math.max(60_000, Math.min(opts.keepAliveMs + 1000, 120_000));
  // Node hands CONNECT requests to 'connect', not to the request handler; without this listener it would
  // drop the connection, an *error* for Envoy. Decide like any other method and answer on the raw socket.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const started = process.hrtime.bigint();
    socket.on('error', () => socket.destroy());
    const auth = httpRequestToAuth(req, opts.pathPrefix);
    if (!auth) opts.onPrefixMismatch?.(firstSegment(req.url ?? '/'));
    (auth ? decide(auth) : Promise.resolve<Decision>(PREFIX_DENY))
      .catch((err: unknown): Decision => {
        logger.error({ err }, 'decision failed');
        return INTERNAL_DENY;
      })
      .then((d) => {
        observe('http', d, started, auth);
        socket.end(rawResponse(d, opts.upstreamHeaders));
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'cannot answer HTTP check');
        socket.destroy();
      });
  });
  // Oversized or malformed input is a deny (4xx), never a reset: a reset is an error for Envoy.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = JSON.stringify({
      status,
      error: 'invalid_request',
      code: status === 431 ? 'headers_too_large' : 'bad_request',
    });
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = boundPort(server, opts.port);
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        const t = setTimeout(() => server.closeAllConnections(), 2000);
        t.unref();
      })),
  };
}
