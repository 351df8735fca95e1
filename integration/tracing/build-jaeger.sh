#!/usr/bin/env bash
# Builds Jaeger v2 (the all-in-one `jaeger` binary: OTLP receiver, in-memory storage, query API) from
# the Go module proxy into ${EXTSVC_CACHE:-$HOME/.cache/extsvc}/jaeger/<version>/jaeger.
# Prints that binary's path as the last line. Exits at once when it is cached.
#
#   go mod download github.com/jaegertracing/jaeger@<version>; go build ./cmd/jaeger in a copy of it
#
# Not `go install MODULE@VERSION`: jaeger's go.mod has a replace directive (sarama), which `go install`
# refuses; built as the main module in a writable copy of the downloaded module, the replace applies.
# Jaeger v2 is published under the module path github.com/jaegertracing/jaeger with v1.x module
# versions (v1.76.0 is Jaeger v2.13). Env overrides: JAEGER_VERSION (default v1.76.0), EXTSVC_CACHE,
# GO (path of the go binary). The build is large (several minutes to tens of minutes on a loaded
# machine); the integration test that needs it skips when the binary is not cached.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
CACHE_ROOT="${EXTSVC_CACHE:-$HOME/.cache/extsvc}"
DEST="${CACHE_ROOT}/jaeger/${JAEGER_VERSION#v}"

if [[ -x "${DEST}/jaeger" ]]; then
  echo "jaeger: cached binary present" >&2
  echo "${DEST}/jaeger"
  exit 0
fi

if [[ -n "${GO:-}" ]]; then :
elif command -v go >/dev/null 2>&1; then GO="$(command -v go)"
elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
else echo "tracing/build-jaeger.sh: go not found (set GO=/path/to/go)" >&2; exit 1
fi

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOWORK=off

t0=$SECONDS
echo "jaeger: $("${GO}" version); building jaeger ${JAEGER_VERSION} -> ${DEST}" >&2
# Install atomically: a half-built binary never appears in the cache.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/extsvc-jaeger-build.XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT
MODDIR="$(cd "${TMP}" && "${GO}" mod download -json "github.com/jaegertracing/jaeger@${JAEGER_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "${MODDIR}" ]] || { echo "tracing/build-jaeger.sh: module download failed" >&2; exit 1; }
cp -R "${MODDIR}" "${TMP}/src"
chmod -R u+w "${TMP}/src"
(cd "${TMP}/src" && "${GO}" build -trimpath -ldflags="-s -w" -o "${TMP}/bin/jaeger" ./cmd/jaeger)
mkdir -p "${DEST}"
mv "${TMP}/bin/jaeger" "${DEST}/jaeger.tmp"
mv "${DEST}/jaeger.tmp" "${DEST}/jaeger"
echo "jaeger: built in $((SECONDS - t0))s" >&2
echo "${DEST}/jaeger"
