#!/usr/bin/env bash
# `make demo-multicluster`: two real control planes on loopback (clusters "a" and "b"),
# an injector for each, linked both ways by Secrets. Validators of one network in both
# clusters get their own cluster's in-cluster names and the other's external names; a
# validator without an external name stays out of the other cluster's lists; then a
# validator joins in b and both clusters' validators roll, one at a time in total.
#
# Everything listens on and dials 127.0.0.1 only. Cluster a is the usual bed
# (target/testbed, left up like `make demo` does); cluster b (target/testbed-b) is
# stopped at the end. The injectors stop when this script exits.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
TESTBED="${ROOT}/tests/testbed/testbed"
BIN="${ROOT}/target/debug/stellar-peer-injector"
DEMO="${ROOT}/target/demo-multicluster"
NS=stellar
SYS_NS=stellar-system
NET=demo-net
declare -A STATE=([a]="${ROOT}/target/testbed" [b]="${ROOT}/target/testbed-b")
declare -A PORT ADMIN PID

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
step() { printf '\n'; bold "==> $*"; }
die() {
  printf 'demo-multicluster: %s\n' "$*" >&2
  exit 1
}
[[ -x "${BIN}" ]] || die "${BIN} is missing: run 'cargo build --locked' (or 'make demo-multicluster')"
mkdir -p "${DEMO}"
KUBECTL="$("${TESTBED}" bin-dir)/kubectl"
k() { # k CLUSTER kubectl-args...
  local c="$1"
  shift
  "${KUBECTL}" --kubeconfig "${STATE[${c}]}/kubeconfig" "$@"
}

cleanup() {
  for c in a b; do
    if [[ -n "${PID[${c}]:-}" ]] && kill -0 "${PID[${c}]}" 2>/dev/null; then
      kill "${PID[${c}]}" 2>/dev/null || true
      wait "${PID[${c}]}" 2>/dev/null || true
    fi
  done
  TESTBED_STATE_DIR="${STATE[b]}" "${TESTBED}" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Two control planes: cluster a (target/testbed) and cluster b (target/testbed-b)"
# The machine has one real node (tests/testbed/README.md), cluster a's: cluster b runs without it.
TESTBED_STATE_DIR="${STATE[a]}" TESTBED_TIMEOUT=180 "${TESTBED}" up
TESTBED_STATE_DIR="${STATE[b]}" TESTBED_TIMEOUT=180 TESTBED_REAL_NODE=0 "${TESTBED}" up
"${BIN}" certs --out "${DEMO}/certs" --ip 127.0.0.1 >/dev/null 2>&1
CA_B64="$(base64 -w0 "${DEMO}/certs/ca.crt")"

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

for c in a b; do
  other=$([[ "${c}" == a ]] && echo b || echo a)
  step "Cluster ${c}: namespaces, CRD, the link Secret to cluster ${other}"
  if k "${c}" get namespace "${NS}" >/dev/null 2>&1; then
    k "${c}" delete namespace "${NS}" --wait=true --timeout=120s >/dev/null
  fi
  for ns in "${SYS_NS}" "${NS}"; do
    k "${c}" create namespace "${ns}" --dry-run=client -o yaml | k "${c}" apply -f - >/dev/null
  done
  for _ in $(seq 100); do
    k "${c}" -n "${NS}" get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.2
  done
  "${BIN}" crd | k "${c}" apply -f - >/dev/null
  k "${c}" wait --for=condition=Established crd/stellarnodes.stellar.org --timeout=60s >/dev/null
  # The demo links with the bed's admin kubeconfig (certificate data inline). In real use
  # `stellar-peer-injector remote-secret` makes a read-only one.
  k "${c}" -n "${SYS_NS}" create secret generic "link-${other}" \
    --from-file=kubeconfig="${STATE[${other}]}/kubeconfig" --dry-run=client -o yaml |
    k "${c}" label --local -f - stellar.org/remote-cluster=true -o yaml |
    k "${c}" annotate --local -f - "stellar.org/cluster-name=${other}" "stellar.org/lease-namespace=${SYS_NS}" -o yaml |
    k "${c}" apply -f - >/dev/null
  k "${c}" -n "${SYS_NS}" get secret "link-${other}" --show-labels | sed 's/^/    /'
  k "${c}" -n "${SYS_NS}" delete lease stellar-peer-injector --ignore-not-found >/dev/null
done

for c in a b; do
  PORT[${c}]="$(free_port)"
  ADMIN[${c}]="$(free_port)"
  dns="$(. "${STATE[${c}]}/ports.env" && echo "${DNS_PORT}")"
  step "Injector of cluster ${c}: https://127.0.0.1:${PORT[${c}]}/mutate (--cluster-name ${c})"
  RUST_LOG=info "${BIN}" serve \
    --listen "127.0.0.1:${PORT[${c}]}" --admin-listen "127.0.0.1:${ADMIN[${c}]}" \
    --tls-cert "${DEMO}/certs/tls.crt" --tls-key "${DEMO}/certs/tls.key" \
    --kubeconfig "${STATE[${c}]}/kubeconfig" --namespaces "${NS}" \
    --lease-namespace "${SYS_NS}" --remote-secret-namespace "${SYS_NS}" --cluster-name "${c}" \
    --dns-server "127.0.0.1:${dns}" --debounce 2s --shutdown-delay 0s \
    >"${DEMO}/injector-${c}.log" 2>&1 &
  PID[${c}]=$!
  for i in $(seq 300); do
    curl -fsS "http://127.0.0.1:${ADMIN[${c}]}/readyz" >/dev/null 2>&1 && break
    kill -0 "${PID[${c}]}" 2>/dev/null || {
      tail -20 "${DEMO}/injector-${c}.log" >&2
      die "the injector of cluster ${c} exited"
    }
    [[ "${i}" -lt 300 ]] || die "the injector of cluster ${c} did not become ready in 60 s"
    sleep 0.2
  done
  k "${c}" apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: stellar-peer-injector-demo}
webhooks:
  - name: peers.stellar.org
    admissionReviewVersions: ["v1"]
    sideEffects: None
    timeoutSeconds: 5
    failurePolicy: Fail
    reinvocationPolicy: IfNeeded
    clientConfig: {url: "https://127.0.0.1:${PORT[${c}]}/mutate", caBundle: "${CA_B64}"}
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ${NS}}}
    objectSelector: {matchLabels: {app.kubernetes.io/name: stellar-node}}
    rules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"], scope: Namespaced}]
EOF
  echo "    ready; log target/demo-multicluster/injector-${c}.log"
done
sleep 2

# validator CLUSTER NAME [EXTERNAL_HOSTNAME]: the StellarNode and the StatefulSet the
# operator would make for it (kwok plays the kubelet: pods become Ready, nothing runs).
validator() {
  local c="$1" name="$2" host="${3:-}" ext=""
  [[ -z "${host}" ]] || ext="validatorConfig: {externalDns: {hostname: ${host}}}"
  k "${c}" apply -f - >/dev/null <<EOF
apiVersion: stellar.org/v1alpha1
kind: StellarNode
metadata: {name: ${name}, namespace: ${NS}}
spec: {nodeType: Validator, network: ${NET}, version: v22.1.0, ${ext}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ${name}
  namespace: ${NS}
  labels: &l {app.kubernetes.io/name: stellar-node, app.kubernetes.io/instance: ${name}, app.kubernetes.io/component: validator, stellar.org/node-type: Validator, stellar-network: ${NET}}
spec:
  replicas: 1
  serviceName: ${name}-headless
  selector: {matchLabels: *l}
  template:
    metadata: {labels: *l}
    spec:
      containers:
        - {name: stellar-node, image: "stellar/stellar-core:22.1.0", ports: [{containerPort: 11625}]}
        - {name: stellar-health-check, image: "stellar/stellar-k8s-health:latest", ports: [{containerPort: 8081, name: health}]}
EOF
}

peers_of() { # peers_of CLUSTER POD
  { k "$1" -n "${NS}" get pod "$2" -o jsonpath='{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEERS")].value}' 2>/dev/null; echo; } |
    tr ',' '\n' | sed '/^$/d; s/^/        /'
}

step "Validators of network ${NET}: a1 (external a1.a.example.org), a2 in a; b1 (external b1.b.example.org), b2 (no external name) in b"
validator a a1 a1.a.example.org
validator a a2
validator b b1 b1.b.example.org
validator b b2
echo "    waiting until every pod has its peers (the first pods may roll once while the links sync)..."
want() { # want CLUSTER POD COUNT
  local n
  n="$(k "$1" -n "${NS}" get pod "$2" -o jsonpath='{.spec.containers[?(@.name=="stellar-node")].env[?(@.name=="STELLAR_PEER_COUNT")].value}' 2>/dev/null || true)"
  [[ "${n}" == "$3" ]]
}
for _ in $(seq 120); do
  want a a1-0 2 && want a a2-0 2 && want b b1-0 2 && want b b2-0 2 && break
  sleep 1
done
for p in a/a1-0 a/a2-0 b/b1-0 b/b2-0; do
  echo "    ${p}:"
  peers_of "${p%%/*}" "${p#*/}"
done
cat <<'EOF'

    Each pod has its own cluster's other validator by in-cluster name and the other
    cluster's validator with an external name (a1 or b1). b2 has no external name, so
    cluster a leaves it out (and says so):
EOF
"${BIN}" peers --kubeconfig "${STATE[a]}/kubeconfig" --namespaces "${NS}" \
  --remote-kubeconfig "b=${STATE[b]}/kubeconfig" --network "${NET}" 2>&1 | sed 's/^/    /'
curl -fsS "http://127.0.0.1:${ADMIN[a]}/metrics" | grep -E '^stellar_peer_injector_remote_' | sed 's/^/    /'

step "b3 joins in cluster b: a1, a2, b1 and b2 roll, one cluster at a time, one validator at a time"
validator b b3 b3.b.example.org
for _ in $(seq 180); do
  want a a1-0 3 && want a a2-0 3 && want b b1-0 3 && want b b2-0 3 && break
  sleep 1
done
grep -h -E 'cross-cluster rollout slot|rolling out new peers' "${DEMO}/injector-a.log" "${DEMO}/injector-b.log" |
  sed -E 's/^([^ ]+) +INFO [^ ]+ /\1 /; s/ (hash|previous|dry_run)=[^ ]+//g' | sort | sed 's/^/    /' | tail -12
for p in a/a1-0 b/b1-0; do
  echo "    ${p}:"
  peers_of "${p%%/*}" "${p#*/}"
done

step "Summary"
cat <<EOF
    - Each cluster's injector watches its link Secret (${SYS_NS}/link-<other>) and the other
      cluster's StellarNodes; deleting the Secret unlinks (the other's peers leave the lists).
    - Rollouts of ${NET} took turns across the clusters through each injector's rollout
      flag (a Lease in ${SYS_NS}), so never more than one validator of ${NET} rolled at once.
    - Logs: target/demo-multicluster/injector-{a,b}.log. Cluster b stops now; cluster a
      stays up (make bed-down stops it).
EOF
