import type { TraceSpan, Tracing } from '@extsvc/common/otel';
import { SpanKinds } from '@extsvc/common/otel';
import {
  correlationOf,
  correlationOfHeaders,
  type Correlation,
  type HeaderGetter,
} from '@extsvc/common/trace';
import { splitTarget } from './match.ts';
import type { AuthRequest, Decision } from './decision.ts';
import type { JsonFetcher } from './fetch.ts';
import { safeUrl } from './diag.ts';

/** Span attribute names of a Check span (no header values: only ids, names and outcomes). */
export const CheckAttributes = {
  transport: 'authz.transport',
  result: 'authz.result',
  rule: 'authz.rule',
  reason: 'authz.reason',
  status: 'authz.status',
  subject: 'authz.subject',
  issuer: 'authz.issuer',
  apiKeyName: 'authz.api_key.name',
  requestId: 'authz.request_id',
  method: 'http.request.method',
  host: 'server.address',
  path: 'url.path',
} as const;

/**
 * The parent of a Check span: the trace context of the gRPC call (Envoy injects its ext_authz
 * egress span there when its tracer is on), else the one in the checked request's headers.
 */
export function checkParent(metadata: HeaderGetter | undefined, req: AuthRequest | undefined): Correlation {
  if (metadata) {
    const c = correlationOf(metadata);
    if (c.traceId !== undefined && c.spanId !== undefined) return c;
  }
  return req ? correlationOfHeaders(req.headers) : {};
}

/** Starts the span of one check: method, host and path without its query (a token may ride there). */
export function startCheckSpan(
  tracing: Tracing,
  transport: 'grpc' | 'http',
  parent: Correlation,
  req: AuthRequest | undefined,
): TraceSpan {
  const requestId = req ? correlationOfHeaders(req.headers).requestId : undefined;
  return tracing.startServer(transport === 'grpc' ? 'authz Check' : 'authz HTTP check', parent, {
    [CheckAttributes.transport]: transport,
    ...(req
      ? {
          [CheckAttributes.method]: req.method.toUpperCase(),
          [CheckAttributes.host]: req.host,
          [CheckAttributes.path]: splitTarget(req.path).path,
        }
      : {}),
    ...(requestId !== undefined ? { [CheckAttributes.requestId]: requestId } : {}),
  });
}

/** Records the decision on the span (result, rule, reason; subject, issuer and API key name of an allow) and ends it. */
export function endCheckSpan(span: TraceSpan, d: Decision): void {
  span.setAttributes({
    [CheckAttributes.result]: d.kind,
    [CheckAttributes.rule]: d.rule,
    [CheckAttributes.reason]: d.reason,
  });
  if (d.kind === 'deny') span.setAttributes({ [CheckAttributes.status]: d.status });
  else if (d.kind === 'allow') {
    const m = d.metadata;
    if (m['sub'] !== undefined) span.setAttributes({ [CheckAttributes.subject]: m['sub'] });
    if (m['iss'] !== undefined) span.setAttributes({ [CheckAttributes.issuer]: m['iss'] });
    if (m['api_key'] !== undefined) span.setAttributes({ [CheckAttributes.apiKeyName]: m['api_key'] });
  } else span.fail(d.reason);
  span.end();
}

/** Wraps the JWKS/discovery fetcher: one CLIENT span per fetch, with the URL less userinfo and query. */
export function tracedFetch(tracing: Tracing, fetch: JsonFetcher): JsonFetcher {
  return async (url, opts) => {
    const span = tracing.startChild('authz key fetch', SpanKinds.client, {
      'http.request.method': 'GET',
      'url.full': safeUrl(url),
    });
    try {
      return await fetch(url, opts);
    } catch (err) {
      span.fail(err instanceof Error && 'code' in err ? String(err.code) : 'fetch failed');
      throw err;
    } finally {
      span.end();
    }
  };
}

/** A decision function as the transports call it; the gRPC transport passes the call's metadata. */
export type TransportDecide = (req: AuthRequest, metadata?: HeaderGetter) => Promise<Decision>;

/**
 * Wraps the decision function with one span per check, current while the decision runs (key
 * fetches it triggers are its children). A call with metadata is a gRPC Check; without, an HTTP check.
 */
export function tracedDecide(
  tracing: Tracing,
  decide: (req: AuthRequest) => Promise<Decision>,
): TransportDecide {
  return (req, metadata) => {
    const span = startCheckSpan(tracing, metadata ? 'grpc' : 'http', checkParent(metadata, req), req);
    return tracing
      .run(span, () => decide(req))
      .then(
        (d) => {
          endCheckSpan(span, d);
          return d;
        },
        (err: unknown) => {
          span.fail('decision failed');
          span.end();
          throw err;
        },
      );
  };
}
