//! The operations log: one ledger object per operation (release, resume, rollback,
//! forced unlock, approval, restore), written once with `If-None-Match: *` and never rewritten, so
//! history cannot be edited by a later run. Keys sort by time:
//! `ledger/ops/<UTC time to the nanosecond>-<kind>.json`.
//!
//! A run's entry is written when it ends, with the outcome and exit code it ended with; a
//! run killed before its end leaves none of its own (the run that picks its release up
//! records itself). The per-release records and the index stay as they are.

use super::event::Outcome;
use super::ledger::EngineError;
use super::ports::{Conditional, StateStore};
use super::retry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const OPS_PREFIX: &str = "ledger/ops/";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Release,
    Resume,
    Rollback,
    /// `glidepath unlock --force` broke the lock.
    Unlock,
    /// `glidepath approve` recorded an approval.
    Approve,
    /// `glidepath restore` restored a release's snapshot to a new database.
    Restore,
}

impl OpKind {
    pub fn word(self) -> &'static str {
        match self {
            OpKind::Release => "release",
            OpKind::Resume => "resume",
            OpKind::Rollback => "rollback",
            OpKind::Unlock => "unlock --force",
            OpKind::Approve => "approve",
            OpKind::Restore => "restore",
        }
    }
}

/// One operation, as it ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpEntry {
    pub at: DateTime<Utc>,
    pub kind: OpKind,
    /// Who ran it (the lock holder name, or the approver).
    pub by: String,
    /// The release it acted on, when there was one.
    pub release: Option<String>,
    /// The release's outcome as this operation left it (none: still in progress).
    pub outcome: Option<Outcome>,
    /// The operation's own exit code.
    pub exit_code: i32,
    pub message: String,
}

/// Append `entry` (a new object; an existing key is never overwritten).
pub async fn append(store: &dyn StateStore, entry: &OpEntry) -> Result<(), EngineError> {
    let body = serde_json::to_vec_pretty(entry).map_err(|e| EngineError::Corrupt {
        key: OPS_PREFIX.into(),
        message: e.to_string(),
    })?;
    let stamp = entry.at.format("%Y%m%dT%H%M%S%.9fZ");
    for n in 0..5 {
        let key = match n {
            0 => format!("{OPS_PREFIX}{stamp}-{:?}.json", entry.kind).to_lowercase(),
            n => format!("{OPS_PREFIX}{stamp}-{:?}-{n}.json", entry.kind).to_lowercase(),
        };
        let bytes = &body;
        let written =
            retry::quietly(|| async { store.put_if_absent(&key, bytes.clone()).await }).await?;
        match written {
            Conditional::Written(_) => return Ok(()),
            // Our own earlier attempt, or another operation in the same nanosecond.
            Conditional::Conflict => match retry::quietly(|| store.get(&key)).await? {
                Some((stored, _)) if stored == body => return Ok(()),
                _ => continue,
            },
        }
    }
    Err(EngineError::Conflict {
        key: format!("{OPS_PREFIX}{stamp}"),
    })
}

/// Every operation, oldest first.
pub async fn list(store: &dyn StateStore) -> Result<Vec<OpEntry>, EngineError> {
    let mut keys = retry::quietly(|| store.list(OPS_PREFIX)).await?;
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let Some((bytes, _)) = retry::quietly(|| store.get(&key)).await? else {
            continue;
        };
        let e: OpEntry = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        })?;
        out.push(e);
    }
    out.sort_by_key(|e| e.at);
    Ok(out)
}
