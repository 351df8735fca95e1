import { Counter } from 'prom-client';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { serviceDefinition, startGrpcServer } from '@extsvc/common/grpc';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import { RATELIMIT_OPTIONS, type RatelimitConfig } from './config.ts';
import type { RateLimitRequest__Output } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitRequest.ts';
import type { RateLimitResponse } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitResponse.ts';

/** A running ratelimit service. */
export interface RatelimitService {
  readonly grpcPort: number;
  readonly adminPort: number;
  close(): Promise<void>;
}

/** Starts the RLS gRPC listener and the admin server. */
export async function start(config: RatelimitConfig, rt: Runtime): Promise<RatelimitService> {
  const calls = new Counter({
    name: 'ratelimit_should_rate_limit_total',
    help: 'ShouldRateLimit calls by overall code.',
    labelNames: ['code'],
    registers: [rt.registry],
  });
  const grpc = await startGrpcServer({
    host: config.grpcHost,
    port: config.grpcPort,
    health: rt.health,
    healthNames: ['ratelimit', 'envoy.service.ratelimit.v3.RateLimitService'],
    services: [
      {
        definition: serviceDefinition(
          ['envoy/service/ratelimit/v3/rls.proto'],
          'envoy.service.ratelimit.v3.RateLimitService',
        ),
        implementation: {
          ShouldRateLimit(
            call: ServerUnaryCall<RateLimitRequest__Output, RateLimitResponse>,
            cb: sendUnaryData<RateLimitResponse>,
          ) {
            calls.inc({ code: 'OK' });
            cb(null, {
              overall_code: 'OK',
              statuses: call.request.descriptors.map(() => ({ code: 'OK', limit_remaining: 0 })),
            });
          },
        },
      },
    ],
  });
  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: rt.logger,
    configView: () => ({ options: redactedView(RATELIMIT_OPTIONS, config) }),
  });
  rt.health.set('listeners', true);
  rt.logger.info({ grpcPort: grpc.port, adminPort: admin.port }, 'ratelimit started');
  let closing: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    adminPort: admin.port,
    close: () =>
      (closing ??= (async () => {
        rt.health.drain();
        await delay(config.drainMs);
        await closeAll([grpc, admin]);
      })()),
  };
}
