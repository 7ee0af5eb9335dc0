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
//! manual `rollback`) of the *same* release id re-takes its own lock, and only when the
//! holder is known to be gone: the body records the holder's host and pid, so a holder on
//! this host whose pid no longer exists (a crashed terminal) is taken over at once, as is a
//! lock whose lease expired. A live (or unknowable) holder is not: [`await_takeover`] waits
//! for its lease to lapse, or marks it lapsed on the operator's `--force`. Lock bodies
//! written before host and pid were recorded still read (the holder then counts as
//! unknowable).

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
    /// The holding process's host and pid (absent in lock bodies written before them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Held by `glidepath contract` for `release` (finalized), not by the release itself:
    /// no `resume` or `rollback` may take it for a lock that release left behind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contract: bool,
}

/// This machine's host name (as the lock records it).
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether a process with this id exists on this machine (zombies count as gone). Where
/// that cannot be told (no /proc), it is assumed to exist.
pub fn process_exists(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
    }
}

impl LockBody {
    /// Why the holding process is known to be gone, if it is: it ran on this host and its
    /// pid no longer exists, or names this very process (whose earlier run of the release
    /// ended, or a reused pid). None when it may still run (or cannot be told).
    pub fn holder_gone(&self) -> Option<String> {
        let (host, pid) = (self.host.as_deref()?, self.pid?);
        if host != this_host() {
            return None;
        }
        if pid == std::process::id() {
            return Some(format!(
                "pid {pid} on {host} is this process; no other run holds it"
            ));
        }
        (!process_exists(pid)).then(|| format!("pid {pid} no longer exists on {host}"))
    }

    /// "pid 4242 on ops-1", when recorded.
    pub fn process(&self) -> Option<String> {
        Some(format!("pid {} on {}", self.pid?, self.host.as_deref()?))
    }

    pub fn age(&self, now: DateTime<Utc>) -> Duration {
        (now - self.started_at).to_std().unwrap_or_default()
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.expires_at < now
    }

    /// "held by alice@ops-1 for release 1.4.0-… (started 12m 5s ago)" plus staleness.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let mut s = format!(
            "held by {}{} for {}release {} (started {} ago",
            self.holder,
            self.process()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            if self.contract {
                "the contract migration of "
            } else {
                ""
            },
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
        host: Some(this_host()),
        pid: Some(std::process::id()),
        contract: false,
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
/// interrupted run of it) is taken over when its holder is gone or its lease expired
/// ([`LockBody::holder_gone`], [`LockBody::is_stale`]); otherwise any existing lock is `Held`.
pub async fn acquire(
    store: &dyn StateStore,
    holder: &str,
    release: &str,
    version: &str,
    lease: Duration,
    take_own: bool,
) -> Result<Acquire, EngineError> {
    acquire_as(
        store,
        body(holder, release, version, lease),
        lease,
        take_own,
    )
    .await
}

/// Take the lock for `glidepath contract` of (finalized) `release`: marked as the
/// contract's, so that nothing mistakes it for a lock the release left behind.
pub async fn acquire_for_contract(
    store: &dyn StateStore,
    holder: &str,
    release: &str,
    version: &str,
    lease: Duration,
) -> Result<Acquire, EngineError> {
    let mine = LockBody {
        contract: true,
        ..body(holder, release, version, lease)
    };
    acquire_as(store, mine, lease, false).await
}

async fn acquire_as(
    store: &dyn StateStore,
    mine: LockBody,
    lease: Duration,
    take_own: bool,
) -> Result<Acquire, EngineError> {
    let release = mine.release.clone();
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
        let now = Utc::now();
        let may_take = theirs.holder_gone().is_some() || theirs.is_stale(now);
        if !(take_own && theirs.release == release && !theirs.contract && may_take) {
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

/// Mark a lock's lease as lapsed (compare-and-swap on `etag`): [`acquire`] with `take_own`
/// then takes it over, and a holder that is still alive loses it at its next renewal.
/// False when the lock changed in between.
async fn mark_lapsed(
    store: &dyn StateStore,
    b: &LockBody,
    etag: &ETag,
) -> Result<bool, EngineError> {
    let mut lapsed = b.clone();
    lapsed.expires_at = Utc::now() - chrono::Duration::seconds(1);
    let bytes = encode(&lapsed);
    Ok(matches!(
        retry::quietly(|| store.put_if_match(LOCK_KEY, bytes.clone(), etag)).await?,
        Conditional::Written(_)
    ))
}

/// Before `resume` (or a manual `rollback`) takes over the lock of the release it
/// continues: return at once when the lock is free, its holder is gone (same host, pid no
/// longer there) or its lease expired. With `force` (the operator confirms the holder is
/// gone), mark the lease lapsed and return. Otherwise say who holds it and since when, and
/// wait until its lease lapses without a renewal (saying so again after each renewal);
/// the lease is then marked lapsed so every clock agrees. `say` gets each message.
pub async fn await_takeover(
    store: &dyn StateStore,
    force: bool,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<(), EngineError> {
    loop {
        let Some((b, etag)) = read(store).await? else {
            return Ok(());
        };
        let now = Utc::now();
        if let Some(why) = b.holder_gone() {
            say(format!(
                "the release lock's holder {} is gone ({why}); taking over release {} at once",
                b.holder, b.release
            ));
            return Ok(());
        }
        if b.is_stale(now) {
            return Ok(());
        }
        if force {
            if mark_lapsed(store, &b, &etag).await? {
                say(format!(
                    "taking over the release lock without waiting for its lease (resume --force, or a manual rollback): it was {}; if that process still runs, it stops at its next lock renewal without touching anything",
                    b.describe(now)
                ));
                return Ok(());
            }
            continue;
        }
        let wait = (b.expires_at - now).to_std().unwrap_or_default();
        say(format!(
            "the release lock is {}, and that process may still be running. Waiting for its lease to expire at {} (in {});              if you know it is gone, `glidepath resume PLAN --force` takes over now",
            b.describe(now),
            b.expires_at.format("%Y-%m-%d %H:%M:%SZ"),
            human(wait)
        ));
        tokio::time::sleep(wait + Duration::from_millis(500)).await;
        match read(store).await? {
            None => return Ok(()),
            Some((now_b, now_etag)) if now_etag == etag => {
                if mark_lapsed(store, &now_b, &now_etag).await? {
                    say(format!(
                        "the lease of {} lapsed without a renewal; taking over release {}",
                        b.holder, b.release
                    ));
                    return Ok(());
                }
            }
            Some((now_b, _)) if now_b.release != b.release => return Ok(()),
            Some(_) => say(format!(
                "{} renewed the release lock; still waiting",
                b.holder
            )),
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
