//! Edge: creates the governing Services validators' addresses need, when missing.
//!
//! For every validator known by its pod address ([`crate::peers::service::wanted`]),
//! the Service `{name}-headless` must exist for `{name}-0.{name}-headless.{ns}.svc`
//! to resolve. This task creates it when it does not exist, owned by the StellarNode,
//! and never changes a Service that exists, whoever made it. Creating is idempotent
//! (409 means someone else made it first), so every replica may run it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::cache::PeerCache;
use crate::events::{EventSink, Notice, stellar_node};
use crate::metrics::Metrics;
use crate::peers::service::{self, GoverningService};

/// How often Services already checked are checked again (someone may delete one).
const RECHECK: Duration = Duration::from_secs(600);

/// Runs until the cache's snapshot channel closes.
pub async fn run(client: Client, cache: Arc<PeerCache>, events: EventSink, metrics: Arc<Metrics>) {
    let mut snaps = cache.subscribe();
    let mut ensured: HashSet<GoverningService> = HashSet::new();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= RECHECK {
            ensured.clear();
            since = Instant::now();
        }
        if let Some(snap) = cache.snapshot() {
            let wanted = service::wanted(&snap);
            ensured.retain(|g| wanted.contains(g));
            for g in wanted {
                if ensured.contains(&g) {
                    continue;
                }
                match ensure(&client, &events, &g).await {
                    Ok(created) => {
                        if created {
                            metrics.services_created.inc();
                        }
                        ensured.insert(g);
                    }
                    Err(e) => {
                        metrics.errors(crate::metrics::ErrorKind::ServiceCreate);
                        let hint = crate::causes::ApiCause::of(&e).hint(
                            "the injector's RBAC must allow get and create on services",
                            "the namespace must exist",
                        );
                        tracing::warn!(service = %g.name, namespace = %g.namespace, error = %crate::causes::Chain(&e),
                            "cannot create the governing Service; the validator's peers cannot resolve it until it exists. {hint}. Or create it yourself, or set stellar.org/peer-address");
                    }
                }
            }
        }
        tokio::select! {
            r = snaps.changed() => if r.is_err() { return; },
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Creates the Service unless it exists; `Ok(true)` when this call created it.
async fn ensure(
    client: &Client,
    events: &EventSink,
    g: &GoverningService,
) -> Result<bool, kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &g.namespace);
    if api.get_opt(&g.name).await?.is_some() {
        return Ok(false);
    }
    let svc: Service =
        serde_json::from_value(service::manifest(g)).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &svc).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(false),
        Err(e) => return Err(e),
    }
    tracing::info!(service = %g.name, namespace = %g.namespace, node = %g.node, "created the validator's governing Service");
    events.send(Notice {
        regarding: stellar_node(&g.namespace, &g.node, g.node_uid.as_deref()),
        warning: false,
        reason: "GoverningServiceCreated",
        action: "CreateService",
        note: format!(
            "Created headless Service {} so that {}-0.{}.{}.svc resolves for this validator's peers",
            g.name, g.node, g.name, g.namespace
        ),
        dedup: false,
    });
    Ok(true)
}
