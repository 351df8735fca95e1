import type { Metadata } from '@grpc/grpc-js';
import { correlationFields, correlationOf, type HeaderGetter } from '@extsvc/common/trace';
import type { CoreRequest, CoreResponse } from './limiter.ts';

/**
 * The correlation of a ShouldRateLimit call, from its gRPC metadata. A RateLimitRequest carries no
 * HTTP headers: Envoy puts the trace context of its rate limit span in the call's metadata when
 * tracing is on (`traceparent` or B3), and `x-request-id` only when the filter's grpc_service
 * `initial_metadata` or a proxy in between adds it.
 */
export function callCorrelation(metadata: Metadata | HeaderGetter): { requestId?: string; traceId?: string } {
  return correlationFields(correlationOf(metadataGetter(metadata)));
}

/** A metadata lookup over either transport: grpc-js Metadata, or the node:http2 call's getter. */
export function metadataGetter(metadata: Metadata | HeaderGetter): HeaderGetter {
  if (typeof metadata === 'function') return metadata;
  return (name) => {
    const v = metadata.get(name)[0];
    return typeof v === 'string' ? v : undefined;
  };
}

/**
 * Log fields of one answer: domain, and for each descriptor that decided (over the limit, or all of
 * them when the answer is OK) its entry keys and limit name. Descriptor values are never logged: they
 * may be user ids, addresses or API keys taken from request headers.
 */
export function answerFields(req: CoreRequest, resp: CoreResponse | undefined): Record<string, unknown> {
  const descriptors: string[] = [];
  req.descriptors.forEach((d, i) => {
    const s = resp?.statuses[i];
    if (resp && resp.overallCode === 'OVER_LIMIT' && s?.code !== 'OVER_LIMIT') return;
    const keys = d.entries.map((e) => e.key).join(',');
    descriptors.push(s?.currentLimit ? `${keys} (${s.currentLimit.name || 'unnamed limit'})` : keys);
  });
  return { domain: req.domain, descriptors };
}
