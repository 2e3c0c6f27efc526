//! Monitoring, checked by a real Prometheus (Debian's 2.42, unpacked by `testbed build`):
//! it scrapes real injectors, loads the chart's alert rules (rules/alerts.yaml, rendered
//! by tests/prometheus/render-rules as the promtool tests do, with only the `for`
//! durations and the selector changed), and its HTTP API is asked whether the dashboard's
//! metrics exist and whether forced conditions fire their alerts. And the documented metrics
//! table against what /metrics exposes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stellar_peer_injector::crd::StellarNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const JOB: &str = "spi-trial";
const PREFIX: &str = "stellar_peer_injector_";

fn scratch(name: &str) -> Result<PathBuf, String> {
    let dir = repo_root()
        .join("target/prometheus-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// GET over HTTP/1.0 (so that no chunked encoding comes back): (status, body).
async fn get(port: u16, path_and_query: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    split_response(&buf)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus process on 127.0.0.1, its TSDB in the trial's scratch dir; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with `config` (written to `dir/prometheus.yml`, next to the rule
    /// files it names) and waits for /-/ready; starts again on a new port if one was taken.
    async fn start(dir: &Path, config: &Value) -> Result<Self, String> {
        let bin = crate::chart_tests::bin_dir()?.join("prometheus");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config.to_string()).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let log = dir.join(format!("prometheus-{port}.log"));
            let logf =
                std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{port}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
            let mut p = Prometheus { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Ok((200, _)) = get(port, "/-/ready").await {
                    return Ok(p);
                }
                if let Ok(Some(st)) = p.child.try_wait() {
                    let text = p.log_text();
                    if text.contains("address already in use") && attempt < 3 {
                        break;
                    }
                    return Err(format!("prometheus exited ({st}):\n{text}"));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "prometheus not ready after 90 s:\n{}",
                        p.log_text()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of a successful API answer.
    async fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (code, body) = get(self.port, path_and_query).await?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{path_and_query}: {code}, not JSON ({e}): {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{path_and_query}: {code} {body}"));
        }
        Ok(v["data"].clone())
    }

    async fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let d = self
            .api(&format!("/api/v1/query?query={}", url_encode(q)))
            .await?;
        Ok(d["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts in `state` (pending, firing) named `name`.
    async fn alerts(&self, name: &str, state: &str) -> Result<Vec<Value>, String> {
        let d = self.api("/api/v1/alerts").await?;
        Ok(d["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
            .cloned()
            .collect())
    }

    async fn wait_firing(&self, name: &str, label: (&str, &str)) -> Result<Value, String> {
        wait_for_every(
            Duration::from_millis(500),
            Duration::from_secs(180),
            &format!("alert {name} firing with {}={}", label.0, label.1),
            || async {
                self.alerts(name, "firing")
                    .await
                    .ok()?
                    .into_iter()
                    .find(|a| a["labels"][label.0] == label.1)
            },
        )
        .await
    }
}

/// The chart's rules file rendered for this trial: selector job="spi-trial", every `for`
/// 2s (the shipped ones are minutes); expressions and thresholds as shipped.
fn render_rules(dir: &Path) -> Result<PathBuf, String> {
    let fors: serde_json::Map<String, Value> = [
        "noneReady",
        "cacheNotSynced",
        "admissionErrors",
        "podsDenied",
        "admissionSlow",
        "rolloutStuck",
        "noLeader",
        "certificateExpiring",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), json!("2s")))
    .collect();
    let values = dir.join("values.json");
    let v = json!({"prometheusRule": {"selector": format!("job=\"{JOB}\""), "for": fors}});
    std::fs::write(&values, v.to_string()).map_err(|e| e.to_string())?;
    let script = repo_root().join("tests/prometheus/render-rules");
    let out = Command::new(&script)
        .arg("-f")
        .arg(&values)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "render-rules: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rules = dir.join("alerts.yaml");
    std::fs::write(&rules, &out.stdout).map_err(|e| e.to_string())?;
    Ok(rules)
}

/// Metric names in a PromQL expression (`stellar_peer_injector_*` and `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find(PREFIX) {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Label names an expression uses: matcher names inside `{...}` and `by (...)` lists.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        for m in rest[i + 1..i + j].split(',') {
            let name: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = &rest[i + j + 1..];
    }
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let Some(j) = rest[i..].find(')') else { break };
        out.extend(
            rest[i + 4..i + j]
                .split(',')
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty()),
        );
        rest = &rest[i + j..];
    }
    out
}

/// Every `expr` (and query variable) of the dashboard.
fn dashboard_exprs() -> Result<Vec<String>, String> {
    let path =
        repo_root().join("charts/stellar-peer-injector/dashboards/stellar-peer-injector.json");
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&d, &mut out);
    ensure(out.len() >= 10, || {
        format!("only {} exprs found in the dashboard", out.len())
    })?;
    Ok(out)
}

/// The metric family a sample name belongs to.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// One synced injector (A, in a namespace with a StellarNode) and one that cannot list
/// StellarNodes (B: a ServiceAccount without RBAC, so its cache never syncs), both scraped
/// every second by Prometheus with the chart's alert rules. Checks: every metric and label
/// the dashboard uses is known to Prometheus (metadata for families without samples, the
/// series' labels for the others) and every dashboard expression is valid PromQL there;
/// StellarPeerInjectorCacheNotSynced fires for B and not for A; a denied pod fires
/// StellarPeerInjectorPodsDenied; StellarPeerInjectorNoneReady stays inactive; the
/// expiry gauge Prometheus has is the notAfter of the certificate A serves.
pub async fn prometheus_scrapes_the_dashboards_metrics_and_fires_alerts() -> TestResult {
    let ns = TestNs::new("prom").await?;
    let n = ns.name.clone();
    ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
        .await?;
    let bed = bed()?;
    let a = Injector::start(&n, &bed.kubeconfig, &[], true).await?;
    let forbidden = crate::injection_tests::token_kubeconfig(&ns, "no-rbac").await?;
    let b = Injector::start(&n, &forbidden, &["--rollout", "off"], false).await?;

    let dir = scratch("alerts")?;
    let rules_file = render_rules(&dir)?;
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules_file.display().to_string()],
        "scrape_configs": [{
            "job_name": JOB,
            "static_configs": [{"targets": [format!("127.0.0.1:{}", a.admin_port), format!("127.0.0.1:{}", b.admin_port)]}],
        }],
    });
    let prom = Prometheus::start(&dir, &config).await?;
    let (ia, ib) = (
        format!("127.0.0.1:{}", a.admin_port),
        format!("127.0.0.1:{}", b.admin_port),
    );
    let result = async {
        // Both targets scraped.
        wait_for_every(Duration::from_millis(500), Duration::from_secs(60), "both injectors scraped (up == 1)", || async {
            let r = prom.query(&format!("up{{job=\"{JOB}\"}} == 1")).await.ok()?;
            (r.len() == 2).then_some(())
        })
        .await?;
        // Admission traffic on A: an injected pod, then a denied one (no StellarNode
        // "ghost"); once Prometheus has the denied series, a second denial, so that
        // increase() over it is above 0.
        let (code, _) = admission_request(&a, &review_for(&n, "v1")).await?;
        ensure_eq!(code, 200, "injected review answered")?;
        let deny = || async {
            let (code, answer) = admission_request(&a, &review_for(&n, "ghost")).await?;
            ensure(code == 200 && answer["response"]["allowed"] == false, || format!("ghost was not denied: {code} {answer}"))
        };
        deny().await?;
        let denied = format!("{PREFIX}admission_requests_total{{job=\"{JOB}\",outcome=\"denied\"}}");
        wait_for(Duration::from_secs(60), "the denied series in Prometheus", || async {
            (!prom.query(&denied).await.ok()?.is_empty()).then_some(())
        })
        .await?;
        deny().await?;

        // Alerts: B never syncs, A did; the denial.
        let cns = prom.wait_firing("StellarPeerInjectorCacheNotSynced", ("instance", &ib)).await?;
        ensure(cns["annotations"]["summary"].as_str().is_some_and(|s| s.contains(&ib)), || format!("summary: {cns}"))?;
        prom.wait_firing("StellarPeerInjectorPodsDenied", ("severity", "warning")).await?;
        // And these are inactive. Waited for, not sampled: on a loaded machine a scrape of
        // A can time out, its series go stale and NoneReady turns pending for a moment; a
        // rule that is wrong stays active and fails here.
        let quiet = |name: &'static str, only: Option<String>| {
            let prom = &prom;
            async move {
                wait_for_every(Duration::from_millis(500), Duration::from_secs(60), &format!("{name} inactive{}", only.as_deref().map(|i| format!(" for {i}")).unwrap_or_default()), || async {
                    let mut active = prom.alerts(name, "pending").await.ok()?;
                    active.extend(prom.alerts(name, "firing").await.ok()?);
                    active.retain(|x| only.as_deref().is_none_or(|i| x["labels"]["instance"] == i));
                    active.is_empty().then_some(())
                })
                .await
            }
        };
        quiet("StellarPeerInjectorCacheNotSynced", Some(ia.clone())).await?;
        quiet("StellarPeerInjectorNoneReady", None).await?;
        quiet("StellarPeerInjectorCertificateExpiring", None).await?;
        // Every rule loaded and evaluated without error.
        let groups = prom.api("/api/v1/rules").await?;
        let rules: Vec<&Value> = groups["groups"].as_array().into_iter().flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten()).collect();
        // As many as the rendered file has (the chart's and the live sidecars' alerts).
        let want = std::fs::read_to_string(&rules_file)
            .map_err(|e| e.to_string())?
            .lines()
            .filter(|l| l.trim_start().starts_with("- alert: "))
            .count();
        ensure(want >= 10 && rules.len() == want, || {
            format!("{} rules loaded, want {want}: {groups}", rules.len())
        })?;
        for r in &rules {
            ensure(r["health"] == "ok", || format!("rule {} unhealthy: {r}", r["name"]))?;
        }

        // The expiry gauge is the served certificate's notAfter.
        let pem = std::fs::read(a.certs.join("tls.crt")).map_err(|e| e.to_string())?;
        let der = rustls_pemfile::certs(&mut &pem[..]).next().ok_or("no cert")?.map_err(|e| e.to_string())?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
        let want = cert.validity().not_after.timestamp() as f64;
        let got = prom.query(&format!("{PREFIX}tls_certificate_expiry_timestamp_seconds{{instance=\"{ia}\"}}")).await?;
        let v: Option<f64> = got.first().and_then(|s| s["value"][1].as_str()).and_then(|s| s.parse().ok());
        ensure_eq!(v, Some(want), "expiry gauge in Prometheus vs the certificate file")?;

        // The dashboard: its metric families are known to Prometheus; the labels it uses
        // exist on the series of those that have samples; every expression evaluates.
        let meta = prom.api(&format!("/api/v1/targets/metadata?match_target={}", url_encode(&format!("{{job=\"{JOB}\"}}")))).await?;
        let known: BTreeSet<String> = meta.as_array().into_iter().flatten()
            .filter_map(|m| m["metric"].as_str().map(str::to_owned)).collect();
        let registered: BTreeSet<String> = stellar_peer_injector::obs::metrics::Metrics::new()
            .families()
            .map(|(n, _)| n.to_owned())
            .collect();
        let mut no_samples = BTreeSet::new();
        for expr in dashboard_exprs()? {
            let names = metric_names(&expr);
            ensure(!names.is_empty(), || format!("dashboard expr without an injector metric: {expr}"))?;
            let mut labels_seen: BTreeSet<String> = BTreeSet::new();
            let mut any_series = false;
            for name in &names {
                // Prometheus 2.42's metadata lists only families that have samples, and
                // /metrics leaves out labelled families without one: those are judged by
                // the families the injector registers (Metrics::families).
                let in_prom = known.contains(family(name)) || known.contains(name.as_str());
                ensure(in_prom || registered.contains(family(name)), || {
                    format!("dashboard metric {name} is neither in what Prometheus scraped (metadata: {known:?}) nor an injector family: {registered:?}")
                })?;
                let series = prom.api(&format!("/api/v1/series?match[]={}", url_encode(&format!("{name}{{job=\"{JOB}\"}}")))).await?;
                let mut has = false;
                for s in series.as_array().into_iter().flatten() {
                    has = true;
                    labels_seen.extend(s.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
                }
                any_series |= has;
                if !has {
                    no_samples.insert(name.clone());
                }
            }
            if any_series {
                for l in label_names(&expr) {
                    ensure(labels_seen.contains(&l), || format!("dashboard expr uses label {l} that its series do not have: {expr}\nlabels: {labels_seen:?}"))?;
                }
            }
            let q = expr.replace("$__rate_interval", "1m").replace("$job", JOB);
            let q = if q.starts_with("label_values(") { format!("count by (job) ({})", q.trim_start_matches("label_values(").split(',').next().unwrap_or_default()) } else { q };
            prom.query(&q).await.map_err(|e| format!("dashboard expr does not evaluate: {e}"))?;
        }
        // Families without samples are only checked through metadata; these must have them.
        for must in ["admission_requests_total", "admission_duration_seconds_bucket", "cache_synced", "rollout_leader", "tls_certificate_expiry_timestamp_seconds"] {
            let name = format!("{PREFIX}{must}");
            ensure(!no_samples.contains(&name), || format!("{name} has no samples in Prometheus"))?;
        }
        eprintln!("dashboard metrics without samples here, checked as registered families only: {no_samples:?}");
        Ok::<(), String>(())
    }
    .await;
    result.map_err(|e| {
        format!(
            "{e}\nprometheus log:\n{}\ninjector B log tail:\n{}",
            prom.log_text(),
            b.log_text()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// The documented "## Metrics" table (docs/operations.md): (name or `prefix*` pattern,
/// type) per backticked name.
fn readme_metrics() -> Result<Vec<(String, String)>, String> {
    let readme = std::fs::read_to_string(repo_root().join("docs/operations.md"))
        .map_err(|e| e.to_string())?;
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .ok_or("docs/operations.md has no ## Metrics")?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, ty) = (
            cols.get(1).copied().unwrap_or(""),
            cols.get(2).copied().unwrap_or(""),
        );
        for n in names.split('`').skip(1).step_by(2) {
            out.push((n.to_owned(), ty.to_owned()));
        }
    }
    ensure(out.len() >= 15, || {
        format!("only {} metrics in the README table", out.len())
    })?;
    Ok(out)
}

/// Families in an exposition: name -> type, from the `# TYPE` lines (a family with no
/// sample yet, e.g. a labelled counter nobody incremented, still has one).
fn exposed_families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
        .collect()
}

/// The README's metrics table, the families the injector registers
/// (`Metrics::families`) and what a real injector's /metrics exposes agree: every
/// registered family is in the table and every table entry is registered, with the
/// table's type (a counter `x_total` is the family `x`); every family /metrics exposes is
/// registered with that type. prometheus-client leaves a labelled family out of /metrics
/// until it has a sample, so the injector is first made to produce some (an injection, a
/// denial, a certificate reload), and those must then be exposed.
pub async fn prometheus_metrics_table_matches_the_exposition() -> TestResult {
    let ns = TestNs::new("prom-table").await?;
    ns.create::<StellarNode>(stellar_node("v1", "Validator", "testnet", false))
        .await?;
    let bed = bed()?;
    let inj = Injector::start(&ns.name, &bed.kubeconfig, &[], true).await?;
    let (code, _) = admission_request(&inj, &review_for(&ns.name, "v1")).await?;
    ensure_eq!(code, 200, "injected review")?;
    let (code, _) = admission_request(&inj, &review_for(&ns.name, "ghost")).await?;
    ensure_eq!(code, 200, "denied review")?;
    // New certificate files: the injector reloads them (tls_certificate_reloads_total).
    let fresh = make_certs("prom-table-rotated")?;
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(fresh.join(f), inj.certs.join(format!(".{f}.new")))
            .map_err(|e| e.to_string())?;
    }
    for f in ["tls.key", "tls.crt"] {
        std::fs::rename(inj.certs.join(format!(".{f}.new")), inj.certs.join(f))
            .map_err(|e| e.to_string())?;
    }
    let reloaded = format!("{PREFIX}tls_certificate_reloads_total{{result=\"success\"}}");
    let text = wait_for(
        Duration::from_secs(60),
        "a certificate reload in /metrics",
        || async {
            let (_, text) = get(inj.admin_port, "/metrics").await.ok()?;
            metric_value(&text, &reloaded)
                .filter(|v| *v >= 1.0)
                .map(|_| text)
        },
    )
    .await?;
    let exposed = exposed_families(&text);
    for must in [
        "admission_requests",
        "admission_duration_seconds",
        "patch_cache",
        "peers",
        "tls_certificate_reloads",
        "tls_certificate_expiry_timestamp_seconds",
        "cache_synced",
    ] {
        ensure(exposed.contains_key(&format!("{PREFIX}{must}")), || {
            format!("{PREFIX}{must} not exposed:\n{text}")
        })?;
    }
    let metrics = stellar_peer_injector::obs::metrics::Metrics::new();
    let registered: BTreeMap<String, String> = metrics
        .families()
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect();
    for (f, t) in &exposed {
        ensure(registered.get(f) == Some(t), || {
            format!("/metrics family {f} ({t}) is not registered as such: {registered:?}")
        })?;
    }
    let table = readme_metrics()?;
    let matches = |pattern: &str, fam: &str, ty: &str| -> bool {
        let base = if ty == "counter" {
            pattern.strip_suffix("_total").unwrap_or(pattern)
        } else {
            pattern
        };
        match base.strip_suffix('*') {
            Some(prefix) => fam.starts_with(prefix),
            None => fam == base,
        }
    };
    for (name, ty) in &table {
        let hit: Vec<_> = registered
            .iter()
            .filter(|(f, t)| matches(name, f, t))
            .collect();
        ensure(!hit.is_empty(), || {
            format!(
                "README metric {name} is not a family of the injector: {:?}",
                registered.keys()
            )
        })?;
        if ["counter", "gauge", "histogram"].contains(&ty.as_str()) {
            for (f, t) in &hit {
                ensure(t == &ty, || {
                    format!("README says {name} is a {ty}; the injector registers {f} as a {t}")
                })?;
            }
        }
        if hit.iter().any(|(_, t)| t.as_str() == "counter") {
            ensure(name.ends_with("_total") || name.ends_with('*'), || {
                format!("README counter {name} should be named with _total")
            })?;
        }
    }
    for (f, t) in &registered {
        ensure(table.iter().any(|(name, _)| matches(name, f, t)), || {
            format!("family {f} ({t}) is missing from the README's metrics table")
        })?;
    }
    Ok(())
}
