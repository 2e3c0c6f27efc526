#![forbid(unsafe_code)]
//! stellar-peer-injector: gives Stellar pods their current peers at creation.
//!
//! Pure core: [`nodes`], [`peers`], [`inject`], [`config`] (merge and check), the
//! codec of [`dns`].
//! Edges: [`cache`] (watch), [`server`] (TLS admission and admin listeners),
//! [`events`] (the one Event recorder), [`reports`] (problem Events and peer-resolution
//! checks), [`run`] (commands), [`config::render`] (the `render-config` init container),
//! [`remote_secret`] (the `remote-secret` command).

pub mod cache;
pub mod causes;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crd;
pub mod dns;
pub mod error;
pub mod events;
pub mod explain;
pub mod explain_cmd;
pub mod inject;
pub mod inspect;
pub mod metrics;
pub mod nodes;
pub mod peers;
pub mod remote;
pub mod remote_secret;
pub mod reports;
pub mod rollout;
pub mod run;
pub mod runtime;
pub mod server;
pub mod services;
