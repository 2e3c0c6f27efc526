#!/usr/bin/env bash
# The demo (`make demo`): a real control plane on loopback, the Helm chart in URL mode,
# the injector running locally, five StellarNodes with their workloads, the peers every
# pod got at creation, then a fifth validator joins and the injector rolls the others.
# When the bed runs its real node, two more validators run there in merge mode: the init
# step's output, and the file the bed's stand-in for stellar-core was started with.
#
# Everything listens on and dials 127.0.0.1 only. The control plane stays up afterwards
# (`make bed-down` stops it); the injector stops when this script exits.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
TESTBED="${ROOT}/tests/testbed/testbed"
BIN="${ROOT}/target/debug/stellar-peer-injector"
CHART="${ROOT}/charts/stellar-peer-injector"
DEMO="${ROOT}/target/demo"
RELEASE=stellar-peer-injector
SYS_NS=stellar-system
NS=stellar
TLS_SECRET=stellar-peer-injector-demo-tls
LOG="${DEMO}/injector.log"
PIDFILE="${DEMO}/injector.pid"

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "==> $*"; }
die() {
  printf 'demo: %s\n' "$*" >&2
  exit 1
}

[[ -x "${BIN}" ]] || die "${BIN} is missing: run 'cargo build --locked' (or 'make demo')"
mkdir -p "${DEMO}"

# ---------------------------------------------------------------------------------------
step "Control plane (tests/testbed: etcd, kube-apiserver, controller-manager, scheduler, kwok)"
"${TESTBED}" up
# KUBECONFIG, the state dirs of kubectl/helm and PATH with the bed's kubectl and helm.
eval "$("${TESTBED}" env)"
KUBECONFIG_FILE="${KUBECONFIG}"
kubectl version 2>/dev/null | sed 's/^/    /'

# ---------------------------------------------------------------------------------------
# A previous run's injector, if this script was killed hard: stop it (only if that PID
# still runs our binary).
if [[ -f "${PIDFILE}" ]]; then
  old="$(cat "${PIDFILE}")"
  if [[ -n "${old}" && "$(readlink -f "/proc/${old}/exe" 2>/dev/null || true)" == "$(readlink -f "${BIN}")" ]]; then
    kill "${old}" 2>/dev/null || true
  fi
  rm -f "${PIDFILE}"
fi

step "Namespaces ${SYS_NS} (the injector's) and ${NS} (the StellarNodes')"
if kubectl get namespace "${NS}" >/dev/null 2>&1; then
  echo "    removing ${NS} from a previous run"
  kubectl delete namespace "${NS}" --wait=true --timeout=120s >/dev/null
fi
for ns in "${SYS_NS}" "${NS}"; do
  kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
# Pods need the namespace's default ServiceAccount, which the controller manager creates.
for _ in $(seq 100); do
  kubectl -n "${NS}" get serviceaccount default >/dev/null 2>&1 && break
  sleep 0.2
done
kubectl get namespace "${SYS_NS}" "${NS}"

# ---------------------------------------------------------------------------------------
step "Development certificate for 127.0.0.1 (stellar-peer-injector certs)"
"${BIN}" certs --out "${DEMO}/certs" --ip 127.0.0.1
CA_B64="$(base64 -w0 "${DEMO}/certs/ca.crt")"

step "StellarNode CRD (stellar-peer-injector crd | kubectl apply)"
"${BIN}" crd | kubectl apply -f -
kubectl wait --for=condition=Established crd/stellarnodes.stellar.org --timeout=60s

# ---------------------------------------------------------------------------------------
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((32000 + RANDOM % 8000))
    if ! ss -Htan "sport = :${p}" | grep -q .; then
      echo "${p}"
      return 0
    fi
  done
  die "no free port found"
}
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
[[ "${PORT}" != "${ADMIN_PORT}" ]] || ADMIN_PORT="$(free_port)"

# The bed's real node (127.0.0.2), when it runs one: merge mode needs the injector's own
# image there for its init container (no registry: built here, imported into containerd).
REAL_ENV="${TESTBED_STATE_DIR:-${ROOT}/target/testbed}/realnode.env"
REAL_NODE="" INIT_IMAGE=docker.io/library/stellar-peer-injector:demo
if [[ -f "${REAL_ENV}" ]] && grep -qx 'REAL_NODE=on' "${REAL_ENV}"; then
  REAL_NODE="$(sed -n 's/^REAL_NODE_NAME=//p' "${REAL_ENV}")"
  step "The injector's image for the real node ${REAL_NODE} (image/build, ctr images import)"
  "${ROOT}/image/build" "${BIN}" "${DEMO}/injector.oci.tar" "${INIT_IMAGE}" >/dev/null
  ctr --address "$(sed -n 's/^CONTAINERD_SOCK=//p' "${REAL_ENV}")" -n k8s.io images import \
    "${DEMO}/injector.oci.tar" | sed 's/^/    /'
fi

step "Injector, running locally: https://127.0.0.1:${PORT}/mutate, admin http://127.0.0.1:${ADMIN_PORT}"
# A stale Lease of a previous run would delay the rollout loop by up to its 15 s duration.
kubectl -n "${SYS_NS}" delete lease "${RELEASE}" --ignore-not-found >/dev/null
INJECTOR_PID=""
cleanup() {
  if [[ -n "${INJECTOR_PID}" ]] && kill -0 "${INJECTOR_PID}" 2>/dev/null; then
    kill "${INJECTOR_PID}" 2>/dev/null || true
    wait "${INJECTOR_PID}" 2>/dev/null || true
  fi
  rm -f "${PIDFILE}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The local injector uses the admin kubeconfig; in a cluster it would use the chart's
# ServiceAccount (tests/integration/chart_tests.rs proves that RBAC is enough).
RUST_LOG="info" "${BIN}" serve \
  --listen "127.0.0.1:${PORT}" \
  --admin-listen "127.0.0.1:${ADMIN_PORT}" \
  --tls-cert "${DEMO}/certs/tls.crt" \
  --tls-key "${DEMO}/certs/tls.key" \
  --kubeconfig "${KUBECONFIG_FILE}" \
  --namespaces "${NS}" \
  --lease-namespace "${SYS_NS}" \
  --debounce 2s \
  --extra-peers "${ROOT}/examples/extra-peers.yaml" \
  --shutdown-delay 0s \
  ${REAL_NODE:+--init-image "${INIT_IMAGE}"} \
  >"${LOG}" 2>&1 &
INJECTOR_PID=$!
echo "${INJECTOR_PID}" >"${PIDFILE}"
echo "    pid ${INJECTOR_PID}, log ${LOG#"${ROOT}"/}"
for i in $(seq 150); do
  if curl -fsS "http://127.0.0.1:${ADMIN_PORT}/readyz" >/dev/null 2>&1; then
    echo "    /readyz: ok after $((i / 5)).$((i % 5 * 2)) s"
    break
  fi
  kill -0 "${INJECTOR_PID}" 2>/dev/null || {
    tail -20 "${LOG}" >&2
    die "the injector exited"
  }
  [[ "${i}" -lt 150 ]] || {
    tail -20 "${LOG}" >&2
    die "the injector did not become ready in 30 s"
  }
  sleep 0.2
done

# ---------------------------------------------------------------------------------------
step "Helm chart in URL mode (replicaCount=0: the API server calls the local injector)"
kubectl -n "${SYS_NS}" create secret generic "${TLS_SECRET}" \
  --from-file=tls.crt="${DEMO}/certs/tls.crt" --from-file=tls.key="${DEMO}/certs/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install "${RELEASE}" "${CHART}" --namespace "${SYS_NS}" \
  --set replicaCount=0 \
  --set "webhook.url=https://127.0.0.1:${PORT}/mutate" \
  --set "webhook.caBundle=${CA_B64}" \
  --set certs.mode=secret \
  --set "certs.secretName=${TLS_SECRET}" \
  --set "namespaces={${NS}}" \
  --set crds.install=false |
  sed -n '1,6p'
kubectl get mutatingwebhookconfiguration "${RELEASE}" \
  -o custom-columns='WEBHOOK:.webhooks[0].name,URL:.webhooks[0].clientConfig.url,FAILURE:.webhooks[0].failurePolicy,NAMESPACES:.webhooks[0].namespaceSelector.matchExpressions[1].values'
# The API server picks new webhook configurations up asynchronously.
sleep 2

# ---------------------------------------------------------------------------------------
COLS_JSONPATH='{range .items[*]}{.metadata.name}{"|"}{.metadata.labels.stellar-network}{"|"}{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEER_COUNT")].value}{"|"}{.metadata.annotations.stellar\.org/peers-hash}{"|"}{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEERS")].value}{"|"}{.metadata.deletionTimestamp}{"\n"}{end}'

table() {
  printf '    %-34s %-8s %-5s %-17s %s\n' POD NETWORK PEERS HASH "STELLAR_PEERS (container stellar-node)"
  kubectl -n "${NS}" get pods -l app.kubernetes.io/name=stellar-node -o jsonpath="${COLS_JSONPATH}" |
    sort |
    while IFS='|' read -r pod net count hash peers deleting; do
      [[ -z "${deleting}" ]] || continue
      printf '    %-34s %-8s %-5s %-17s %s\n' "${pod}" "${net}" "${count:--}" "${hash:--}" "${peers//,/, }"
    done
}

# Prints nothing and succeeds when every pod of the namespace is Ready, none is terminating,
# there are $1 of them and each has the peer count the second argument's map expects.
#   want: "validator-a=3 horizon-testnet=4 ..." (instance label = StellarNode name)
converged() {
  local want_pods="$1" want="$2" n=0 name inst ready deleting count
  while IFS='|' read -r name inst ready deleting count; do
    [[ -n "${name}" ]] || continue
    n=$((n + 1))
    [[ "${ready}" == "True" && -z "${deleting}" ]] || return 1
    [[ " ${want} " == *" ${inst}=${count} "* ]] || return 1
  done < <(kubectl -n "${NS}" get pods -l app.kubernetes.io/name=stellar-node -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.labels.app\.kubernetes\.io/instance}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.metadata.deletionTimestamp}{"|"}{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEER_COUNT")].value}{"\n"}{end}')
  [[ "${n}" -eq "${want_pods}" ]]
}

step "StellarNodes (examples/stellarnodes.yaml)"
kubectl apply -f "${ROOT}/examples/stellarnodes.yaml"
# Let the injector's watch see them before the first pods are created.
sleep 2
kubectl -n "${NS}" get stellarnodes

step "Workloads the operator would create (examples/workloads.yaml)"
kubectl apply -f "${ROOT}/examples/workloads.yaml"
echo "    waiting for the pods to be Ready..."
for sts in validator-a validator-b validator-c mainnet-1; do
  kubectl -n "${NS}" rollout status "statefulset/${sts}" --timeout=120s | sed 's/^/    /'
done
kubectl -n "${NS}" rollout status deployment/horizon-testnet --timeout=120s | sed 's/^/    /'

step "Peers each pod got at creation"
table
cat <<'EOF'

    testnet validators have the two others, horizon-testnet all three; mainnet-1 is the
    only mainnet validator in the cluster, so its peers are the static extra peers of
    examples/extra-peers.yaml (strings only: nothing connects to them).
EOF

# ---------------------------------------------------------------------------------------
step "validator-d joins testnet (examples/validator-d.yaml)"
kubectl apply -f "${ROOT}/examples/validator-d.yaml"
WANT="validator-a=3 validator-b=3 validator-c=3 validator-d=3 horizon-testnet=4 mainnet-1=3"
echo "    the injector (debounce 2s, one workload per network at a time) rolls the testnet"
echo "    workloads; every second, the testnet pods being replaced:"
start=${SECONDS}
done_rollout=false
last=""
while ((SECONDS - start <= 90)); do
  if converged 6 "${WANT}"; then
    done_rollout=true
    break
  fi
  # name, instance, ready, terminating, peer count of every testnet pod
  status="$(kubectl -n "${NS}" get pods -l stellar-network=testnet -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.labels.app\.kubernetes\.io/instance}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.metadata.deletionTimestamp}{"|"}{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEER_COUNT")].value}{"\n"}{end}' |
    sort |
    while IFS='|' read -r name inst ready deleting count; do
      if [[ -n "${deleting}" ]]; then
        printf '%s(terminating, %s peers) ' "${name}" "${count:-?}"
      elif [[ "${ready}" != "True" ]]; then
        printf '%s(starting, %s peers) ' "${name}" "${count:-?}"
      elif [[ " ${WANT} " != *" ${inst}=${count} "* ]]; then
        printf '%s(stale, %s peers) ' "${name}" "${count:-?}"
      fi
    done)"
  printf '    [%2ds] %s\n' "$((SECONDS - start))" "${status:-(all up to date; waiting)}"
  last="${status}"
  sleep 1
done
${done_rollout} || {
  echo "    last state: ${last}" >&2
  tail -30 "${LOG}" >&2
  die "the testnet pods did not all get the new peers within 90 s (see ${LOG})"
}
echo "    converged after $((SECONDS - start)) s"

step "Peers after the rollout"
table

step "Events with reason PeersChanged (kubectl get events)"
kubectl -n "${NS}" get events --field-selector reason=PeersChanged --sort-by=.metadata.creationTimestamp

step "Injector metrics (rollouts)"
curl -fsS "http://127.0.0.1:${ADMIN_PORT}/metrics" | grep -E '^stellar_peer_injector_rollouts_total' | sed 's/^/    /' || true

# ---------------------------------------------------------------------------------------
if [[ -n "${REAL_NODE}" ]]; then
  step "Merge mode on the real node ${REAL_NODE}: two validators of network realnet, as the operator shapes them"
  # stellar-core cannot be built here, so the main container runs the bed's STAND-IN for
  # stellar-core (tests/testbed/images/stellar-core-standin.c): it prints the file it was
  # started with (`run --conf F`) and stays up. The health-check sidecar runs the pause image.
  PAUSE_IMAGE="$(sed -n 's/^PAUSE_IMAGE=//p' "${REAL_ENV}")"
  # The StellarNodes first, so that each pod's list already names the other validator.
  for v in real-a real-b; do
    kubectl apply -f - >/dev/null <<YAML
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: ${v}, namespace: ${NS}}
spec: {nodeType: Validator, network: realnet, version: v22.1.0, replicas: 1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ${v}-config, namespace: ${NS}}
data:
  stellar-core.cfg: |
    NETWORK_PASSPHRASE = "Demo realnet ; December 2026"
    [QUORUM_SET]
    THRESHOLD_PERCENT = 67
    VALIDATORS = []
YAML
  done
  sleep 2
  for v in real-a real-b; do
    labels="{app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: ${v}, app.kubernetes.io/component: validator, stellar-network: realnet}"
    kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ${v}, namespace: ${NS}, labels: ${labels}}
spec:
  replicas: 1
  serviceName: ${v}-headless
  selector: {matchLabels: {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: ${v}}}
  template:
    metadata: {labels: ${labels}}
    spec:
      nodeSelector: {testbed.stellar-peer-injector/real-node: "true"}
      tolerations: [{key: testbed.stellar-peer-injector/real-node, operator: Equal, value: "true", effect: NoSchedule}]
      terminationGracePeriodSeconds: 2
      containers:
      - {name: stellar-node, image: "stellar/stellar-core:22.1.0",
         volumeMounts: [{name: config, mountPath: /config, readOnly: true}]}
      - {name: stellar-health-check, image: "${PAUSE_IMAGE}"}
      volumes: [{name: config, configMap: {name: ${v}-config}}]
YAML
  done
  kubectl -n "${NS}" rollout status statefulset/real-a statefulset/real-b --timeout=120s | sed 's/^/    /'
  for _ in $(seq 60); do
    kubectl -n "${NS}" logs real-a-0 -c stellar-node 2>/dev/null | grep -q real-b-0 && break
    sleep 2
  done
  kubectl -n "${NS}" logs real-a-0 -c stellar-node 2>/dev/null | grep -q real-b-0 ||
    die "real-a-0's stellar-core (stand-in) was not started with real-b as a peer"
  kubectl -n "${NS}" get pods real-a-0 real-b-0 -o wide | sed 's/^/    /'
  bold "    real-a-0, init container stellar-peers-config (render-config):"
  kubectl -n "${NS}" get pod real-a-0 -o jsonpath='{.spec.initContainers[?(@.name=="stellar-peers-config")].args}' | sed 's/^/      args /'
  echo
  kubectl -n "${NS}" logs real-a-0 -c stellar-peers-config | sed 's/^/      /'
  bold "    real-a-0, the file the stand-in stellar-core was started with:"
  kubectl -n "${NS}" logs real-a-0 -c stellar-node | sed 's/^/      /'
fi

# ---------------------------------------------------------------------------------------
step "Summary"
cat <<EOF
    - The Helm chart is installed in ${SYS_NS} in URL mode: its webhook sends the pods of
      namespace ${NS} labelled app.kubernetes.io/name=stellar-node to the local injector.
    - Each pod got STELLAR_PEERS, STELLAR_PEER_COUNT, STELLAR_PEERS_HASH, a peers snippet and
      the stellar.org/peers-hash annotation at creation.
    - validator-d joining changed the testnet peer set; the injector annotated the testnet
      StatefulSets and the Horizon Deployment one at a time, and their new pods got the
      new list. mainnet-1 was left alone.
    - On the real node (when the bed runs one), real-a and real-b ran the init step
      stellar-peers-config, and the stand-in stellar-core was started with the merged file.
    - Injector log: ${LOG#"${ROOT}"/}. The injector stops now; the control plane stays up:
        eval "\$(tests/testbed/testbed env)"; kubectl -n ${NS} get pods,stellarnodes
      Without the injector, new StellarNode pods in ${NS} are refused (failurePolicy Fail):
        helm uninstall -n ${SYS_NS} ${RELEASE}    # removes the webhook
      Stop the control plane with: make bed-down
EOF
