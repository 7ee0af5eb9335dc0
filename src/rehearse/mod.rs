//! Rehearsals: start and stop the local stage ([`stage`]); seeding the plan's world and the
//! emulator's SDK configuration live with every other SDK call in the aws crate.

pub use crate::aws::seed;
pub mod stage;

pub use crate::aws::client::{emulator_sdk_config, is_loopback_endpoint};
