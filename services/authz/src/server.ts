import Fastify from 'fastify';
import { Counter } from 'prom-client';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { startAdmin } from '@extsvc/common/admin';
import { redactedView } from '@extsvc/common/config';
import { serviceDefinition, startGrpcServer } from '@extsvc/common/grpc';
import { closeAll, delay } from '@extsvc/common/lifecycle';
import type { Runtime } from '@extsvc/common/runtime';
import { AUTHZ_OPTIONS, type AuthzConfig } from './config.ts';
import type { CheckRequest__Output } from '../../../proto/generated/envoy/service/auth/v3/CheckRequest.ts';
import type { CheckResponse } from '../../../proto/generated/envoy/service/auth/v3/CheckResponse.ts';

/** A running authz service. */
export interface AuthzService {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly adminPort: number;
  close(): Promise<void>;
}

/** Starts the gRPC and HTTP ext_authz listeners and the admin server. */
export async function start(config: AuthzConfig, rt: Runtime): Promise<AuthzService> {
  const checks = new Counter({
    name: 'authz_check_total',
    help: 'Check decisions by transport and result.',
    labelNames: ['transport', 'result'],
    registers: [rt.registry],
  });
  const grpc = await startGrpcServer({
    host: config.grpcHost,
    port: config.grpcPort,
    health: rt.health,
    healthNames: ['envoy.service.auth.v3.Authorization'],
    services: [
      {
        definition: serviceDefinition(
          ['envoy/service/auth/v3/external_auth.proto'],
          'envoy.service.auth.v3.Authorization',
        ),
        implementation: {
          Check(
            _call: ServerUnaryCall<CheckRequest__Output, CheckResponse>,
            cb: sendUnaryData<CheckResponse>,
          ) {
            checks.inc({ transport: 'grpc', result: 'allow' });
            cb(null, { status: { code: 0 }, ok_response: {} });
          },
        },
      },
    ],
  });
  const http = Fastify({ logger: false, forceCloseConnections: true });
  // Raw HTTP mode: every method and path is a check; 200 allows.
  http.all('/*', async () => {
    checks.inc({ transport: 'http', result: 'allow' });
    return '';
  });
  await http.listen({ host: config.httpHost, port: config.httpPort });
  const httpAddr = http.server.address();
  const httpPort = typeof httpAddr === 'object' && httpAddr ? httpAddr.port : config.httpPort;
  const admin = await startAdmin({
    service: rt.service,
    version: rt.version,
    host: config.adminHost,
    port: config.adminPort,
    health: rt.health,
    registry: rt.registry,
    logger: rt.logger,
    configView: () => ({ options: redactedView(AUTHZ_OPTIONS, config) }),
  });
  rt.health.set('listeners', true);
  rt.logger.info({ grpcPort: grpc.port, httpPort, adminPort: admin.port }, 'authz started');
  let closing: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    httpPort,
    adminPort: admin.port,
    close: () =>
      (closing ??= (async () => {
        rt.health.drain();
        await delay(config.drainMs);
        await closeAll([grpc, { close: () => http.close() }, admin]);
      })()),
  };
}
