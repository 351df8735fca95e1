import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { ConfigError, errorMessage } from '@extsvc/common/errors';
import { serviceDefinition, startGrpcServer } from '@extsvc/common/grpc';
import { GrpcCode, GrpcStatusError, startGrpcH2Server } from '@extsvc/common/grpc-h2';
import { healthRoutes } from '@extsvc/common/grpc-h2-health';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import { correlationFields, correlationOfHeaders } from '@extsvc/common/trace';
import { watchPaths, type Watcher } from '@extsvc/common/watch';
import type { Tracing } from '@extsvc/common/otel';
import type { Logger } from '@extsvc/common/logger';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { UnaryMethod } from '@extsvc/common/grpc-h2';
import type { CheckRequest__Output } from '../../../proto/generated/envoy/service/auth/v3/CheckRequest.ts';
import type { CheckResponse } from '../../../proto/generated/envoy/service/auth/v3/CheckResponse.ts';
import { Authorizer } from './authorizer.ts';
import { AUTHZ_OPTIONS, type AuthzConfig } from './config.ts';
import type { Decision } from './decision.ts';
import { fetchJson, type JsonFetcher } from './fetch.ts';
import { checkHandler, checkImplementation, type CheckObserver } from './grpc-check.ts';
import { startHttpCheck } from './http-check.ts';
import { createMetrics } from './metrics.ts';
import { tracedDecide, tracedFetch, type TransportDecide } from './tracing.ts';
import { DecisionLog } from './decision-log.ts';
import {
  FetchLog,
  RecentDecisions,
  recordingDecide,
  registerAuthzDiag,
  safeUrl,
  type HttpPrefixState,
  type ReloadState,
} from './diag.ts';
import { SigninStats } from './signin/stats.ts';
import { emptyPolicy, loadPolicyFile, type Policy, type PolicyOptions } from './policy.ts';

/** A running authz service. */
export interface AuthzService {
  readonly grpcPort: number;
  /** 0 when the HTTP listener is disabled (--http-enabled=false). */
  readonly httpPort: number;
  readonly adminPort: number;
  close(): Promise<void>;
}

/** Injectable dependencies (tests): clock, fetcher, environment for `env:` secrets, tracer. */
export interface StartDeps {
  readonly now?: () => number;
  readonly fetch?: JsonFetcher;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** OpenTelemetry tracing (startTracing); undefined when off. Shut down by close(). */
  readonly tracing?: Tracing | undefined;
}

/** A redacted summary of the policy for /config (no secrets, no key hashes). */
function policyView(p: Policy): unknown {
  return {
    realm: p.realm,
    providers: [...p.providers.values()].map((v) => ({
      name: v.name,
      issuer: v.issuer,
      // The same redaction as /diag: no userinfo, no query (client_secret=…), no fragment.
      keys:
        v.keys.kind === 'inline'
          ? 'inline'
          : v.keys.kind === 'none'
            ? 'hmac'
            : `${v.keys.kind} ${safeUrl(v.keys.url)}`,
      hmacSecret: v.hmacSecret ? '(redacted)' : undefined,
      audiences: v.audiences,
      algorithms: v.algorithms,
      clockSkewSec: v.clockSkewSec,
    })),
    apiKeySets: [...p.apiKeySets.values()].map((s) => ({
      name: s.name,
      header: s.header,
      keys: s.keys.map((k) => k.name),
    })),
    rules: p.rules.map((r) => r.name),
    // Client secret and session keys are never shown: only that they are set.
    logins: p.logins.map((l) => ({
      id: l.id,
      provider: l.provider,
      clientId: l.clientId,
      clientSecret: '(redacted)',
      sessionKeys: `(${l.sessionKeys.length} redacted)`,
      scopes: l.scopes,
      redirectPath: l.redirectPath,
      logoutPath: l.logoutPath,
      postLogoutRedirect: l.postLogoutRedirect,
      cookie: l.cookie,
      sessionTtlMs: l.sessionTtlMs,
      edgeStack: l.edgeStack,
    })),
    policies: Object.fromEntries([...p.policies].map(([k, rs]) => [k, rs.map((r) => r.name)])),
    reservedHeaders: p.reservedHeaders,
  };
}

const HEADER_PATTERN = /^[!#$%&'*+.^_`|~0-9a-z-]+\*?$/;

/** Validates --http-upstream-headers: lower-cased header names, optionally ending in `*`. */
function checkUpstreamHeaders(config: AuthzConfig): readonly string[] {
  const list = config.httpUpstreamHeaders.map((h) => h.toLowerCase());
  const bad = list.filter((h) => !HEADER_PATTERN.test(h) || h === '*');
  if (bad.length > 0)
    throw new ConfigError([
      {
        field: '--http-upstream-headers',
        message: `not a header name or 'prefix*': ${bad.map((b) => `'${b}'`).join(', ')}`,
      },
    ]);
  return list;
}

/**
 * Check on the node:http2 gRPC server: the same handler as on grpc-js, with grpc-js's codec (the
 * proto-loader objects checkRequestToAuth reads) and its answers for an undecodable request.
 */
function checkRoute(
  definition: ServiceDefinition,
  decide: TransportDecide,
  observe: CheckObserver,
  log: Logger,
): UnaryMethod {
  const method = definition['Check'];
  if (!method) throw new Error('envoy.service.auth.v3.Authorization has no Check');
  const deserialize = method.requestDeserialize as (b: Buffer) => CheckRequest__Output;
  const serialize = method.responseSerialize as (r: CheckResponse) => Buffer;
  const check = checkHandler(decide, observe, log);
  return {
    kind: 'unary',
    handle: (bytes, call) => {
      let request: CheckRequest__Output;
      try {
        request = deserialize(bytes);
      } catch (err) {
        throw new GrpcStatusError(GrpcCode.INTERNAL, 'Error deserializing request', { cause: err });
      }
      return check(request, (name) => call.metadata(name)).then((o) => {
        if (o.kind === 'unavailable') throw new GrpcStatusError(GrpcCode.UNAVAILABLE, o.details);
        return serialize(o.response);
      });
    },
  };
}

/** Starts the gRPC and HTTP ext_authz listeners, the admin server and the policy watcher. */
export async function start(config: AuthzConfig, rt: Runtime, deps: StartDeps = {}): Promise<AuthzService> {
  const env = deps.env ?? {};
  const log = rt.logger.child({ component: 'authz' });
  const metrics = createMetrics(rt.registry);
  const upstream = checkUpstreamHeaders(config);
  const policyOpts: PolicyOptions = { httpUpstreamHeaders: config.httpEnabled ? upstream : undefined };
  const load = (): Policy =>
    config.policyFile ? loadPolicyFile(config.policyFile, env, policyOpts) : emptyPolicy();
  const policy = load(); // a ConfigError here exits 2 with file and field
  if (!config.policyFile) log.warn('no --policy-file: every request is denied');
  metrics.reloadOk.set(1);
  const fetchLog = new FetchLog();
  const tracing = deps.tracing;
  const fetcher = deps.fetch ?? fetchJson;
  const signinStats = new SigninStats(deps.now ?? Date.now);
  const authorizer = new Authorizer(policy, {
    fetch: tracing ? tracedFetch(tracing, fetcher) : fetcher,
    now: deps.now ?? Date.now,
    logger: rt.logger.child({ component: 'keys' }),
    tokenCacheSize: config.tokenCacheSize,
    tokenCacheTtlMs: config.tokenCacheTtl,
    verifyThreads: config.jwtVerifyThreads,
    onFetch: (issuer, result) => {
      metrics.jwksFetches.inc({ issuer, result });
      fetchLog.record(issuer, result);
      // The key store keeps the new keys right after this call returns.
      setImmediate(() => keyHealth());
    },
    onCache: (hit) => metrics.tokenCache.inc({ result: hit ? 'hit' : 'miss' }),
    onSignin: (e) => {
      signinStats.record(e);
      const login = e.login;
      switch (e.kind) {
        case 'redirect':
          metrics.loginRedirects.inc({ login });
          break;
        case 'session':
          metrics.loginSessions.inc({ login });
          break;
        case 'refresh':
          metrics.loginRefreshes.inc({ login, result: e.ok ? 'ok' : 'error' });
          break;
        case 'logout':
          metrics.loginLogouts.inc({ login });
          break;
        case 'failure':
          metrics.loginFailures.inc({ login, reason: e.reason });
          break;
      }
    },
  });
  // Providers whose keys were never obtained: a readiness component (failing only with
  // --require-issuer-keys), a gauge per provider, and the provider state on /diag.
  const keyHealth = (): void => {
    const status = authorizer.keyStatus();
    const missing: string[] = [];
    metrics.issuerKeysLoaded.reset();
    for (const [name, p] of authorizer.policy.providers) {
      if (p.keys.kind === 'none') continue; // HMAC only: nothing to obtain
      const s = status[name] as { keys?: number; fetchedAt?: string } | undefined;
      const loaded = p.keys.kind === 'inline' || s?.fetchedAt !== undefined;
      metrics.issuerKeysLoaded.set({ provider: name }, loaded ? 1 : 0);
      if (!loaded) missing.push(name);
    }
    const detail =
      missing.length === 0
        ? 'every provider has keys'
        : `keys never obtained (tokens denied keys_unavailable): ${missing.join(', ')}`;
    rt.health.set('issuer-keys', missing.length === 0 || !config.requireIssuerKeys, detail);
  };
  keyHealth();
  // Warm the key caches without blocking start-up: an issuer down at cold start must not stop authz.
  void authorizer.warm().then(keyHealth);

  const decisionLog = config.decisionLog
    ? await DecisionLog.open(config.decisionLog, {
        rate: config.decisionLogSampleRate,
        logger: log,
        now: deps.now ?? Date.now,
      })
    : undefined;
  const observe: CheckObserver = (transport, d: Decision, startedNs, req) => {
    if (decisionLog) decisionLog.record(transport, d, req);
    metrics.duration.observe({ transport }, Number(process.hrtime.bigint() - startedNs) / 1e9);
    metrics.decisions.inc({ transport, result: d.kind, reason: d.reason, rule: d.rule });
    metrics.checks.inc({ transport, result: d.kind });
    // Per-request denies (and allows) are counted in metrics and logged at debug (a token flood must not
    // flood the logs); errors are rare and infrastructure-related, so they are logged at warn. Each line
    // carries Envoy's x-request-id and the trace id to join it with the access log. Never token contents.
    if (d.kind === 'error' || log.isLevelEnabled('debug')) {
      const fields = {
        transport,
        reason: d.reason,
        rule: d.rule,
        ...(req ? correlationFields(correlationOfHeaders(req.headers)) : {}),
      };
      if (d.kind === 'deny') log.debug(fields, 'denied');
      else if (d.kind === 'allow') log.debug(fields, 'allowed');
      else log.warn(fields, 'check failed: Envoy failure mode applies');
    }
  };
  // /diag wiring: real decisions go to the recent-decisions ring; the test form calls authorizer.decide directly.
  const recent = new RecentDecisions();
  const recorded = recordingDecide((req) => authorizer.decide(req), recent);
  // With tracing off the transports call the recording decision directly: no per-check cost.
  const decide = tracing ? tracedDecide(tracing, recorded) : recorded;
  let lastReload: ReloadState = { ok: true, at: new Date().toISOString() };

  const checkDefinition = serviceDefinition(
    ['envoy/service/auth/v3/external_auth.proto'],
    'envoy.service.auth.v3.Authorization',
  );
  const healthNames = ['envoy.service.auth.v3.Authorization'];
  const grpc =
    config.grpcTransport === 'http2'
      ? await startGrpcH2Server({
          host: config.grpcHost,
          port: config.grpcPort,
          maxConcurrentStreams: config.grpcMaxConcurrentStreams,
          maxReceiveMessageBytes: config.grpcMaxReceiveBytes,
          receiveTimeoutMs: config.grpcReceiveTimeout,
          onInternalError: (err, path) => log.error({ err, path }, 'gRPC handler failed'),
          routes: {
            ...healthRoutes(rt.health, healthNames),
            '/envoy.service.auth.v3.Authorization/Check': checkRoute(checkDefinition, decide, observe, log),
          },
        })
      : await startGrpcServer({
          host: config.grpcHost,
          port: config.grpcPort,
          health: rt.health,
          healthNames,
          // grpc-js defaults are 4 MiB and 2^32-1 streams: one direct caller could make authz decode a 4 MiB,
          // 150k-header request while other clients wait, on as many streams as it likes.
          channelOptions: {
            'grpc.max_receive_message_length': config.grpcMaxReceiveBytes,
            'grpc.max_concurrent_streams': config.grpcMaxConcurrentStreams,
          },
          services: [
            { definition: checkDefinition, implementation: checkImplementation(decide, observe, log) },
          ],
        });
  // Checks without the configured path prefix: denied, counted, shown on /diag, logged at most once a minute.
  const prefixState: HttpPrefixState = { prefix: config.httpPathPrefix, mismatches: 0 };
  let lastPrefixLog = Number.NEGATIVE_INFINITY;
  const onPrefixMismatch = (firstSegment: string): void => {
    prefixState.mismatches += 1;
    prefixState.lastAt = new Date().toISOString();
    prefixState.lastSegment = firstSegment;
    if (Date.now() - lastPrefixLog < 60_000) return;
    lastPrefixLog = Date.now();
    log.warn(
      { expectedPrefix: config.httpPathPrefix, got: firstSegment, total: prefixState.mismatches },
      `HTTP check without the path prefix '${config.httpPathPrefix}': denied (path_prefix_mismatch); Envoy's http_service path_prefix / Emissary's AuthService path_prefix must equal --http-path-prefix (HTTP_PATH_PREFIX)`,
    );
  };
  const http = config.httpEnabled
    ? await startHttpCheck(
        {
          host: config.httpHost,
          port: config.httpPort,
          pathPrefix: config.httpPathPrefix,
          maxHeaderBytes: config.httpMaxHeaderBytes,
          keepAliveMs: config.httpKeepaliveMs,
          upstreamHeaders: upstream,
          onPrefixMismatch,
        },
        decide,
        observe,
        log,
      )
    : undefined;
  let watcher: Watcher | undefined;
  const reload = (): void => {
    try {
      const next = load();
      authorizer.replace(next);
      keyHealth();
      metrics.reloads.inc({ result: 'ok' });
      metrics.reloadOk.set(1);
      lastReload = { ok: true, at: new Date().toISOString() };
      log.info({ rules: next.rules.length, providers: next.providers.size }, 'policy reloaded');
      void watcher?.close();
      watcher = watchPaths(next.files, config.policyPollMs, reload);
    } catch (err) {
      metrics.reloads.inc({ result: 'error' });
      metrics.reloadOk.set(0);
      lastReload = { ok: false, at: new Date().toISOString(), error: errorMessage(err) };
      log.error({ err: errorMessage(err) }, 'policy reload failed: keeping the last good policy');
    }
  };
  if (config.policyFile && config.policyPollMs > 0)
    watcher = watchPaths(policy.files, config.policyPollMs, reload);

  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: rt.logger,
    configView: () => ({
      options: redactedView(AUTHZ_OPTIONS, config),
      policy: policyView(authorizer.policy),
      keys: authorizer.keyStatus(),
    }),
    routes: (app) =>
      registerAuthzDiag(app, {
        testLimit: { perMinute: config.diagTestPerMinute, now: deps.now ?? Date.now },
        onTest: (result) => metrics.diagTests.inc({ result }),
        service: rt.service,
        version: rt.version,
        health: rt.health,
        source: {
          policy: () => authorizer.policy,
          keyStatus: () => authorizer.keyStatus(),
          recent,
          decide: (req) => authorizer.decide(req),
          policyFile: config.policyFile,
          reload: () => lastReload,
          fetchLog,
          httpPrefix: config.httpEnabled ? () => prefixState : undefined,
          signin: signinStats,
        },
      }),
  });
  rt.health.set('listeners', true);
  log.info({ grpcPort: grpc.port, httpPort: http?.port, adminPort: admin.port }, 'authz started');
  let closing: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    httpPort: http?.port ?? 0,
    adminPort: admin.port,
    close: () =>
      (closing ??= (async () => {
        rt.health.drain();
        await delay(config.drainMs);
        await closeAll([watcher, grpc, http, admin, { close: async () => authorizer.close() }, decisionLog]);
        await tracing?.shutdown();
      })()),
  };
}
