/**
 * Request correlation: the request id and trace context Envoy sends, read from request headers
 * (ext_authz CheckRequest) or gRPC metadata (the rate limit call), for logs, /diag and spans.
 * Only ids are read: never a header value that could carry a credential.
 */

/** Log key names of the correlation fields (STYLE.md: key names are constants). */
export const CorrelationKeys = {
  requestId: 'requestId',
  traceId: 'traceId',
  spanId: 'spanId',
} as const;

/** What identifies one request across Envoy's access log, the services' logs and a trace. */
export interface Correlation {
  /** Envoy's `x-request-id` (a UUID by default), when sent. */
  readonly requestId?: string;
  /** 32 lower-case hex digits (a 64-bit B3 id is left-padded with zeros, as OpenTelemetry does). */
  readonly traceId?: string;
  /** The caller's span id (16 hex digits): the parent of a span started here. */
  readonly spanId?: string;
  /** The caller's sampling decision (W3C flags bit 0, B3 `1`/`d`); undefined when not said. */
  readonly sampled?: boolean;
  /** Where the trace context came from. */
  readonly format?: 'w3c' | 'b3';
}

/** Longest request id kept; Envoy's are 36-character UUIDs, a client may send anything. */
export const MAX_REQUEST_ID = 128;

const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const HEX_ID = /^(?:[0-9a-f]{16}|[0-9a-f]{32})$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ZERO = /^0+$/;

/** Header (or metadata) lookup by lower-case name: the first value when there are several. */
export type HeaderGetter = (name: string) => string | undefined;

const first = (v: string | undefined): string | undefined => {
  if (v === undefined) return undefined;
  const comma = v.indexOf(',');
  return (comma === -1 ? v : v.slice(0, comma)).trim();
};

function w3c(v: string | undefined): Correlation | undefined {
  const m = v === undefined ? null : TRACEPARENT.exec(v.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags] = m as unknown as [string, string, string, string, string];
  // version ff is invalid; version 00 has exactly four fields; all-zero ids are invalid (W3C 3.2.2).
  if (version === 'ff' || (version === '00' && m[0].length !== 55)) return undefined;
  if (ZERO.test(traceId) || ZERO.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1, format: 'w3c' };
}

function b3Sampled(v: string | undefined): boolean | undefined {
  if (v === '1' || v === 'd' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

function b3(get: HeaderGetter): Correlation | undefined {
  const single = first(get('b3'))?.toLowerCase();
  if (single !== undefined && single !== '') {
    // b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]; a lone sampling state carries no ids.
    const [traceId = '', spanId = '', sampled] = single.split('-');
    if (HEX_ID.test(traceId) && SPAN_ID.test(spanId) && !ZERO.test(traceId) && !ZERO.test(spanId)) {
      const s = b3Sampled(sampled);
      return {
        traceId: traceId.padStart(32, '0'),
        spanId,
        ...(s !== undefined ? { sampled: s } : {}),
        format: 'b3',
      };
    }
  }
  const traceId = first(get('x-b3-traceid'))?.toLowerCase();
  if (traceId === undefined || !HEX_ID.test(traceId) || ZERO.test(traceId)) return undefined;
  const spanId = first(get('x-b3-spanid'))?.toLowerCase();
  const sampled = get('x-b3-flags') === '1' ? true : b3Sampled(first(get('x-b3-sampled'))?.toLowerCase());
  return {
    traceId: traceId.padStart(32, '0'),
    ...(spanId !== undefined && SPAN_ID.test(spanId) && !ZERO.test(spanId) ? { spanId } : {}),
    ...(sampled !== undefined ? { sampled } : {}),
    format: 'b3',
  };
}

/**
 * Reads `x-request-id` and the trace context (W3C `traceparent` first, then B3 single `b3` or
 * multi `x-b3-*` headers). Malformed values are ignored; a request id outside printable ASCII or
 * longer than MAX_REQUEST_ID is dropped (it is written into logs and /diag).
 */
export function correlationOf(get: HeaderGetter): Correlation {
  const rid = first(get('x-request-id'));
  const trace = w3c(first(get('traceparent'))) ?? b3(get);
  const out: { -readonly [K in keyof Correlation]: Correlation[K] } = {};
  if (rid !== undefined && REQUEST_ID.test(rid)) out.requestId = rid;
  if (trace?.traceId !== undefined) {
    out.traceId = trace.traceId;
    if (trace.spanId !== undefined) out.spanId = trace.spanId;
    if (trace.sampled !== undefined) out.sampled = trace.sampled;
    if (trace.format !== undefined) out.format = trace.format;
  }
  return out;
}

/** correlationOf over a plain lower-case header record (an ext_authz CheckRequest's headers). */
export function correlationOfHeaders(headers: Readonly<Record<string, string | undefined>>): Correlation {
  return correlationOf((name) => headers[name]);
}

/** The log fields of a correlation: requestId and traceId when known (nothing else). */
export function correlationFields(c: Correlation): { requestId?: string; traceId?: string } {
  return {
    ...(c.requestId !== undefined ? { [CorrelationKeys.requestId]: c.requestId } : {}),
    ...(c.traceId !== undefined ? { [CorrelationKeys.traceId]: c.traceId } : {}),
  };
}
