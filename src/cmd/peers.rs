//! `peers`: what every pod of each network would get now, from a one-shot snapshot of
//! the cluster (and its linked clusters), optionally with a DNS check of every address.

use crate::cli::PeersArgs;
use crate::error::Error;
use crate::watch::cache;

pub async fn main(args: PeersArgs) -> Result<(), Error> {
    let settings = args.peers.settings()?;
    let resolver = if args.resolve {
        Some(args.dns.resolver()?)
    } else {
        None
    };
    let client = args.kube.client().await?;
    let (snap, link_errors) = cache::snapshot_once(
        &client,
        &args.kube.namespaces(),
        &args.remote.sources()?,
        &settings,
    )
    .await?;
    let round = match &resolver {
        Some(r) => Some(crate::obs::reports::check(r, &snap, &Default::default()).await),
        None => None,
    };
    let servers: Vec<String> = resolver
        .iter()
        .flat_map(|r| r.servers())
        .map(ToString::to_string)
        .collect();
    let out = crate::inspect::PeersView {
        snap: &snap,
        network: args.network.as_deref(),
        round: round.as_ref(),
        dns_servers: &servers,
        link_errors: &link_errors,
    }
    .render(args.output);
    for line in &out.notes {
        eprintln!("{line}");
    }
    print!("{}", out.stdout);
    Ok(())
}
