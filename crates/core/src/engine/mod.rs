//! The release engine: the only place that decides. It runs the phases over the
//! ledger, calls ports, emits events and obeys commands; it never draws.

pub mod contract;
pub mod ctx;
pub mod durable;
pub mod event;
#[cfg(feature = "fake")]
pub mod fake;
pub mod ids;
pub mod ledger;
pub mod live_image;
pub mod lock;
pub mod oplog;
pub mod periods;
pub mod phases;
pub mod ports;
pub mod preflight;
pub mod read_only;
pub mod restore;
pub mod retention;
pub mod retry;
pub mod run;
pub mod supersede;
pub mod watch;

pub use event::{ColourName, Command, Envelope, Event, Outcome, Phase, PhaseStatus};
