//! Rolling update on peer change: the pure planner, its state, what it observes, the
//! user's controls and the cross-cluster decision. The loop that executes it is the
//! injector's edge.

pub mod controls;
pub mod coordination;
pub mod linking;
pub mod observe;
pub mod plan;
pub mod state;
