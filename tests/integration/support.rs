//! Test bed plumbing: the control plane (tests/testbed/testbed), a namespace per test,
//! injector processes, webhook configurations, polling helpers and `ensure_eq!`. It all
//! lives in the test kit (testkit/), shared with the cluster benchmark; the test modules
//! reach it through `use crate::support::*`.

pub use testkit::*;
