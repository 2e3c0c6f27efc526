//! Config mode: the core's merge and checks ([`stellar_peer_core::config`], re-exported
//! here), and the edge that runs them in the init container ([`render`]).

pub use stellar_peer_core::config::*;
pub mod render;
