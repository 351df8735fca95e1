import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { ConfigError, errorMessage } from '@extsvc/common/errors';
import type { Logger } from '@extsvc/common/logger';
import { correlationOfHeaders } from '@extsvc/common/trace';
import type { AuthRequest, Decision } from './decision.ts';
import { splitTarget } from './match.ts';

/**
 * One line of the decision log (as OPA's decision logs): what was decided, for which request, by
 * which rule. Only ids, names and outcomes: never a header value, query string, token or key.
 */
export interface DecisionLogEntry {
  /** Always `decision`: tells these lines from the service's log lines when both go to stdout. */
  readonly type: 'decision';
  /** ISO 8601 time of the decision. */
  readonly time: string;
  /** Envoy's x-request-id. */
  readonly request_id?: string;
  /** W3C/B3 trace id (32 hex digits). */
  readonly trace_id?: string;
  readonly transport: 'grpc' | 'http';
  readonly method?: string;
  readonly host?: string;
  /** The request path without its query string (a token may ride in it). */
  readonly path?: string;
  readonly rule: string;
  /** allow, deny or error. */
  readonly result: Decision['kind'];
  readonly reason: string;
  /** HTTP status of a deny. */
  readonly status?: number;
  /** The token's `sub` of an allow. */
  readonly subject?: string;
  /** The token's `iss` of an allow. */
  readonly issuer?: string;
  /** The name (never the value) of the API key of an allow. */
  readonly api_key?: string;
}

const MAX_FIELD = 512;
const clip = (s: string): string => (s.length > MAX_FIELD ? `${s.slice(0, MAX_FIELD)}…` : s);

/** Builds the entry of one decision; `req` is absent when the request was unreadable. */
export function decisionLogEntry(
  transport: 'grpc' | 'http',
  d: Decision,
  req: AuthRequest | undefined,
  now: number,
): DecisionLogEntry {
  const c = req ? correlationOfHeaders(req.headers) : {};
  const m = d.kind === 'allow' ? d.metadata : undefined;
  return {
    type: 'decision',
    time: new Date(now).toISOString(),
    ...(c.requestId !== undefined ? { request_id: c.requestId } : {}),
    ...(c.traceId !== undefined ? { trace_id: c.traceId } : {}),
    transport,
    ...(req
      ? {
          method: clip(req.method.toUpperCase()),
          host: clip(req.host),
          path: clip(splitTarget(req.path).path),
        }
      : {}),
    rule: d.rule,
    result: d.kind,
    reason: d.reason,
    ...(d.kind === 'deny' ? { status: d.status } : {}),
    ...(m?.['sub'] !== undefined ? { subject: clip(m['sub']) } : {}),
    ...(m?.['iss'] !== undefined ? { issuer: clip(m['iss']) } : {}),
    ...(m?.['api_key'] !== undefined ? { api_key: m['api_key'] } : {}),
  };
}

/** Bytes buffered for a slow destination before lines are dropped (memory stays bounded). */
export const MAX_BUFFERED = 4 << 20;

/** A decision log sink: `stdout` or a file opened for append. */
export class DecisionLog {
  readonly #out: NodeJS.WritableStream & { writableLength: number };
  readonly #file: WriteStream | undefined;
  readonly #rate: number;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #log: Logger;
  #dropped = 0;

  private constructor(
    out: NodeJS.WritableStream & { writableLength: number },
    file: WriteStream | undefined,
    opts: { rate: number; random: () => number; now: () => number; logger: Logger },
  ) {
    this.#out = out;
    this.#file = file;
    this.#rate = opts.rate;
    this.#random = opts.random;
    this.#now = opts.now;
    this.#log = opts.logger;
  }

  /** Opens the destination (`stdout` or a file path, appended); a file that cannot be opened is a ConfigError on --decision-log. */
  static async open(
    destination: string,
    opts: { rate: number; random?: () => number; now?: () => number; logger: Logger },
  ): Promise<DecisionLog> {
    const o = {
      rate: opts.rate,
      random: opts.random ?? Math.random,
      now: opts.now ?? Date.now,
      logger: opts.logger,
    };
    if (destination === 'stdout') return new DecisionLog(process.stdout, undefined, o);
    const file = createWriteStream(destination, { flags: 'a', mode: 0o640 });
    try {
      await once(file, 'open');
    } catch (err) {
      throw new ConfigError([
        { field: '--decision-log', message: `cannot open ${destination} for append: ${errorMessage(err)}` },
      ]);
    }
    file.on('error', (err) => opts.logger.error({ err: errorMessage(err) }, 'decision log: write failed'));
    return new DecisionLog(file, file, o);
  }

  /** Writes one decision, sampled by the rate; drops (and reports once a minute) while the destination is backed up. */
  record(transport: 'grpc' | 'http', d: Decision, req: AuthRequest | undefined): void {
    if (this.#rate < 1 && this.#random() >= this.#rate) return;
    if (this.#out.writableLength > MAX_BUFFERED) {
      if (this.#dropped++ % 10_000 === 0)
        this.#log.warn({ dropped: this.#dropped }, 'decision log: destination too slow, lines dropped');
      return;
    }
    this.#out.write(`${JSON.stringify(decisionLogEntry(transport, d, req, this.#now()))}\n`);
  }

  /** Flushes and closes a file destination (idempotent; stdout stays open). */
  async close(): Promise<void> {
    const f = this.#file;
    if (!f || f.closed || f.destroyed) return;
    await new Promise<void>((resolve) => f.end(() => resolve()));
  }
}
