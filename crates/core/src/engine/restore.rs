//! `glidepath restore`: a release's restore point (the snapshot it took before its
//! migration) restored to a new database, for getting data back after a schema change.
//!
//! Restore. Refuse (exit 2, nothing changed) when the release id is not in the index
//! (naming the recent ones), when its record names no snapshot, when the snapshot is gone
//! (deleted by `database.keep_snapshots` or by hand) or not available, when the new name
//! is the plan's database or a database that exists. Otherwise one restore call creates a
//! new database (instance or cluster, as the plan's) placed like the plan's one; the plan's
//! database is never modified. Wait for it to be `available` (progress through the caller,
//! bounded by `timeout`; a timeout is exit 1 and the restore keeps going in RDS), then
//! answer its endpoint. No release lock is taken: nothing a release owns changes. Every
//! run, refused or not, appends one entry to the operations log.

use super::ids;
use super::ledger;
use super::oplog::{self, OpEntry, OpKind};
use super::ports::{DbState, PortError, Ports, SnapshotStatus};
use crate::exit;
use crate::plan::{DatabaseKind, Plan};
use chrono::Utc;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// How often the new database's status is read.
pub const POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The release whose snapshot is restored.
    pub release: String,
    /// The new database's name; default [`default_name`].
    pub name: Option<String>,
    pub holder: String,
    /// How long to wait for the new database to be available.
    pub timeout: Duration,
    /// Between status reads (tests shorten it).
    pub poll: Duration,
}

/// The restored database, as the command prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Restored {
    pub release: String,
    pub snapshot: String,
    pub kind: DatabaseKind,
    /// The new database's identifier.
    pub name: String,
    pub status: String,
    pub endpoint: Option<String>,
    pub port: Option<i32>,
    /// The plan's database, untouched.
    pub source: String,
}

/// Why it did not restore, with the exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreError {
    pub code: i32,
    pub message: String,
}

impl RestoreError {
    fn usage(message: impl Into<String>) -> Self {
        RestoreError {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    fn unexpected(message: impl Into<String>) -> Self {
        RestoreError {
            code: exit::UNEXPECTED,
            message: message.into(),
        }
    }
}

/// `<db>-restore-<release>`, shaped as an RDS identifier (letters, digits, single hyphens,
/// at most 63 characters: the instance identifier limit).
pub fn default_name(db: &str, release: &str) -> String {
    let mut name = ids::snapshot_id(&format!("{db}-restore"), release);
    name.truncate(63);
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// RDS identifier rules for the new database: 1 to 63 letters, digits and hyphens, a
/// letter first, no two hyphens in a row, no hyphen at the end.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("use 1 to 63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("start it with a letter");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("use only letters, digits and hyphens");
    }
    if name.contains("--") || name.ends_with('-') {
        return Err("no two hyphens in a row and no hyphen at the end");
    }
    Ok(())
}

/// Restore `req.release`'s snapshot to a new database (see the module doc); `progress`
/// gets one line per step and per status change while waiting.
pub async fn restore(
    plan: &Plan,
    ports: &Ports,
    req: &RestoreRequest,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Restored, RestoreError> {
    let result = run(plan, ports, req, progress).await;
    let entry = OpEntry {
        at: Utc::now(),
        kind: OpKind::Restore,
        by: req.holder.clone(),
        release: Some(req.release.clone()),
        // A restore never changes how the release ended.
        outcome: None,
        exit_code: result.as_ref().map_or_else(|e| e.code, |_| exit::OK),
        message: match &result {
            Ok(r) => format!(
                "snapshot {} restored to {} {} ({})",
                r.snapshot,
                kind_word(r.kind),
                r.name,
                r.endpoint.as_deref().unwrap_or("no endpoint yet")
            ),
            Err(e) => e.message.clone(),
        },
    };
    match oplog::append(ports.state.as_ref(), &entry).await {
        Ok(()) => result,
        Err(e) => result.map_err(|mut r| {
            r.message
                .push_str(&format!("; the operations log could not be written: {e}"));
            r
        }),
    }
}

fn kind_word(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Instance => "DB instance",
        DatabaseKind::Cluster => "Aurora cluster",
    }
}

async fn run(
    plan: &Plan,
    ports: &Ports,
    req: &RestoreRequest,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Restored, RestoreError> {
    let store = ports.state.as_ref();
    let db = &plan.database.id;
    let kind = kind_word(plan.database.kind);
    let index = ledger::load_index(store)
        .await
        .map_err(|e| RestoreError::unexpected(format!("cannot read the ledger: {e}")))?;
    if !index.releases.iter().any(|e| e.id == req.release) {
        let recent: Vec<String> = index
            .releases
            .iter()
            .take(5)
            .map(|e| {
                format!(
                    "{} ({}, {})",
                    e.id,
                    e.version,
                    e.outcome.map_or("in progress", |o| o.word())
                )
            })
            .collect();
        return Err(RestoreError::usage(if recent.is_empty() {
            format!(
                "no release {} is recorded (none is recorded yet)",
                req.release
            )
        } else {
            format!(
                "no release {} is recorded; the recent ones are: {} (`glidepath history {}` lists them all)",
                req.release,
                recent.join(", "),
                plan.source.display()
            )
        }));
    }
    let record = ledger::load_record(store, &req.release)
        .await
        .map_err(|e| RestoreError::unexpected(format!("cannot read the ledger: {e}")))?
        .ok_or_else(|| {
            RestoreError::unexpected(format!("the record of release {} is missing", req.release))
        })?
        .value;
    let Some(snapshot) = record.snapshot_id.clone() else {
        return Err(RestoreError::usage(format!(
            "release {} ({}) took no snapshot (it ended before its snapshot phase); there is nothing of it to restore",
            record.id, record.version
        )));
    };
    let info = ports
        .database
        .describe_snapshot(&snapshot)
        .await
        .map_err(|e| RestoreError::unexpected(e.to_string()))?;
    match info.map(|i| i.status) {
        None if !record.phases.snapshot.is_done() => {
            return Err(RestoreError::usage(format!(
                "release {} ({}) stopped before its snapshot {snapshot} was complete, and it does not exist; \
                 there is nothing of it to restore",
                record.id, record.version
            )))
        }
        None => {
            return Err(RestoreError::usage(format!(
                "snapshot {snapshot} of release {} no longer exists (deleted by database.keep_snapshots or by hand); \
                 it cannot be restored. `aws rds describe-db-{}-snapshots` lists the snapshots that are left",
                record.id,
                match plan.database.kind {
                    DatabaseKind::Instance => "instance",
                    DatabaseKind::Cluster => "cluster",
                }
            )))
        }
        Some(SnapshotStatus::Available) => {}
        Some(SnapshotStatus::Creating { percent }) => {
            return Err(RestoreError::usage(format!(
                "snapshot {snapshot} of release {} is still being created ({percent}%); run restore again once it is available",
                record.id
            )))
        }
        Some(SnapshotStatus::Failed { status }) => {
            return Err(RestoreError::usage(format!(
                "snapshot {snapshot} of release {} is {status}, not available; it cannot be restored",
                record.id
            )))
        }
    }
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| default_name(db, &record.id));
    if let Err(why) = check_name(&name) {
        return Err(RestoreError::usage(format!(
            "--name {name:?} is not a valid RDS identifier: {why}"
        )));
    }
    if name.eq_ignore_ascii_case(db) {
        return Err(RestoreError::usage(format!(
            "{name} is the plan's own database; restore always makes a new one: pick another --name"
        )));
    }
    if let Some(existing) = ports
        .database
        .describe_db(&name)
        .await
        .map_err(|e| RestoreError::unexpected(e.to_string()))?
    {
        return Err(RestoreError::usage(format!(
            "a {kind} named {name} already exists ({}); restore never overwrites a database: pass --name with a new name, \
             or delete {name} first if it is an old restore",
            existing.status
        )));
    }
    progress(format!(
        "restoring snapshot {snapshot} (release {}, version {}) to a new {kind} {name}; {db} is not touched",
        record.id, record.version
    ));
    ports
        .database
        .restore_snapshot(&snapshot, &name, &record.id)
        .await
        .map_err(|e| match e {
            PortError::NotFound { .. } => RestoreError::usage(format!(
                "snapshot {snapshot} disappeared before the restore started: {e}"
            )),
            e => RestoreError::unexpected(format!(
                "the restore of {snapshot} to {name} was refused: {e}"
            )),
        })?;
    let state = wait_available(ports, plan.database.kind, &name, req, progress).await?;
    Ok(Restored {
        release: record.id,
        snapshot,
        kind: plan.database.kind,
        name,
        status: state.status,
        endpoint: state.endpoint,
        port: state.port,
        source: db.clone(),
    })
}

async fn wait_available(
    ports: &Ports,
    kind: DatabaseKind,
    name: &str,
    req: &RestoreRequest,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<DbState, RestoreError> {
    let started = Instant::now();
    let deadline = started + req.timeout;
    let mut last: Option<String> = None;
    loop {
        let state = match ports.database.describe_db(name).await {
            Ok(s) => s,
            // Describe right after the call may lag; a transient error is retried next poll.
            Err(e) if e.is_transient() => None,
            Err(e) => return Err(RestoreError::unexpected(e.to_string())),
        };
        if let Some(s) = &state {
            if last.as_deref() != Some(s.status.as_str()) {
                progress(format!(
                    "{name}: {} after {}s",
                    s.status,
                    started.elapsed().as_secs()
                ));
                last = Some(s.status.clone());
            }
            if s.status == "available" {
                return Ok(s.clone());
            }
            if matches!(
                s.status.as_str(),
                "failed" | "incompatible-restore" | "incompatible-parameters" | "deleting"
            ) {
                return Err(RestoreError::unexpected(format!(
                    "{name} ended in status {}; look at its RDS events",
                    s.status
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(RestoreError::unexpected(format!(
                "{name} is not available after {0}s (--timeout); the restore keeps going in RDS: \
                 check it with `aws rds describe-db-{1}s --db-{1}-identifier {name}` and connect once it is available",
                req.timeout.as_secs(),
                match kind {
                    DatabaseKind::Instance => "instance",
                    DatabaseKind::Cluster => "cluster",
                }
            )));
        }
        tokio::time::sleep(
            req.poll
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_rds_identifiers() {
        let n = default_name("shop-db", "1.4.0-20261103T021500Z");
        assert_eq!(n, "shop-db-restore-1-4-0-20261103t021500z");
        assert_eq!(check_name(&n), Ok(()));
        let long = default_name(&"a".repeat(60), "1.4.0-20261103T021500Z");
        assert!(long.len() <= 63 && check_name(&long).is_ok(), "{long}");
    }

    #[test]
    fn bad_names_say_what_to_change() {
        assert!(check_name("1db").unwrap_err().contains("letter"));
        assert!(check_name("db_copy").unwrap_err().contains("hyphens"));
        assert!(check_name("db--copy").is_err());
        assert!(check_name("db-").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }
}
