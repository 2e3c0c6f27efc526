//! Rolling update on peer change: the core's planner ([`stellar_peer_core::rollout`],
//! re-exported here) and the loop that executes it.

pub use stellar_peer_core::rollout::{controls, linking, observe, plan, state};
pub mod controller;
pub mod coordination;
pub mod lease;
