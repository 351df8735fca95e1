#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source with Go + the Go module proxy only,
# into ${EXTSVC_CACHE:-$HOME/.cache/extsvc}/kube/<k8s>-etcd<etcd>/bin/{kube-apiserver,etcd}.
# Prints that bin directory as the last line. Exits at once if both binaries are there.
#
# k8s.io/kubernetes and go.etcd.io/etcd/server/v3 cannot be `go install`ed: their go.mod
# replace sibling modules with local paths. We generate a wrapper module that requires the
# main module and replaces every such local-path module with its published version
# (k8s staging modules: v1.Y.Z -> v0.Y.Z; etcd siblings: same version as the server).
#
# Env overrides: KUBE_VERSION (default v1.34.4), ETCD_VERSION (default v3.6.8),
#                EXTSVC_CACHE, GO (path of the go binary), KEEP_BUILD_DIR=1.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
CACHE_ROOT="${EXTSVC_CACHE:-$HOME/.cache/extsvc}"
DEST="${CACHE_ROOT}/kube/${KUBE_VERSION#v}-etcd${ETCD_VERSION#v}"
BIN="${DEST}/bin"

if [[ -x "${BIN}/kube-apiserver" && -x "${BIN}/etcd" ]]; then
  echo "kube: cached binaries present" >&2
  echo "${BIN}"
  exit 0
fi

if [[ -n "${GO:-}" ]]; then :
elif command -v go >/dev/null 2>&1; then GO="$(command -v go)"
elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
else echo "kube/build.sh: go not found (set GO=/path/to/go)" >&2; exit 1
fi

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOWORK=off

WORK="$(mktemp -d "${TMPDIR:-/tmp}/extsvc-kube-build.XXXXXX")"
cleanup() { if [[ "${KEEP_BUILD_DIR:-}" == 1 ]]; then echo "kube: kept ${WORK}" >&2; else rm -rf "${WORK}"; fi; }
trap cleanup EXIT

t_all=$SECONDS
log() { echo "kube: [$((SECONDS - t_all))s] $*" >&2; }
log "$("${GO}" version); building kube-apiserver ${KUBE_VERSION} + etcd ${ETCD_VERSION} -> ${BIN}"

# gomod_of MODULE@VERSION: downloads the module, prints the path of its go.mod file.
gomod_of() {
  local out
  out="$(cd "${WORK}" && "${GO}" mod download -json "$1")"
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"${out}"
}

# local_replaces GOMOD: prints module paths that GOMOD both requires and replaces with a
# local directory (=> ./... or ../...). Reads the canonical form from `go mod edit -print`.
local_replaces() {
  (cd "${WORK}" && "${GO}" mod edit -print "$1") | awk '
    /^require \(/ { inreq = 1; next }
    /^replace \(/ { inrep = 1; next }
    /^\)/         { inreq = 0; inrep = 0; next }
    /^require /   { req[$2] = 1; next }
    inreq && NF >= 2 { req[$1] = 1; next }
    /^replace / && $0 ~ /=> \.\.?\// { rep[$2] = 1; next }
    inrep && $0 ~ /=> \.\.?\// { rep[$1] = 1; next }
    END { for (m in rep) if (m in req) print m }' | sort
}

# build_wrapped NAME MAIN_MODULE VERSION SIBLING_VERSION PACKAGE OUTPUT [LDFLAGS]
build_wrapped() {
  local name="$1" mod="$2" ver="$3" sibver="$4" pkg="$5" out="$6" ldflags="${7:-}"
  local dir="${WORK}/${name}" gomod goline
  mkdir -p "${dir}"
  gomod="$(gomod_of "${mod}@${ver}")"
  [[ -f "${gomod}" ]] || { echo "kube/build.sh: no go.mod for ${mod}@${ver}" >&2; exit 1; }
  goline="$(awk '$1 == "go" { print $2; exit }' "${gomod}")"
  (
    cd "${dir}"
    "${GO}" mod init "extsvc.local/${name}-wrapper" >/dev/null 2>&1
    "${GO}" mod edit -go="${goline}" -require="${mod}@${ver}"
    # Keep the main module's godebug defaults (k8s pins `godebug default=go1.24`).
    if grep -q '^godebug ' "${gomod}"; then
      grep '^godebug ' "${gomod}" | while read -r _ kv; do "${GO}" mod edit -godebug="${kv}"; done
    fi
    local n=0 m
    for m in $(local_replaces "${gomod}"); do
      "${GO}" mod edit -replace="${m}=${m}@${sibver}"
      n=$((n + 1))
    done
    log "${name}: wrapper go ${goline}, ${n} local replaces mapped to ${sibver}"
    cp go.mod "${WORK}/${name}.go.mod"
    local t0=$SECONDS
    "${GO}" mod download "${mod}" >/dev/null
    "${GO}" build -trimpath -ldflags="-s -w ${ldflags}" -o "${out}" "${pkg}"
    log "${name}: built in $((SECONDS - t0))s ($(du -h "${out}" | cut -f1))"
  )
}

mkdir -p "${WORK}/bin"

# k8s version stamping (what hack/lib/version.sh would set); the binary's compatibility
# version comes from component-base's hard-coded DefaultKubeBinaryVersion anyway.
kminor="$(cut -d. -f2 <<<"${KUBE_VERSION#v}")"
kpatch="$(cut -d. -f3 <<<"${KUBE_VERSION#v}")"
builddate="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kldflags+=" -X ${p}.gitVersion=${KUBE_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${kminor}"
  kldflags+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=${builddate}"
done

build_wrapped etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" "${ETCD_VERSION}" \
  go.etcd.io/etcd/server/v3 "${WORK}/bin/etcd"
build_wrapped kube-apiserver k8s.io/kubernetes "${KUBE_VERSION}" "v0.${kminor}.${kpatch}" \
  k8s.io/kubernetes/cmd/kube-apiserver "${WORK}/bin/kube-apiserver" "${kldflags}"

"${WORK}/bin/etcd" --version >&2
"${WORK}/bin/kube-apiserver" --version >&2

# Install atomically: a half-built bin/ never appears in the cache.
mkdir -p "${DEST}"
cp "${WORK}/etcd.go.mod" "${DEST}/etcd-wrapper.go.mod"
cp "${WORK}/kube-apiserver.go.mod" "${DEST}/kube-apiserver-wrapper.go.mod"
rm -rf "${DEST}/bin.tmp"
mv "${WORK}/bin" "${DEST}/bin.tmp"
rm -rf "${BIN}"
mv "${DEST}/bin.tmp" "${BIN}"
log "done in $((SECONDS - t_all))s"
echo "${BIN}"
