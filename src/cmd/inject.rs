//! `inject`: offline injection of manifests, as the webhook would answer, from StellarNodes
//! in a file.

use serde_json::Value;

use crate::cli::InjectArgs;
use crate::error::Error;
use crate::nodes::NodeRecord;
use crate::peers::PeerSnapshot;

/// Offline injection: returns the mutated manifests as multi-document YAML.
pub fn main(args: &InjectArgs) -> Result<String, Error> {
    if args.nodes == "-" && args.file == "-" {
        return Err(Error::Config(
            "--nodes and -f cannot both read stdin".to_owned(),
        ));
    }
    let settings = args.peers.settings()?;
    let patch = args.patch.settings()?;
    let node_docs = crate::input::documents(&args.nodes)?;
    let records: Vec<NodeRecord> = node_docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("StellarNode"))
        .filter_map(|d| NodeRecord::from_json(d, &args.namespace))
        .collect();
    let snap = PeerSnapshot::build(1, &records, &settings);
    for p in &snap.problems {
        eprintln!("warning: {}: {}", p.node, p.message);
    }
    let docs = crate::input::documents(&args.file)?;
    Ok(crate::inject::offline::inject_documents(
        docs,
        &snap,
        &patch,
        &args.namespace,
    )?)
}
