#!/usr/bin/env bash
# Builds envoyproxy/ratelimit (the reference) and ghz from the Go module proxy into $OUT (default
# /tmp/rlbench). Nothing is written inside this repository and the reference's code is never committed.
#   bash bench/ratelimit/build-reference.sh [version]      # version default: latest (a pseudo-version)
set -euo pipefail
OUT=${OUT:-/tmp/rlbench}
VERSION=${1:-latest}
export GOPATH="$OUT/gopath" GOMODCACHE="$OUT/gopath/pkg/mod" GOFLAGS=-modcacherw
mkdir -p "$OUT/bin"
cd "$OUT"
# `go install .../service_cmd@v` fails on the module's replace directives: download and build a copy.
DIR=$(go mod download -json "github.com/envoyproxy/ratelimit@$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
rm -rf "$OUT/src" && cp -r "$DIR" "$OUT/src" && chmod -R u+w "$OUT/src"
(cd "$OUT/src" && CGO_ENABLED=0 go build -mod=mod -o "$OUT/bin/ratelimit" ./src/service_cmd)
GOBIN="$OUT/bin" go install github.com/bojand/ghz/cmd/ghz@latest
echo "reference: $OUT/bin/ratelimit ($(basename "$DIR")); ghz: $OUT/bin/ghz"
