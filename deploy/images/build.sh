#!/usr/bin/env bash
# Builds the three service images (extsvc-authz, extsvc-ratelimit, extsvc-acme: the names docker-compose.yml
# gives them) from the repository root with the shipped Dockerfiles, on the engine at DOCKER_HOST.
# Base images: the public ones (node:24-slim, ...) when the engine has or can pull them, else local ones
# from deploy/images/build-base.sh; EXTSVC_BASE_IMAGES=public|local forces the choice.
# Writes the base image names for `docker compose --env-file` to $EXTSVC_IMAGES_ENV
# (default ~/.cache/extsvc/images/base.env; empty when the public images are used) and prints each size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
cd "$EXTSVC_ROOT"
export EXTSVC_IMAGES_ENV="${EXTSVC_IMAGES_ENV:-${EXTSVC_CACHE:-$HOME/.cache/extsvc}/images/base.env}"
log() { printf '[images] %s\n' "$*" >&2; }

mode="${EXTSVC_BASE_IMAGES:-auto}"
if [ "$mode" = auto ]; then
  if docker image inspect node:24-slim >/dev/null 2>&1 || timeout 120 docker pull -q node:24-slim >/dev/null 2>&1; then
    mode=public
  else
    log "node:24-slim cannot be pulled: local base images"
    mode=local
  fi
fi
if [ "$mode" = local ]; then
  bash deploy/images/build-base.sh
else
  mkdir -p "$(dirname "$EXTSVC_IMAGES_ENV")" && : >"$EXTSVC_IMAGES_ENV"
fi

args=()
while IFS='=' read -r k v; do
  case "$k" in NODE_IMAGE | NODE_BUILD_IMAGE) args+=(--build-arg "$k=$v") ;; esac
done <"$EXTSVC_IMAGES_ENV"

base_size=""
err="$(mktemp)"
trap 'rm -f "$err"' EXIT
for s in authz ratelimit acme; do
  log "extsvc-$s: docker build -f services/$s/Dockerfile ."
  old=$(docker image inspect -f '{{ .Id }}' "extsvc-$s" 2>/dev/null || true)
  # The legacy builder (no buildx here) prints a deprecation notice on stderr: shown only on failure.
  DOCKER_BUILDKIT=0 docker build -q "${args[@]}" -f "services/$s/Dockerfile" -t "extsvc-$s" . >/dev/null 2>"$err" \
    || { cat "$err" >&2; exit 1; }
  new=$(docker image inspect -f '{{ .Id }}' "extsvc-$s")
  # The previous build, untagged now (kept while a container still uses it).
  [ -z "$old" ] || [ "$old" = "$new" ] || docker image rm "$old" >/dev/null 2>&1 || true
  size=$(docker image inspect -f '{{ .Size }}' "extsvc-$s")
  if [ -z "$base_size" ]; then
    node_image=$(sed -n 's/^NODE_IMAGE=//p' "$EXTSVC_IMAGES_ENV")
    base_size=$(docker image inspect -f '{{ .Size }}' "${node_image:-node:24-slim}")
  fi
  log "extsvc-$s: $((size / 1000000)) MB, $(((size - base_size) / 1000000)) MB over the base image"
done
