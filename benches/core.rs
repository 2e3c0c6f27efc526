//! The pure admission path in isolation (criterion): review parsing, the pod view,
//! `inject::decide` per snapshot size, patch building, encoding and the encoded-patch cache,
//! the whole synchronous `answer` (with and without the production log subscriber), and
//! snapshot building.
//!
//! `cargo bench --bench core` (about 2 minutes) prints criterion's report and writes
//! the `core` section of `benches/results/latest.json` (median and mean per benchmark).

#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::{Value, json};
use stellar_peer_injector::inject::patch::{PatchShape, build_patch};
use stellar_peer_injector::inject::review::{Object, PodView, Request, parse_review};
use stellar_peer_injector::inject::{Decision, InjectSettings, decide};
use stellar_peer_injector::obs::metrics::Metrics;
use stellar_peer_injector::peers::{PeerList, PeerSettings, PeerSnapshot};
use stellar_peer_injector::server::AdmissionState;
use stellar_peer_injector::server::admission::{PatchCache, answer};
use stellar_peer_injector::watch::cache::PeerCache;

use common::*;

const SIZES: [usize; 3] = [10, 1000, 10000];

fn snapshot(n: usize) -> PeerSnapshot {
    PeerSnapshot::build(1, &records(n), &PeerSettings::default())
}

fn state(n: usize) -> AdmissionState {
    let cache = Arc::new(PeerCache::new());
    cache.publish(&records(n), &PeerSettings::default());
    AdmissionState::new(cache, InjectSettings::default(), Arc::new(Metrics::new()))
}

fn production_subscriber() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish()
}

/// The shape and list of an injection decision.
fn injection(d: Decision) -> (PatchShape, Arc<PeerList>) {
    match d {
        Decision::Inject { shape, list, .. } => (shape, list),
        other => panic!("the fixture must be injected, got {other:?}"),
    }
}

/// The reading `parse_review`'s one pass is measured against: the object kept raw, then
/// read as a pod, as one raw-object reading alone would do for every Stellar pod CREATE.
#[derive(serde::Deserialize)]
struct RawReview<'a> {
    #[serde(borrow, rename = "apiVersion")]
    _api_version: Option<&'a str>,
    #[serde(borrow, rename = "kind")]
    _kind: Option<&'a str>,
    #[serde(borrow)]
    request: Request<'a, &'a serde_json::value::RawValue>,
}

fn benches(c: &mut Criterion) {
    let settings = InjectSettings::default();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(FIXTURE.len() as u64));
    g.bench_function("review", |b| {
        b.iter(|| parse_review(black_box(FIXTURE)).expect("review"))
    });
    g.bench_function("review_raw_then_pod", |b| {
        b.iter(|| {
            let body = std::str::from_utf8(black_box(FIXTURE)).expect("utf-8");
            let r: RawReview<'_> = serde_json::from_str(body).expect("review");
            let raw = r.request.object.expect("object");
            serde_json::from_str::<PodView<'_>>(raw.get()).expect("pod")
        })
    });
    let req = parse_review(FIXTURE).expect("review");
    let full: Value = serde_json::from_slice(FIXTURE).expect("fixture");
    let raw_object = full["request"]["object"].to_string();
    let raw = raw_object.as_str();
    g.bench_function("pod_view", |b| {
        b.iter(|| serde_json::from_str::<PodView<'_>>(black_box(raw)).expect("pod"))
    });
    g.bench_function("full_value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(FIXTURE)).expect("value"))
    });
    g.finish();

    let mut g = c.benchmark_group("decide");
    for n in SIZES {
        let snap = snapshot(n);
        // The first lookup computes the node's list; requests after that reuse it.
        injection(decide(&req, Some(&snap), &settings));
        g.bench_with_input(BenchmarkId::new("snapshot_nodes", n), &snap, |b, snap| {
            b.iter(|| decide(black_box(&req), Some(snap), &settings))
        });
    }
    g.finish();

    // Per snapshot and node (the first pod of a node after a snapshot change): build
    // the patch and encode it. Per request: find it in the cache.
    let mut g = c.benchmark_group("patch");
    for n in SIZES {
        let snap = snapshot(n);
        let (shape, list) = injection(decide(&req, Some(&snap), &settings));
        g.bench_with_input(BenchmarkId::new("build", n), &list, |b, list| {
            b.iter(|| build_patch(black_box(&shape), list, &settings))
        });
        let patch = build_patch(&shape, &list, &settings);
        g.bench_with_input(BenchmarkId::new("encode", n), &patch, |b, p| {
            b.iter(|| {
                let json = serde_json::to_vec(black_box(p)).expect("json");
                base64::engine::general_purpose::STANDARD.encode(json)
            })
        });
        let cache = PatchCache::default();
        cache
            .get_or_encode(1, &list, shape.clone(), &settings)
            .expect("encode");
        g.bench_with_input(BenchmarkId::new("cache_hit", n), &list, |b, list| {
            b.iter(|| {
                let (b64, hit) = cache
                    .get_or_encode(1, list, black_box(shape.clone()), &settings)
                    .expect("hit");
                assert!(hit);
                b64
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("answer");
    for n in SIZES {
        let st = state(n);
        answer(&st, FIXTURE);
        g.bench_with_input(BenchmarkId::new("no_subscriber", n), &st, |b, st| {
            b.iter(|| answer(st, black_box(FIXTURE)))
        });
        let sub = production_subscriber();
        tracing::subscriber::with_default(sub, || {
            g.bench_with_input(BenchmarkId::new("info_subscriber", n), &st, |b, st| {
                b.iter(|| answer(st, black_box(FIXTURE)))
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    for n in SIZES {
        let recs = records(n);
        g.bench_with_input(BenchmarkId::new("build", n), &recs, |b, recs| {
            b.iter(|| PeerSnapshot::build(1, recs, &PeerSettings::default()))
        });
        // Build plus the fixture node's first lookup (its list computed and rendered).
        g.bench_with_input(
            BenchmarkId::new("build_and_first_lookup", n),
            &recs,
            |b, recs| {
                b.iter(|| {
                    let s = PeerSnapshot::build(1, recs, &PeerSettings::default());
                    s.lookup(FIXTURE_NAMESPACE, FIXTURE_NODE)
                })
            },
        );
    }
    g.finish();
}

/// Collects criterion's estimates (`new/estimates.json`) of the groups above.
fn export(dir: &std::path::Path) -> Value {
    let mut out = serde_json::Map::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let est = p.join("estimates.json");
                    if let Some(v) = std::fs::read(&est)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    {
                        let id = d
                            .strip_prefix(dir)
                            .map(|r| r.display().to_string())
                            .unwrap_or_default();
                        let ns = |k: &str| v[k]["point_estimate"].as_f64().unwrap_or(0.0);
                        out.insert(
                            id,
                            json!({
                                "median_us": round(ns("median") / 1e3, 3),
                                "mean_us": round(ns("mean") / 1e3, 3),
                                "mean_ci95_us": [
                                    round(v["mean"]["confidence_interval"]["lower_bound"].as_f64().unwrap_or(0.0) / 1e3, 3),
                                    round(v["mean"]["confidence_interval"]["upper_bound"].as_f64().unwrap_or(0.0) / 1e3, 3),
                                ],
                            }),
                        );
                    }
                } else if p.file_name().is_some_and(|n| n != "report" && n != "base") {
                    stack.push(p);
                }
            }
        }
    }
    Value::Object(out)
}

fn criterion_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("criterion")
}

const GROUPS: [&str; 5] = ["parse", "decide", "patch", "answer", "snapshot"];

fn main() {
    let busy = BusyMeter::start();
    let machine = machine_info();
    // A full run starts from clean estimates, so the export holds only this run.
    let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
    if bench_mode() && !filtered {
        for g in GROUPS {
            let _ = std::fs::remove_dir_all(criterion_dir().join(g));
        }
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    if !bench_mode() {
        return;
    }
    let dir = criterion_dir();
    let mut groups = serde_json::Map::new();
    for g in GROUPS {
        groups.insert(g.to_owned(), export(&dir.join(g)));
    }
    write_section(
        "core",
        json!({
            "command": "cargo bench --bench core",
            "git": git_revision(),
            "time": now_utc(),
            "machine": machine,
            "machine_load_during_run": busy.stop(),
            "note": "criterion estimates per call, microseconds; snapshot_nodes/N = StellarNodes in the snapshot; the fixture pod gets 2 peers at 10 nodes and 64 (--max-peers) at 1,000 and 10,000",
            "parse_review_one_pass_on_fixture": parse_review(FIXTURE).is_ok_and(|r| matches!(r.object, Some(Object::Pod(_)))),
            "benchmarks": Value::Object(groups),
        }),
    );
}
