#![forbid(unsafe_code)]
//! stellar-peer-injector: gives Stellar pods their current peers at creation.
//!
//! Pure core: [`nodes`], [`peers`], [`inject`], [`config`] (merge and check).
//! Edges: [`cache`] (watch), [`server`] (TLS admission and admin listeners),
//! [`run`] (commands), [`config::render`] (the `render-config` init container).

pub mod cache;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crd;
pub mod dns;
pub mod error;
pub mod inject;
pub mod metrics;
pub mod nodes;
pub mod peers;
pub mod rollout;
pub mod run;
pub mod runtime;
pub mod server;
pub mod services;
