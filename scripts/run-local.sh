#!/usr/bin/env bash
# The README's first command: sets up the machine (idempotent), then runs the whole suite locally.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$EXTSVC_ROOT/scripts/setup.sh"
exec node "$EXTSVC_ROOT/scripts/run-local.ts" "$@"
