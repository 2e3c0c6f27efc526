#![forbid(unsafe_code)]
//! stellar-peer-injector: gives Stellar pods their current peers at creation.
//!
//! Pure core: the `stellar-peer-core` crate, re-exported here as [`config`], [`explain`],
//! [`inject`], [`inspect`], [`live`], [`nodes`] and [`peers`], and inside [`rollout`],
//! [`watch::dns`] and [`obs::events`]. The edges, by role:
//! - [`cmd`]: the commands, one file each (`serve`, `inject`, `peers`, `explain`,
//!   `render-config`, `live-peers`, `remote-secret`, `certs`; `crd` prints [`crd`]);
//! - [`watch`]: the StellarNode cache and links, governing Services, the DNS resolver;
//! - [`rollout`]: the loop that executes the core's plan, the Lease, the linked clusters' flags;
//! - [`server`]: the TLS admission listener and the admin listener;
//! - [`obs`]: metrics, the Event recorder, problem and peer-resolution reports;
//! - [`runtime`] (owns every task, one shutdown), [`cli`], [`error`] (command errors),
//!   [`causes`] (how a failure is told), [`input`] (input files).

pub use stellar_peer_core::{config, explain, inject, inspect, live, nodes, peers};

pub mod causes;
pub mod cli;
pub mod cmd;
pub mod crd;
pub mod duration;
pub mod error;
pub mod input;
pub mod obs;
pub mod rollout;
pub mod runtime;
pub mod server;
pub mod watch;
