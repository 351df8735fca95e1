#!/usr/bin/env bash
# Generates TypeScript types for the vendored protos into proto/generated (committed; CI checks drift).
# The options must match PROTO_LOADER_OPTIONS in services/common/src/proto.ts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$EXTSVC_ROOT/proto"
out="${1:-generated}"
rm -rf "$out"
proto-loader-gen-types --keepCase --longs=Number --enums=String --defaults --oneofs \
  --grpcLib=@grpc/grpc-js --importFileExtension=.ts --targetFileExtension=.ts \
  -I . -O "$out" \
  envoy/service/auth/v3/external_auth.proto envoy/service/ratelimit/v3/rls.proto grpc/health/v1/health.proto >/dev/null
