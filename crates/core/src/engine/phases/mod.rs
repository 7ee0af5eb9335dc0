//! One file per phase. Each phase follows the same contract (DESIGN §2): write the
//! intent with its deterministic ids to the ledger, look at what already exists in AWS,
//! mutate only what is missing, read the effect back, and only then report done (the
//! caller writes *done*). Resume therefore never repeats a completed mutation.

pub mod assets;
pub mod bake;
pub mod companions;
pub mod deploy;
pub mod finalize;
pub mod live_watch;
pub mod migrate;
pub mod rollback;
pub mod shards;
pub mod shift;
pub mod snapshot;

use super::ctx::{Ctx, Stop};
use super::event::{Phase, PhaseStatus};

/// How a phase ended when it did not stop the release.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub status: PhaseStatus,
    pub detail: Option<String>,
}

impl Done {
    pub fn ok(detail: impl Into<String>) -> Done {
        Done {
            status: PhaseStatus::Done,
            detail: Some(detail.into()),
        }
    }
    pub fn skipped(detail: impl Into<String>) -> Done {
        Done {
            status: PhaseStatus::Skipped,
            detail: Some(detail.into()),
        }
    }
}

/// Run one forward phase (lock is taken by `run.rs` before any phase).
pub async fn run(phase: Phase, ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    match phase {
        Phase::Lock => Ok(Done::ok("held")),
        Phase::Snapshot => {
            // Before the first change: alarms exist, metrics readable.
            super::preflight::run(ctx).await?;
            snapshot::run(ctx).await
        }
        Phase::Migrate => migrate::run(ctx).await,
        Phase::Assets => assets::run(ctx).await,
        Phase::Deploy => deploy::run(ctx).await,
        Phase::Shift => shift::run(ctx).await,
        Phase::Finalize => finalize::run(ctx).await,
        Phase::Rollback => rollback::run(ctx).await,
    }
}
