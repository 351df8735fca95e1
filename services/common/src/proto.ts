import { loadSync, type Options } from '@grpc/proto-loader';
import { loadPackageDefinition, type GrpcObject } from '@grpc/grpc-js';
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

/** Loads proto files (paths relative to PROTO_DIR) into a grpc-js object tree. */
export function loadProtos(files: readonly string[]): GrpcObject {
  return loadPackageDefinition(loadSync([...files], PROTO_LOADER_OPTIONS));
}
