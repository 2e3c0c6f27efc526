//! Rolling update on peer change: a pure planner and the loop that executes it.

pub mod controller;
pub mod lease;
pub mod plan;

#[cfg(test)]
mod tests;
