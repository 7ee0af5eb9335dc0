//! Looking back at releases from their event streams: replay a recording through a plan's
//! gates ([`replay`], `glidepath gate replay`) and the drill report after a rehearsal
//! ([`report`]). These read the engine's events and use the gates, so they sit above both
//! and `gate` stays free of `engine`.

pub mod replay;
pub mod report;

pub use report::drill_report;
