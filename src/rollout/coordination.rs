//! Edge of the quorum safety across linked clusters: writing this cluster's flags and
//! reading the linked clusters' (the protocol and its decision are the core's,
//! [`stellar_peer_core::rollout::coordination`], re-exported here).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

pub use stellar_peer_core::rollout::coordination::*;

/// Why a linked cluster's validators could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("no answer within 10 s")]
    Timeout,
    #[error(
        "its reader may not list StatefulSets in {namespace} ({message}): re-run `stellar-peer-injector remote-secret` \
         for that cluster, or upgrade its chart's multicluster.remoteReader, which grant apps/statefulsets list"
    )]
    MayNotListStatefulSets { namespace: String, message: String },
    #[error(transparent)]
    Api(kube::Error),
}

/// One linked cluster the flags are read from.
#[derive(Clone)]
pub struct Peer {
    pub cluster: String,
    pub client: Client,
    /// Its injector's namespace (where its flags are).
    pub namespace: String,
    /// Its injector's leader Lease there: proof that this is the right namespace.
    pub leader_lease: String,
    /// Its validators of the network (`namespace`, `name`), whose StatefulSets are read.
    pub validators: Vec<(String, String)>,
}

/// This cluster's side of the protocol: its name and its flags' namespace.
#[derive(Clone, Debug)]
pub struct Coordinator {
    pub cluster: String,
    pub namespace: String,
    /// The leader Lease's name (`--lease-name`), the same in every linked cluster.
    pub leader_lease: String,
}

impl Coordinator {
    /// Writes our flag for `network` (create, or replace whatever is there: only our
    /// own leader writes it).
    pub async fn write(
        &self,
        client: &Client,
        network: &str,
        phase: Phase,
    ) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let mut lease = flag_lease(&self.cluster, network, phase, Timestamp::now());
        let name = flag_name(network);
        match api.get_opt(&name).await? {
            Some(old) => {
                lease.metadata.resource_version = old.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &lease).await?;
            }
            None => {
                api.create(&PostParams::default(), &lease).await?;
            }
        }
        Ok(())
    }

    /// Our own flag as stored (after a restart of the leader: is it still ours and held?).
    pub async fn own(&self, client: &Client, network: &str) -> Result<Option<Phase>, kube::Error> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        Ok(api
            .get_opt(&flag_name(network))
            .await?
            .and_then(|l| read_flag(&l, Timestamp::now()))
            .filter(|(c, _)| *c == self.cluster)
            .map(|(_, p)| p))
    }

    /// Clears our flag for `network`.
    pub async fn clear(&self, client: &Client, network: &str) -> Result<(), kube::Error> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        match api
            .delete(&flag_name(network), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Reads a linked cluster's flag for `network` (a fresh `get`, never a cache). A
/// missing flag counts as clear only where that cluster's injector is known to run
/// (its leader Lease is there): a link naming the wrong namespace would otherwise read
/// "clear" forever. Unless it holds, its validators' StatefulSets are read as well
/// ([`unsettled_validator`]).
pub async fn read(peer: &Peer, network: &str) -> Seen {
    let seen = read_flag_of(peer, network).await;
    if matches!(seen, Seen::Flag(Phase::Holding) | Seen::Unknown(_)) {
        return seen;
    }
    match read_validators(peer).await {
        Ok(None) => seen,
        Ok(Some(w)) => Seen::NotReady(w),
        Err(why) => Seen::Unknown(crate::causes::chain(&why)),
    }
}

/// Whether one of the peer's validator StatefulSets is not settled (fresh `list`s by
/// the instance label; a validator with none yet has nothing to be unavailable).
async fn read_validators(peer: &Peer) -> Result<Option<String>, ReadError> {
    for (ns, name) in &peer.validators {
        let api: Api<StatefulSet> = Api::namespaced(peer.client.clone(), ns);
        let lp = ListParams::default().labels(&format!("{}={name}", crate::inject::LABEL_INSTANCE));
        let sets = match tokio::time::timeout(Duration::from_secs(10), api.list(&lp)).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(Err(kube::Error::Api(e))) if e.code == 403 => {
                return Err(ReadError::MayNotListStatefulSets {
                    namespace: ns.clone(),
                    message: e.message,
                });
            }
            Ok(Err(e)) => return Err(ReadError::Api(e)),
            Ok(Ok(l)) => l.items,
        };
        if let Some(w) = unsettled_validator(&sets) {
            return Ok(Some(w));
        }
    }
    Ok(None)
}

async fn read_flag_of(peer: &Peer, network: &str) -> Seen {
    let api: Api<Lease> = Api::namespaced(peer.client.clone(), &peer.namespace);
    match tokio::time::timeout(Duration::from_secs(10), api.get_opt(&peer.leader_lease)).await {
        Err(_) => return Seen::Unknown("no answer within 10 s".into()),
        Ok(Err(e)) => return Seen::Unknown(crate::causes::chain(&e)),
        Ok(Ok(None)) => {
            return Seen::Unknown(format!(
                "no injector leader Lease {} in its namespace {}: set the link's {} to the namespace its injector runs in, \
                 and run its rollout loop",
                peer.leader_lease,
                peer.namespace,
                crate::watch::remote::LEASE_NAMESPACE_ANNOTATION
            ));
        }
        Ok(Ok(Some(_))) => {}
    }
    match tokio::time::timeout(Duration::from_secs(10), api.get_opt(&flag_name(network))).await {
        Err(_) => Seen::Unknown("no answer within 10 s".into()),
        Ok(Err(e)) => Seen::Unknown(crate::causes::chain(&e)),
        Ok(Ok(None)) => Seen::Clear,
        Ok(Ok(Some(l))) => match read_flag(&l, Timestamp::now()) {
            Some((_, p)) => Seen::Flag(p),
            None => Seen::Clear,
        },
    }
}
