#!/usr/bin/env bash
# Validates docker-compose.yml against the Compose Specification (compose-go from the Go module proxy).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
bin="${EXTSVC_CACHE:-$HOME/.cache/extsvc}/compose-check-$(sha256sum main.go go.sum | sha256sum | cut -c1-12)"
[ -x "$bin" ] || go build -o "$bin" .
"$bin" "$here/../../docker-compose.yml"
