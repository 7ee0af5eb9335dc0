//! AWS adapters: one per engine port, plus client construction. Only this module (and
//! the rehearsal seeder) talks to aws-sdk-*.

pub mod client;
