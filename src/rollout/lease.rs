//! Edge: leader election with a `coordination.k8s.io/v1` Lease, so that only one
//! injector replica runs the rollout loop. Every update is a compare-and-swap on
//! the Lease's resourceVersion, so two candidates can never both hold it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::causes::{ApiCause, Chain};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

impl LeaseSettings {
    /// A Lease held for 15 s and renewed every 2 s.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
        }
    }
}

/// This replica's identity: `POD_NAME`, else the host name and process id.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "injector".into());
            format!("{host}-{}", std::process::id())
        })
}

/// Keeps trying to acquire and renew the Lease; publishes whether we lead. On `stop`
/// (the runtime's stepping-down signal: as soon as shutdown is requested, before the
/// shutdown delay) it steps down at once (publishes `false`, so the rollout loop stops
/// writing) and releases the Lease, so that a standby takes over at its next try instead
/// of after the Lease expires. A standby tries every second.
pub async fn run(
    client: Client,
    s: LeaseSettings,
    leader: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &s.namespace);
    let standby_every = s.renew_every.min(Duration::from_secs(1));
    let mut held = false;
    loop {
        if *stop.borrow() {
            break; // never (re)acquire once stepping down
        }
        let lead = match try_acquire(&api, &s).await {
            Ok(l) => l,
            Err(e) => {
                let hint = ApiCause::of(&e).hint(
                    "the injector's Role must allow get, create and update on leases.coordination.k8s.io in this namespace",
                    "the Lease namespace must exist",
                );
                tracing::warn!(error = %Chain(&e), lease = %s.name, namespace = %s.namespace,
                    "cannot read or update the leader Lease. {hint}");
                // Without a confirmed renewal we must assume someone else may lead.
                false
            }
        };
        if *leader.borrow() != lead {
            tracing::info!(identity = %s.identity, leader = lead, "leadership changed");
        }
        leader.send_replace(lead);
        held = lead;
        let wait = if lead { s.renew_every } else { standby_every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = crate::runtime::stopped(&mut stop) => break,
        }
    }
    leader.send_replace(false);
    if held {
        match release(&api, &s).await {
            Ok(()) => tracing::info!(identity = %s.identity, "released the leader Lease"),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "cannot release the leader Lease; a standby takes over when it expires")
            }
        }
    }
}

/// Gives the Lease up if we still hold it (compare-and-swap, like every update).
async fn release(api: &Api<Lease>, s: &LeaseSettings) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.acquire_time = None;
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

async fn try_acquire(api: &Api<Lease>, s: &LeaseSettings) -> Result<bool, kube::Error> {
    let secs = s.duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(t)), Some(d)) => {
            let age = Timestamp::now().duration_since(*t);
            age.as_secs() >= i64::from(d)
        }
        _ => true,
    };
    if holder != s.identity && !holder.is_empty() && !expired {
        return Ok(false);
    }
    if holder != s.identity {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(s.identity.clone());
    spec.lease_duration_seconds = Some(secs);
    spec.renew_time = Some(now());
    // replace() carries the resourceVersion we read: a concurrent writer makes it fail with 409.
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
