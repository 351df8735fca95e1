import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type ServerWritableStream,
  type sendUnaryData,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import type { HealthState } from './health.ts';
import { serviceDefinition as protoServiceDefinition } from './proto.ts';
import type { HealthCheckRequest__Output } from '../../../proto/generated/grpc/health/v1/HealthCheckRequest.ts';
import type { HealthCheckResponse } from '../../../proto/generated/grpc/health/v1/HealthCheckResponse.ts';

/** Looks up a service definition by its full name in the given proto files (proto.ts). */
export function serviceDefinition(files: readonly string[], fullName: string): ServiceDefinition {
  return protoServiceDefinition(files, fullName);
}

/**
 * Implements grpc.health.v1.Health from a HealthState. The overall service ("") and each name in
 * `names` report SERVING while the state is serving; other names get NOT_FOUND (Check) or
 * SERVICE_UNKNOWN (Watch), as the gRPC health protocol says.
 */
export function healthImplementation(
  health: HealthState,
  names: readonly string[],
): UntypedServiceImplementation {
  const known = new Set(['', ...names]);
  const current = (): HealthCheckResponse => ({ status: health.serving ? 'SERVING' : 'NOT_SERVING' });
  return {
    Check(
      call: ServerUnaryCall<HealthCheckRequest__Output, HealthCheckResponse>,
      cb: sendUnaryData<HealthCheckResponse>,
    ) {
      if (!known.has(call.request.service)) {
        cb({ code: GrpcStatus.NOT_FOUND, details: 'unknown service' });
        return;
      }
      cb(null, current());
    },
    Watch(call: ServerWritableStream<HealthCheckRequest__Output, HealthCheckResponse>) {
      if (!known.has(call.request.service)) {
        call.write({ status: 'SERVICE_UNKNOWN' });
        return;
      }
      call.write(current());
      const off = health.onChange(() => call.write(current()));
      call.on('cancelled', off);
      call.on('close', off);
    },
  };
}

/** A gRPC server bound to one address. */
export interface GrpcServerHandle {
  readonly server: Server;
  readonly port: number;
  /** Graceful shutdown within `deadlineMs`, then forced. Idempotent. */
  close(deadlineMs?: number): Promise<void>;
}

/** Options for startGrpcServer. */
export interface GrpcServerOptions {
  readonly host: string;
  readonly port: number;
  readonly health: HealthState;
  /** Names reported by the health service (e.g. the reference's `ratelimit`). */
  readonly healthNames: readonly string[];
  readonly services: ReadonlyArray<{
    definition: ServiceDefinition;
    implementation: UntypedServiceImplementation;
  }>;
  /** grpc-js channel options (keepalive, max message size...). */
  readonly channelOptions?: Record<string, number | string>;
}

/** Creates, binds and starts a grpc-js server with the health service added. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServerHandle> {
  const server = new Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    ...opts.channelOptions,
  });
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  server.addService(
    serviceDefinition(['grpc/health/v1/health.proto'], 'grpc.health.v1.Health'),
    healthImplementation(opts.health, opts.healthNames),
  );
  const address = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    close: (deadlineMs = 5000) =>
      (closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, deadlineMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      })),
  };
}
