#!/usr/bin/env bash
# Builds helm v4 from the Go module proxy into ${EXTSVC_CACHE:-$HOME/.cache/extsvc}/helm/<version>/helm.
# Prints that binary's path as the last line. Exits at once when it is cached.
#
#   GOFLAGS=-mod=mod go install helm.sh/helm/v4/cmd/helm@<version>   (GOBIN = the cache dir)
#
# helm's go.mod has no local-path replaces, so a plain `go install MODULE@VERSION` works (unlike
# kube-apiserver, see build.sh). Env overrides: HELM_VERSION (default v4.3.2, the newest v4 tag on
# the proxy when this was written), EXTSVC_CACHE, GO (path of the go binary).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
CACHE_ROOT="${EXTSVC_CACHE:-$HOME/.cache/extsvc}"
DEST="${CACHE_ROOT}/helm/${HELM_VERSION#v}"

if [[ -x "${DEST}/helm" ]]; then
  echo "helm: cached binary present" >&2
  echo "${DEST}/helm"
  exit 0
fi

if [[ -n "${GO:-}" ]]; then :
elif command -v go >/dev/null 2>&1; then GO="$(command -v go)"
elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
else echo "kube/build-helm.sh: go not found (set GO=/path/to/go)" >&2; exit 1
fi

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOWORK=off

t0=$SECONDS
echo "helm: $("${GO}" version); building helm ${HELM_VERSION} -> ${DEST}" >&2
# Install atomically: a half-built binary never appears in the cache.
TMP="$(mktemp -d "${TMPDIR:-/tmp}/extsvc-helm-build.XXXXXX")"
trap 'rm -rf "${TMP}"' EXIT
(cd "${TMP}" && GOBIN="${TMP}/bin" "${GO}" install -trimpath -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}")
"${TMP}/bin/helm" version >&2
mkdir -p "${DEST}"
mv "${TMP}/bin/helm" "${DEST}/helm.tmp"
mv "${DEST}/helm.tmp" "${DEST}/helm"
echo "helm: built in $((SECONDS - t0))s" >&2
echo "${DEST}/helm"
