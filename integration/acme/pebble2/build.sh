#!/usr/bin/env bash
# Builds Pebble v2.10 (the ACME test CA with ARI, certificate profiles and `replaces`; Debian ships
# 2.4 without them) from the Go module proxy into
# ${EXTSVC_CACHE:-$HOME/.cache/extsvc}/pebble-<version>/pebble. Prints that binary's path as the last
# line. Exits at once when it is cached.
#
#   GOBIN=<tmp> go install github.com/letsencrypt/pebble/v2/cmd/pebble@<version>
#
# Env overrides: PEBBLE2_VERSION (default v2.10.3), EXTSVC_CACHE, GO (path of the go binary).
# The tests that need it (integration/acme/ari.test.ts, profile.test.ts) find it through
# PEBBLE2_BIN or this cache path.
set -euo pipefail

PEBBLE2_VERSION="${PEBBLE2_VERSION:-v2.10.3}"
CACHE_ROOT="${EXTSVC_CACHE:-$HOME/.cache/extsvc}"
DEST="${CACHE_ROOT}/pebble-${PEBBLE2_VERSION#v}"

if [[ -x "${DEST}/pebble" ]]; then
  echo "pebble ${PEBBLE2_VERSION}: cached binary present" >&2
  echo "${DEST}/pebble"
  exit 0
fi

if [[ -n "${GO:-}" ]]; then :
elif command -v go >/dev/null 2>&1; then GO="$(command -v go)"
elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
else echo "acme/pebble2/build.sh: go not found (set GO=/path/to/go)" >&2; exit 1
fi

export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOWORK=off

t0=$SECONDS
echo "pebble: $("${GO}" version); building pebble ${PEBBLE2_VERSION} -> ${DEST}" >&2
# Install atomically: a half-built binary never appears in the cache.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/extsvc-pebble-build.XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT
(cd "${TMP}" && GOBIN="${TMP}/bin" "${GO}" install -trimpath -ldflags="-s -w" \
  "github.com/letsencrypt/pebble/v2/cmd/pebble@${PEBBLE2_VERSION}")
mkdir -p "${DEST}"
mv "${TMP}/bin/pebble" "${DEST}/pebble.tmp"
mv "${DEST}/pebble.tmp" "${DEST}/pebble"
echo "pebble: built in $((SECONDS - t0))s" >&2
echo "${DEST}/pebble"
