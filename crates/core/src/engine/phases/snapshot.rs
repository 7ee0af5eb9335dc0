//! Snapshot: a disaster-restore point of the database before the migration touches it.
//!
//! Contract: intent = snapshot id `<db>-<release>` (sanitized for RDS) in the ledger →
//! describe it: if it exists and is tagged with this release it is adopted, if it exists
//! and is someone else's the release stops → otherwise `CreateDBSnapshot` tagged with the
//! release → poll until `available` (Progress events with PercentProgress) within the
//! plan's `snapshot_timeout` → done. Resume re-runs the same steps and adopts the snapshot
//! it created before.

use super::Done;
use crate::engine::ctx::{Ctx, Stop};
use crate::engine::event::{Event, Phase, Unit};
use crate::engine::ids;
use crate::engine::ports::SnapshotStatus;
use std::time::Duration;
use tokio::time::Instant;

/// How often snapshot status is read.
pub const POLL: Duration = Duration::from_secs(1);

pub async fn run(ctx: &mut Ctx<'_>) -> Result<Done, Stop> {
    let ports = ctx.ports;
    let id = ids::snapshot_id(&ctx.plan.database.id, &ctx.release);
    ctx.rec().snapshot_id = Some(id.clone());
    ctx.intent(Phase::Snapshot).await?;

    let release = ctx.release.clone();
    let existing = ctx.call(|| ports.database.describe_snapshot(&id)).await?;
    match &existing {
        Some(info) if info.release_tag.as_deref() != Some(release.as_str()) => {
            return Err(Stop::fail(format!(
                "snapshot {id} already exists and is not tagged glidepath:release={release} \
                 (tag: {}); it is not this release's, so glidepath will not adopt it. \
                 Rename or delete it, then start the release again",
                info.release_tag.as_deref().unwrap_or("none")
            )));
        }
        Some(_) => ctx.emit(Event::Notice {
            message: format!(
                "snapshot {id} exists from an earlier run of this release; adopting it"
            ),
        }),
        None => {
            ctx.call(|| ports.database.create_snapshot(&id, &release))
                .await?
        }
    }

    let deadline = Instant::now() + ctx.plan.database.snapshot_timeout;
    let mut last_percent = None;
    loop {
        let info = ctx
            .call(|| ports.database.describe_snapshot(&id))
            .await?
            .ok_or_else(|| {
                Stop::fail(format!(
                    "snapshot {id} disappeared while it was being created; check the RDS console, then start the release again"
                ))
            })?;
        match info.status {
            SnapshotStatus::Available => {
                ctx.emit(Event::Progress {
                    phase: Phase::Snapshot,
                    done: 100,
                    total: 100,
                    unit: Unit::Percent,
                    message: Some(format!("{id} available")),
                });
                return Ok(Done::ok(id));
            }
            SnapshotStatus::Failed { status } => {
                return Err(Stop::fail(format!(
                    "snapshot {id} ended in status {status:?}; nothing else was changed. \
                     Look at the RDS events of {}, then start the release again",
                    ctx.plan.database.id
                )));
            }
            SnapshotStatus::Creating { percent } => {
                if last_percent != Some(percent) {
                    last_percent = Some(percent);
                    ctx.emit(Event::Progress {
                        phase: Phase::Snapshot,
                        done: percent.into(),
                        total: 100,
                        unit: Unit::Percent,
                        message: Some(format!("creating {id}")),
                    });
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Stop::fail(format!(
                "snapshot {id} is not available after {}s ([database].snapshot_timeout); \
                 it keeps going in RDS. Raise the timeout or wait for it, then start the release again",
                ctx.plan.database.snapshot_timeout.as_secs()
            )));
        }
        ctx.tick().await?;
        ctx.sleep(
            POLL.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100)),
            ),
        )
        .await?;
    }
}
