//! The Helm chart (charts/stellar-peer-injector): it lints, renders in every certificate
//! mode, is accepted by the API server, its schema rejects wrong values, and the RBAC it
//! grants is all the injector needs, on the real control plane.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use clap::Parser;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

const CHART_NAME: &str = "stellar-peer-injector";

fn chart_dir() -> PathBuf {
    repo_root().join("charts/stellar-peer-injector")
}

/// The directory with the bed's kubectl and helm (`tests/testbed/testbed bin-dir`).
pub(crate) fn bin_dir() -> Result<PathBuf, String> {
    let out = Command::new(repo_root().join("tests/testbed/testbed"))
        .arg("bin-dir")
        .output()
        .map_err(|e| format!("tests/testbed/testbed bin-dir: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tests/testbed/testbed bin-dir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    ))
}

fn scratch(name: &str) -> Result<PathBuf, String> {
    let dir = repo_root().join("target/chart-tests").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs a bed tool (`helm`, `kubectl`) against the bed, as `tests/testbed/testbed helm` does.
fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> Result<Output, String> {
    let bed = bed()?;
    let state = repo_root().join("target/testbed");
    let mut cmd = Command::new(bin_dir()?.join(name));
    cmd.args(args)
        .env("KUBECONFIG", &bed.kubeconfig)
        .env("KUBECACHEDIR", state.join("kube-cache"))
        .env("HELM_CACHE_HOME", state.join("helm/cache"))
        .env("HELM_CONFIG_HOME", state.join("helm/config"))
        .env("HELM_DATA_HOME", state.join("helm/data"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().ok_or("no stdin")?;
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("{name} stdin: {e}"))?;
    }
    child
        .wait_with_output()
        .map_err(|e| format!("wait for {name}: {e}"))
}

fn describe(name: &str, args: &[&str], out: &Output) -> String {
    format!(
        "`{name} {}` exited with {}:\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a tool and returns its stdout, failing on a non-zero exit.
pub fn run_ok(name: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let out = tool(name, args, stdin)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(describe(name, args, &out))
    }
}

fn helm(args: &[&str]) -> Result<String, String> {
    run_ok("helm", args, None)
}

/// Writes helm values (JSON is YAML) to a file and returns its path.
fn values_file(dir: &Path, name: &str, values: &Value) -> Result<String, String> {
    let path = dir.join(format!("{name}.values.json"));
    std::fs::write(&path, values.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

/// `helm template` with a values file; the rendered text.
fn render(
    dir: &Path,
    release: &str,
    ns: &str,
    mode: &str,
    values: &Value,
) -> Result<String, String> {
    let file = values_file(dir, mode, values)?;
    let chart = chart_dir().display().to_string();
    helm(&[
        "template",
        release,
        &chart,
        "--namespace",
        ns,
        "--values",
        &file,
    ])
}

/// The documents of a multi-document YAML stream, without empty ones.
fn docs(yaml: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for d in serde_yaml::Deserializer::from_str(yaml) {
        let v = Value::deserialize(d).map_err(|e| format!("rendered YAML does not parse: {e}"))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in docs {
        *m.entry(d["kind"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    m
}

fn one<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value, String> {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    match found.as_slice() {
        [d] => Ok(d),
        _ => Err(format!(
            "expected one {kind}, found {} (kinds: {:?})",
            found.len(),
            kinds(docs)
        )),
    }
}

fn hook(docs: &[Value]) -> Result<Value, String> {
    let cfg = one(docs, "MutatingWebhookConfiguration")?;
    let hooks = cfg["webhooks"].as_array().ok_or("no webhooks")?;
    ensure_eq!(
        hooks.len(),
        1,
        "webhooks of the MutatingWebhookConfiguration"
    )?;
    Ok(hooks[0].clone())
}

/// The injector container's arguments, checked against the binary's own CLI.
fn deployment_args(docs: &[Value]) -> Result<Vec<String>, String> {
    let d = one(docs, "Deployment")?;
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    let argv = std::iter::once("stellar-peer-injector".to_owned()).chain(args.iter().cloned());
    stellar_peer_injector::cli::Cli::try_parse_from(argv)
        .map_err(|e| format!("the chart's args {args:?} do not parse: {e}"))?;
    Ok(args)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn check_common(docs: &[Value], ns: &str) -> TestResult {
    let h = hook(docs)?;
    ensure_eq!(h["name"], "peers.stellar.org", "webhook {h}")?;
    ensure_eq!(h["admissionReviewVersions"], json!(["v1"]), "webhook {h}")?;
    ensure_eq!(h["sideEffects"], "None", "webhook {h}")?;
    ensure_eq!(h["reinvocationPolicy"], "IfNeeded", "webhook {h}")?;
    ensure_eq!(h["failurePolicy"], "Fail", "webhook {h}")?;
    ensure_eq!(h["timeoutSeconds"], 5, "webhook {h}")?;
    ensure_eq!(
        h["objectSelector"],
        json!({"matchLabels": {"app.kubernetes.io/name": "stellar-node"}}),
        "the webhook's objectSelector"
    )?;
    ensure(
        h["namespaceSelector"]["matchExpressions"][0]
            == json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ns, "kube-system"]}),
        || format!("namespaceSelector: {}", h["namespaceSelector"]),
    )?;
    ensure(
        h["rules"]
            == json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}]),
        || format!("rules: {}", h["rules"]),
    )?;
    // Least privilege: exactly these rules, nothing more.
    let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    ensure(roles.len() == 2, || {
        format!("expected two ClusterRoles, kinds: {:?}", kinds(docs))
    })?;
    let (ns_roles, main_roles): (Vec<&Value>, Vec<&Value>) = roles.into_iter().partition(|r| {
        r["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-namespaces"))
    });
    let ([nsr], [cr]) = (ns_roles.as_slice(), main_roles.as_slice()) else {
        return Err("expected one <fullname> and one <fullname>-namespaces ClusterRole".into());
    };
    // The rollout loop reads the namespaces' pause annotation, and nothing else of them.
    ensure(
        nsr["rules"]
            == json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]),
        || format!("namespaces ClusterRole rules: {}", nsr["rules"]),
    )?;
    ensure(
        cr["rules"]
            == json!([
                {"apiGroups": ["stellar.org"], "resources": ["stellarnodes"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"], "verbs": ["get", "list", "watch", "patch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete", "patch"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
                // governingServices.create (default true): the missing `{name}-headless` Services.
                {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create"]},
            ]),
        || format!("ClusterRole rules: {}", cr["rules"]),
    )?;
    let role = one(docs, "Role")?;
    ensure(
        role["metadata"]["namespace"] == ns
            && role["rules"].as_array().is_some_and(|r| {
                r.iter().all(|r| {
                    r["apiGroups"] == json!(["coordination.k8s.io"])
                        && r["resources"] == json!(["leases"])
                })
            }),
        || format!("Role: {role}"),
    )?;
    let args = deployment_args(docs)?;
    for want in [
        "serve",
        "--listen=0.0.0.0:8443",
        "--admin-listen=0.0.0.0:9090",
        "--tls-cert=/tls/tls.crt",
        "--tls-key=/tls/tls.key",
        "--log-format=json",
        "--shutdown-delay=5s",
    ] {
        ensure(args.iter().any(|a| a == want), || {
            format!("Deployment args lack {want}: {args:?}")
        })?;
    }
    let d = one(docs, "Deployment")?;
    let spec = &d["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    ensure(d["spec"]["replicas"] == 2, || "replicas".into())?;
    ensure(spec["terminationGracePeriodSeconds"] == 30, || {
        "grace".into()
    })?;
    ensure(
        c["securityContext"]["readOnlyRootFilesystem"] == true
            && c["securityContext"]["allowPrivilegeEscalation"] == false
            && c["securityContext"]["capabilities"]["drop"] == json!(["ALL"])
            && spec["securityContext"]["runAsNonRoot"] == true
            && spec["securityContext"]["runAsUser"] == 65532
            && spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
        || {
            format!(
                "security contexts: {} / {}",
                spec["securityContext"], c["securityContext"]
            )
        },
    )?;
    ensure(
        c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            && c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        || "probes".into(),
    )?;
    let env: Vec<&str> = c["env"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    ensure(
        env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"),
        || format!("env: {env:?}"),
    )?;
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    ensure(
        ann["prometheus.io/scrape"] == "true" && ann["prometheus.io/port"] == "9090",
        || format!("pod annotations: {ann}"),
    )?;
    let pdb = one(docs, "PodDisruptionBudget")?;
    ensure(pdb["spec"]["minAvailable"] == 1, || format!("{pdb}"))?;
    ensure(!kinds(docs).contains_key("ServiceMonitor"), || {
        "ServiceMonitor rendered although disabled".into()
    })?;
    ensure(
        !kinds(docs).contains_key("CustomResourceDefinition"),
        || "CRD rendered although crds.install=false".into(),
    )?;
    Ok(())
}

/// `kubectl apply --dry-run=server`: the API server validates and admits every object.
fn server_dry_run(ns: &str, yaml: &str) -> TestResult {
    let args = ["apply", "--dry-run=server", "-n", ns, "-f", "-"];
    let out = run_ok("kubectl", &args, Some(yaml))?;
    ensure(out.contains("(server dry run)"), || {
        format!("kubectl said: {out}")
    })
}

pub async fn chart_lints_and_renders_in_every_cert_mode() -> TestResult {
    let ns = TestNs::new("chartrender").await?;
    let n = ns.name.clone();
    let dir = scratch(&n)?;
    let release = "spi";
    let fullname = format!("{release}-{CHART_NAME}");
    let chart = chart_dir().display().to_string();

    helm(&["lint", &chart])?;
    helm(&[
        "lint",
        &chart,
        "--namespace",
        &n,
        "--set",
        "certs.mode=cert-manager",
    ])?;

    // The optional CRD is what the binary prints.
    let crd_file =
        std::fs::read_to_string(chart_dir().join("crds-optional/stellarnodes.stellar.org.yaml"))
            .map_err(|e| e.to_string())?;
    let crd_now = stellar_peer_injector::crd::crd_yaml().map_err(|e| e.to_string())?;
    ensure_eq!(
        crd_file,
        crd_now,
        "charts/stellar-peer-injector/crds-optional/stellarnodes.stellar.org.yaml differs from \
         `stellar-peer-injector crd`; regenerate it with `cargo run -q -- crd > ...`"
    )?;

    // helm: the chart generates the certificate into a Secret and the CA bundle from it.
    let helm_yaml = render(&dir, release, &n, "helm", &json!({}))?;
    let d = docs(&helm_yaml)?;
    check_common(&d, &n)?;
    let secret = one(&d, "Secret")?;
    let h = hook(&d)?;
    ensure(
        secret["metadata"]["name"] == format!("{fullname}-tls")
            && secret["type"] == "kubernetes.io/tls"
            && h["clientConfig"]["caBundle"] == secret["data"]["ca.crt"],
        || format!("Secret / caBundle mismatch: {secret}"),
    )?;
    ensure(
        h["clientConfig"]["service"]
            == json!({"name": fullname, "namespace": n, "path": "/mutate", "port": 443}),
        || format!("clientConfig: {}", h["clientConfig"]),
    )?;
    // The generated certificate works with the binary's TLS stack and names the Service.
    let decode = |k: &str| -> Result<String, String> {
        let raw = secret["data"][k].as_str().ok_or(format!("no {k}"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    };
    let (crt, key) = (decode("tls.crt")?, decode("tls.key")?);
    std::fs::write(dir.join("tls.crt"), &crt).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("tls.key"), &key).map_err(|e| e.to_string())?;
    stellar_peer_injector::server::tls::CertWatcher::load(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
    )
    .map_err(|e| format!("the binary cannot load the chart's certificate: {e}"))?;
    server_dry_run(&n, &helm_yaml)?;

    // cert-manager: only the render is checked here (cert-manager's CRDs are on the bed only
    // once `chart::cert_manager_mode_issues_injects_ca_and_renews` installed them; that trial
    // installs the chart in this mode for real).
    let cm = docs(&render(
        &dir,
        release,
        &n,
        "cert-manager",
        &json!({"certs": {"mode": "cert-manager"}}),
    )?)?;
    let k = kinds(&cm);
    ensure(
        k.get("Certificate") == Some(&2)
            && k.get("Issuer") == Some(&2)
            && !k.contains_key("Secret"),
        || format!("cert-manager kinds: {k:?}"),
    )?;
    let cfg = one(&cm, "MutatingWebhookConfiguration")?;
    ensure(
        cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            == format!("{n}/{fullname}-serving"),
        || format!("annotations: {}", cfg["metadata"]["annotations"]),
    )?;
    ensure(hook(&cm)?["clientConfig"].get("caBundle").is_none(), || {
        "cert-manager mode must leave caBundle to the CA injector".into()
    })?;
    let serving = cm
        .iter()
        .find(|d| {
            d["kind"] == "Certificate" && d["metadata"]["name"] == format!("{fullname}-serving")
        })
        .ok_or("no serving Certificate")?;
    ensure(
        serving["spec"]["secretName"] == format!("{fullname}-tls")
            && serving["spec"]["dnsNames"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(format!("{fullname}.{n}.svc")))),
        || format!("serving Certificate: {serving}"),
    )?;

    // cert-manager in URL mode: the Certificate also names the URL's host (an IP SAN for
    // an IP, a DNS name otherwise) and the CA injector fills caBundle, unless
    // webhook.caBundle is given.
    for (url, field, host) in [
        ("https://127.0.0.1:8443/mutate", "ipAddresses", "127.0.0.1"),
        ("https://[::1]:8443/mutate", "ipAddresses", "::1"),
        (
            "https://injector.example.org/mutate",
            "dnsNames",
            "injector.example.org",
        ),
    ] {
        let d = docs(&render(
            &dir,
            release,
            &n,
            "cert-manager-url",
            &json!({"certs": {"mode": "cert-manager"}, "webhook": {"url": url}}),
        )?)?;
        let c = named(&d, "Certificate", &format!("{fullname}-serving"))?;
        ensure(
            c["spec"][field]
                .as_array()
                .is_some_and(|a| a.contains(&json!(host))),
            || format!("{url}: the serving Certificate lacks {field} {host}: {c}"),
        )?;
        ensure(
            c["spec"]["dnsNames"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(format!("{fullname}.{n}.svc")))),
            || format!("{url}: the serving Certificate lost the Service names: {c}"),
        )?;
        let cfg = one(&d, "MutatingWebhookConfiguration")?;
        ensure(
            cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == format!("{n}/{fullname}-serving")
                && hook(&d)?["clientConfig"] == json!({"url": url}),
            || format!("{url}: webhook configuration: {cfg}"),
        )?;
    }
    let d = docs(&render(
        &dir,
        release,
        &n,
        "cert-manager-url-ca",
        &json!({"certs": {"mode": "cert-manager"},
                "webhook": {"url": "https://127.0.0.1:8443/mutate", "caBundle": b64("x")}}),
    )?)?;
    let cfg = one(&d, "MutatingWebhookConfiguration")?;
    ensure(
        cfg["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("cert-manager.io/inject-ca-from").is_none())
            && hook(&d)?["clientConfig"]["caBundle"] == b64("x"),
        || format!("a given webhook.caBundle must be kept, not injected: {cfg}"),
    )?;

    // secret: the user's Secret and CA bundle, plus the optional parts switched on.
    let certs = make_certs("chart")?;
    let ca = std::fs::read_to_string(certs.join("ca.crt")).map_err(|e| e.to_string())?;
    let secret_values = json!({
        "certs": {"mode": "secret", "secretName": "my-tls", "caBundle": b64(&ca)},
        "crds": {"install": true},
        "extraPeers": {"mainnet": [{"address": "core-live-a.stellar.org:11625", "preferred": true}]},
        "serviceMonitor": {"enabled": true},
        "peerResolution": {"interval": "1m", "grace": "5m", "dnsServer": "10.96.0.10:53"},
    });
    let secret_yaml = render(&dir, release, &n, "secret", &secret_values)?;
    let sd = docs(&secret_yaml)?;
    let k = kinds(&sd);
    ensure(
        !k.contains_key("Secret")
            && k.get("CustomResourceDefinition") == Some(&1)
            && k.get("ConfigMap") == Some(&1)
            && k.get("ServiceMonitor") == Some(&1),
        || format!("secret-mode kinds: {k:?}"),
    )?;
    ensure(hook(&sd)?["clientConfig"]["caBundle"] == b64(&ca), || {
        "caBundle".into()
    })?;
    let dep = one(&sd, "Deployment")?;
    let vols = &dep["spec"]["template"]["spec"]["volumes"];
    ensure(
        vols.as_array()
            .is_some_and(|v| v.iter().any(|v| v["secret"]["secretName"] == "my-tls")),
        || format!("volumes: {vols}"),
    )?;
    let args = deployment_args(&sd)?;
    ensure(
        args.iter()
            .any(|a| a == "--extra-peers=/config/extra-peers.yaml"),
        || format!("args: {args:?}"),
    )?;
    for want in [
        "--dns-server=10.96.0.10:53",
        "--resolve-check-interval=1m",
        "--resolve-grace=5m",
    ] {
        ensure(args.iter().any(|a| a == want), || {
            format!("{want} missing from args: {args:?}")
        })?;
    }
    let extra = one(&sd, "ConfigMap")?["data"]["extra-peers.yaml"]
        .as_str()
        .ok_or("no extra-peers.yaml")?
        .to_owned();
    let parsed = stellar_peer_injector::peers::ExtraPeers::parse(&extra)
        .map_err(|e| format!("the binary rejects the chart's extra peers: {e}\n{extra}"))?;
    ensure(
        parsed
            .networks
            .get("mainnet")
            .is_some_and(|l| l.len() == 1 && l[0].preferred),
        || format!("extra peers: {parsed:?}"),
    )?;
    let crd = one(&sd, "CustomResourceDefinition")?;
    ensure(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            && crd["spec"]["group"] == "stellar.org",
        || format!("CRD metadata: {}", crd["metadata"]),
    )?;
    // The ServiceMonitor CRD is not on the bed; everything else goes to the API server.
    let without_sm: Vec<String> = sd
        .iter()
        .filter(|d| d["kind"] != "ServiceMonitor")
        .map(|d| serde_yaml::to_string(d).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    server_dry_run(&n, &without_sm.join("---\n"))?;

    // URL mode: the API server calls the URL with the given CA; no Service reference.
    let url_values = json!({
        "replicaCount": 0,
        "webhook": {"url": "https://127.0.0.1:8443/mutate", "caBundle": b64(&ca)},
        "certs": {"mode": "secret", "secretName": "my-tls"},
    });
    let ud = docs(&render(&dir, release, &n, "url", &url_values)?)?;
    let cc = hook(&ud)?["clientConfig"].clone();
    ensure(
        cc == json!({"url": "https://127.0.0.1:8443/mutate", "caBundle": b64(&ca)}),
        || format!("URL-mode clientConfig: {cc}"),
    )?;
    ensure(
        one(&ud, "Deployment")?["spec"]["replicas"] == 0
            && !kinds(&ud).contains_key("PodDisruptionBudget"),
        || "replicaCount 0 must render no PDB".into(),
    )?;

    // Watched namespaces: RoleBindings there instead of a ClusterRoleBinding, and the
    // webhook limited to them.
    let nd = docs(&render(
        &dir,
        release,
        &n,
        "namespaces",
        &json!({"namespaces": ["a", "b"]}),
    )?)?;
    let k = kinds(&nd);
    ensure(
        k.get("ClusterRoleBinding") == Some(&1)
            && one(&nd, "ClusterRoleBinding")?["roleRef"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-namespaces"))
            && k.get("RoleBinding") == Some(&3),
        || format!("namespaced RBAC kinds: {k:?}"),
    )?;
    ensure(
        hook(&nd)?["namespaceSelector"]["matchExpressions"][1]
            == json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}),
        || "namespaces must limit the webhook".into(),
    )?;

    // The schema rejects wrong types and values before anything renders.
    for (bad, path) in [
        ("replicaCount=two", "/replicaCount"),
        ("webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"),
        ("certs.mode=vault", "/certs/mode"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("rollout.maxConcurrent=0", "/rollout/maxConcurrent"),
        (
            "peerResolution.dnsServer=kube-dns",
            "/peerResolution/dnsServer",
        ),
        ("peerResolution.interval=often", "/peerResolution/interval"),
    ] {
        let args = ["template", release, chart.as_str(), "--set", bad];
        let out = tool("helm", &args, None)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure(
            !out.status.success() && err.contains("schema") && err.contains(path),
            || {
                format!(
                    "--set {bad} was not rejected by the schema: {}",
                    describe("helm", &args, &out)
                )
            },
        )?;
    }
    // And the template checks what the schema cannot.
    let out = tool(
        "helm",
        &["template", release, &chart, "--set", "certs.mode=secret"],
        None,
    )?;
    ensure(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("certs.secretName"),
        || "certs.mode=secret without certs.secretName must fail".into(),
    )?;
    Ok(())
}

/// A kubeconfig for the bed's API server that authenticates with `token`.
fn token_kubeconfig(dir: &Path, token: &str, ns: &str) -> Result<PathBuf, String> {
    let bed = bed()?;
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&bed.kubeconfig).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    ensure(cluster["server"].is_string(), || {
        "admin kubeconfig has no server".into()
    })?;
    let kc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": cluster}],
        "users": [{"name": "injector", "user": {"token": token}}],
        "contexts": [{"name": "injector", "context": {"cluster": "testbed", "user": "injector", "namespace": ns}}],
        "current-context": "injector",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kc.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

async fn client_from(kubeconfig: &Path) -> Result<Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(cfg).map_err(|e| e.to_string())
}

/// `kubectl auth can-i VERB RESOURCE -n NS --as=<sa>`: true for "yes".
fn can_i(sa: &str, ns: &str, verb: &str, resource: &str) -> Result<bool, String> {
    let out = tool(
        "kubectl",
        &[
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            ns,
            &format!("--as={sa}"),
        ],
        None,
    )?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match said.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!(
            "kubectl auth can-i {verb} {resource}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

pub async fn chart_rbac_is_enough_for_the_injector() -> TestResult {
    // The release namespace (ServiceAccount, Lease) and a workload namespace.
    let rel = TestNs::new("chartrel").await?;
    let wl = TestNs::new("chartwl").await?;
    let dir = scratch(&rel.name)?;
    // Cluster-scoped objects are named after the release: one release name per test run.
    let release = format!("r-{}", rel.name);
    let fullname = format!("{release}-{CHART_NAME}");
    let sa_user = format!("system:serviceaccount:{}:{fullname}", rel.name);
    let chart = chart_dir().display().to_string();
    // URL mode, no pods; the webhook only sees the workload namespace, so nothing else on
    // the bed is affected. The URL is a placeholder until the injector runs.
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "certs": {"mode": "helm"},
        "webhook": {
            "url": "https://127.0.0.1:1/mutate",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": wl.name}},
        },
    });
    let file = values_file(&dir, "install", &values)?;
    helm(&[
        "install",
        &release,
        &chart,
        "--namespace",
        &rel.name,
        "--values",
        &file,
    ])?;
    let result = async {
        // The RBAC authorizer learns new bindings from a watch: wait for the first grant.
        wait_for(
            Duration::from_secs(15),
            "the chart's ClusterRoleBinding to apply",
            || {
                let sa_user = sa_user.clone();
                let ns = wl.name.clone();
                async move {
                    can_i(&sa_user, &ns, "list", "stellarnodes.stellar.org")
                        .ok()
                        .filter(|ok| *ok)
                        .map(|_| ())
                }
            },
        )
        .await?;
        // What the ServiceAccount may and may not do.
        for (verb, resource, ns, want) in [
            ("list", "secrets", &wl.name, false),
            ("get", "secrets", &rel.name, false),
            ("create", "pods", &wl.name, false),
            ("delete", "namespaces", &wl.name, false),
            ("watch", "namespaces", &wl.name, true),
            ("update", "statefulsets.apps", &wl.name, false),
            ("create", "leases.coordination.k8s.io", &wl.name, false),
            ("watch", "stellarnodes.stellar.org", &wl.name, true),
            ("patch", "statefulsets.apps", &wl.name, true),
            ("patch", "deployments.apps", &wl.name, true),
            ("delete", "pods", &wl.name, true),
            ("create", "events.events.k8s.io", &wl.name, true),
            ("patch", "events.events.k8s.io", &wl.name, false),
            ("create", "leases.coordination.k8s.io", &rel.name, true),
            (
                "update",
                "leases.coordination.k8s.io/stellar-peer-injector",
                &rel.name,
                true,
            ),
        ] {
            let got = can_i(&sa_user, ns, verb, resource)?;
            ensure_eq!(got, want, "{sa_user} can-i {verb} {resource} -n {ns}")?;
        }

        // A token of the chart's ServiceAccount (TokenRequest) and a kubeconfig with it.
        let sas: Api<ServiceAccount> = rel.api();
        let tr: TokenRequest = sas
            .create_subresource(
                "token",
                &fullname,
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![],
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("TokenRequest for {fullname}: {e}"))?;
        let token = tr.status.ok_or("TokenRequest without status")?.token;
        let kubeconfig = token_kubeconfig(&dir, &token, &wl.name)?;
        // The token works, and is refused outside the role.
        let sa_client = client_from(&kubeconfig).await?;
        match Api::<Secret>::namespaced(sa_client.clone(), &wl.name)
            .list(&ListParams::default())
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => return Err(format!("listing secrets with the chart's token: {other:?}")),
        }
        Api::<StellarNode>::namespaced(sa_client, &wl.name)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing StellarNodes with the chart's token: {e}"))?;

        // The injector with only that token; the release namespace first, so it holds the
        // Lease there (Injector::start passes --lease-namespace <first namespace>).
        let inj = Injector::start(
            &format!("{},{}", rel.name, wl.name),
            &kubeconfig,
            &["--debounce", "1s"],
            true,
        )
        .await?;
        // Point the chart's own webhook at it (URL mode).
        helm(&[
            "upgrade",
            &release,
            &chart,
            "--namespace",
            &rel.name,
            "--reuse-values",
            "--set",
            &format!("webhook.url={}", inj.url()),
            "--set",
            &format!("webhook.caBundle={}", b64(&inj.ca_pem()?)),
        ])?;
        // The API server picks the change up asynchronously.
        tokio::time::sleep(Duration::from_millis(2000)).await;

        let inner = async {
            for v in ["v1", "v2"] {
                wl.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
                    .await?;
            }
            for v in ["v1", "v2"] {
                wl.create::<StatefulSet>(operator_statefulset(v, "Validator", "testnet", 1))
                    .await?;
            }
            wait_peers(&wl, "v1", &[svc("v2", &wl.name)], 60).await?;
            wait_peers(&wl, "v2", &[svc("v1", &wl.name)], 60).await?;

            // A new validator: the rollout loop annotates v1 and v2 and they roll.
            wl.create::<StellarNode>(stellar_node("v3", "Validator", "testnet", false))
                .await?;
            wl.create::<StatefulSet>(operator_statefulset("v3", "Validator", "testnet", 1))
                .await?;
            wait_peers(&wl, "v3", &[svc("v1", &wl.name), svc("v2", &wl.name)], 60).await?;
            wait_peers(&wl, "v1", &[svc("v2", &wl.name), svc("v3", &wl.name)], 120).await?;
            wait_peers(&wl, "v2", &[svc("v1", &wl.name), svc("v3", &wl.name)], 120).await?;
            let sts = wl
                .api::<StatefulSet>()
                .get("v1")
                .await
                .map_err(|e| e.to_string())?;
            let template_hash = sts
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("stellar.org/peers-hash").cloned());
            ensure(template_hash.is_some(), || {
                "v1's template was not annotated".into()
            })?;
            // Events were recorded, and the Lease in the release namespace is held.
            let events: Api<k8s_openapi::api::events::v1::Event> = wl.api();
            let evs = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            ensure(
                evs.items
                    .iter()
                    .filter(|e| e.reason.as_deref() == Some("PeersChanged"))
                    .count()
                    >= 2,
                || {
                    format!(
                        "PeersChanged Events: {:?}",
                        evs.items
                            .iter()
                            .map(|e| (&e.reason, &e.note))
                            .collect::<Vec<_>>()
                    )
                },
            )?;
            let lease = rel
                .api::<Lease>()
                .get("stellar-peer-injector")
                .await
                .map_err(|e| e.to_string())?;
            ensure(
                lease
                    .spec
                    .and_then(|s| s.holder_identity)
                    .is_some_and(|h| !h.is_empty()),
                || "the Lease has no holder".into(),
            )?;
            let log = inj.log_text();
            ensure(
                !log.contains("forbidden") && !log.contains("Forbidden"),
                || format!("the injector was refused something:\n{log}"),
            )?;
            Ok::<(), String>(())
        }
        .await;
        inner.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
    }
    .await;
    // Removes the cluster-scoped objects too (ClusterRole, binding, webhook configuration).
    let uninstall = helm(&["uninstall", &release, "--namespace", &rel.name, "--wait"]);
    result?;
    uninstall.map(|_| ())
}

/// The rendered object of `kind` named `name`.
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, String> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| format!("no {kind} {name} rendered (kinds: {:?})", kinds(docs)))
}

/// The chart's remote-reader objects are `remote-secret`'s: same kinds, names,
/// namespaces, rules, subjects and token Secret (src/remote_secret.rs is the source).
fn check_reader_objects(docs: &[Value], ns: &str) -> TestResult {
    use stellar_peer_injector::cmd::remote_secret::reader_objects;
    let o = reader_objects(ns);
    let want = [
        ("ServiceAccount", serde_json::to_value(&o.service_account)),
        ("ClusterRole", serde_json::to_value(&o.cluster_role)),
        (
            "ClusterRoleBinding",
            serde_json::to_value(&o.cluster_role_binding),
        ),
        ("Role", serde_json::to_value(&o.role)),
        ("RoleBinding", serde_json::to_value(&o.role_binding)),
        ("Secret", serde_json::to_value(&o.token_secret)),
    ];
    for (kind, w) in want {
        let w = w.map_err(|e| e.to_string())?;
        let name = w["metadata"]["name"].as_str().unwrap_or_default();
        let got = named(docs, kind, name)?;
        ensure_eq!(
            got["metadata"]["namespace"],
            w["metadata"]["namespace"],
            "{kind} {name}: namespace"
        )?;
        for (k, v) in w["metadata"]["labels"].as_object().into_iter().flatten() {
            ensure_eq!(got["metadata"]["labels"][k], *v, "{kind} {name}: label {k}")?;
        }
        for (k, v) in w["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            ensure_eq!(
                got["metadata"]["annotations"][k],
                *v,
                "{kind} {name}: annotation {k}"
            )?;
        }
        for field in [
            "rules",
            "subjects",
            "roleRef",
            "type",
            "automountServiceAccountToken",
        ] {
            ensure_eq!(
                got[field],
                w[field],
                "{kind} {name}: {field} (chart vs remote-secret)"
            )?;
        }
    }
    Ok(())
}

pub async fn chart_multicluster_links_clusters_and_makes_a_least_privilege_reader() -> TestResult {
    use stellar_peer_injector::cmd::remote_secret::{self as rs, LinkCredentials};
    let rel = TestNs::new("chartmc").await?;
    let other = TestNs::new("chartmo").await?;
    let n = rel.name.clone();
    let dir = scratch(&n)?;
    let release = format!("r-{n}");
    let fullname = format!("{release}-{CHART_NAME}");
    let chart = chart_dir().display().to_string();
    // A link to a cluster "b", in the form `remote-secret` prints.
    let creds = LinkCredentials {
        cluster: "b".into(),
        server: "https://127.0.0.1:1".into(),
        ca_pem: None,
        token: "not-a-real-token".into(),
        namespace: "spi-b".into(),
    };
    let kubeconfig = rs::kubeconfig_yaml(&creds).map_err(|e| e.to_string())?;
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "certs": {"mode": "helm"},
        "webhook": {
            "url": "https://127.0.0.1:1/mutate",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other.name}},
        },
        "multicluster": {
            "enabled": true,
            "clusterName": "a",
            "syncTimeout": "20s",
            "remoteSecrets": [{"clusterName": "b", "kubeconfig": kubeconfig, "leaseNamespace": "spi-b"}],
            "remoteReader": {"create": true},
        },
    });

    // Rendered: the flags, the link Secret, the injector's Secret Role, the reader.
    let d = docs(&render(&dir, &release, &n, "multicluster", &values)?)?;
    let args: Vec<String> =
        one(&d, "Deployment")?["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .ok_or("no args")?
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect();
    for want in [
        format!("--remote-secret-namespace={n}"),
        "--cluster-name=a".to_owned(),
        "--remote-sync-timeout=20s".to_owned(),
    ] {
        ensure(args.contains(&want), || {
            format!("Deployment args lack {want}: {args:?}")
        })?;
    }
    // The rest parses with the binary's CLI.
    let argv = std::iter::once("stellar-peer-injector".to_owned()).chain(args.iter().cloned());
    stellar_peer_injector::cli::Cli::try_parse_from(argv)
        .map_err(|e| format!("the chart's args {args:?} do not parse: {e}"))?;
    let link = named(&d, "Secret", &rs::link_secret_name("b"))?;
    let want = serde_json::to_value(rs::link_secret(&creds, &n).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    ensure_eq!(
        link["metadata"]["annotations"],
        want["metadata"]["annotations"],
        "link Secret annotations"
    )?;
    ensure_eq!(
        link["metadata"]["labels"]["stellar.org/remote-cluster"],
        "true",
        "link Secret label"
    )?;
    let secret: Secret = serde_json::from_value(link.clone()).map_err(|e| e.to_string())?;
    let parsed = stellar_peer_injector::watch::remote::Link::from_secret(&secret)
        .map_err(|e| format!("the injector refuses the chart's link Secret: {e}"))?;
    ensure_eq!(parsed.cluster, "b", "linked cluster")?;
    let secrets_role = named(&d, "Role", &format!("{fullname}-remote-secrets"))?;
    ensure_eq!(
        secrets_role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "get", "update", "delete"]}
        ]),
        "the injector's Role for link Secrets and rollout flags"
    )?;
    ensure_eq!(
        secrets_role["metadata"]["namespace"],
        json!(n),
        "Secret Role namespace"
    )?;
    ensure_eq!(
        named(&d, "RoleBinding", &format!("{fullname}-remote-secrets"))?["subjects"],
        json!([{"kind": "ServiceAccount", "name": fullname, "namespace": n}]),
        "Secret RoleBinding"
    )?;
    check_reader_objects(&d, &n)?;
    let all: Vec<String> = d
        .iter()
        .map(|x| serde_yaml::to_string(x).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    server_dry_run(&n, &all.join("---\n"))?;
    // Off by default: none of it.
    let plain = docs(&render(&dir, &release, &n, "plain", &json!({}))?)?;
    ensure(
        !plain.iter().any(|x| {
            x["metadata"]["name"]
                .as_str()
                .is_some_and(|m| m.contains("remote"))
        }) && !deployment_args(&plain)?
            .iter()
            .any(|a| a.contains("remote")),
        || "multicluster objects or flags rendered although disabled".into(),
    )?;
    // Wrong values are refused, saying which.
    for (bad, says) in [
        (vec!["multicluster.enabled=true"], "clusterName"),
        (
            vec![
                "multicluster.enabled=true",
                "multicluster.clusterName=Cluster A",
            ],
            "/multicluster/clusterName",
        ),
        (
            vec!["multicluster.syncTimeout=1h"],
            "/multicluster/syncTimeout",
        ),
        (
            vec!["multicluster.remoteSecrets[0].clusterName=b"],
            "kubeconfig",
        ),
    ] {
        let mut args = vec!["template", release.as_str(), chart.as_str()];
        for b in &bad {
            args.extend(["--set", b]);
        }
        let out = tool("helm", &args, None)?;
        ensure(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(says),
            || format!("{bad:?} was not refused: {}", describe("helm", &args, &out)),
        )?;
    }

    // Installed: what the reader and the injector may do.
    let file = values_file(&dir, "install", &values)?;
    helm(&[
        "install",
        &release,
        &chart,
        "--namespace",
        &n,
        "--values",
        &file,
    ])?;
    let reader = format!("system:serviceaccount:{n}:{}", rs::READER_NAME);
    let injector = format!("system:serviceaccount:{n}:{fullname}");
    let result = async {
        wait_for(
            Duration::from_secs(15),
            "the reader's ClusterRoleBinding to apply",
            || {
                let (reader, ns) = (reader.clone(), other.name.clone());
                async move {
                    can_i(&reader, &ns, "list", "stellarnodes.stellar.org")
                        .ok()
                        .filter(|ok| *ok)
                        .map(|_| ())
                }
            },
        )
        .await?;
        let o = other.name.as_str();
        for (who, verb, resource, ns, want) in [
            (&reader, "list", "stellarnodes.stellar.org", o, true),
            (&reader, "watch", "stellarnodes.stellar.org", o, true),
            (&reader, "get", "stellarnodes.stellar.org", n.as_str(), true),
            (
                &reader,
                "get",
                "leases.coordination.k8s.io",
                n.as_str(),
                true,
            ),
            (&reader, "get", "leases.coordination.k8s.io", o, false),
            (
                &reader,
                "list",
                "leases.coordination.k8s.io",
                n.as_str(),
                false,
            ),
            (
                &reader,
                "create",
                "leases.coordination.k8s.io",
                n.as_str(),
                false,
            ),
            (
                &reader,
                "update",
                "leases.coordination.k8s.io",
                n.as_str(),
                false,
            ),
            (
                &reader,
                "delete",
                "leases.coordination.k8s.io",
                n.as_str(),
                false,
            ),
            (&reader, "create", "stellarnodes.stellar.org", o, false),
            (&reader, "update", "stellarnodes.stellar.org", o, false),
            (&reader, "get", "secrets", n.as_str(), false),
            (&reader, "list", "secrets", o, false),
            (&reader, "list", "pods", n.as_str(), false),
            (&reader, "list", "pods", o, false),
            (&reader, "list", "configmaps", o, false),
            (&reader, "list", "statefulsets.apps", o, true),
            (&reader, "watch", "statefulsets.apps", o, false),
            (&reader, "patch", "statefulsets.apps", o, false),
            (&injector, "watch", "secrets", n.as_str(), true),
            (&injector, "list", "secrets", n.as_str(), true),
            (&injector, "get", "secrets", n.as_str(), true),
            (
                &injector,
                "delete",
                "leases.coordination.k8s.io",
                n.as_str(),
                true,
            ),
            (&injector, "delete", "leases.coordination.k8s.io", o, false),
            (&injector, "watch", "secrets", o, false),
            (&injector, "list", "secrets", o, false),
            (&injector, "create", "secrets", n.as_str(), false),
        ] {
            let got = can_i(who, ns, verb, resource)?;
            ensure_eq!(got, want, "{who} can-i {verb} {resource} -n {ns}")?;
        }
        // The token controller fills the reader's Secret (what remote-secret prefers).
        let secrets: Api<Secret> = rel.api();
        wait_for(Duration::from_secs(30), "the reader's token", || {
            let secrets = secrets.clone();
            async move {
                let s = secrets.get(rs::TOKEN_SECRET_NAME).await.ok()?;
                s.data?.get("token").filter(|t| !t.0.is_empty()).map(|_| ())
            }
        })
        .await?;
        // The chart's link Secret is there as the injector lists it.
        let links = secrets
            .list(&ListParams::default().labels("stellar.org/remote-cluster=true"))
            .await
            .map_err(|e| e.to_string())?;
        ensure_eq!(
            links.items.len(),
            1,
            "link Secrets in the release namespace"
        )?;
        Ok::<(), String>(())
    }
    .await;
    let uninstall = helm(&["uninstall", &release, "--namespace", &n, "--wait"]);
    result?;
    uninstall.map(|_| ())
}

/// A namespaced cert-manager resource (`certificates`, `issuers`, ...) as dynamic objects.
fn cert_manager_api(client: &Client, ns: &str, kind: &str) -> Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", kind);
    let ar = kube::api::ApiResource::from_gvk(&gvk);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// The Ready condition of a cert-manager Certificate: (status, reason, message).
async fn certificate_ready(
    api: &Api<kube::api::DynamicObject>,
    name: &str,
) -> Option<(String, String, String)> {
    let c = api.get(name).await.ok()?;
    let conds = c.data["status"]["conditions"].as_array()?.clone();
    conds.iter().find(|c| c["type"] == "Ready").map(|c| {
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
        (s("status"), s("reason"), s("message"))
    })
}

/// `tls.crt`, `tls.key` and `ca.crt` of a TLS Secret, as text; `None` while it is missing
/// or incomplete.
async fn tls_secret(api: &Api<Secret>, name: &str) -> Option<(String, String, String)> {
    let s = api.get_opt(name).await.ok()??;
    let data = s.data?;
    let get = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
    };
    Some((get("tls.crt")?, get("tls.key")?, get("ca.crt")?))
}

/// Writes a Secret's files into `dir` the way the kubelet updates a mounted Secret: each
/// file replaced whole (written aside, then renamed over), never seen half-written.
fn sync_tls_files(dir: &Path, (crt, key, ca): &(String, String, String)) -> TestResult {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in [("ca.crt", ca), ("tls.key", key), ("tls.crt", crt)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// The decoded caBundle of the first webhook of a MutatingWebhookConfiguration (empty
/// while there is none).
async fn webhook_ca_bundle(client: &Client, name: &str) -> Result<String, String> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let cfg = api.get(name).await.map_err(|e| format!("{name}: {e}"))?;
    let bundle = cfg
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|w| w.client_config.ca_bundle)
        .map(|b| b.0)
        .unwrap_or_default();
    String::from_utf8(bundle).map_err(|e| format!("caBundle is not text: {e}"))
}

pub async fn chart_cert_manager_mode_issues_injects_ca_and_renews() -> TestResult {
    use testkit::certmanager::{self, CertManager};
    let bed = bed()?;
    let rel = TestNs::new("chartcm").await?;
    let wl = TestNs::new("chartcmwl").await?;
    let n = rel.name.clone();
    let dir = scratch(&n)?;
    let release = format!("r-{n}");
    let fullname = format!("{release}-{CHART_NAME}");
    let chart = chart_dir().display().to_string();

    // cert-manager's CRDs, and its controller and cainjector, watching the release
    // namespace only (where the chart puts its Issuers, Certificates and Secrets).
    certmanager::install_crds(bed)?;
    let cm = CertManager::start(bed, &n)?;
    cm.wait_running(Duration::from_secs(60)).await?;
    // Nothing of cert-manager's listens beyond loopback.
    let (ctl, inj_l) = cm.listeners()?;
    ensure(
        ctl.iter()
            .any(|l| l.addr.port() == cm.metrics_port && l.addr.ip().is_loopback()),
        || format!("the controller's metrics listener is not among {ctl:?}"),
    )?;
    ensure(
        ctl.iter().chain(&inj_l).all(|l| l.addr.ip().is_loopback()),
        || {
            format!(
                "cert-manager listens beyond loopback: controller {ctl:?}, cainjector {inj_l:?}"
            )
        },
    )?;

    // URL mode on 127.0.0.1 (the API server cannot reach a Service's ClusterIP on the bed,
    // and kwok pods run nothing): the Certificate then also names 127.0.0.1. No replicas;
    // the webhook sees the workload namespace only. The port is a placeholder until the
    // injector runs.
    let values = json!({
        "replicaCount": 0,
        "crds": {"install": false},
        "certs": {"mode": "cert-manager"},
        "webhook": {
            "url": "https://127.0.0.1:1/mutate",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": wl.name}},
        },
    });
    let file = values_file(&dir, "install", &values)?;
    helm(&[
        "install",
        &release,
        &chart,
        "--namespace",
        &n,
        "--values",
        &file,
    ])?;
    let result = async {
        let certs = cert_manager_api(&rel.client, &n, "Certificate");
        let serving = format!("{fullname}-serving");
        let tls_name = format!("{fullname}-tls");
        let secrets: Api<Secret> = rel.api();

        // Issued: the CA Certificate, then the serving one, Ready; the Secret written.
        for name in [format!("{fullname}-ca"), serving.clone()] {
            wait_for(
                Duration::from_secs(90),
                &format!("Certificate {name} Ready"),
                || {
                    let (certs, name) = (certs.clone(), name.clone());
                    async move {
                        certificate_ready(&certs, &name)
                            .await
                            .filter(|(s, ..)| s == "True")
                    }
                },
            )
            .await?;
        }
        let first = wait_for(Duration::from_secs(30), "the serving Secret", || {
            let (secrets, name) = (secrets.clone(), tls_name.clone());
            async move { tls_secret(&secrets, &name).await }
        })
        .await?;
        let ca_secret = tls_secret(&secrets, &format!("{fullname}-ca"))
            .await
            .ok_or("the CA Secret is missing")?;
        ensure_eq!(
            first.2.trim(),
            ca_secret.0.trim(),
            "the serving Secret's ca.crt is the chart's CA"
        )?;
        let cert = certs.get(&serving).await.map_err(|e| e.to_string())?;
        ensure_eq!(
            cert.data["spec"]["ipAddresses"],
            json!(["127.0.0.1"]),
            "the serving Certificate names the webhook URL's host"
        )?;

        // cainjector fills the webhook's caBundle with that CA.
        let bundle = wait_for(
            Duration::from_secs(90),
            "cainjector to fill caBundle",
            || {
                let (client, name) = (rel.client.clone(), fullname.clone());
                async move {
                    webhook_ca_bundle(&client, &name)
                        .await
                        .ok()
                        .filter(|b| !b.is_empty())
                }
            },
        )
        .await?;
        ensure_eq!(
            bundle.trim(),
            ca_secret.0.trim(),
            "the injected caBundle is the CA that signed the serving certificate"
        )?;

        // The injector serves the Secret's files. The test plays the kubelet's part: in a
        // pod the Secret is a mounted volume that the kubelet keeps in sync; kwok runs no
        // containers and mounts nothing, so the files are written here, from the Secret.
        let tls_dir = dir.join("tls");
        sync_tls_files(&tls_dir, &first)?;
        let bedc = &bed.kubeconfig;
        let mut attempt = 0;
        let inj = loop {
            attempt += 1;
            let inj = Serve::new(&format!("{n},{}", wl.name), bedc)
                .certs(&tls_dir)
                .args(["--tls-reload-interval", "500ms", "--lease-namespace", &n])
                .args(["--rollout", "off"])
                .rust_log("info,stellar_peer_injector=debug")
                .log(&bed.state.join("logs"), &format!("cm-{n}"))
                .spawn()?;
            match inj
                .wait_ready(Duration::from_secs(30), Duration::from_millis(200))
                .await
            {
                Ok(_) => break inj,
                Err(e) => {
                    let log = inj.log_text();
                    if !(log.contains("ddress already in use") && attempt < 3) {
                        return Err(format!("{e}\ninjector log:\n{log}"));
                    }
                }
            }
        };
        let pid = inj.pid();
        let inner = async {
            // It presents the Secret's certificate, which the injected CA verifies for
            // 127.0.0.1, as the API server will.
            let served = certmanager::served_certificate(inj.port, &bundle).await?;
            ensure(served == certmanager::pem_to_der(&first.0)?, || {
                "the injector does not serve the Secret's certificate".into()
            })?;

            // Point the webhook at it; the Certificate's hosts do not change (same host).
            helm(&[
                "upgrade",
                &release,
                &chart,
                "--namespace",
                &n,
                "--reuse-values",
                "--set",
                &format!("webhook.url={}", inj.url()),
            ])?;
            let after = webhook_ca_bundle(&rel.client, &fullname).await?;
            ensure_eq!(after.trim(), bundle.trim(), "caBundle after the upgrade")?;

            // The API server calls it: pods in the workload namespace get their peers.
            // (Until it sees the new URL, pod creation is refused and the StatefulSet
            // controller retries.)
            for v in ["v1", "v2"] {
                wl.create::<StellarNode>(stellar_node(v, "Validator", "testnet", false))
                    .await?;
            }
            wl.create::<StatefulSet>(operator_statefulset("v1", "Validator", "testnet", 1))
                .await?;
            wait_peers(&wl, "v1", &[svc("v2", &wl.name)], 90).await?;

            // Renewal: delete the Secret; cert-manager issues a new certificate (new key,
            // rotationPolicy Always) from the same CA.
            secrets
                .delete(&tls_name, &Default::default())
                .await
                .map_err(|e| format!("delete {tls_name}: {e}"))?;
            let second = wait_for(Duration::from_secs(90), "the re-issued Secret", || {
                let (secrets, name, old) = (secrets.clone(), tls_name.clone(), first.0.clone());
                async move {
                    tls_secret(&secrets, &name)
                        .await
                        .filter(|(crt, ..)| *crt != old)
                }
            })
            .await?;
            ensure_eq!(second.2.trim(), ca_secret.0.trim(), "the CA after renewal")?;
            ensure(second.1 != first.1, || {
                "the renewed key is the old one".into()
            })?;
            wait_for(Duration::from_secs(60), "Certificate Ready again", || {
                let (certs, name) = (certs.clone(), serving.clone());
                async move {
                    certificate_ready(&certs, &name)
                        .await
                        .filter(|(s, ..)| s == "True")
                }
            })
            .await?;
            // The kubelet's part again; the injector reloads the files by itself.
            sync_tls_files(&tls_dir, &second)?;
            let new_der = certmanager::pem_to_der(&second.0)?;
            wait_for(
                Duration::from_secs(30),
                "the injector to serve the renewed certificate",
                || {
                    let (bundle, new_der) = (bundle.clone(), new_der.clone());
                    let port = inj.port;
                    async move {
                        certmanager::served_certificate(port, &bundle)
                            .await
                            .ok()
                            .filter(|d| *d == new_der)
                    }
                },
            )
            .await?;
            // Connections opened from now on get the renewed certificate.
            let old_peers = certmanager::established_peers(inj.port);
            ensure_eq!(inj.pid(), pid, "the injector's pid")?;
            ensure(inj.wait_exit(Duration::ZERO).is_none(), || {
                "the injector exited".into()
            })?;
            // cainjector left the caBundle as it was: the CA did not change.
            let after = webhook_ca_bundle(&rel.client, &fullname).await?;
            ensure_eq!(after.trim(), bundle.trim(), "caBundle after renewal")?;

            // The API server calls it again over a new TLS connection (so it checks the new
            // certificate against the caBundle): wait until the connections it had opened
            // before the renewal are closed (idle keep-alives time out), then make a pod.
            wait_for(
                Duration::from_secs(180),
                "the API server's pre-renewal connections to the injector to close",
                || {
                    let old = old_peers.clone();
                    let port = inj.port;
                    async move {
                        certmanager::established_peers(port)
                            .is_disjoint(&old)
                            .then_some(())
                    }
                },
            )
            .await?;
            wl.create::<StatefulSet>(operator_statefulset("v2", "Validator", "testnet", 1))
                .await?;
            wait_peers(&wl, "v2", &[svc("v1", &wl.name)], 90).await?;
            cm.check_alive()
        }
        .await;
        inner.map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()))
    }
    .await;
    let result = result.map_err(|e| format!("{e}\n{}", cm.logs()));
    let uninstall = helm(&["uninstall", &release, "--namespace", &n, "--wait"]);
    result?;
    uninstall.map(|_| ())
}
