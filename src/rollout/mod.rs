//! Rolling update on peer change: a pure planner and the loop that executes it.

pub mod controller;
pub mod controls;
pub mod coordination;
pub mod lease;
pub mod observe;
pub mod plan;
pub mod state;

#[cfg(test)]
mod tests;
