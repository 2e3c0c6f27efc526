//! The test kit: everything the integration tests (tests/integration) and the cluster
//! benchmark (benches/cluster.rs) need to work on the test bed (tests/testbed), in one
//! place. Dev-only: the injector never depends on it.
//!
//! | Module | Holds |
//! |---|---|
//! | [`bed`] | a bed handle ([`Bed`]: script, state dir, ports, health, components), the shared bed brought up once per run ([`bed()`], [`teardown`]), clients, the CRD |
//! | [`ns`] | [`TestNs`]: a namespace per test, deleted when dropped |
//! | [`wait`] | [`wait_for`]: polling with a deadline |
//! | [`injector`] | [`Injector`]: `stellar-peer-injector serve` as a process ([`Serve`] to shape it), its certificates |
//! | [`certmanager`] | [`CertManager`]: cert-manager's controller and cainjector as processes, its CRDs; what a process listens on, the certificate a TLS port serves |
//! | [`webhook`] | the MutatingWebhookConfiguration pointing at a local injector |
//! | [`http`] | plain HTTP to the admin port, AdmissionReviews over TLS |
//! | [`objects`] | operator-shaped objects; pod env, annotations, template hashes, peers of a node's pods |
//! | [`dns`] | A queries to the bed's CoreDNS |
//! | [`realnode`] | the bed's real node: is it on ([`real_node`]), pods on it ([`on_real_node`]), the injector's image in its containerd, container logs, routes |
//! | [`assert`] | [`ensure`] and [`ensure_eq!`]: test failures with both sides and a diff |
//! | [`registry`] | [`trials!`] and [`exclusive!`]: the integration trials, found by build.rs |
//!
//! The kit cannot see the injector binary's path (Cargo gives `CARGO_BIN_EXE_*` only to the
//! main crate's own tests and benches): they call [`use_injector`] first.

pub mod assert;
pub mod bed;
pub mod certmanager;
pub mod discover;
pub mod dns;
pub mod http;
pub mod injector;
pub mod ns;
pub mod objects;
pub mod realnode;
pub mod registry;
pub mod validators;
pub mod wait;
pub mod webhook;

pub use assert::ensure;
pub use bed::*;
pub use certmanager::CertManager;
pub use dns::*;
pub use http::*;
pub use injector::*;
pub use ns::TestNs;
pub use objects::*;
pub use realnode::*;
pub use validators::*;
pub use wait::*;
pub use webhook::*;

/// What a test returns: `Err` carries the whole failure message.
pub type TestResult = Result<(), String>;
