#![forbid(unsafe_code)]
//! stellar-peer-injector: gives Stellar pods their current peers at creation.
//!
//! Pure core: the `stellar-peer-core` crate (re-exported here as [`nodes`], [`peers`],
//! [`inject`], [`explain`], [`inspect`], and inside [`config`], [`rollout`], [`dns`] and
//! [`events`]).
//! Edges: [`cache`] (watch), [`server`] (TLS admission and admin listeners),
//! [`events`] (the one Event recorder), [`reports`] (problem Events and peer-resolution
//! checks), [`run`] (commands), [`config::render`] (the `render-config` init container),
//! [`remote_secret`] (the `remote-secret` command).

pub use stellar_peer_core::{explain, inject, inspect, nodes, peers};

pub mod cache;
pub mod causes;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crd;
pub mod dns;
pub mod error;
pub mod events;
pub mod explain_cmd;
pub mod input;
pub mod metrics;
pub mod remote;
pub mod remote_secret;
pub mod reports;
pub mod rollout;
pub mod run;
pub mod runtime;
pub mod server;
pub mod services;
