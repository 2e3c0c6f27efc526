//! `stellar-peer-injector remote-secret` on two real control planes: it makes bed b
//! readable by a reader ServiceAccount of least privilege, and its output, applied to the
//! shared bed a, links b there.
//!
//! Bed b is shared by trials: the reader lives in a namespace of the trial's own (so its
//! ClusterRole and ClusterRoleBinding, named after it, are the trial's, and deleted at the
//! end), and the network is named after a's namespace.

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use stellar_peer_injector::cmd::remote_secret::{self, LEASE_NAMESPACE_ANNOTATION};
use stellar_peer_injector::crd::StellarNode;

use crate::support::*;

fn remote_secret(args: &[&str]) -> Result<Output, String> {
    std::process::Command::new(injector_bin()?)
        .arg("remote-secret")
        .args(args)
        .output()
        .map_err(|e| format!("run remote-secret: {e}"))
}

/// The command's outcome for a failure message, tokens left out.
fn said(out: &Output) -> String {
    let stdout: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match l.split_once("token: ") {
            Some((head, _)) => format!("{head}token: (left out)"),
            None => l.to_owned(),
        })
        .collect();
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A client of the printed link Secret's kubeconfig (as the injector would build it).
async fn link_client(secret_yaml: &str) -> Result<Client, String> {
    let s: Secret = serde_yaml::from_str(secret_yaml).map_err(|e| format!("not a Secret: {e}"))?;
    let link = stellar_peer_injector::watch::remote::Link::from_secret(&s)
        .map_err(|e| format!("the injector refuses the printed Secret: {e}"))?;
    link.client().await.map_err(|e| e.to_string())
}

/// Expects a 403 from `r`.
fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> TestResult {
    match r {
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
        other => Err(format!(
            "{what} with the reader's token: expected 403, got {other:?}"
        )),
    }
}

fn lease(name: &str) -> Lease {
    let mut l = Lease::default();
    l.metadata.name = Some(name.to_owned());
    l
}

pub async fn link_remote_secret_links_a_cluster_with_a_least_privilege_reader() -> TestResult {
    let (a, b) = (bed()?, second_bed()?);
    let b_client = b.client().await?;
    let ns_a = TestNs::new("lnka").await?;
    let ns_b = TestNs::with_client(b_client.clone(), "lnkb").await?;
    let net = ns_a.name.clone();
    let kubeconfig_b = b.kubeconfig.display().to_string();
    let base = [
        "--kubeconfig",
        kubeconfig_b.as_str(),
        "--context",
        "testbed",
        "--name",
        "b",
        "--remote-namespace",
        ns_b.name.as_str(),
        "--secret-namespace",
        ns_a.name.as_str(),
    ];

    // Wrong inputs stop it before anything is applied, and say what to do.
    let out = remote_secret(&[&base[..2], &["--context", "nope", "--name", "b"]].concat())?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure(
        !out.status.success() && err.contains("no context \"nope\"") && err.contains("testbed"),
        || format!("unknown context: {}", said(&out)),
    )?;
    let out = remote_secret(&[&base[..4], &["--name", "Cluster B"]].concat())?;
    ensure(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--name"),
        || format!("bad name: {}", said(&out)),
    )?;

    let out = remote_secret(&base)?;
    ensure(out.status.success(), || said(&out))?;
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The bed's kube-controller-manager runs the token controller: the long-lived token.
    ensure(stderr.contains("does not expire"), || {
        format!("expected the Secret's token: {stderr}")
    })?;
    let printed: Value = serde_yaml::from_str(&yaml).map_err(|e| format!("{e}: {yaml}"))?;
    ensure_eq!(
        printed["metadata"]["annotations"][LEASE_NAMESPACE_ANNOTATION],
        json!(ns_b.name),
        "lease-namespace annotation"
    )?;
    let cluster_scoped = remote_secret::cluster_object_name(&ns_b.name);
    let result = async {
        // Idempotent: a second run applies the same and prints a working Secret too, this
        // time with a TokenRequest token (the fallback when no controller fills the Secret).
        let again = remote_secret(
            &[&base[..], &["--token-wait", "0s", "--token-duration", "1h"]].concat(),
        )?;
        ensure(
            again.status.success()
                && String::from_utf8_lossy(&again.stderr).contains("TokenRequest"),
            || format!("second run: {}", said(&again)),
        )?;
        let requested = link_client(&String::from_utf8_lossy(&again.stdout)).await?;
        Api::<StellarNode>::all(requested)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list StellarNodes with the TokenRequest token: {e}"))?;

        // Applied to a with kubectl, it links b there.
        crate::chart_tests::run_ok("kubectl", &["apply", "-f", "-"], Some(&yaml))?;
        let secret = ns_a
            .api::<Secret>()
            .get(&remote_secret::link_secret_name("b"))
            .await
            .map_err(|e| format!("the applied link Secret: {e}"))?;
        stellar_peer_injector::watch::remote::Link::from_secret(&secret)
            .map_err(|e| format!("the applied Secret as the injector reads it: {e}"))?;
        // b1 exists before a's injector starts, so its first snapshot (which waits for
        // the linked clusters' first list) has it: b runs no injector here, so a's rollout
        // loop is off (it could not take turns with b) and a1 must be right at creation.
        let host = format!("b1.{net}.b.example.org");
        let mut b1 = stellar_node("b1", "Validator", &net, false);
        b1["spec"]["validatorConfig"] = json!({"externalDns": {"hostname": host, "ttl": 300}});
        ns_b.create::<StellarNode>(b1).await?;
        let inj = Injector::start(
            &ns_a.name,
            &a.kubeconfig,
            &["--remote-secret-namespace", &ns_a.name, "--rollout", "off"],
            true,
        )
        .await?;
        let hook = register_webhook(
            &ns_a.client,
            &ns_a.name,
            &inj.url(),
            &inj.ca_pem()?,
            "Fail",
            true,
        )
        .await?;
        let linked = async {
            ns_a.create::<StellarNode>(stellar_node("a1", "Validator", &net, false))
                .await?;
            ns_a.create::<StatefulSet>(operator_statefulset("a1", "Validator", &net, 1))
                .await?;
            let b1_addr = format!("{host}:11625");
            if let Err(e) = wait_peers(&ns_a, "a1", std::slice::from_ref(&b1_addr), 120).await {
                return Err(format!(
                    "{e}\nlast seen: {:?}",
                    pod_peers(&ns_a, "a1").await
                ));
            }
            let synced = "stellar_peer_injector_remote_cluster_synced{cluster=\"b\"}";
            wait_for(Duration::from_secs(30), synced, || async {
                (metric_value(&inj.metrics().await, synced) == Some(1.0)).then_some(())
            })
            .await?;
            // `peers` reads the same link Secret.
            let out = std::process::Command::new(injector_bin()?)
                .args([
                    "peers",
                    "-o",
                    "json",
                    "--namespaces",
                    &ns_a.name,
                    "--remote-secret-namespace",
                    &ns_a.name,
                    "--kubeconfig",
                ])
                .arg(&a.kubeconfig)
                .output()
                .map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("peers -o json: {e}: {}", said(&out)))?;
            let mut peers: Vec<(String, String)> = v["networks"][&net]["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["address"].as_str().unwrap_or("").to_owned(),
                        p["from"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            peers.sort();
            let mut want = vec![
                (b1_addr.clone(), "b".to_owned()),
                (svc("a1", &ns_a.name), "local".to_owned()),
            ];
            want.sort();
            ensure_eq!(peers, want, "peers -o json")?;
            let log = inj.log_text();
            ensure(
                !log.contains("forbidden") && !log.contains("Forbidden"),
                || format!("the reader was refused something:\n{log}"),
            )
        }
        .await
        .map_err(|e| format!("{e}\ninjector log:\n{}", inj.log_text()));
        delete_webhook(&ns_a.client, &hook).await;
        linked?;

        // The reader's token, straight at b's API: what it may do, and nothing more.
        let reader = link_client(&yaml).await?;
        Api::<StellarNode>::all(reader.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list StellarNodes cluster-wide: {e}"))?;
        Api::<StellarNode>::namespaced(reader.clone(), &ns_b.name)
            .get("b1")
            .await
            .map_err(|e| format!("get a StellarNode: {e}"))?;
        let leases_b: Api<Lease> = ns_b.api();
        leases_b
            .create(&PostParams::default(), &lease("slot"))
            .await
            .map_err(|e| format!("create a Lease as admin: {e}"))?;
        let reader_leases: Api<Lease> = Api::namespaced(reader.clone(), &ns_b.name);
        let got = reader_leases
            .get("slot")
            .await
            .map_err(|e| format!("get a Lease in the reader's namespace: {e}"))?;
        forbidden(
            "list Secrets",
            Api::<Secret>::namespaced(reader.clone(), &ns_b.name)
                .list(&ListParams::default())
                .await,
        )?;
        forbidden(
            "get the token Secret",
            Api::<Secret>::namespaced(reader.clone(), &ns_b.name)
                .get(remote_secret::TOKEN_SECRET_NAME)
                .await,
        )?;
        forbidden(
            "list Pods",
            Api::<Pod>::namespaced(reader.clone(), &ns_b.name)
                .list(&ListParams::default())
                .await,
        )?;
        forbidden(
            "list Pods cluster-wide",
            Api::<Pod>::all(reader.clone())
                .list(&ListParams::default())
                .await,
        )?;
        let sn: StellarNode = serde_json::from_value(stellar_node("x1", "Validator", &net, false))
            .map_err(|e| e.to_string())?;
        forbidden(
            "create a StellarNode",
            Api::<StellarNode>::namespaced(reader.clone(), &ns_b.name)
                .create(&PostParams::default(), &sn)
                .await,
        )?;
        forbidden(
            "delete a StellarNode",
            Api::<StellarNode>::namespaced(reader.clone(), &ns_b.name)
                .delete("b1", &DeleteParams::default())
                .await,
        )?;
        forbidden(
            "create a Lease",
            reader_leases
                .create(&PostParams::default(), &lease("mine"))
                .await,
        )?;
        forbidden(
            "update a Lease",
            reader_leases
                .replace("slot", &PostParams::default(), &got)
                .await,
        )?;
        forbidden(
            "delete a Lease",
            reader_leases.delete("slot", &DeleteParams::default()).await,
        )?;
        forbidden(
            "list Leases",
            reader_leases.list(&ListParams::default()).await,
        )?;
        forbidden(
            "get a Lease in another namespace",
            Api::<Lease>::namespaced(reader.clone(), "default")
                .get("slot")
                .await,
        )?;
        Api::<StatefulSet>::all(reader.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/instance=b1"))
            .await
            .map_err(|e| format!("list StatefulSets by instance label: {e}"))?;
        forbidden(
            "get a StatefulSet",
            Api::<StatefulSet>::namespaced(reader.clone(), &ns_b.name)
                .get("b1")
                .await,
        )?;
        forbidden(
            "delete a StatefulSet",
            Api::<StatefulSet>::namespaced(reader.clone(), &ns_b.name)
                .delete("b1", &DeleteParams::default())
                .await,
        )?;
        forbidden(
            "list Deployments",
            Api::<Deployment>::all(reader.clone())
                .list(&ListParams::default())
                .await,
        )?;
        forbidden(
            "list ClusterRoles",
            Api::<ClusterRole>::all(reader)
                .list(&ListParams::default())
                .await,
        )?;
        Ok::<(), String>(())
    }
    .await;
    // The trial's cluster-scoped objects on b (the namespaced ones go with ns_b).
    let _ = Api::<ClusterRoleBinding>::all(b_client.clone())
        .delete(&cluster_scoped, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(b_client)
        .delete(&cluster_scoped, &DeleteParams::default())
        .await;
    result
}
