import { status as GrpcStatus, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '@extsvc/common/logger';
import type { HeaderGetter } from '@extsvc/common/trace';
import type { AuthRequest, Decision } from './decision.ts';
import type { CheckRequest__Output } from '../../../proto/generated/envoy/service/auth/v3/CheckRequest.ts';
import type { CheckResponse } from '../../../proto/generated/envoy/service/auth/v3/CheckResponse.ts';
import type { HeaderValueOption } from '../../../proto/generated/envoy/config/core/v3/HeaderValueOption.ts';

/**
 * One Cookie header per RFC 6265 (`a=1; b=2`) from the forms it arrives in: Envoy's CheckRequest
 * header map joins repeated headers with `,`, so two HTTP/1 Cookie headers arrive as `a=1,b=2`.
 * A cookie value cannot hold a comma (RFC 6265 cookie-octet), so a comma followed by `name=` is a
 * join and becomes `; `; other commas are left alone.
 */
export function joinCookies(v: string): string {
  return v.replace(/\s*,\s*(?=[!#$%&'*+\-.^_`|~0-9A-Za-z]+=)/g, '; ');
}

/** Envoy's merged header map (or the raw header_map with encode_raw_headers) as lower-case keys. */
export function checkRequestToAuth(req: CheckRequest__Output): AuthRequest {
  const http = req.attributes?.request?.http;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(http?.headers ?? {})) headers[k.toLowerCase()] = v;
  for (const h of http?.header_map?.headers ?? []) {
    const k = h.key.toLowerCase();
    const v = h.raw_value && h.raw_value.length > 0 ? h.raw_value.toString('utf8') : h.value;
    headers[k] = headers[k] === undefined ? v : `${headers[k]}${k === 'cookie' ? '; ' : ','}${v}`;
  }
  if (headers['cookie'] !== undefined) headers['cookie'] = joinCookies(headers['cookie']);
  return {
    method: http?.method || headers[':method'] || 'GET',
    host: http?.host || headers[':authority'] || headers['host'] || '',
    path: http?.path || headers[':path'] || '/',
    headers,
    contextExtensions: req.attributes?.context_extensions ?? {},
    transport: 'grpc',
  };
}

const overwrite = (key: string, value: string): HeaderValueOption => ({
  header: { key, value },
  // Current Envoy treats an unset `append` as "add another value": be explicit on both fields.
  append: { value: false },
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
});

/** Adapts a decision (allow or deny) to a CheckResponse; a deny is an OK RPC with denied_response. */
export function decisionToCheckResponse(d: Exclude<Decision, { kind: 'error' }>): CheckResponse {
  if (d.kind === 'allow') {
    const fields: Record<string, { stringValue: string }> = {};
    for (const [k, v] of Object.entries(d.metadata)) fields[k] = { stringValue: v };
    return {
      status: { code: GrpcStatus.OK },
      ok_response: {
        headers: d.headers.map(([k, v]) => overwrite(k, v)),
        headers_to_remove: [...d.removeHeaders],
        ...(d.removeQuery.length > 0 ? { query_parameters_to_remove: [...d.removeQuery] } : {}),
        // A refreshed sign-in session: Set-Cookie on the client's response (each one added, never merged).
        ...(d.responseHeaders && d.responseHeaders.length > 0
          ? {
              response_headers_to_add: d.responseHeaders.map(([key, value]) => ({
                header: { key, value },
                append: { value: true },
                append_action: 'APPEND_IF_EXISTS_OR_ADD' as const,
              })),
            }
          : {}),
      },
      dynamic_metadata: { fields },
    };
  }
  return {
    status: {
      code: d.status === 401 ? GrpcStatus.UNAUTHENTICATED : GrpcStatus.PERMISSION_DENIED,
      message: d.reason,
    },
    // For access logs: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%
    dynamic_metadata: { fields: { rule: { stringValue: d.rule }, reason: { stringValue: d.reason } } },
    denied_response: {
      status: { code: d.status as never },
      headers: d.headers.map(([k, v]) => overwrite(k, v)),
      body: d.body,
    },
  };
}

/** A forbidding answer used when something unexpected throws: never an RPC error for client input. */
export const INTERNAL_DENY: Extract<Decision, { kind: 'deny' }> = {
  kind: 'deny',
  reason: 'internal_error',
  rule: '-',
  status: 403,
  headers: [['content-type', 'application/json']],
  body: JSON.stringify({
    status: 403,
    error: 'access_denied',
    code: 'internal_error',
    message: 'The request could not be authorized',
  }),
};

/** Observes a finished check (metrics, logs, decision log); `req` is absent when it was unreadable. */
export type CheckObserver = (
  transport: 'grpc' | 'http',
  d: Decision,
  startedNs: bigint,
  req?: AuthRequest,
) => void;

/** The answer to one Check: a CheckResponse (allow or deny), or UNAVAILABLE (Envoy's failure mode applies). */
export type CheckOutcome =
  | { readonly kind: 'response'; readonly response: CheckResponse }
  | { readonly kind: 'unavailable'; readonly details: string };

/** Metadata of a grpc-js call as a header getter (first value, strings only). */
export function metadataGetter(metadata: Metadata): HeaderGetter {
  return (name) => {
    const v = metadata.get(name)[0];
    return typeof v === 'string' ? v : undefined;
  };
}

/** envoy.service.auth.v3.Authorization/Check whatever the transport: request → outcome, never a rejection. */
export function checkHandler(
  // The call's metadata carries the trace context of Envoy's ext_authz span (read only when tracing).
  decide: (req: AuthRequest, metadata?: HeaderGetter) => Promise<Decision>,
  observe: CheckObserver,
  logger: Logger,
): (request: CheckRequest__Output, metadata: HeaderGetter) => Promise<CheckOutcome> {
  return (request, metadata) => {
    const started = process.hrtime.bigint();
    let req: AuthRequest;
    try {
      req = checkRequestToAuth(request);
    } catch (err) {
      logger.warn({ err }, 'unreadable CheckRequest');
      observe('grpc', INTERNAL_DENY, started);
      return Promise.resolve({ kind: 'response', response: decisionToCheckResponse(INTERNAL_DENY) });
    }
    return decide(req, metadata)
      .catch((err: unknown): Decision => {
        logger.error({ err }, 'decision failed');
        return INTERNAL_DENY;
      })
      .then((d): CheckOutcome => {
        observe('grpc', d, started, req);
        return d.kind === 'error'
          ? { kind: 'unavailable', details: 'authorization backend unavailable' }
          : { kind: 'response', response: decisionToCheckResponse(d) };
      });
  };
}

/** The envoy.service.auth.v3.Authorization implementation on grpc-js. */
export function checkImplementation(
  decide: (req: AuthRequest, metadata?: HeaderGetter) => Promise<Decision>,
  observe: CheckObserver,
  logger: Logger,
): {
  Check(call: ServerUnaryCall<CheckRequest__Output, CheckResponse>, cb: sendUnaryData<CheckResponse>): void;
} {
  const check = checkHandler(decide, observe, logger);
  return {
    Check(call, cb) {
      check(call.request, metadataGetter(call.metadata))
        .then((o) => {
          if (o.kind === 'unavailable') cb({ code: GrpcStatus.UNAVAILABLE, details: o.details });
          else cb(null, o.response);
        })
        .catch((err: unknown) => logger.error({ err }, 'cannot answer Check'));
    },
  };
}
