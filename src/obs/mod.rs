//! Observability edges: [`metrics`], the one Event recorder ([`events`]), and the
//! problem and peer-resolution reports ([`reports`]).

pub mod events;
pub mod metrics;
pub mod reports;
