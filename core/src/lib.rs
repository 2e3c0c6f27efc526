#![forbid(unsafe_code)]
//! The pure core of stellar-peer-injector: StellarNodes → peer snapshot → patch, and
//! snapshot + observed workloads → rollout actions.
//!
//! No I/O and no clock: this crate depends on no Kubernetes client, async runtime or
//! command-line parser, so the compiler keeps it pure. The clock, the cluster and the
//! network are the injector's edges, which pass in what these functions need.
//!
//! - [`nodes`]: what a StellarNode says (lenient), controls, labels and annotations;
//! - [`peers`]: the snapshot: address rule, extra peers, snippet, resolution episodes;
//! - [`inject`]: the admission decision, review decoding, the patch, config rewrites;
//! - [`config`]: stellar-core config merge and rules check;
//! - [`rollout`]: plan, state, observe, controls, the cross-cluster decision;
//! - [`explain`], [`inspect`]: what the `explain` and `peers` commands say;
//! - [`live`]: peer changes without restarts: policy, diff, the admin port's answers;
//! - [`dns`]: the DNS codec; [`events`]: Event notes and their deduplication.

pub mod config;
pub mod dns;
pub mod events;
pub mod explain;
pub mod inject;
pub mod inspect;
pub mod live;
pub mod nodes;
pub mod peers;
pub mod rollout;
