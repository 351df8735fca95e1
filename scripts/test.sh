#!/usr/bin/env bash
# The README's test command: sets up the machine (idempotent), then runs every gate and test suite.
# Ends with "checks: N passed, N failed" (format, lint, typecheck, drift, builds, leftovers) and then one line
# "N passed, N failed" counting the mocha tests; a failed check is added to that line's failures, so the
# run is red whenever anything failed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EXTSVC_ROOT"
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

OUT="$EXTSVC_ROOT/test-output"
rm -rf "$OUT" && mkdir -p "$OUT"
# Every process this run starts inherits EXTSVC_RUN_ID; the leftover check looks only for it.
EXTSVC_RUN_ID="test-$$-$(date +%s%N)"
export EXTSVC_RUN_ID
checks_passed=0
checks_failed=0
passed=0
failed=0
failures=()

check() {
  local name="$1"; shift
  printf '\n=== %s\n' "$name"
  if "$@" >"$OUT/$name.log" 2>&1; then
    checks_passed=$((checks_passed + 1)); echo "ok: $name"
  else
    checks_failed=$((checks_failed + 1)); failures+=("$name"); echo "FAILED: $name"; tail -50 "$OUT/$name.log"
  fi
}

proto_drift() {
  local tmp; tmp="$(mktemp -d)"
  bash proto/generate.sh "$tmp/generated" && diff -r proto/generated "$tmp/generated" >/dev/null
  local rc=$?; rm -rf "$tmp"
  [ $rc -eq 0 ] || { echo "proto/generated is out of date: run bash proto/generate.sh"; return 1; }
}

check format prettier --check .
check lint eslint .
check typecheck tsc --noEmit -p tsconfig.json
check proto-drift proto_drift
# (envoy.compose.yaml drift is a test: integration/foundation/envoy-config.test.ts)
check docker-compose-spec bash deploy/compose-check/check.sh
if [ -x integration/kube/build.sh ]; then
  # Builds (or reuses from ~/.cache/extsvc) kube-apiserver + etcd for the Kubernetes suites.
  check kube-apiserver-build bash integration/kube/build.sh
  check helm-build bash integration/kube/build-helm.sh
fi
# Builds (or reuses from ~/.cache/extsvc) Jaeger v2 for integration/tracing (issue 15).
check jaeger-build bash integration/tracing/build-jaeger.sh
# Builds (or reuses from ~/.cache/extsvc) Pebble v2.10 (ARI, profiles) for integration/acme/{ari,profile}.test.ts.
check pebble2-build bash integration/acme/pebble2/build.sh

# --- containers (issue 12): a Docker engine for the image, compose and testcontainers suites
# (integration/containers): the engine at DOCKER_HOST or the default socket, else a private dockerd started
# here when running as root (deploy/images/engine.sh), stopped when this script exits.
source deploy/images/engine.sh
trap extsvc_engine_stop EXIT
if extsvc_engine_start; then
  check docker-images bash deploy/images/build.sh
  check docker-compose-cli bash deploy/images/compose.sh
else
  echo "containers: image, compose and testcontainers suites skipped: $EXTSVC_ENGINE_NONE"
fi
# --- end containers

mocha_suite() { # name, config, spec files...
  local name="$1" config="$2"; shift 2
  printf '\n=== %s\n' "$name"
  npx --no-install mocha --config "$config" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  local p f
  p=$(grep -Eo '^ +[0-9]+ passing' "$OUT/$name.log" | grep -Eo '[0-9]+' | tail -1)
  f=$(grep -Eo '^ +[0-9]+ failing' "$OUT/$name.log" | grep -Eo '[0-9]+' | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # mocha crashed or hung before reporting
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -eq 0 ] || failures+=("$name")
}

mocha_suite unit .mocharc.unit.json
# The integration config names no spec, so `npx mocha --config .mocharc.integration.json <file>` runs one file.
mocha_suite integration .mocharc.integration.json 'integration/**/*.test.ts'
extsvc_engine_stop # --- containers: the private dockerd, if started above

# Processes of THIS run only (EXTSVC_RUN_ID in their environment) that outlived the suites.
check leftover-processes node scripts/leftovers.ts "$EXTSVC_RUN_ID" "$$" --kill

echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "checks: $checks_passed passed, $checks_failed failed"
echo "$passed passed, $((failed + checks_failed)) failed"
[ "$failed" -eq 0 ] && [ "$checks_failed" -eq 0 ]
