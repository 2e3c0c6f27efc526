//! Edges that keep the injector's view of the cluster: the StellarNode cache and the
//! linked clusters ([`cache`], [`remote`]), governing Services ([`services`]) and the DNS
//! resolver that checks peer names ([`dns`]).

pub mod cache;
pub mod dns;
pub mod remote;
pub mod services;
