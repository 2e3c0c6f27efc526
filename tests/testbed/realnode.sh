# shellcheck shell=bash disable=SC2034,SC2317
# The bed's network claims and its one real node. Sourced by tests/testbed/testbed, which
# defines STATE_DIR, PKI_DIR, LOG_DIR, PID_DIR, BIN_DIR, SCRIPT_DIR, log, die, start_proc,
# pid_of, kc, write_kubeconfig and the ports.
#
# Network safety comes first. Before any component starts, every private range the bed hands
# out is claimed on this host (tests/testbed/claim-ranges): the Service range into a port-less
# device, kwok's fake pod IPs and the rest of the real node's pod /16 as `unreachable`; the pod
# bridge holds its /24 itself. `up` then asks `ip route get` about an address in each range and
# refuses to go on if any would leave through the default gateway.
#
# The real node (on unless TESTBED_REAL_NODE=0): containerd (Debian's), runc, the CNI bridge
# plugin, a kubelet named and addressed 127.0.0.2, kube-proxy in iptables mode, and a relay that
# lets pods reach the apiserver (which listens on 127.0.0.1 only) through the `kubernetes`
# Service. Only one can exist per machine: the bed that runs it owns REAL_NODE_OWNER.

REAL_NODE_WANTED="${TESTBED_REAL_NODE:-1}"
NODE_DIR="${STATE_DIR}/node"
NODE_ENV="${STATE_DIR}/realnode.env"
NODE_NAME=127.0.0.2
NODE_BRIDGE=spi-br0
NODE_BRIDGE_ADDR=10.245.0.1
NODE_POD_SUBNET=10.245.0.0/24
DNS_SERVICE_IP=10.96.0.10
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
KUBE_PROXY_HEALTHZ_PORT=10256
KUBE_PROXY_METRICS_PORT=10249
# The relay's port on the bridge's address: fixed (the node is one per machine), and not the
# apiserver's own port number, which the bed's port checks would then find taken.
API_RELAY_PORT=443
NODE_CGROUP_ROOT=stellar-testbed
CONTAINERD_SOCK="${NODE_DIR}/containerd/containerd.sock"
REAL_NODE_LOCK=/run/stellar-testbed-realnode.lock
REAL_NODE_OWNER=/run/stellar-testbed-realnode.owner
# The sysctls the kubelet (and, defensively, anything else of the node) may change; saved once
# per machine before the node starts, restored by `down`.
REAL_NODE_SYSCTLS_SAVED=/run/stellar-testbed-realnode.sysctls
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)
# Directories the node writes outside its state dir whatever it is told (the kubelet: device
# plugins, log symlinks; containerd 1.6: shim sockets, fifos and runc state under
# /run/containerd; libcni: its result cache); removed by `down` when the node made them.
NODE_FOREIGN_DIRS=(/var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/log/pods
  /run/containerd /var/lib/cni)
NODE_COMPONENTS=(containerd kubelet kube-proxy api-relay)
# The taint that keeps every pod that did not ask for the real node off it: the other trials'
# pods have images no registry serves here.
REAL_NODE_TAINT_KEY=testbed.stellar-peer-injector/real-node
PAUSE_IMAGE=registry.k8s.io/pause:testbed
# A getaddrinfo() probe the trials run in pods to resolve names as stellar-core would.
DNS_PROBE_IMAGE=testbed.local/dns-probe:1
# The stand-in stellar-core's tags: the versions the trials' StellarNodes name.
STANDIN_VERSIONS=(22.1.0)
# What SDF's chart runs in the stellar-core image besides stellar-core (stellar/helm-charts
# charts/core): its init container `core-init` is `/bin/bash /init-scripts/init.sh`, whose
# default script (core.initScript) calls only `stellar-core upgrade-db || stellar-core new-db`;
# its default readinessProbe execs `/bin/sh -c "curl http://localhost:11626/info | grep ..."`.
# So the stand-in's image also carries Debian's real bash, sh (dash), grep and curl, with their
# shared libraries.
STANDIN_DEBIAN_FILES=(/bin/bash /bin/sh /bin/grep /usr/bin/curl)
STANDIN_DEBIAN_PACKAGES=(bash dash grep curl)
IMAGES_DIR="${CACHE_ROOT}/images"
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables socat gcc libc6-dev curl)

# --- build ----------------------------------------------------------------------------------

node_packages_installed() {
  command -v containerd >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 &&
    [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] &&
    command -v iptables >/dev/null 2>&1 && command -v socat >/dev/null 2>&1 &&
    command -v gcc >/dev/null 2>&1 && [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/libc.a ]] &&
    command -v curl >/dev/null 2>&1
}

# ensure_node_packages: Debian's containerd, runc, CNI plugins, iptables and socat, a C
# compiler with a static libc for the bed's tiny images, and curl (copied into the stand-in's
# image for SDF's chart's readinessProbe). apt-get installs them (no service is
# started: the bed runs containerd itself, with its own config).
ensure_node_packages() {
  node_packages_installed && return 0
  command -v apt-get >/dev/null 2>&1 || die "the real node needs Debian packages ${NODE_PACKAGES[*]} (no apt-get here)"
  local sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  log "installing Debian packages for the real node: ${NODE_PACKAGES[*]}"
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${NODE_PACKAGES[@]}" >&2; then
    "${sudo[@]}" apt-get update >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${NODE_PACKAGES[@]}" >&2
  fi
  node_packages_installed || die "packages still missing after apt-get install ${NODE_PACKAGES[*]}"
}

images_built() {
  local v
  [[ -f "${IMAGES_DIR}/pause.oci.tar" && -f "${IMAGES_DIR}/dns-probe.oci.tar" && "$(cat "${IMAGES_DIR}/.source" 2>/dev/null)" == "$(images_source_key)" ]] || return 1
  for v in "${STANDIN_VERSIONS[@]}"; do
    [[ -f "${IMAGES_DIR}/stellar-core-standin-${v}.oci.tar" ]] || return 1
  done
}

images_source_key() {
  cat "${SCRIPT_DIR}/images/"*.c "${REPO_ROOT}/image/oci-archive" |
    sha256sum | cut -c1-16
  printf '%s\n' "${PAUSE_IMAGE}" "${DNS_PROBE_IMAGE}" "${STANDIN_VERSIONS[@]}"
  # The Debian files copied into the stand-in's image (for SDF's chart), by content.
  printf 'standin-debian-files=%s\n' "${STANDIN_DEBIAN_FILES[*]}"
  debian_file_closure "${STANDIN_DEBIAN_FILES[@]}" | xargs -r sha256sum -- 2>/dev/null |
    sha256sum | cut -c1-16
}

# debian_file_closure FILE...: FILE... and every shared library `ldd` names for them (the
# dynamic loader included), one path a line, sorted. ldd's lines: `libx.so.N => /path (0x...)`,
# or `/lib64/ld-linux-x86-64.so.2 (0x...)`.
debian_file_closure() {
  local f
  for f in "$@"; do
    [[ -e "${f}" ]] || continue
    printf '%s\n' "${f}"
    ldd "${f}" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  done | sort -u
}

# add_debian_files DIR FILE...: Debian's own binaries FILE... (this host's, from its Debian
# packages) into the image root DIR at the same paths, with every shared library `ldd` names
# (and the dynamic loader) at the path the binary asks for. Symlinks are followed: the image
# has no merged /usr, so /bin/bash and /lib/x86_64-linux-gnu/... are real files there.
add_debian_files() {
  local root="$1" f
  shift
  for f in "$@"; do
    [[ -x "${f}" ]] || die "the stand-in image needs ${f} (Debian: ${STANDIN_DEBIAN_PACKAGES[*]})"
  done
  while read -r f; do
    [[ -n "${f}" && -f "${f}" ]] || continue
    mkdir -p "${root}$(dirname "${f}")"
    cp -L "${f}" "${root}${f}"
  done < <(debian_file_closure "$@")
}

# build_images: the pause image, the DNS probe and the stand-in stellar-core image, each one
# static binary in one layer (the stand-in's layer also holds Debian's bash, see
# STANDIN_DEBIAN_FILES), written as OCI archives into the cache.
build_images() {
  local tmp ref refs=() v
  mkdir -p "${IMAGES_DIR}"
  tmp="$(mktemp -d "${IMAGES_DIR}/.build.XXXXXX")"
  mkdir -p "${tmp}/pause" "${tmp}/probe" "${tmp}/standin/usr/bin" "${tmp}/standin/etc/stellar"
  # getaddrinfo in a static glibc warns at link time; the DNS and files lookups it needs are
  # inside libc since glibc 2.34, so the probe resolves without shared libraries.
  gcc -static -Os -s -Wall -Wextra -Werror -o "${tmp}/probe/dns-probe" "${SCRIPT_DIR}/images/dns-probe.c" 2>/dev/null ||
    gcc -static -Os -s -Wall -Wextra -Werror -o "${tmp}/probe/dns-probe" "${SCRIPT_DIR}/images/dns-probe.c"
  "${REPO_ROOT}/image/oci-archive" "${tmp}/dns-probe.oci.tar" "${DNS_PROBE_IMAGE}" \
    '{"Entrypoint":["/dns-probe"],"User":"65534:65534"}' "${tmp}/probe" >/dev/null
  mv -f "${tmp}/dns-probe.oci.tar" "${IMAGES_DIR}/dns-probe.oci.tar"
  gcc -static -Os -s -Wall -Wextra -Werror -o "${tmp}/pause/pause" "${SCRIPT_DIR}/images/pause.c"
  # getaddrinfo (the admin port's connect) warns at link time, as for the probe.
  gcc -static -Os -s -Wall -Wextra -Werror -o "${tmp}/standin/usr/bin/stellar-core" "${SCRIPT_DIR}/images/stellar-core-standin.c" 2>/dev/null ||
    gcc -static -Os -s -Wall -Wextra -Werror -o "${tmp}/standin/usr/bin/stellar-core" "${SCRIPT_DIR}/images/stellar-core-standin.c"
  add_debian_files "${tmp}/standin" "${STANDIN_DEBIAN_FILES[@]}"
  "${REPO_ROOT}/image/oci-archive" "${tmp}/pause.oci.tar" "${PAUSE_IMAGE}" \
    '{"Entrypoint":["/pause"],"User":"65535:65535"}' "${tmp}/pause" >/dev/null
  # The operator's image name, so its pods' `stellar-node` container starts the stand-in.
  # One archive per tag (an OCI index entry names one image).
  for v in "${STANDIN_VERSIONS[@]}"; do
    ref="docker.io/stellar/stellar-core:${v}"
    "${REPO_ROOT}/image/oci-archive" "${tmp}/standin-${v}.oci.tar" "${ref}" \
      '{"Entrypoint":["/usr/bin/stellar-core"],"WorkingDir":"/etc/stellar","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Labels":{"org.opencontainers.image.description":"STAND-IN for stellar-core (test bed only; not stellar-core): a static stand-in /usr/bin/stellar-core, plus Debian'"'"'s real bash, sh (dash), grep and curl with their libraries (copied from this host'"'"'s packages) for SDF'"'"'s chart'"'"'s core-init and readinessProbe"}}' \
      "${tmp}/standin" >/dev/null
    refs+=("${tmp}/standin-${v}.oci.tar")
  done
  mv -f "${tmp}/pause.oci.tar" "${IMAGES_DIR}/pause.oci.tar"
  for v in "${STANDIN_VERSIONS[@]}"; do
    mv -f "${tmp}/standin-${v}.oci.tar" "${IMAGES_DIR}/stellar-core-standin-${v}.oci.tar"
  done
  images_source_key >"${IMAGES_DIR}/.source"
  rm -rf "${tmp}"
}

# --- preflight ------------------------------------------------------------------------------

# node_missing: what this host lacks for a real node, one item a line (nothing when it can run one).
node_missing() {
  [[ "$(id -u)" -eq 0 ]] || echo "root (the kubelet, containerd and the bridge need it; running as uid $(id -u))"
  grep -qw overlay /proc/filesystems 2>/dev/null || echo "overlayfs in the kernel (/proc/filesystems has no overlay)"
  local d
  for d in $(cgroup_hierarchies); do
    if ! { mkdir -p "${d}/${NODE_CGROUP_ROOT}.probe" 2>/dev/null && rmdir "${d}/${NODE_CGROUP_ROOT}.probe"; }; then
      echo "a writable cgroup hierarchy (${d} is not)"
      break
    fi
  done
  [[ -n "$(cgroup_hierarchies)" ]] || echo "mounted cgroups (none under /sys/fs/cgroup)"
  command -v containerd >/dev/null 2>&1 || echo "containerd (tests/testbed/testbed build installs it)"
  command -v runc >/dev/null 2>&1 || echo "runc (tests/testbed/testbed build installs it)"
  [[ -x /usr/lib/cni/bridge ]] || echo "the CNI plugins in /usr/lib/cni (tests/testbed/testbed build installs them)"
  command -v iptables >/dev/null 2>&1 || echo "iptables (tests/testbed/testbed build installs it)"
  command -v socat >/dev/null 2>&1 || echo "socat (tests/testbed/testbed build installs it)"
  [[ -x "${BIN_DIR}/kubelet" && -x "${BIN_DIR}/kube-proxy" ]] || echo "kubelet and kube-proxy (tests/testbed/testbed build)"
  images_built || echo "the pause and stand-in images (tests/testbed/testbed build)"
}

# cgroup_hierarchies: the mounted cgroup hierarchies (v1: one per controller; v2: one).
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts | sort -u
}

# --- ownership of the machine's one real node ------------------------------------------------

# owner_alive <state dir>: that bed is running its node (or is in the middle of `up`/`down`).
owner_alive() {
  local dir="$1" name pid want
  [[ -d "${dir}" ]] || return 1
  # A bed holds its state lock during up/down.
  if [[ -f "${dir}/.lock" ]] && ! flock -n "${dir}/.lock" true 2>/dev/null; then
    return 0
  fi
  for name in containerd kubelet; do
    [[ -f "${dir}/pids/${name}.pid" && -f "${dir}/pids/${name}.exe" ]] || continue
    pid="$(<"${dir}/pids/${name}.pid")"
    want="$(<"${dir}/pids/${name}.exe")"
    [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "${want}" ]] && return 0
  done
  return 1
}

# take_real_node: become the owner of the machine's real node, or fail saying who has it.
take_real_node() {
  local owner
  exec 6>>"${REAL_NODE_LOCK}"
  flock 6
  owner="$(cat "${REAL_NODE_OWNER}" 2>/dev/null || true)"
  if [[ -n "${owner}" && "${owner}" != "${STATE_DIR}" ]]; then
    # The owner holds its own state lock while it runs `up`, and we hold ours: check it without
    # waiting (flock -n), so two beds coming up at once cannot deadlock.
    if owner_alive "${owner}"; then
      exec 6>&-
      die "the machine's one real node belongs to the bed in ${owner}; run this bed with TESTBED_REAL_NODE=0, or take that bed down first"
    fi
    log "the real node's previous owner (${owner}) is gone; cleaning up after it"
    (STATE_DIR="${owner}" NODE_DIR="${owner}/node" CONTAINERD_SOCK="${owner}/node/containerd/containerd.sock" node_teardown) || true
  fi
  printf '%s\n' "${STATE_DIR}" >"${REAL_NODE_OWNER}"
  exec 6>&-
}

own_real_node() { [[ "$(cat "${REAL_NODE_OWNER}" 2>/dev/null)" == "${STATE_DIR}" ]]; }

real_node_on() { [[ -f "${NODE_ENV}" ]] && grep -qx 'REAL_NODE=on' "${NODE_ENV}"; }

# write_node_env <on|off> <reason>: what the trials read to know whether this bed has a real node.
write_node_env() {
  {
    printf 'REAL_NODE=%s\n' "$1"
    printf 'REAL_NODE_REASON=%q\n' "$2"
    printf 'REAL_NODE_NAME=%s\n' "${NODE_NAME}"
    printf 'REAL_NODE_TAINT=%s\n' "${REAL_NODE_TAINT_KEY}"
    printf 'CONTAINERD_SOCK=%s\n' "${CONTAINERD_SOCK}"
    printf 'POD_SUBNET=%s\n' "${NODE_POD_SUBNET}"
    printf 'DNS_SERVICE_IP=%s\n' "${DNS_SERVICE_IP}"
    printf 'PAUSE_IMAGE=%s\n' "${PAUSE_IMAGE}"
    printf 'DNS_PROBE_IMAGE=%s\n' "${DNS_PROBE_IMAGE}"
  } >"${NODE_ENV}.tmp"
  mv -f "${NODE_ENV}.tmp" "${NODE_ENV}"
}

# decide_real_node: on or off for this `up`; dies with what is missing when the node is wanted
# and the host cannot run one.
decide_real_node() {
  if [[ "${REAL_NODE_WANTED}" == 0 ]]; then
    log "real node off (TESTBED_REAL_NODE=0): pods run only on kwok's fake nodes"
    write_node_env off "turned off with TESTBED_REAL_NODE=0"
    return 0
  fi
  local missing
  missing="$(node_missing)"
  if [[ -n "${missing}" ]]; then
    write_node_env off "this host cannot run a real node; it lacks: $(paste -sd';' <<<"${missing}")"
    die "this host cannot run the bed's real node; it lacks:
$(sed 's/^/  - /' <<<"${missing}")
Set TESTBED_REAL_NODE=0 to run the bed without it (the real-node trials are then reported as not run)."
  fi
  take_real_node
  write_node_env on "kubelet ${NODE_NAME}"
}

# --- network claims ---------------------------------------------------------------------------

claim_holder() { printf 'bed-%s' "$(printf '%s' "${STATE_DIR}" | sha256sum | cut -c1-12)"; }

# network_up: claim the ranges (and make the pod bridge when this bed runs the real node), then
# check. Runs before any component starts.
network_up() {
  if [[ "$(id -u)" -eq 0 ]]; then
    if real_node_on; then
      if ! ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
        ip link add "${NODE_BRIDGE}" type bridge
      fi
      ip addr replace "${NODE_BRIDGE_ADDR}/24" dev "${NODE_BRIDGE}"
      ip link set "${NODE_BRIDGE}" up
    fi
    "${SCRIPT_DIR}/claim-ranges" up "$(claim_holder)"
  fi
  local out
  if ! out="$("${SCRIPT_DIR}/claim-ranges" check 2>&1)"; then
    log "refusing to start: an address the bed uses would leave this machine through the default gateway:"
    printf '%s\n' "${out}" >&2
    [[ "$(id -u)" -eq 0 ]] || log "run as root (the bed claims the ranges with host routes), or have root run: ${SCRIPT_DIR}/claim-ranges up HOLDER"
    return 1
  fi
}

network_down() {
  [[ "$(id -u)" -eq 0 ]] || return 0
  # The pod bridge, when it is ours (its veths went with the pods' namespaces).
  if own_real_node || [[ ! -f "${REAL_NODE_OWNER}" ]]; then
    ip link del "${NODE_BRIDGE}" 2>/dev/null || true
  fi
  "${SCRIPT_DIR}/claim-ranges" down "$(claim_holder)" || true
}

# --- configs ------------------------------------------------------------------------------------

ensure_node_pki() {
  [[ -f "${PKI_DIR}/kubelet.crt" ]] || issue kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}" clientAuth
  [[ -f "${PKI_DIR}/kube-proxy.crt" ]] || issue kube-proxy "/CN=system:kube-proxy" clientAuth
}

write_node_configs() {
  mkdir -p "${NODE_DIR}/containerd/root" "${NODE_DIR}/containerd/state" "${NODE_DIR}/cni/net.d" \
    "${NODE_DIR}/cni/ipam" "${NODE_DIR}/kubelet" "${NODE_DIR}/pod-logs"
  write_kubeconfig "${NODE_DIR}/kubelet.kubeconfig" kubelet
  write_kubeconfig "${NODE_DIR}/kube-proxy.kubeconfig" kube-proxy
  # restrict_oom_score_adj: this VM gives no CAP_SYS_RESOURCE, so runc may not lower
  # oom_score_adj. netns_mounts_under_state_dir: the pods' network namespaces live under the
  # state dir, where `down` finds them. No registry mirror: images are imported, and containerd
  # runs with a dead proxy (see start) so that a pull never leaves the machine.
  cat >"${NODE_DIR}/containerd.toml" <<EOF
version = 2
root = "${NODE_DIR}/containerd/root"
state = "${NODE_DIR}/containerd/state"
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_SOCK}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${NODE_DIR}/cni/net.d"
EOF
  # The bridge exists already (network_up gave it its address), so isGateway stays false: the
  # plugin then neither adds an address nor turns on IP forwarding. No ipMasq and no default
  # route in the pods: their only routes are the bridge's /24 and the Service range via the
  # host, where kube-proxy's DNAT sends ClusterIPs to their endpoints. Nothing a pod sends can
  # be routed off the machine (the host does not forward).
  cat >"${NODE_DIR}/cni/net.d/10-testbed.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "stellar-testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${NODE_BRIDGE}",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "${NODE_DIR}/cni/ipam",
        "ranges": [[{ "subnet": "${NODE_POD_SUBNET}", "rangeStart": "10.245.0.10", "gateway": "${NODE_BRIDGE_ADDR}" }]],
        "routes": [{ "dst": "${SERVICE_CIDR}", "gw": "${NODE_BRIDGE_ADDR}" }]
      }
    }
  ]
}
EOF
  # failCgroupV1: false lets 1.32 run on this host's cgroup v1. Image GC off (high 100 %): the
  # bed's images were imported, not pulled, and cannot come back once collected.
  local failcg=""
  [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]] || failcg="failCgroupV1: false"
  cat >"${NODE_DIR}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_NAME}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: ${NODE_NAME}
healthzPort: ${KUBELET_HEALTHZ_PORT}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${PKI_DIR}/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
cgroupDriver: cgroupfs
cgroupRoot: /${NODE_CGROUP_ROOT}
${failcg}
failSwapOn: false
clusterDNS:
- ${DNS_SERVICE_IP}
clusterDomain: cluster.local
resolvConf: ""
podLogsDir: ${NODE_DIR}/pod-logs
registerWithTaints:
- key: ${REAL_NODE_TAINT_KEY}
  value: "true"
  effect: NoSchedule
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
makeIPTablesUtilChains: false
serializeImagePulls: false
EOF
  # iptables mode; no conntrack sysctl changes (0 = leave as is); NodePorts only on the bridge's
  # address and never on localhost (which would need route_localnet).
  cat >"${NODE_DIR}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${NODE_DIR}/kube-proxy.kubeconfig
hostnameOverride: ${NODE_NAME}
mode: iptables
bindAddress: ${NODE_NAME}
healthzBindAddress: ${NODE_NAME}:${KUBE_PROXY_HEALTHZ_PORT}
metricsBindAddress: ${NODE_NAME}:${KUBE_PROXY_METRICS_PORT}
clusterCIDR: ${NODE_POD_SUBNET}
nodePortAddresses:
- ${NODE_BRIDGE_ADDR}/32
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# --- start ------------------------------------------------------------------------------------

save_sysctls() {
  [[ -f "${REAL_NODE_SYSCTLS_SAVED}" ]] && return 0
  local k v
  for k in "${NODE_SYSCTLS[@]}"; do
    v="$(sysctl -n "${k}" 2>/dev/null)" || continue
    printf '%s=%s\n' "${k}" "${v}"
  done >"${REAL_NODE_SYSCTLS_SAVED}.tmp"
  mv -f "${REAL_NODE_SYSCTLS_SAVED}.tmp" "${REAL_NODE_SYSCTLS_SAVED}"
}

restore_sysctls() {
  [[ -f "${REAL_NODE_SYSCTLS_SAVED}" ]] || return 0
  local k v
  while IFS='=' read -r k v; do
    [[ "$(sysctl -n "${k}" 2>/dev/null)" == "${v}" ]] || sysctl -qw "${k}=${v}" || log "cannot restore ${k}=${v}"
  done <"${REAL_NODE_SYSCTLS_SAVED}"
  rm -f "${REAL_NODE_SYSCTLS_SAVED}"
}

# make_cgroup_root: the kubelet's cgroupRoot in every hierarchy (it does not create it itself).
# cpuset needs its cpus and mems copied from the parent before anything can join.
make_cgroup_root() {
  local d
  for d in $(cgroup_hierarchies); do
    mkdir -p "${d}/${NODE_CGROUP_ROOT}"
    if [[ -f "${d}/cpuset.cpus" && -f "${d}/${NODE_CGROUP_ROOT}/cpuset.cpus" ]]; then
      [[ -n "$(cat "${d}/${NODE_CGROUP_ROOT}/cpuset.cpus")" ]] || cat "${d}/cpuset.cpus" >"${d}/${NODE_CGROUP_ROOT}/cpuset.cpus"
      [[ -n "$(cat "${d}/${NODE_CGROUP_ROOT}/cpuset.mems")" ]] || cat "${d}/cpuset.mems" >"${d}/${NODE_CGROUP_ROOT}/cpuset.mems"
    fi
  done
}

ctr_node() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }

# import_image <OCI archive>: into the node's containerd, for the kubelet (namespace k8s.io).
import_image() {
  ctr_node images import "$1" >/dev/null
}

# record_foreign_dirs: remember which of the kubelet's fixed directories exist before it runs.
record_foreign_dirs() {
  local d
  [[ -f "${NODE_DIR}/foreign-dirs" ]] && return 0
  for d in "${NODE_FOREIGN_DIRS[@]}"; do
    [[ -e "${d}" ]] || printf '%s\n' "${d}"
  done >"${NODE_DIR}/foreign-dirs"
}

# start_node_component <name>
start_node_component() {
  case "$1" in
  containerd)
    # A proxy that is not there: any image pull fails on 127.0.0.1 instead of resolving and
    # dialling a registry on the internet.
    start_proc containerd "$(command -v containerd)" env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
      NO_PROXY= http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy= \
      "$(command -v containerd)" --config "${NODE_DIR}/containerd.toml"
    ;;
  kubelet)
    start_proc kubelet "${BIN_DIR}/kubelet" "${BIN_DIR}/kubelet" \
      --config="${NODE_DIR}/kubelet.yaml" \
      --kubeconfig="${NODE_DIR}/kubelet.kubeconfig" \
      --hostname-override="${NODE_NAME}" \
      --root-dir="${NODE_DIR}/kubelet" \
      --cert-dir="${NODE_DIR}/kubelet-pki" \
      --node-labels="${REAL_NODE_TAINT_KEY}=true,topology.kubernetes.io/zone=testbed-zone-real" \
      --v=1
    ;;
  kube-proxy)
    start_proc kube-proxy "${BIN_DIR}/kube-proxy" "${BIN_DIR}/kube-proxy" --config="${NODE_DIR}/kube-proxy.yaml" --v=1
    ;;
  api-relay)
    # The apiserver listens on 127.0.0.1 only, and an EndpointSlice may not name a loopback
    # address: pods reach it through the `kubernetes` Service, whose endpoint is this relay on
    # the bridge's address.
    start_proc api-relay "$(command -v socat)" "$(command -v socat)" \
      "TCP-LISTEN:${API_RELAY_PORT},bind=${NODE_BRIDGE_ADDR},reuseaddr,fork" "TCP:127.0.0.1:${APISERVER_PORT}"
    ;;
  esac
}

node_probe() {
  case "$1" in
  containerd) ctr --address "${CONTAINERD_SOCK}" version ;;
  kubelet) [[ "$(curl -sf --max-time 3 "http://${NODE_NAME}:${KUBELET_HEALTHZ_PORT}/healthz")" == ok ]] ;;
  kube-proxy) curl -sf --max-time 3 -o /dev/null "http://${NODE_NAME}:${KUBE_PROXY_HEALTHZ_PORT}/healthz" ;;
  api-relay)
    local pid
    pid="$(pid_of api-relay)" && ss -Htlnp "sport = :${API_RELAY_PORT}" | grep -q "${NODE_BRIDGE_ADDR}:.*pid=${pid},"
    ;;
  esac
}

node_url() {
  case "$1" in
  containerd) printf 'unix://%s' "${CONTAINERD_SOCK}" ;;
  kubelet) printf 'https://%s:%s (node %s)' "${NODE_NAME}" "${KUBELET_PORT}" "${NODE_NAME}" ;;
  kube-proxy) printf 'http://%s:%s/healthz (iptables)' "${NODE_NAME}" "${KUBE_PROXY_HEALTHZ_PORT}" ;;
  api-relay) printf 'tcp://%s:%s -> 127.0.0.1:%s' "${NODE_BRIDGE_ADDR}" "${API_RELAY_PORT}" "${APISERVER_PORT}" ;;
  esac
}

node_ready() {
  [[ "$(kc get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# node_objects: the Services pods use. The DNS Service's endpoint is CoreDNS on the bridge's
# address; the `kubernetes` Service's is the relay. Both selector-less, with EndpointSlices
# managed by the bed.
node_objects() {
  kc apply -f - <<EOF
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: ${DNS_SERVICE_IP}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-testbed
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: testbed.stellar-peer-injector
addressType: IPv4
endpoints:
- addresses: ["${NODE_BRIDGE_ADDR}"]
  conditions: {ready: true}
ports:
- {name: dns, port: ${DNS_PORT}, protocol: UDP}
- {name: dns-tcp, port: ${DNS_PORT}, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-testbed
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: testbed.stellar-peer-injector
addressType: IPv4
endpoints:
- addresses: ["${NODE_BRIDGE_ADDR}"]
  conditions: {ready: true}
ports:
- {name: https, port: ${API_RELAY_PORT}, protocol: TCP}
EOF
}

# launch_node_component <name>: start it and wait until its probe answers.
launch_node_component() {
  local name="$1"
  start_node_component "${name}"
  [[ " ${STARTED[*]} " == *" ${name} "* ]] || STARTED+=("${name}")
  wait_until "${name} to be healthy on $(node_url "${name}")" "${name}" node_probe "${name}"
}

# start_node: everything of the real node, after the control plane is up.
start_node() {
  real_node_on || return 0
  local t0=${SECONDS} f
  ensure_node_pki
  node_teardown # leftovers of a node that was killed
  write_node_configs
  record_foreign_dirs
  save_sysctls
  make_cgroup_root
  launch_node_component containerd || return 1
  for f in "${IMAGES_DIR}/pause.oci.tar" "${IMAGES_DIR}/dns-probe.oci.tar" "${IMAGES_DIR}"/stellar-core-standin-*.oci.tar; do
    import_image "${f}" || { FAILED_COMPONENT=containerd; log "cannot import ${f}"; return 1; }
  done
  launch_node_component api-relay || return 1
  wait_until "the real node's Services" kube-apiserver node_objects || return 1
  local tk=${SECONDS}
  launch_node_component kubelet || return 1
  wait_until "node ${NODE_NAME} to be Ready" kubelet node_ready || return 1
  log "real node ${NODE_NAME} Ready $((SECONDS - tk)) s after the kubelet started"
  # kube-proxy reads the node's addresses from its Node object at start: after the kubelet.
  # No pod can start before its rules are in place: the bed has none yet.
  launch_node_component kube-proxy || return 1
  log "real node up in $((SECONDS - t0)) s"
}

# --- teardown ---------------------------------------------------------------------------------

# node_pids_in_cgroups: every process in the node's cgroup tree, in any hierarchy.
node_pids_in_cgroups() {
  local d
  for d in $(cgroup_hierarchies); do
    [[ -d "${d}/${NODE_CGROUP_ROOT}" ]] || continue
    find "${d}/${NODE_CGROUP_ROOT}" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# node_shim_pids: containerd's shims for this node's containerd (they live outside the pods'
# cgroups), found by the socket address on their command line.
node_shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    if { tr "\\0" " " <"${p}/cmdline"; } 2>/dev/null | grep -qF -- "-address ${CONTAINERD_SOCK} "; then
      printf '%s\n' "${p##*/}"
    fi
  done
}

# node_mounts: mount points under the node's dir (and the containerd shims' /run dir), deepest first.
node_mounts() {
  awk -v d="${NODE_DIR}/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

# remove_kube_chains <iptables|ip6tables>: delete every rule that jumps to a KUBE-* chain, then
# the chains themselves, in every table.
remove_kube_chains() {
  local cmd="$1" table rules rule chain
  command -v "${cmd}" >/dev/null 2>&1 || return 0
  for table in filter nat mangle raw; do
    rules="$("${cmd}" -t "${table}" -S 2>/dev/null)" || continue
    [[ "${rules}" == *KUBE-* ]] || continue
    while read -r rule; do
      # shellcheck disable=SC2086 # the rule's words, as iptables -S printed them
      eval "${cmd} -t ${table} ${rule/#-A/-D}" 2>/dev/null || true
    done < <(grep -E -- '^-A [^ ]+ .*-j KUBE-' <<<"${rules}" | grep -Ev '^-A KUBE-')
    for chain in $(awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }' <<<"${rules}"); do
      "${cmd}" -t "${table}" -F "${chain}" 2>/dev/null || true
    done
    for chain in $(awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }' <<<"${rules}"); do
      "${cmd}" -t "${table}" -X "${chain}" 2>/dev/null || true
    done
  done
}

# node_teardown: undo the node, whatever state it was left in (a crash, a kill). Idempotent; acts
# only on what is this bed's: its cgroup root and mounts (only while it owns the node), its
# containerd's shims, its bridge.
node_teardown() {
  [[ "$(id -u)" -eq 0 ]] || return 0
  own_real_node || [[ -d "${NODE_DIR}" ]] || return 0
  own_real_node || [[ ! -f "${REAL_NODE_OWNER}" ]] || return 0 # another bed's node: not ours to touch
  local pids p m d i
  # The pods' processes, then the shims that watched them.
  for i in 1 2 3; do
    pids="$(node_pids_in_cgroups)"
    [[ -n "${pids}" ]] || break
    # shellcheck disable=SC2086
    kill -KILL ${pids} 2>/dev/null || true
    sleep 0.3
  done
  pids="$(node_shim_pids)"
  if [[ -n "${pids}" ]]; then
    # shellcheck disable=SC2086
    kill -KILL ${pids} 2>/dev/null || true
  fi
  # Mounts: the kubelet's bind mount of its root dir, pods' volumes, containerd's rootfs
  # overlays and shm, network namespaces.
  for i in 1 2 3; do
    m="$(node_mounts)"
    [[ -n "${m}" ]] || break
    while read -r p; do
      umount "$(printf '%b' "${p}")" 2>/dev/null || umount -l "$(printf '%b' "${p}")" 2>/dev/null || true
    done <<<"${m}"
  done
  # kube-proxy's rules (`kube-proxy --cleanup` removes most of its chains, and fails here only on
  # ipset and nft, which this host lacks), then every KUBE-* chain left (the canaries,
  # KUBE-FIREWALL, the kubelet's), IPv4 and IPv6. Only the real node makes KUBE-* chains, and
  # there is one per machine.
  if [[ -x "${BIN_DIR}/kube-proxy" ]] && [[ "$(iptables-save 2>/dev/null)" == *KUBE-* ]]; then
    "${BIN_DIR}/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 || true
  fi
  remove_kube_chains iptables
  remove_kube_chains ip6tables
  # cgroups, deepest first, once empty.
  for d in $(cgroup_hierarchies); do
    [[ -d "${d}/${NODE_CGROUP_ROOT}" ]] || continue
    find "${d}/${NODE_CGROUP_ROOT}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d "${d}/${NODE_CGROUP_ROOT}" ]] || log "cgroup ${d}/${NODE_CGROUP_ROOT} is not empty yet"
  done
  restore_sysctls
  # The kubelet's fixed directories, if it made them; its log symlinks into our dir.
  find /var/log/containers -maxdepth 1 -type l -lname "${NODE_DIR}/*" -delete 2>/dev/null || true
  if [[ -f "${NODE_DIR}/foreign-dirs" ]]; then
    while read -r d; do
      [[ -n "${d}" && -d "${d}" ]] && rm -rf --one-file-system "${d}"
    done <"${NODE_DIR}/foreign-dirs"
  fi
  # The node's state (containerd's content and snapshots, the kubelet's root dir), once unmounted.
  if [[ -z "$(node_mounts)" ]]; then
    rm -rf --one-file-system "${NODE_DIR}/containerd" "${NODE_DIR}/kubelet" "${NODE_DIR}/cni" "${NODE_DIR}/foreign-dirs"
  else
    log "still mounted under ${NODE_DIR}: $(node_mounts | tr '\n' ' ')"
  fi
}

# release_real_node: let another bed have the machine's real node.
release_real_node() {
  own_real_node || return 0
  exec 6>>"${REAL_NODE_LOCK}"
  flock 6
  own_real_node && rm -f "${REAL_NODE_OWNER}"
  exec 6>&-
}
