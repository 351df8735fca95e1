import type { Metadata } from '@grpc/grpc-js';
import { SpanKinds, type TraceSpan, type Tracing } from '@extsvc/common/otel';
import { correlationOf, type HeaderGetter } from '@extsvc/common/trace';
import type { CounterStore } from './counter-store.ts';
import type { CoreRequest, CoreResponse, CounterOp } from './limiter.ts';
import { answerFields, metadataGetter } from './answer-log.ts';

/** Span attribute names of a ShouldRateLimit span: domain, descriptor keys and limit names, never values. */
export const RateLimitAttributes = {
  domain: 'ratelimit.domain',
  descriptors: 'ratelimit.descriptors',
  code: 'ratelimit.code',
  requestId: 'ratelimit.request_id',
} as const;

/**
 * Starts the span of one ShouldRateLimit call as a child of the trace context in the call's
 * metadata (Envoy injects its rate limit span there when its tracer is on).
 */
export function startRateLimitSpan(
  tracing: Tracing,
  metadata: Metadata | HeaderGetter,
  req: CoreRequest,
): TraceSpan {
  const c = correlationOf(metadataGetter(metadata));
  return tracing.startServer('ratelimit ShouldRateLimit', c, {
    [RateLimitAttributes.domain]: req.domain,
    ...(c.requestId !== undefined ? { [RateLimitAttributes.requestId]: c.requestId } : {}),
  });
}

/** Records the answer (overall code, deciding descriptors' keys and limit names) and ends the span. */
export function endRateLimitSpan(span: TraceSpan, req: CoreRequest, resp: CoreResponse | undefined): void {
  const { descriptors } = answerFields(req, resp) as { descriptors: string[] };
  span.setAttributes({
    [RateLimitAttributes.code]: resp ? resp.overallCode : 'ERROR',
    [RateLimitAttributes.descriptors]: descriptors,
  });
  if (!resp) span.fail('ratelimit call failed');
  span.end();
}

/**
 * Wraps a counter store: one CLIENT span per apply (one Redis round trip, or the memory store's
 * call). Counter keys are not recorded: they embed descriptor values.
 */
export function tracedStore(tracing: Tracing, store: CounterStore): CounterStore {
  return {
    get kind() {
      return store.kind;
    },
    apply: async (ops: readonly CounterOp[]) => {
      const span = tracing.startChild(`${store.kind} apply`, SpanKinds.client, {
        'db.system.name': store.kind,
        'db.operation.name': store.kind === 'redis' ? 'EVALSHA' : 'apply',
        'ratelimit.counters': ops.length,
      });
      try {
        return await store.apply(ops);
      } catch (err) {
        span.fail(err instanceof Error && 'code' in err ? String(err.code) : 'store failed');
        throw err;
      } finally {
        span.end();
      }
    },
    peek: (keys) => store.peek(keys),
    ready: () => store.ready(),
    onReadyChange: (listener) => store.onReadyChange(listener),
    close: () => store.close(),
  };
}
