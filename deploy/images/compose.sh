#!/usr/bin/env bash
# Prints the Docker Compose v2+ command to use: `docker compose` when the docker CLI has the plugin, else
# the path of the compose CLI built once from the Go module proxy (github.com/docker/compose/v5, ./cmd)
# into ~/.cache/extsvc (about 10 minutes of compiling on 2 busy cores; reused afterwards).
# Not Debian's docker-compose package: that is compose v1 (1.29, Python, unmaintained since 2023), which
# predates parts of the Compose Specification that docker-compose.yml is checked against.
set -euo pipefail
COMPOSE_VERSION=v5.6.0
if [ -z "${EXTSVC_BUILD_COMPOSE:-}" ] && docker compose version >/dev/null 2>&1; then
  echo "docker compose"
  exit 0
fi
bin="${EXTSVC_CACHE:-$HOME/.cache/extsvc}/compose-$COMPOSE_VERSION/docker-compose"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { echo "compose.sh: go not found (needed to build compose $COMPOSE_VERSION)" >&2; exit 1; }
  src="$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [ -d "$src" ] || { echo "compose.sh: go mod download of github.com/docker/compose/v5@$COMPOSE_VERSION failed" >&2; exit 1; }
  # Built as the main module: `go install …/cmd@version` refuses a go.mod with exclude directives.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  mkdir -p "$(dirname "$bin")"
  (cd "$work" && go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
    -o "$bin.tmp" ./cmd) >&2
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
