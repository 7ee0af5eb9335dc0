//! The release engine: the only place that decides. It runs the phases over the
//! ledger, calls ports, emits events and obeys commands; it never draws.

pub mod event;
pub mod ports;
pub mod run;

pub use event::{ColourName, Command, Envelope, Event, Outcome, Phase, PhaseStatus};
