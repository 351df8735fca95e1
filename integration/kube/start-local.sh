#!/usr/bin/env bash
# Starts etcd + kube-apiserver on loopback for manual tries (see README.md).
#
#   integration/kube/start-local.sh [DIR] [-- COMMAND ARGS...]
#
# DIR (default: a new temp dir, removed on exit) receives certs, keys, the token file, the
# data dir, logs and kubeconfig. Without COMMAND it prints the kubeconfig path and waits
# until Ctrl-C / SIGTERM; with COMMAND it runs it with KUBECONFIG set and exits with its
# status. Either way etcd and kube-apiserver are stopped on exit.
#
# Env: ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT (default: free ports),
#      KUBE_BIN_DIR (default: output of build.sh, which builds once and caches),
#      KUBE_TOKEN (default: extsvc-admin-token), READY_TIMEOUT (seconds, default 120).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR=""
if [[ $# -gt 0 && "$1" != "--" ]]; then DIR="$1"; shift; fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

BIN="${KUBE_BIN_DIR:-$(bash "${HERE}/build.sh" | tail -n 1)}"
TOKEN="${KUBE_TOKEN:-extsvc-admin-token}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"

REMOVE_DIR=0
if [[ -z "${DIR}" ]]; then DIR="$(mktemp -d "${TMPDIR:-/tmp}/extsvc-kube.XXXXXX")"; REMOVE_DIR=1; fi
mkdir -p "${DIR}"
DIR="$(cd "${DIR}" && pwd)"

ETCD_PID="" APISERVER_PID=""
stop() {
  local pid
  for pid in "${APISERVER_PID}" "${ETCD_PID}"; do
    [[ -n "${pid}" ]] || continue
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  APISERVER_PID="" ETCD_PID=""
  if [[ "${REMOVE_DIR}" == 1 ]]; then rm -rf "${DIR}"; fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port is taken as free when nothing accepts a connection on it (racy, fine for manual use).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then echo "${p}"; return; fi
  done
}
ETCD_PORT="${ETCD_PORT:-$(free_port)}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-$(free_port)}"
APISERVER_PORT="${APISERVER_PORT:-$(free_port)}"

# --- keys and certificates -------------------------------------------------------------
P="${DIR}/pki"
mkdir -p "${P}"
if [[ ! -f "${P}/serving.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=extsvc-test-ca" \
    -keyout "${P}/ca.key" -out "${P}/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "${P}/serving.key" -out "${P}/serving.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"${P}/serving.ext"
  openssl x509 -req -in "${P}/serving.csr" -CA "${P}/ca.crt" -CAkey "${P}/ca.key" \
    -CAcreateserial -days 3650 -extfile "${P}/serving.ext" -out "${P}/serving.crt" 2>/dev/null
  openssl genrsa -out "${P}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${P}/sa.key" -pubout -out "${P}/sa.pub" 2>/dev/null
fi
# token,user,uid,"group1,group2"
printf '%s,extsvc-admin,extsvc-admin,"system:masters"\n' "${TOKEN}" >"${P}/tokens.csv"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- etcd --------------------------------------------------------------------------------
t0=$(now_ms)
"${BIN}/etcd" \
  --name=extsvc-test \
  --data-dir="${DIR}/etcd-data" \
  --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
  --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster="extsvc-test=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --unsafe-no-fsync \
  --log-level=warn \
  >"${DIR}/etcd.log" 2>&1 &
ETCD_PID=$!

wait_for() { # NAME PID TIMEOUT CURL_ARGS...
  local name="$1" pid="$2" timeout="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until curl -fsS --max-time 2 "$@" >/dev/null 2>&1; do
    kill -0 "${pid}" 2>/dev/null || { echo "${name} exited; see ${DIR}/${name}.log" >&2; tail -n 20 "${DIR}/${name}.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "${name} not ready after ${timeout}s; see ${DIR}/${name}.log" >&2; exit 1; }
    sleep 0.2
  done
}
wait_for etcd "${ETCD_PID}" 30 "http://127.0.0.1:${ETCD_PORT}/readyz"
echo "etcd ready on 127.0.0.1:${ETCD_PORT} after $(( $(now_ms) - t0 ))ms" >&2

# --- kube-apiserver ---------------------------------------------------------------------
t0=$(now_ms)
"${BIN}/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="${APISERVER_PORT}" \
  --tls-cert-file="${P}/serving.crt" \
  --tls-private-key-file="${P}/serving.key" \
  --token-auth-file="${P}/tokens.csv" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${P}/sa.pub" \
  --service-account-signing-key-file="${P}/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --enable-priority-and-fairness=false \
  --profiling=false \
  >"${DIR}/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

wait_for kube-apiserver "${APISERVER_PID}" "${READY_TIMEOUT}" \
  --cacert "${P}/ca.crt" -H "Authorization: Bearer ${TOKEN}" "https://127.0.0.1:${APISERVER_PORT}/readyz"
echo "kube-apiserver ready on https://127.0.0.1:${APISERVER_PORT} after $(( $(now_ms) - t0 ))ms" >&2

KUBECONFIG_PATH="${DIR}/kubeconfig"
cat >"${KUBECONFIG_PATH}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: extsvc-test
  cluster:
    server: https://127.0.0.1:${APISERVER_PORT}
    certificate-authority-data: $(base64 -w0 <"${P}/ca.crt")
users:
- name: extsvc-admin
  user:
    token: ${TOKEN}
contexts:
- name: extsvc-test
  context:
    cluster: extsvc-test
    user: extsvc-admin
    namespace: default
current-context: extsvc-test
EOF

if [[ $# -gt 0 ]]; then
  set +e
  KUBECONFIG="${KUBECONFIG_PATH}" "$@"
  rc=$?
  set -e
  exit "${rc}"
fi

echo "${KUBECONFIG_PATH}"
echo "export KUBECONFIG=${KUBECONFIG_PATH}   # Ctrl-C stops etcd and kube-apiserver" >&2
wait "${APISERVER_PID}"
