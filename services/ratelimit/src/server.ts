import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type {
  sendUnaryData,
  ServerUnaryCall,
  ServiceDefinition,
  ServiceError as GrpcError,
} from '@grpc/grpc-js';
import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { serviceDefinition } from '@extsvc/common/proto';
import { GrpcCode, GrpcStatusError, startGrpcH2Server, type GrpcCodeNumber } from '@extsvc/common/grpc-h2';
import { healthRoutes } from '@extsvc/common/grpc-h2-health';
import type { HeaderGetter } from '@extsvc/common/trace';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import { localCacheEntries, RATELIMIT_OPTIONS, type RatelimitConfig } from './config.ts';
import { MemoryStore, OverLimitCache, type CounterStore } from './counter-store.ts';
import { ServiceError, StoreError } from './errors.ts';
import { decodeRequest, encodeResponse } from './codec.ts';
import type { CoreRequest, CoreResponse, CoreSettings } from './limiter.ts';
import { rulesSource, RulesHolder } from './loader.ts';
import { Metrics } from './metrics.ts';
import { RedisStore } from './redis-store.ts';
import { dumpRuleSet } from './rules.ts';
import { RateLimitService } from './service.ts';
import { fromJson, JsonRequestError, toGrpc, toJson } from './wire.ts';
import { registerRatelimitDiag } from './diag.ts';
import { answerFields, callCorrelation, metadataGetter } from './answer-log.ts';
import { endRateLimitSpan, startRateLimitSpan, tracedStore } from './tracing.ts';
import type { Tracing } from '@extsvc/common/otel';
import type { RateLimitResponse } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitResponse.ts';

// Not `import { createServer } from 'node:http'`: the ES module view of node:http reads every export, and
// its lazy WebSocket/MessageEvent getters load Node's bundled undici (~1.5 MiB of idle RSS, bench/README.md).
const { createServer } = process.getBuiltinModule('node:http');

/** A running ratelimit service. */
export interface RatelimitService {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly adminPort: number;
  /** The decision service (tests). */
  readonly service: RateLimitService;
  close(): Promise<void>;
}

/** Optional injected dependencies (tests): clock and random source. */
export interface StartDeps {
  readonly now?: () => number;
  readonly random?: () => number;
  /** OpenTelemetry tracing (startTracing); undefined when off. Shut down by close(). */
  readonly tracing?: Tracing | undefined;
}

/** Core settings from the parsed options. */
export function coreSettings(c: RatelimitConfig): CoreSettings {
  return {
    cacheKeyPrefix: c.cacheKeyPrefix,
    nearLimitRatio: c.nearLimitRatio,
    globalShadowMode: c.shadowMode,
    globalQuotaMode: c.quotaMode,
    responseHeaders: {
      enabled: c.limitResponseHeadersEnabled,
      limit: c.limitLimitHeader,
      remaining: c.limitRemainingHeader,
      reset: c.limitResetHeader,
    },
    dynamicMetadata: c.responseDynamicMetadata,
    expirationJitterMaxSeconds: c.expirationJitterMaxSeconds,
    stopIncrementWhenOverLimit: c.stopCacheKeyIncrementWhenOverlimit,
    requestLimits: {
      maxDescriptors: c.maxDescriptors,
      maxEntries: c.maxDescriptorEntries,
      maxValueLength: c.maxDescriptorValueLength,
      maxHitsAddend: c.maxHitsAddend,
    },
  };
}

/**
 * ShouldRateLimit with the direct codec (codec.ts): the handler gets a CoreRequest and answers a
 * CoreResponse; answers the codec does not cover are encoded by proto-loader from `toGrpc`.
 */
function directCodec(def: ServiceDefinition): ServiceDefinition {
  const m = def['ShouldRateLimit'];
  if (!m) throw new Error('ShouldRateLimit missing from the RateLimitService definition');
  const generic = m.responseSerialize as (r: RateLimitResponse) => Buffer;
  return {
    ...def,
    ShouldRateLimit: {
      ...m,
      requestDeserialize: decodeRequest,
      responseSerialize: (r: CoreResponse): Buffer => encodeResponse(r) ?? generic(toGrpc(r)),
    },
  };
}

/** Translates a service failure to a gRPC status: the one place errors meet the wire. */
function grpcError(err: unknown): { code: GrpcCodeNumber; details: string } {
  if (err instanceof ServiceError)
    return {
      code: err.code === 'ERR_INVALID_REQUEST' ? GrpcCode.INVALID_ARGUMENT : GrpcCode.UNKNOWN,
      details: err.message,
    };
  if (err instanceof StoreError)
    return {
      code: GrpcCode.UNAVAILABLE,
      details: err.code === 'ERR_REDIS_TIMEOUT' ? 'redis timeout' : 'redis unavailable',
    };
  return { code: GrpcCode.INTERNAL, details: 'internal error' };
}

async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > max) throw new JsonRequestError('body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts rules loading, the counter store, the gRPC and HTTP listeners and the admin server. */
export async function start(
  config: RatelimitConfig,
  rt: Runtime,
  deps: StartDeps = {},
): Promise<RatelimitService> {
  const log = rt.logger;
  const now = deps.now ?? Date.now;
  // only spreads key expiries (EXPIRATION_JITTER_MAX_SECONDS): no need for a cryptographic source
  const random = deps.random ?? Math.random;
  const metrics = new Metrics(rt.registry, config.metricsMaxKeys);

  const holder = new RulesHolder(
    rulesSource({
      configDir: config.configDir,
      runtimeRoot: config.runtimeRoot,
      runtimeSubdirectory: config.runtimeSubdirectory,
      runtimeAppdirectory: config.runtimeAppdirectory,
      runtimeIgnoredotfiles: config.runtimeIgnoredotfiles,
      runtimeWatchRoot: config.runtimeWatchRoot,
      mergeDomainConfig: config.mergeDomainConfig,
    }),
    {
      logger: log,
      onOutcome: (o) => {
        metrics.configLoad.inc({ result: o.kind === 'loaded' ? 'success' : 'error' });
        if (config.healthyWithAtLeastOneConfigLoaded)
          rt.health.set(
            'config',
            (holder.rules?.domains.size ?? 0) > 0,
            holder.rules ? undefined : 'no configuration loaded',
          );
      },
    },
  );
  if (config.healthyWithAtLeastOneConfigLoaded) rt.health.set('config', false, 'no configuration loaded');
  holder.reload();
  holder.watch(config.configPollInterval);

  let store: CounterStore;
  let storeChangedAt = now();
  let closed = false;
  if (config.redisUrl) {
    rt.health.set('redis', false, 'connecting');
    const redis = new RedisStore(
      {
        type: config.redisType.toLowerCase() as 'single' | 'sentinel' | 'cluster',
        url: config.redisUrl,
        socketType: config.redisSocketType.toLowerCase() as 'tcp' | 'unix',
        auth: config.redisAuth,
        sentinelAuth: config.redisSentinelAuth,
        tls: config.redisTls,
        connectTimeoutMs: config.redisTimeout,
        opTimeoutMs: config.redisOpTimeout,
      },
      { logger: log, observe: (s, ok) => metrics.redisObserved(s, ok) },
    );
    metrics.storeReady.set(0);
    redis.onReadyChange((ready) => {
      rt.health.set('redis', ready, ready ? undefined : 'redis not connected');
      metrics.storeReady.set(ready ? 1 : 0);
      storeChangedAt = now();
      // loud: while Redis is away every request that needs a counter fails (or passes with fail-open)
      if (!ready && !closed)
        log.error(
          { failOpen: config.redisFailOpen },
          config.redisFailOpen
            ? 'redis unreachable: requests are answered OK without limits (REDIS_FAIL_OPEN) until it returns'
            : 'redis unreachable: requests that need a counter fail UNAVAILABLE until it returns (Envoy failure_mode_deny decides)',
        );
    });
    store = redis;
  } else {
    let warned = false;
    store = new MemoryStore({
      now,
      maxBytes: config.memoryStoreMaxBytes,
      onFull: () => {
        metrics.memoryStoreRefused.inc();
        if (warned) return;
        warned = true;
        log.warn(
          { maxBytes: config.memoryStoreMaxBytes },
          'in-memory counter store full: new counters are answered OVER_LIMIT (MEMORY_STORE_MAX_BYTES)',
        );
      },
    });
    metrics.storeReady.set(1);
    log.warn('REDIS_URL unset: counting in memory (exact for one replica only)');
  }

  const tracing = deps.tracing;
  const service = new RateLimitService({
    rules: () => holder.rules,
    settings: coreSettings(config),
    store: tracing ? tracedStore(tracing, store) : store,
    localCache: new OverLimitCache(localCacheEntries(config)),
    metrics,
    logger: log,
    failOpen: config.redisFailOpen,
    now,
    random,
  });

  /** One ShouldRateLimit call on either transport: span, decision, metrics, debug log. */
  const shouldRateLimit = (req: CoreRequest, meta: HeaderGetter): Promise<CoreResponse> => {
    // With tracing on, one span per call, current while the counters are read (store spans are its children).
    const span = tracing ? startRateLimitSpan(tracing, meta, req) : undefined;
    return (
      span && tracing ? tracing.run(span, () => service.shouldRateLimit(req)) : service.shouldRateLimit(req)
    ).then(
      (r) => {
        if (span) endRateLimitSpan(span, req, r);
        metrics.requestDone(r.overallCode);
        // Per-request answers are logged at debug only (an over-limit flood must not flood the logs).
        if (log.isLevelEnabled('debug'))
          log.debug(
            { ...callCorrelation(meta), ...answerFields(req, r) },
            r.overallCode === 'OVER_LIMIT' ? 'over limit' : 'within limit',
          );
        return r;
      },
      (err: unknown) => {
        if (span) endRateLimitSpan(span, req, undefined);
        metrics.requestDone('ERROR');
        if (log.isLevelEnabled('debug'))
          log.debug(
            { err, ...callCorrelation(meta), ...answerFields(req, undefined) },
            'ShouldRateLimit failed',
          );
        throw err;
      },
    );
  };

  const rlsDefinition = directCodec(
    serviceDefinition(
      ['envoy/service/ratelimit/v3/rls.proto'],
      'envoy.service.ratelimit.v3.RateLimitService',
    ),
  );
  // the direct codec, falling back to proto-loader for answers it does not cover
  const serializeResponse = rlsDefinition['ShouldRateLimit']!.responseSerialize as (
    r: CoreResponse,
  ) => Buffer;
  const healthNames = ['ratelimit', 'envoy.service.ratelimit.v3.RateLimitService'];
  const grpc =
    config.grpcTransport === 'http2'
      ? await startGrpcH2Server({
          host: config.grpcHost,
          port: config.grpcPort,
          maxConcurrentStreams: config.grpcMaxConcurrentStreams,
          maxReceiveMessageBytes: config.grpcMaxReceiveMessageBytes,
          receiveTimeoutMs: config.grpcReceiveTimeout,
          onInternalError: (err, path) => log.error({ err, path }, 'gRPC handler failed'),
          routes: {
            ...healthRoutes(rt.health, healthNames),
            '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit': {
              kind: 'unary',
              handle: (bytes, call) => {
                let req: CoreRequest;
                try {
                  req = decodeRequest(bytes);
                } catch (err) {
                  throw new GrpcStatusError(GrpcCode.INTERNAL, 'Error deserializing request', { cause: err });
                }
                return shouldRateLimit(req, (name) => call.metadata(name)).then(
                  serializeResponse,
                  (err: unknown) => {
                    const e = grpcError(err);
                    throw new GrpcStatusError(e.code, e.details, { cause: err });
                  },
                );
              },
            },
          },
        })
      : // grpc-js only when chosen (--grpc-transport grpc-js): ~2.5 MiB of idle RSS otherwise
        await (
          await import('@extsvc/common/grpc')
        ).startGrpcServer({
          host: config.grpcHost,
          port: config.grpcPort,
          health: rt.health,
          healthNames,
          channelOptions: {
            // channelz bookkeeping costs CPU on every call and nothing here reads it
            'grpc.enable_channelz': 0,
            // grpc-js's defaults are 2^32-1 streams per connection and 4 MiB messages
            'grpc.max_concurrent_streams': config.grpcMaxConcurrentStreams,
            'grpc.max_receive_message_length': config.grpcMaxReceiveMessageBytes,
          },
          services: [
            {
              definition: rlsDefinition,
              implementation: {
                ShouldRateLimit(
                  call: ServerUnaryCall<CoreRequest, CoreResponse>,
                  cb: sendUnaryData<CoreResponse>,
                ) {
                  shouldRateLimit(call.request, metadataGetter(call.metadata)).then(
                    (r) => cb(null, r),
                    (err: unknown) => cb(grpcError(err) as Partial<GrpcError>),
                  );
                },
              },
            },
          ],
        });

  const http: HttpServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthcheck') {
      if (rt.health.serving) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('OK');
      else res.writeHead(500).end();
      return;
    }
    if (path === '/json') {
      const badRequest = (): void => {
        res
          .writeHead(400, {
            'content-type': 'text/plain; charset=utf-8',
            'x-content-type-options': 'nosniff',
          })
          .end('Bad Request\n');
      };
      readBody(req, 1 << 20)
        .then(async (body) => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(body);
          } catch {
            throw new JsonRequestError('invalid JSON');
          }
          const r = await service.shouldRateLimit(fromJson(parsed));
          metrics.requestDone(r.overallCode);
          res
            .writeHead(r.overallCode === 'OVER_LIMIT' ? 429 : 200, { 'content-type': 'application/json' })
            .end(JSON.stringify(toJson(r)));
        })
        .catch((err: unknown) => {
          // The reference answers 400 for a bad body and for any service error, Redis included.
          log.debug({ err }, '/json request failed');
          if (!res.headersSent) badRequest();
        });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(config.httpPort, config.httpHost, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const httpAddr = http.address();
  const httpPort = typeof httpAddr === 'object' && httpAddr ? httpAddr.port : config.httpPort;

  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: log,
    configView: () => ({
      options: redactedView(RATELIMIT_OPTIONS, config),
      store: store.kind,
      rules: holder.rules
        ? {
            files: holder.rules.files,
            domains: [...holder.rules.domains.keys()],
            limits: dumpRuleSet(holder.rules),
            loadedAt: holder.loadedAt,
          }
        : null,
      lastLoadError: holder.lastError ?? null,
    }),
    routes: (app) => {
      // /diag wiring: read-only views of the rules, the store and a lookup form that never counts.
      registerRatelimitDiag(app, {
        service: rt.service,
        version: rt.version,
        health: rt.health,
        source: {
          rules: () => holder.rules,
          lastError: () => holder.lastError,
          loadedAt: () => holder.loadedAt,
          configDir: config.configDir,
          settings: coreSettings(config),
          store,
          now,
          failOpen: config.redisFailOpen,
          storeChangedAt: () => storeChangedAt,
          unknownDomains: () => metrics.missingDomains(),
          redis: config.redisUrl
            ? {
                type: config.redisType.toLowerCase(),
                url: config.redisUrl,
                tls: config.redisTls,
                auth: config.redisAuth !== undefined,
              }
            : undefined,
        },
      });
      app.get('/rlconfig', async (_req, reply) =>
        reply.header('content-type', 'text/plain; charset=utf-8').send(
          holder.rules
            ? dumpRuleSet(holder.rules)
                .map(
                  (l) =>
                    `${String(l['key'])}: ${JSON.stringify(l['limits'])}${l['shadow_mode'] ? ' shadow_mode' : ''}`,
                )
                .join('\n') + '\n'
            : '',
        ),
      );
    },
  });
  rt.health.set('listeners', true);
  log.info({ grpcPort: grpc.port, httpPort, adminPort: admin.port, store: store.kind }, 'ratelimit started');
  let closing: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    httpPort,
    adminPort: admin.port,
    service,
    close: () =>
      (closing ??= (async () => {
        closed = true;
        rt.health.drain();
        await delay(config.drainMs);
        await closeAll([
          grpc,
          {
            close: () =>
              new Promise<void>((resolve) => {
                http.close(() => resolve());
                http.closeAllConnections();
              }),
          },
          admin,
          holder,
          store,
        ]);
        await tracing?.shutdown();
      })()),
  };
}
