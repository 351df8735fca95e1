#!/usr/bin/env bash
# Prepares Emissary's own translator (its Python IR -> Envoy config code) for
# integration/kube/emissary-route.test.ts, cached in ~/.cache/extsvc/emissary-py/<commit>:
#   - python/ambassador/src of emissary-ingress/emissary at EMISSARY_COMMIT, read from a local git
#     clone or mirror named by EMISSARY_GIT (no network for the source);
#   - a venv (system site packages: PyYAML, orjson, requests) with Emissary's other runtime
#     dependencies, pinned, from PyPI.
# Prints the directory holding `src` and `venv`. Exits 3 when EMISSARY_GIT is unset or lacks the commit
# (the test then skips, saying so).
set -euo pipefail
EMISSARY_COMMIT=${EMISSARY_COMMIT:-3ebe0f4687ff}
CACHE=${EXTSVC_CACHE:-$HOME/.cache/extsvc}/emissary-py/$EMISSARY_COMMIT
if [[ -x $CACHE/venv/bin/python && -d $CACHE/src/ambassador ]]; then
  echo "$CACHE"
  exit 0
fi
if [[ -z ${EMISSARY_GIT:-} ]] || ! git -C "$EMISSARY_GIT" cat-file -e "$EMISSARY_COMMIT^{commit}" 2>/dev/null; then
  echo "EMISSARY_GIT (a clone of github.com/emissary-ingress/emissary holding $EMISSARY_COMMIT) is not set or lacks the commit" >&2
  exit 3
fi
mkdir -p "${CACHE%/*}"
tmp=$(mktemp -d "${CACHE%/*}/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
git -C "$EMISSARY_GIT" archive "$EMISSARY_COMMIT" python/ambassador/src | tar -x -C "$tmp"
mkdir -p "$tmp/out"
mv "$tmp/python/ambassador/src" "$tmp/out/src"
python3 -m venv --system-site-packages "$tmp/out/venv"
"$tmp/out/venv/bin/pip" install --quiet --disable-pip-version-check \
  durationpy==0.10 semantic-version==2.10.0 prometheus-client==0.21.1
"$tmp/out/venv/bin/python" -c 'import yaml, orjson, requests, durationpy, semantic_version, prometheus_client'
rm -rf "$CACHE"
mv "$tmp/out" "$CACHE"
echo "$CACHE"
