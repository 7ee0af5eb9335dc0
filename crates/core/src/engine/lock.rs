//! The release lock: `lock.json` under the state prefix.
//!
//! Contract: created with `If-None-Match: *`, so exactly one release holds it. The body
//! names the holder (`user@host`), the release, when it started and when the lease
//! expires. The running release renews it (`If-Match` on the ETag) at every phase and step
//! boundary and every health poll once a third of the lease has passed, so a long bake
//! never lets it lapse. It is released on finalize, rollback and failure, and kept when a
//! release is interrupted (Abort, crash) so nobody starts over a half-done release.
//!
//! Someone else's lock is never taken silently, not even an expired one: the message says
//! it is stale and that `glidepath unlock PLAN --force` breaks it. Only `resume` (and a
//! manual `rollback`) of the *same* release id re-takes its own lock.

use super::ledger::EngineError;
use super::ports::{Conditional, ETag, StateStore};
use super::retry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

pub const LOCK_KEY: &str = "lock.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockBody {
    pub holder: String,
    pub release: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LockBody {
    pub fn age(&self, now: DateTime<Utc>) -> Duration {
        (now - self.started_at).to_std().unwrap_or_default()
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.expires_at < now
    }

    /// "held by alice@ops-1 for release 1.4.0-… (started 12m 5s ago)" plus staleness.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let mut s = format!(
            "held by {} for release {} (started {} ago",
            self.holder,
            self.release,
            human(self.age(now))
        );
        if self.is_stale(now) {
            let gone = (now - self.expires_at).to_std().unwrap_or_default();
            s.push_str(&format!(
                "; STALE: its lease expired {} ago, so its holder may be gone",
                human(gone)
            ));
        }
        s.push(')');
        s
    }
}

/// `1h 2m`, `3m 4s`, `5s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// A lock this process holds.
#[derive(Debug, Clone)]
pub struct Lock {
    pub body: LockBody,
    etag: ETag,
    lease: Duration,
    last_renew: Instant,
}

#[derive(Debug, Clone)]
pub enum Acquire {
    Acquired(Lock),
    /// Someone holds it (possibly this very release, when not resuming).
    Held(LockBody),
}

fn body(holder: &str, release: &str, version: &str, lease: Duration) -> LockBody {
    let now = Utc::now();
    LockBody {
        holder: holder.into(),
        release: release.into(),
        version: version.into(),
        started_at: now,
        renewed_at: now,
        expires_at: now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
    }
}

fn encode(b: &LockBody) -> Vec<u8> {
    serde_json::to_vec_pretty(b).unwrap_or_default()
}

pub async fn read(store: &dyn StateStore) -> Result<Option<(LockBody, ETag)>, EngineError> {
    match retry::quietly(|| store.get(LOCK_KEY)).await? {
        None => Ok(None),
        Some((bytes, etag)) => {
            let b = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                key: LOCK_KEY.into(),
                message: e.to_string(),
            })?;
            Ok(Some((b, etag)))
        }
    }
}

/// Take the lock for `release`. With `take_own`, a lock already naming `release` (left by an
/// interrupted run of it) is taken over; otherwise any existing lock is `Held`.
pub async fn acquire(
    store: &dyn StateStore,
    holder: &str,
    release: &str,
    version: &str,
    lease: Duration,
    take_own: bool,
) -> Result<Acquire, EngineError> {
    let mine = body(holder, release, version, lease);
    let bytes = encode(&mine);
    for _ in 0..3 {
        match retry::quietly(|| store.put_if_absent(LOCK_KEY, bytes.clone())).await? {
            Conditional::Written(etag) => return Ok(Acquire::Acquired(held(mine, etag, lease))),
            Conditional::Conflict => {}
        }
        let Some((raw, etag)) = retry::quietly(|| store.get(LOCK_KEY)).await? else {
            continue; // released in between: try again
        };
        if raw == bytes {
            // Our own first attempt landed before a transient error hid it.
            return Ok(Acquire::Acquired(held(mine, etag, lease)));
        }
        let theirs: LockBody = serde_json::from_slice(&raw).map_err(|e| EngineError::Corrupt {
            key: LOCK_KEY.into(),
            message: e.to_string(),
        })?;
        if !(take_own && theirs.release == release) {
            return Ok(Acquire::Held(theirs));
        }
        let mut retaken = mine.clone();
        retaken.started_at = theirs.started_at;
        let rb = encode(&retaken);
        return match retry::quietly(|| store.put_if_match(LOCK_KEY, rb.clone(), &etag)).await? {
            Conditional::Written(etag) => Ok(Acquire::Acquired(held(retaken, etag, lease))),
            Conditional::Conflict => Ok(Acquire::Held(theirs)),
        };
    }
    Err(EngineError::Conflict {
        key: LOCK_KEY.into(),
    })
}

fn held(body: LockBody, etag: ETag, lease: Duration) -> Lock {
    Lock {
        body,
        etag,
        lease,
        last_renew: Instant::now(),
    }
}

impl Lock {
    /// Renew once a third of the lease has passed since the last renewal.
    pub async fn renew_if_due(&mut self, store: &dyn StateStore) -> Result<(), EngineError> {
        if self.last_renew.elapsed() >= self.lease / 3 {
            self.renew(store).await?;
        }
        Ok(())
    }

    pub async fn renew(&mut self, store: &dyn StateStore) -> Result<(), EngineError> {
        let now = Utc::now();
        let mut b = self.body.clone();
        b.renewed_at = now;
        b.expires_at =
            now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let bytes = encode(&b);
        let etag = self.etag.clone();
        match retry::quietly(|| store.put_if_match(LOCK_KEY, bytes.clone(), &etag)).await? {
            Conditional::Written(etag) => {
                self.etag = etag;
            }
            Conditional::Conflict => match read(store).await? {
                Some((stored, etag)) if stored == b => self.etag = etag,
                other => {
                    let who =
                        other.map_or("nobody holds it now".to_string(), |(o, _)| o.describe(now));
                    return Err(EngineError::Refused(format!(
                        "the release lock was broken while release {} ran (it is {who}); stopping without touching anything",
                        self.body.release
                    )));
                }
            },
        }
        self.body = b;
        self.last_renew = Instant::now();
        Ok(())
    }

    /// Delete the lock if it is still ours.
    pub async fn release(self, store: &dyn StateStore) -> Result<(), EngineError> {
        match read(store).await? {
            Some((b, _)) if b.release == self.body.release => {
                retry::quietly(|| store.delete(LOCK_KEY)).await?;
                Ok(())
            }
            _ => Ok(()), // gone or someone else's: not ours to delete
        }
    }
}

/// `glidepath unlock`: who holds the lock, and (with `force`) break it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnlockReport {
    pub lock: Option<LockBody>,
    pub age_s: Option<u64>,
    pub stale: bool,
    pub broken: bool,
    pub message: String,
}

pub async fn unlock(store: &dyn StateStore, force: bool) -> Result<UnlockReport, EngineError> {
    let now = Utc::now();
    let Some((b, _)) = read(store).await? else {
        return Ok(UnlockReport {
            lock: None,
            age_s: None,
            stale: false,
            broken: false,
            message: "the release lock is free".into(),
        });
    };
    let describe = b.describe(now);
    let stale = b.is_stale(now);
    if force {
        retry::quietly(|| store.delete(LOCK_KEY)).await?;
    }
    Ok(UnlockReport {
        age_s: Some(b.age(now).as_secs()),
        stale,
        broken: force,
        message: if force {
            format!("broke the release lock: it was {describe}. `glidepath resume PLAN` continues that release if it was left half-done")
        } else {
            format!("the release lock is {describe}; add --force to break it")
        },
        lock: Some(b),
    })
}
