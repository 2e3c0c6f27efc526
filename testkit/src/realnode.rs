//! The bed's real node (tests/testbed/realnode.sh): whether the shared bed runs one, the images
//! its containerd holds, pods placed on it, and what its containers print.
//!
//! A trial picks its node explicitly: [`on_real_node`] adds the real node's nodeSelector and
//! the toleration of its taint; pods without them land on kwok's fake nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde_json::{Value, json};

use crate::bed::{repo_root, state_dir};
use crate::injector::injector_bin;

/// The environment variable that turns the real node off (`TESTBED_REAL_NODE=0`).
pub const OPT_OUT_VAR: &str = "TESTBED_REAL_NODE";

/// The label (and taint key) of the real node.
pub const REAL_NODE_LABEL: &str = "testbed.stellar-peer-injector/real-node";

/// The injector's image on the real node, built from the test binary by image/build.
pub const INJECTOR_IMAGE: &str = "docker.io/library/stellar-peer-injector:testbed";

/// True when the real node was turned off on purpose for this run.
pub fn real_node_opted_out() -> bool {
    std::env::var(OPT_OUT_VAR).is_ok_and(|v| v == "0")
}

/// What the bed wrote about its real node (`<state>/realnode.env`).
#[derive(Clone, Debug)]
pub struct RealNode {
    /// The node's name and address (127.0.0.2).
    pub name: String,
    /// containerd's socket, for `ctr`.
    pub containerd_sock: PathBuf,
    /// The pods' range on the bridge.
    pub pod_subnet: String,
    /// The DNS Service's ClusterIP.
    pub dns_service_ip: String,
    /// The image of the getaddrinfo() probe ([`resolve_in_pod`]).
    pub dns_probe_image: String,
    /// The pause image (a container that only sleeps).
    pub pause_image: String,
}

/// `KEY=value` lines, values as bash's `printf %q` writes them (backslash escapes only).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let mut out = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '\'' => {}
                    c => out.push(c),
                }
            }
            (k.to_owned(), out)
        })
        .collect()
}

/// The shared bed's real node, or why there is none (the bed's own words).
pub fn real_node() -> Result<RealNode, String> {
    let path = state_dir().join("realnode.env");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "the bed wrote no {} ({e}): is it up, and new enough to run a real node?",
            path.display()
        )
    })?;
    let env = parse_env(&text);
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .ok_or_else(|| format!("{}: no {k}", path.display()))
    };
    if get("REAL_NODE")? != "on" {
        return Err(format!(
            "the bed runs no real node: {}",
            env.get("REAL_NODE_REASON")
                .map_or("(no reason given)", String::as_str)
        ));
    }
    Ok(RealNode {
        name: get("REAL_NODE_NAME")?,
        containerd_sock: PathBuf::from(get("CONTAINERD_SOCK")?),
        pod_subnet: get("POD_SUBNET")?,
        dns_service_ip: get("DNS_SERVICE_IP")?,
        dns_probe_image: get("DNS_PROBE_IMAGE")?,
        pause_image: get("PAUSE_IMAGE")?,
    })
}

/// Puts a pod spec (a `spec` object of a Pod or a pod template) on the real node: its
/// nodeSelector and the toleration of its taint.
pub fn on_real_node(spec: &mut Value) {
    spec["nodeSelector"] = json!({ REAL_NODE_LABEL: "true" });
    let toleration = json!({"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"});
    match spec["tolerations"].as_array_mut() {
        Some(list) => list.push(toleration),
        None => spec["tolerations"] = json!([toleration]),
    }
}

impl RealNode {
    /// `ctr` against the node's containerd, namespace k8s.io (the kubelet's).
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.containerd_sock)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ctr: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();

/// Builds the injector's image from the test binary (image/build, as `make image` does with
/// the release binary) and imports it into the real node's containerd, once per run; returns
/// its name ([`INJECTOR_IMAGE`]).
pub fn injector_image(node: &RealNode) -> Result<&'static str, String> {
    IMAGE
        .get_or_init(|| {
            let out = repo_root().join("target/image/stellar-peer-injector-testbed.oci.tar");
            let build = Command::new(repo_root().join("image/build"))
                .arg(injector_bin()?)
                .arg(&out)
                .arg(INJECTOR_IMAGE)
                .output()
                .map_err(|e| format!("cannot run image/build: {e}"))?;
            if !build.status.success() {
                return Err(format!(
                    "image/build failed: {}",
                    String::from_utf8_lossy(&build.stderr)
                ));
            }
            let path = out.to_str().ok_or("non-UTF-8 path")?;
            node.ctr(&["images", "import", path])?;
            Ok(INJECTOR_IMAGE.to_owned())
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// The log of one container of a pod (its stdout and stderr so far).
pub async fn container_log(api: &Api<Pod>, pod: &str, container: &str) -> Result<String, String> {
    let lp = LogParams {
        container: Some(container.to_owned()),
        ..Default::default()
    };
    api.logs(pod, &lp)
        .await
        .map_err(|e| format!("logs of {pod}/{container}: {e}"))
}

/// The file the stand-in stellar-core printed between its `--- begin F ---` and `--- end F ---`
/// lines, with the `--conf` path it was started with.
pub fn standin_printed_config(log: &str) -> Option<(String, String)> {
    let first = log
        .lines()
        .find_map(|l| l.strip_prefix("stellar-core stand-in: run --conf "))?;
    let path = first.trim().to_owned();
    let begin = format!("--- begin {path} ---\n");
    let end = format!("--- end {path} ---");
    let start = log.find(&begin)? + begin.len();
    let stop = start + log[start..].find(&end)?;
    Some((path, log[start..stop].to_owned()))
}

/// The request target the stand-in stellar-core's admin port recorded on one log line
/// (`stellar-core stand-in: admin GET TARGET -> CODE ...`), for GET requests.
pub fn standin_admin_target(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("stellar-core stand-in: admin GET ")?;
    rest.split_whitespace().next()
}

/// Every `connect` the stand-in recorded in `log`, as request targets, in order.
pub fn standin_connect_calls(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(standin_admin_target)
        .filter(|t| t.starts_with("/connect?"))
        .map(str::to_owned)
        .collect()
}

/// The request target of stellar-core's `connect` for a peer address `host[:port]`
/// (port 11625 when absent): what the live sidecar sends for an added peer.
pub fn connect_target(address: &str) -> String {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "11625"));
    format!("/connect?peer={host}&port={port}")
}

/// The default route's gateway and device (`ip -4 route show default`), if there is one.
pub fn default_route() -> Option<(String, String)> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let after = |k: &str| {
        words
            .iter()
            .position(|w| *w == k)
            .and_then(|i| words.get(i + 1))
            .map(|s| (*s).to_owned())
    };
    Some((after("via").unwrap_or_default(), after("dev")?))
}

/// `ip -4 route get ADDR`: the route's first line, or the kernel's refusal (`Err`: no route,
/// nothing is sent).
pub fn route_get(addr: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["-4", "route", "get", addr])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_lose_bash_quoting() {
        let env = parse_env(
            "REAL_NODE=off\nREAL_NODE_REASON=turned\\ off\\ with\\ TESTBED_REAL_NODE=0\n",
        );
        assert_eq!(env["REAL_NODE"], "off");
        assert_eq!(
            env["REAL_NODE_REASON"],
            "turned off with TESTBED_REAL_NODE=0"
        );
    }

    #[test]
    fn the_printed_config_is_found_between_its_markers() {
        let log = "stellar-core stand-in: run --conf /etc/stellar/merged/stellar-core.cfg\n\
                   --- begin /etc/stellar/merged/stellar-core.cfg ---\nA=1\nB=2\n\
                   --- end /etc/stellar/merged/stellar-core.cfg ---\n";
        let (path, cfg) = standin_printed_config(log).expect("found");
        assert_eq!(path, "/etc/stellar/merged/stellar-core.cfg");
        assert_eq!(cfg, "A=1\nB=2\n");
        assert!(
            standin_printed_config("stellar-core stand-in: run --conf /x\n--- begin /x ---\nA=1\n")
                .is_none()
        );
    }
}
