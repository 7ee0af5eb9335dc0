//! The ledger: one JSON record per release plus an index, in the state bucket.
//!
//! Keys (relative to the plan's state prefix): `ledger/releases/<id>.json` and
//! `ledger/index.json`. Every write is a compare-and-swap on the ETag (`If-Match`, or
//! `If-None-Match: *` to create), so two writers cannot both win; losing is an error that
//! names the key. The index has `live` / `standby` (`{version, colour, release}`) at the top
//! level, which `glidepath assets prune` reads to keep those versions.

use super::event::{ColourName, Outcome, Phase, PhaseStatus};
use super::ports::{Conditional, ETag, PortError, StateStore};
use super::retry;
use crate::exit::Cause;
use crate::gate::Signal;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const INDEX_KEY: &str = "ledger/index.json";
pub const RELEASES_PREFIX: &str = "ledger/releases/";
/// The index keeps this many releases (newest first); older records stay in the bucket.
pub const INDEX_KEEP: usize = 200;

pub fn record_key(release: &str) -> String {
    format!("{RELEASES_PREFIX}{release}.json")
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("{key} was changed by another glidepath while this one held it; run `glidepath status PLAN` to see who is releasing")]
    Conflict { key: String },
    #[error(
        "{key} is not a glidepath ledger document ({message}); inspect it, then fix or delete it"
    )]
    Corrupt { key: String, message: String },
    #[error("{0}")]
    Refused(String),
}

/// One phase's progress: intent is written before its mutation, done after read-back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseRecord {
    pub intent_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub status: Option<PhaseStatus>,
    pub detail: Option<String>,
}

impl PhaseRecord {
    pub fn is_done(&self) -> bool {
        self.done_at.is_some()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Phases {
    pub lock: PhaseRecord,
    pub snapshot: PhaseRecord,
    pub migrate: PhaseRecord,
    pub assets: PhaseRecord,
    pub deploy: PhaseRecord,
    pub shift: PhaseRecord,
    pub finalize: PhaseRecord,
    pub rollback: PhaseRecord,
}

impl Phases {
    pub fn get(&self, p: Phase) -> &PhaseRecord {
        match p {
            Phase::Lock => &self.lock,
            Phase::Snapshot => &self.snapshot,
            Phase::Migrate => &self.migrate,
            Phase::Assets => &self.assets,
            Phase::Deploy => &self.deploy,
            Phase::Shift => &self.shift,
            Phase::Finalize => &self.finalize,
            Phase::Rollback => &self.rollback,
        }
    }
    pub fn get_mut(&mut self, p: Phase) -> &mut PhaseRecord {
        match p {
            Phase::Lock => &mut self.lock,
            Phase::Snapshot => &mut self.snapshot,
            Phase::Migrate => &mut self.migrate,
            Phase::Assets => &mut self.assets,
            Phase::Deploy => &mut self.deploy,
            Phase::Shift => &mut self.shift,
            Phase::Finalize => &mut self.finalize,
            Phase::Rollback => &mut self.rollback,
        }
    }
}

/// Where the shift is: the step in progress and its timer (a start time and the bake
/// observed so far, never a remaining time).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShiftProgress {
    /// Index of the step in progress (== number of steps passed).
    pub step: usize,
    pub step_started_at: Option<DateTime<Utc>>,
    /// Observed (healthy, unpaused) bake time of the step in progress, seconds.
    pub baked_s: f64,
    /// The step's manual gate was approved.
    pub approved: bool,
    /// Since when the step's manual gate waits for the operator (for watchers).
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
    /// Until when it waits (`gates.approval_timeout` from `waiting_since`).
    #[serde(default)]
    pub waiting_until: Option<DateTime<Utc>>,
    /// The sequential gate's evidence so far (`gate::sequential::GateState` as JSON text),
    /// so a resumed release carries on with it instead of starting afresh and spending its
    /// budget again. Text, not nested JSON: the record is compared exactly after a
    /// re-read (approvals merge), and parsed floats do not always come back bit for bit; a
    /// state this version cannot read only means fresh evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

/// What a gate decided.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// The step baked its whole time with healthy gates.
    Passed,
    Failed,
    /// A manual gate was approved (by the operator, `glidepath approve` or `--auto-approve`).
    Approved,
    /// The operator skipped the rest of the bake.
    Advanced,
}

/// How long a manual gate waited for its approval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Waited {
    pub since: DateTime<Utc>,
    /// When `gates.approval_timeout` would have run out (None in records from before).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

/// One gate decision, for `history`, `glidepath watch` and post-mortems.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "GateRecordStored")]
pub struct GateRecord {
    pub index: usize,
    pub weight: u8,
    pub verdict: GateVerdict,
    /// A failed gate's reason (the signal is apart, in `signal`); who approved a manual gate.
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
    /// The failing signal, for `failed` verdicts.
    pub signal: Option<Signal>,
    /// Where it was judged: `deploy` (before any user traffic: health wait, smoke test) or
    /// `shift` (a traffic step).
    pub phase: Phase,
    /// An approved manual gate: how long it waited (None when it never had to wait).
    pub waited: Option<Waited>,
}

/// A gate record as stored, old shapes included: records written before the verdict was
/// typed joined a failure as `"<signal>: <reason>"` and had no `phase` (a gate at weight 0
/// was the deploy's). The verdict strings are the enum's names, so they read unchanged.
#[derive(Deserialize)]
struct GateRecordStored {
    index: usize,
    weight: u8,
    verdict: GateVerdict,
    reason: Option<String>,
    at: DateTime<Utc>,
    #[serde(default)]
    signal: Option<Signal>,
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default)]
    waited: Option<Waited>,
}

impl From<GateRecordStored> for GateRecord {
    fn from(s: GateRecordStored) -> GateRecord {
        let reason = match (s.signal, s.reason) {
            (Some(signal), Some(r)) if s.phase.is_none() => {
                let joined = format!("{signal}: ");
                Some(r.strip_prefix(&joined).map(str::to_string).unwrap_or(r))
            }
            (_, r) => r,
        };
        let phase = s.phase.unwrap_or(if s.weight == 0 {
            Phase::Deploy
        } else {
            Phase::Shift
        });
        GateRecord {
            index: s.index,
            weight: s.weight,
            verdict: s.verdict,
            reason,
            at: s.at,
            signal: s.signal,
            phase,
            waited: s.waited,
        }
    }
}

/// Listener forward weights as this release last set and read them back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerWeights {
    pub blue: u8,
    pub green: u8,
}

/// One change of the listener's weights this release made (and read back).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WeightsSet {
    pub blue: u8,
    pub green: u8,
    /// The shift step (0-based) that set them; None for the rollback.
    pub step: Option<usize>,
}

/// An approval of a manual gate recorded by `glidepath approve` (from any terminal); the
/// releasing process picks it up while the gate waits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    /// The step (1-based, as `glidepath approve --step N` and the messages count).
    pub step: usize,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A run of the release that stopped on the operator's Abort (traffic stays, lock kept).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interruption {
    pub at: DateTime<Utc>,
    pub message: String,
    /// Why it stopped, when not the operator's Abort (a failed shard of a sharded
    /// migration stops the release this way, so `resume` can go on from that shard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// The release record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: String,
    pub app: String,
    pub environment: String,
    pub version: String,
    pub plan_digest: String,
    pub holder: String,
    /// Live colour when the release started (traffic returns here on rollback).
    pub live: ColourName,
    pub target: ColourName,
    /// The live colour's version when the release started, if known.
    pub live_version: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub phases: Phases,
    pub snapshot_id: Option<String>,
    /// The new task definition (migration and deploy run it).
    pub task_definition: Option<String>,
    pub started_by: Option<String>,
    pub task_arn: Option<String>,
    pub task_exit_code: Option<i32>,
    /// Desired count given to the target colour (the live colour's at deploy time).
    pub desired: Option<i32>,
    pub shift: ShiftProgress,
    pub gates: Vec<GateRecord>,
    pub rollback_reason: Option<String>,
    /// A gate (not the operator) caused the rollback.
    pub rollback_by_gate: bool,
    pub outcome: Option<Outcome>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Fields below were added later; records written before them still load.
    /// Listener weights after the last change this release made (read back).
    #[serde(default)]
    pub weights: Option<LedgerWeights>,
    /// When `glidepath resume` last took this release over.
    #[serde(default)]
    pub resumed_at: Option<DateTime<Utc>>,
    /// The last run stopped on Abort; cleared when a resume takes over.
    #[serde(default)]
    pub interrupted: Option<Interruption>,
    /// Why it ended (beside `outcome`); `exit_code` is what crate::exit made of both.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// Approvals recorded by `glidepath approve` (see [`record_approval`]).
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// When traffic went back to the old colour, and who (or what) asked for it.
    #[serde(default)]
    pub rolled_back_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rolled_back_by: Option<String>,
    /// Every weight change, in order (`weights` is the last); what `weights_changed`
    /// events are made of (see `durable`).
    #[serde(default)]
    pub weights_log: Vec<WeightsSet>,
    /// Who took the release over with `glidepath resume` (or a rollback) last.
    #[serde(default)]
    pub resumed_by: Option<String>,
    /// How many durable events the record implied when `resumed_by` took it over (see
    /// `durable::before_takeover`), so a watcher tells the takeover after them.
    #[serde(default)]
    pub resumed_after: Option<usize>,
    /// The live colour before the migration (see `phases::live_watch`).
    #[serde(default)]
    pub live_baseline: Option<crate::gate::live::LiveBaseline>,
    /// Set when the live colour was found unhealthy in its own terms during the shift.
    #[serde(default)]
    pub live_unhealthy: Option<String>,
    /// The contract migration run on this (finalized) release's schema.
    #[serde(default)]
    pub contract: Option<ContractRecord>,
    /// The read-only windows around the migration (`engine::read_only`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<super::read_only::Window>,
    /// The release that took the lock after this one's was broken and closed this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// Set when `live_version` is unknown because the live colour's image (this) was not
    /// made by the plan's `[deploy].image` template (see `engine::live_image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_image: Option<String>,
    /// A sharded migration's shards, in the order they were started (see
    /// `phases::shards`); empty for a migration of one task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRecord>,
    /// The plan's companion services this release changed (or is changing), in the order
    /// they moved (see `phases::companions`); a rollback undoes them in reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companions: Vec<CompanionRecord>,
    /// The lock a `glidepath rollback` of this release, once finalized, took: saved with
    /// the rollback's intent, so that run's lock phase is told from the record (by the run
    /// and by `watch`) like every other durable event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_lock: Option<UndoLock>,
}

/// Who took the lock to roll back a finalized release, and when (the lock phase of that
/// `glidepath rollback`: from asking for the lock to holding it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UndoLock {
    pub holder: String,
    pub intent_at: DateTime<Utc>,
    pub done_at: DateTime<Utc>,
}

/// One companion service: the task definition it ran, recorded before anything changed
/// it (intent), the new one, how its rollout went, and its way back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CompanionRecord {
    pub name: String,
    pub service: String,
    /// What it ran before this release: where a rollback puts it back.
    pub previous: String,
    pub intent_at: Option<DateTime<Utc>>,
    /// The release's revision for it (registered after the intent, before the update).
    pub task_definition: Option<String>,
    /// Its rollout completed with its tasks running.
    pub done_at: Option<DateTime<Utc>>,
    /// Its rollout failed (circuit breaker, or not done within `deploy.timeout`).
    pub failed_at: Option<DateTime<Utc>>,
    pub failure: Option<String>,
    /// The rollback's intent to put it back on `previous`, then that it is back.
    pub rollback_at: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
}

/// One shard of a sharded migration: intent (with its `startedBy`) before its `RunTask`,
/// the task once started, then done (exit 0) or failed. A shard that failed is tried again
/// only by a `resume`, as a new attempt with its own `startedBy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardRecord {
    pub name: String,
    #[serde(default)]
    pub attempt: u32,
    pub started_by: String,
    pub intent_at: Option<DateTime<Utc>>,
    pub task_arn: Option<String>,
    pub exit_code: Option<i32>,
    pub done_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
}

impl ShardRecord {
    pub fn is_done(&self) -> bool {
        self.done_at.is_some()
    }
}

/// `glidepath contract` on a finalized release: exactly one task, recorded like the
/// migration (intent with its `startedBy` first, the task, how it ended).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContractRecord {
    /// 0 for the first run; a failed attempt is followed by a new one with its own task.
    #[serde(default)]
    pub attempt: u32,
    pub started_by: String,
    pub by: String,
    pub intent_at: Option<DateTime<Utc>>,
    pub task_arn: Option<String>,
    pub exit_code: Option<i32>,
    /// When the task exited 0: from then on the previous version's schema is gone.
    pub done_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
}

impl Record {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        app: &str,
        environment: &str,
        version: &str,
        plan_digest: &str,
        holder: &str,
        live: ColourName,
        live_version: Option<String>,
        now: DateTime<Utc>,
    ) -> Record {
        Record {
            id: id.into(),
            app: app.into(),
            environment: environment.into(),
            version: version.into(),
            plan_digest: plan_digest.into(),
            holder: holder.into(),
            live,
            target: live.other(),
            live_version,
            started_at: now,
            updated_at: now,
            phases: Phases::default(),
            snapshot_id: None,
            task_definition: None,
            started_by: None,
            task_arn: None,
            task_exit_code: None,
            desired: None,
            shift: ShiftProgress::default(),
            gates: Vec::new(),
            rollback_reason: None,
            rollback_by_gate: false,
            outcome: None,
            exit_code: None,
            message: None,
            finished_at: None,
            weights: None,
            resumed_at: None,
            interrupted: None,
            cause: None,
            approvals: Vec::new(),
            rolled_back_at: None,
            rolled_back_by: None,
            weights_log: Vec::new(),
            resumed_by: None,
            resumed_after: None,
            live_baseline: None,
            live_unhealthy: None,
            contract: None,
            read_only: vec![],
            superseded_by: None,
            shards: Vec::new(),
            undo_lock: None,
            companions: Vec::new(),
            live_image: None,
        }
    }

    /// The recorded approval of step `step` (1-based), if any.
    pub fn approval(&self, step: usize) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.step == step)
    }

    /// A `glidepath rollback` of this finalized release recorded its intent and did not
    /// finish: traffic may be on either colour until `resume` or `rollback` completes it.
    pub fn undoing_finalize(&self) -> bool {
        self.outcome == Some(Outcome::Finalized)
            && self.phases.rollback.intent_at.is_some()
            && !self.phases.rollback.is_done()
    }

    /// Nobody has finished with it: no outcome yet, or a rollback of it half done.
    pub fn unfinished(&self) -> bool {
        self.outcome.is_none() || self.undoing_finalize()
    }

    /// The first forward phase not done yet (None: every phase is done).
    pub fn next_phase(&self) -> Option<Phase> {
        Phase::ORDER
            .into_iter()
            .find(|p| !self.phases.get(*p).is_done())
    }
}

/// A colour with the version it runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    pub version: String,
    pub colour: ColourName,
    pub release: Option<String>,
    /// Why traffic must not go back to this slot (a standby colour that a release which
    /// did not finalize redeployed); `glidepath rollback` refuses with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unusable: Option<String>,
    /// The image this colour ran when its version is "unknown" (not made by the plan's
    /// image template), so `status` can say what runs instead of just "unknown".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    pub id: String,
    pub version: String,
    pub holder: String,
    pub live: ColourName,
    pub target: ColourName,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<Outcome>,
    pub message: Option<String>,
    #[serde(default)]
    pub rolled_back_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rolled_back_by: Option<String>,
    /// When the contract migration ran on this release (see [`ContractRecord`]).
    #[serde(default)]
    pub contracted_at: Option<DateTime<Utc>>,
}

impl IndexEntry {
    pub fn of(r: &Record) -> IndexEntry {
        IndexEntry {
            id: r.id.clone(),
            version: r.version.clone(),
            holder: r.holder.clone(),
            live: r.live,
            target: r.target,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
            message: r.message.clone(),
            rolled_back_at: r.rolled_back_at,
            rolled_back_by: r.rolled_back_by.clone(),
            contracted_at: r.contract.as_ref().and_then(|c| c.done_at),
        }
    }
}

/// `ledger/index.json`: who is live, who is standby, what is in progress, what happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Index {
    pub live: Option<Slot>,
    pub standby: Option<Slot>,
    /// The release in progress, if any.
    pub current: Option<String>,
    /// Newest first.
    pub releases: Vec<IndexEntry>,
    /// Releases whose lock `unlock --force` broke while another one was current: nobody
    /// drives them; the next lock holder closes them as superseded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abandoned: Vec<String>,
}

impl Index {
    /// The live colour (blue before the first release).
    pub fn live_colour(&self) -> ColourName {
        self.live.as_ref().map_or(ColourName::Blue, |s| s.colour)
    }

    /// Insert or replace `r`'s entry, newest first (by start), bounded.
    pub fn upsert(&mut self, r: &Record) {
        let entry = IndexEntry::of(r);
        match self.releases.iter_mut().find(|e| e.id == r.id) {
            Some(e) => *e = entry,
            None => {
                // A release closed late (superseded) still lands where it started.
                let at = self
                    .releases
                    .iter()
                    .position(|e| e.started_at <= r.started_at)
                    .unwrap_or(self.releases.len());
                self.releases.insert(at, entry);
            }
        }
        self.releases.truncate(INDEX_KEEP);
    }

    /// `r` finalized: its colour is live and the colour that was live is standby. Done
    /// once: a repeat (resume, or the record written before the index) changes nothing.
    pub fn finalize(&mut self, r: &Record) {
        let already = self
            .live
            .as_ref()
            .is_some_and(|s| s.release.as_deref() == Some(r.id.as_str()));
        if !already {
            let old = self.live.take().unwrap_or_else(|| Slot {
                version: r.live_version.clone().unwrap_or_else(|| "unknown".into()),
                colour: r.live,
                release: None,
                unusable: None,
                image: r.live_image.clone(),
            });
            self.standby = Some(old);
            self.live = Some(Slot {
                version: r.version.clone(),
                colour: r.target,
                release: Some(r.id.clone()),
                unusable: None,
                image: None,
            });
        }
    }

    /// The index after `r` ended (its record already says how): not current any more,
    /// its entry upserted, and `live` / `standby` naming what runs on each colour:
    /// - finalized: its colour live ([`Index::finalize`]);
    /// - otherwise `live` never names it (a finalized release rolled back by hand, or an
    ///   older finalize that wrote the index first): live and standby swap back;
    /// - otherwise, if it deployed to the standby colour, that colour no longer runs the
    ///   standby version: the slot names what it deployed, marked unusable.
    pub fn record_end(&mut self, r: &Record) {
        if self.current.as_deref() == Some(r.id.as_str()) {
            self.current = None;
        }
        self.abandoned.retain(|a| *a != r.id);
        let names_r = |s: &Option<Slot>| {
            s.as_ref()
                .is_some_and(|s| s.release.as_deref() == Some(r.id.as_str()))
        };
        match r.outcome {
            Some(Outcome::Finalized) => self.finalize(r),
            Some(_) if names_r(&self.live) => std::mem::swap(&mut self.live, &mut self.standby),
            // Already named (a repeat of this ending): nothing to do.
            Some(_)
                if r.phases.deploy.intent_at.is_some()
                    && r.target != self.live_colour()
                    && !names_r(&self.standby) =>
            {
                self.standby = Some(Slot {
                    version: r.version.clone(),
                    colour: r.target,
                    release: Some(r.id.clone()),
                    unusable: Some(format!(
                        "release {} ({}) {} after deploying to {}, which no longer runs the version that was live before it",
                        r.id,
                        r.version,
                        r.outcome.map_or("ended".into(), |o| o.to_string()),
                        r.target.name()
                    )),
                    image: None,
                });
            }
            _ => {}
        }
        self.upsert(r);
    }
}

/// A JSON document with the ETag it was read (or last written) with.
#[derive(Debug, Clone)]
pub struct Doc<T> {
    pub key: String,
    pub value: T,
    etag: Option<ETag>,
    /// The value as stored under `etag` (last read or written).
    base: Option<T>,
}

impl<T: Serialize + DeserializeOwned + Clone> Doc<T> {
    /// A document not yet in the store: the first save creates it (`If-None-Match: *`).
    pub fn fresh(key: &str, value: T) -> Doc<T> {
        Doc {
            key: key.into(),
            value,
            etag: None,
            base: None,
        }
    }

    pub async fn load(store: &dyn StateStore, key: &str) -> Result<Option<Doc<T>>, EngineError> {
        let Some((bytes, etag)) = retry::quietly(|| store.get(key)).await? else {
            return Ok(None);
        };
        let value: T = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            key: key.into(),
            message: e.to_string(),
        })?;
        Ok(Some(Doc {
            key: key.into(),
            base: Some(value.clone()),
            value,
            etag: Some(etag),
        }))
    }

    /// Compare-and-swap write. A conflict after a transient failure may be our own earlier
    /// attempt having landed: if the stored bytes are exactly ours, that is a success.
    pub async fn save(&mut self, store: &dyn StateStore) -> Result<(), EngineError> {
        let body = serde_json::to_vec_pretty(&self.value).map_err(|e| EngineError::Corrupt {
            key: self.key.clone(),
            message: e.to_string(),
        })?;
        let (key, etag, bytes) = (self.key.as_str(), &self.etag, &body);
        let written = retry::quietly(|| async move {
            match etag {
                Some(etag) => store.put_if_match(key, bytes.clone(), etag).await,
                None => store.put_if_absent(key, bytes.clone()).await,
            }
        })
        .await?;
        match written {
            Conditional::Written(etag) => {
                self.etag = Some(etag);
                self.base = Some(self.value.clone());
                Ok(())
            }
            Conditional::Conflict => match retry::quietly(|| store.get(key)).await? {
                Some((stored, etag)) if stored == body => {
                    self.etag = Some(etag);
                    self.base = Some(self.value.clone());
                    Ok(())
                }
                _ => Err(EngineError::Conflict {
                    key: self.key.clone(),
                }),
            },
        }
    }
}

impl Doc<Record> {
    /// Adopt approvals another process (`glidepath approve`) added to the stored record
    /// since we last read or wrote it — and only those: any other change is someone else
    /// driving this release, a [`EngineError::Conflict`]. Returns whether the store had
    /// something new.
    pub async fn pull_approvals(&mut self, store: &dyn StateStore) -> Result<bool, EngineError> {
        let conflict = || EngineError::Conflict {
            key: self.key.clone(),
        };
        let Some((bytes, etag)) = retry::quietly(|| store.get(&self.key)).await? else {
            return Ok(false);
        };
        if self.etag.as_ref() == Some(&etag) {
            return Ok(false);
        }
        let stored: Record = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            key: self.key.clone(),
            message: e.to_string(),
        })?;
        let Some(base) = &self.base else {
            return Err(conflict());
        };
        let mut only_approvals = stored.clone();
        only_approvals.approvals = base.approvals.clone();
        if &only_approvals != base {
            return Err(conflict());
        }
        for a in &stored.approvals {
            if !self.value.approvals.contains(a) {
                self.value.approvals.push(a.clone());
            }
        }
        self.etag = Some(etag);
        self.base = Some(stored);
        Ok(true)
    }

    /// [`Doc::save`] that survives `glidepath approve` writing the record meanwhile: on a
    /// conflict, its approvals are adopted ([`Doc::pull_approvals`]) and the save repeated.
    pub async fn save_merging(&mut self, store: &dyn StateStore) -> Result<(), EngineError> {
        let mut attempts = 0;
        loop {
            match self.save(store).await {
                Err(EngineError::Conflict { .. }) if attempts < 5 => {
                    attempts += 1;
                    if !self.pull_approvals(store).await? {
                        return Err(EngineError::Conflict {
                            key: self.key.clone(),
                        });
                    }
                }
                other => return other,
            }
        }
    }
}

/// Record an approval of step `step` of `release` (etag-conditional, re-read and retried
/// when the releasing process wrote in between). Returns the record as saved; an existing
/// approval of that step is kept as it is.
pub async fn record_approval(
    store: &dyn StateStore,
    release: &str,
    step: usize,
    by: &str,
) -> Result<Record, EngineError> {
    let key = record_key(release);
    for _ in 0..10 {
        let mut doc = load_record(store, release)
            .await?
            .ok_or_else(|| EngineError::Refused(format!("release {release} has no record")))?;
        if let Some(a) = doc.value.approval(step) {
            let message = format!("step {step} was already approved by {} at {}", a.by, a.at);
            log_approval(store, release, by, message).await?;
            return Ok(doc.value);
        }
        doc.value.approvals.push(Approval {
            step,
            by: by.into(),
            at: Utc::now(),
        });
        match doc.save(store).await {
            Ok(()) => {
                log_approval(store, release, by, format!("approved step {step}")).await?;
                return Ok(doc.value);
            }
            Err(EngineError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(EngineError::Conflict { key })
}

async fn log_approval(
    store: &dyn StateStore,
    release: &str,
    by: &str,
    message: String,
) -> Result<(), EngineError> {
    let entry = super::oplog::OpEntry {
        at: Utc::now(),
        kind: super::oplog::OpKind::Approve,
        by: by.into(),
        release: Some(release.into()),
        outcome: None,
        exit_code: crate::exit::OK,
        message,
    };
    super::oplog::append(store, &entry).await
}

/// Read-modify-write the index, re-reading on a conflict (releases are serialized by the
/// lock, but `status`-adjacent writers such as a manual rollback may race).
pub async fn update_index(
    store: &dyn StateStore,
    mut change: impl FnMut(&mut Index),
) -> Result<Index, EngineError> {
    let mut last = None;
    for _ in 0..5 {
        let mut doc = Doc::<Index>::load(store, INDEX_KEY)
            .await?
            .unwrap_or_else(|| Doc::fresh(INDEX_KEY, Index::default()));
        let before = doc.value.clone();
        change(&mut doc.value);
        if doc.value == before && doc.etag.is_some() {
            return Ok(doc.value);
        }
        match doc.save(store).await {
            Ok(()) => return Ok(doc.value),
            Err(e @ EngineError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(EngineError::Conflict {
        key: INDEX_KEY.into(),
    }))
}

pub async fn load_index(store: &dyn StateStore) -> Result<Index, EngineError> {
    Ok(Doc::<Index>::load(store, INDEX_KEY)
        .await?
        .map(|d| d.value)
        .unwrap_or_default())
}

pub async fn load_record(
    store: &dyn StateStore,
    release: &str,
) -> Result<Option<Doc<Record>>, EngineError> {
    Doc::load(store, &record_key(release)).await
}
