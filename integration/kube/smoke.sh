#!/usr/bin/env bash
# Smoke test: start etcd + kube-apiserver (start-local.sh) and exercise them with kubectl.
#   integration/kube/smoke.sh        (needs kubectl; builds the binaries once if missing)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ "${1:-}" != "--inner" ]]; then
  exec bash "${HERE}/start-local.sh" -- bash "${HERE}/smoke.sh" --inner
fi

k() { kubectl --kubeconfig "${KUBECONFIG}" "$@"; }
set -x
k version
k get ns
k auth can-i '*' '*'
k apply --server-side --field-manager=extsvc-smoke -f - <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: extsvc-smoke
  namespace: default
data:
  hello: world
EOF
test "$(k get configmap extsvc-smoke -o jsonpath='{.data.hello}')" = world
k apply --server-side -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.extsvc.dev
spec:
  group: smoke.extsvc.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
EOF
k wait --for condition=established --timeout=60s crd/widgets.smoke.extsvc.dev
k apply --server-side -f - <<'EOF'
apiVersion: smoke.extsvc.dev/v1
kind: Widget
metadata: {name: w1, namespace: default}
spec: {size: 3}
EOF
test "$(k get widget w1 -o jsonpath='{.spec.size}')" = 3
# RBAC is enforced: a ServiceAccount token without bindings is refused.
k create namespace smoke
k -n smoke create serviceaccount bot
set +x
SA_TOKEN="$(k -n smoke create token bot)"
if kubectl --kubeconfig "${KUBECONFIG}" --token "${SA_TOKEN}" get configmaps -n default; then
  echo "smoke: RBAC not enforced" >&2; exit 1
fi
set -x
k -n default create role cm-reader --verb=get,list --resource=configmaps
k -n default create rolebinding bot-cm-reader --role=cm-reader --serviceaccount=smoke:bot
set +x
kubectl --kubeconfig "${KUBECONFIG}" --token "${SA_TOKEN}" get configmaps -n default
echo "smoke: 1 passed, 0 failed"
