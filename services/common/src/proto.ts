import { createRequire } from 'node:module';
import { loadSync, type Options } from '@grpc/proto-loader';
import type * as GrpcJs from '@grpc/grpc-js';
import type { GrpcObject, ServiceDefinition } from '@grpc/grpc-js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Directory of the vendored protos (repository root /proto, or PROTO_DIR in images). */
export const PROTO_DIR =
  process.env['EXTSVC_PROTO_DIR'] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');

/** Must match the flags in proto/generate.sh so the generated types describe the runtime objects. */
export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

// grpc-js is required on first use, not imported: a service on the node:http2 transport (grpc-h2.ts)
// needs proto-loader's method definitions but never grpc-js (~2.5 MiB of idle RSS, bench/README.md).
const require = createRequire(import.meta.url);

/** Loads proto files (paths relative to PROTO_DIR) into a grpc-js object tree. */
export function loadProtos(files: readonly string[]): GrpcObject {
  const grpc = require('@grpc/grpc-js') as typeof GrpcJs;
  return grpc.loadPackageDefinition(loadSync([...files], PROTO_LOADER_OPTIONS));
}

/**
 * The method definitions (paths, serializers) of the service `fullName` in `files`, without loading
 * grpc-js: the same object grpc-js's client constructor carries as `.service`.
 */
export function serviceDefinition(files: readonly string[], fullName: string): ServiceDefinition {
  const def = loadSync([...files], PROTO_LOADER_OPTIONS)[fullName];
  if (def === undefined || 'format' in def || 'type' in def)
    throw new Error(`service ${fullName} not found in ${files.join(', ')}`);
  return def;
}
