#![forbid(unsafe_code)]
//! stellar-peer-injector: gives Stellar pods their current peers at creation.

pub mod inject;
pub mod nodes;
pub mod peers;
