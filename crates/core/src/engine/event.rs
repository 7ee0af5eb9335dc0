//! Events: everything the engine tells the views. One stream feeds the TUI, the line
//! printer and JSON Lines, so they can never disagree. Field names are a public,
//! documented contract (docs/events.md): add fields, never rename.

use crate::gate::{HealthSample, Signal, Verdict};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Lock,
    Snapshot,
    Migrate,
    Assets,
    Deploy,
    Shift,
    Finalize,
    Rollback,
}

impl Phase {
    /// The forward phases in the order a release runs them.
    pub const ORDER: [Phase; 7] = [
        Phase::Lock,
        Phase::Snapshot,
        Phase::Migrate,
        Phase::Assets,
        Phase::Deploy,
        Phase::Shift,
        Phase::Finalize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Lock => "lock",
            Phase::Snapshot => "snapshot",
            Phase::Migrate => "migrate",
            Phase::Assets => "assets",
            Phase::Deploy => "deploy",
            Phase::Shift => "shift",
            Phase::Finalize => "finalize",
            Phase::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Done,
    Failed,
    Skipped,
}

/// What a `progress` event counts. Typed, so a view that reacts to one kind (the bake
/// seconds `glidepath watch` reports) cannot drift from the writer; in JSON it is the
/// unit's symbol.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Unit {
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "files")]
    Files,
    #[serde(rename = "tasks")]
    Tasks,
    /// Observed bake seconds of the current step.
    #[serde(rename = "s")]
    Seconds,
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unit::Percent => "%",
            Unit::Files => "files",
            Unit::Tasks => "tasks",
            Unit::Seconds => "s",
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finalized,
    RolledBack,
    Failed,
    /// The operator quit or aborted; traffic stays where it is, `resume` continues.
    Interrupted,
    /// Left unfinished, its lock broken (`unlock --force`); the next release closed it
    /// and put its traffic back.
    Superseded,
}

impl Outcome {
    /// How people read it ("rolled back"; JSON keeps `rolled_back`).
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Finalized => "finalized",
            Outcome::RolledBack => "rolled back",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

// Colours are the gates' vocabulary too; the type lives there so `gate` needs no `engine`.
pub use crate::gate::ColourName;

/// The JSON Lines envelope: every line has `type`, `ts` and `release`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub ts: DateTime<Utc>,
    pub release: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ReleaseStarted {
        app: String,
        environment: String,
        version: String,
        production: bool,
        /// Live colour at the start (the one traffic comes back to on rollback).
        live: ColourName,
        /// The colour being released to.
        target: ColourName,
        /// Endpoint override in use (a rehearsal), None for real AWS.
        endpoint: Option<String>,
        region: String,
        resumed: bool,
        /// A `glidepath rollback` run: traffic moves from `target` back to `live`.
        #[serde(default)]
        rollback: bool,
    },
    LockAcquired {
        holder: String,
    },
    PhaseStarted {
        phase: Phase,
    },
    PhaseFinished {
        phase: Phase,
        status: PhaseStatus,
        /// Human detail: snapshot id, task id, why skipped …
        detail: Option<String>,
        duration_ms: u64,
    },
    /// Progress of a long phase (snapshot percent, asset files/bytes, deploy tasks).
    Progress {
        phase: Phase,
        done: u64,
        total: u64,
        unit: Unit,
        message: Option<String>,
    },
    /// One line of the migration task's log (or another task's).
    Log {
        source: String,
        line: String,
    },
    /// The migration task's identity and state as last seen.
    Task {
        task_arn: String,
        status: String,
        exit_code: Option<i32>,
    },
    /// One health poll and the gate's current verdict.
    Health {
        sample: HealthSample,
        verdict: Verdict,
        /// Seconds of bake observed so far in this step / required.
        baked_s: f64,
        bake_s: f64,
    },
    /// The sequential gate's evidence after a period: per signal, the statistic and the
    /// threshold at which it fails the gate.
    GateEvidence {
        evidence: Vec<crate::gate::Evidence>,
    },
    /// A poll that could not observe (throttled, outage): bake time does not advance.
    Blind {
        reason: String,
        blind_s: f64,
    },
    StepStarted {
        index: usize,
        steps: usize,
        weight: u8,
        bake_s: f64,
        manual: bool,
        /// The colour whose percent `weight` is (the colour being released). Events
        /// written before it existed read as green.
        #[serde(default = "ColourName::green")]
        colour: ColourName,
    },
    WeightsChanged {
        blue: u8,
        green: u8,
    },
    /// The test listener (plan `traffic.test_listener`) forwards only to `colour` (read
    /// back), so the smoke test reaches the version being released.
    TestTraffic {
        /// The plan's `traffic.test_listener`, as written there.
        listener: String,
        colour: ColourName,
        /// The plan's target group of that colour (as resolved: an ARN over AWS).
        target_group: String,
    },
    GateWaiting {
        index: usize,
        weight: u8,
        reason: String,
    },
    GatePassed {
        index: usize,
        weight: u8,
    },
    GateFailed {
        index: usize,
        weight: u8,
        signal: Signal,
        reason: String,
    },
    Paused {
        reason: String,
    },
    Resumed,
    /// Something the operator should know that is not a failure.
    Notice {
        message: String,
    },
    Warning {
        message: String,
    },
    ReleaseFinished {
        outcome: Outcome,
        exit_code: i32,
        message: String,
        /// Snapshot to restore from in a disaster (printed on failure).
        snapshot_id: Option<String>,
    },
    /// The live colour judged against itself: its baseline before the migration, the
    /// watch after it, and (on failure only) during the shift.
    LiveWatch {
        colour: ColourName,
        stage: LiveStage,
        verdict: Verdict,
        summary: String,
        evidence: Vec<crate::gate::Evidence>,
        /// Seconds of complete periods observed / `migration.watch` (0 during the shift).
        watched_s: f64,
        watch_s: f64,
    },
    /// The read-only window opened: `read_only.enter` runs next (durable).
    ReadOnlyOpened {
        /// When the window opened (its intent in the ledger); the clock runs from here.
        opened_at: DateTime<Utc>,
        /// `read_only.max`: the longest it may stay open.
        max_s: f64,
    },
    /// `read_only.exit` ran and exited 0: the app is writable again (durable).
    ReadOnlyClosed {
        /// From opening to closing.
        duration_ms: u64,
        /// Why it closed now: the task stopped, the release stopped, a resume after a crash …
        reason: String,
    },
    /// `read_only.exit` failed: the window is still open, the app may still refuse writes
    /// (durable; the release ends with exit code 7).
    ReadOnlyExitFailed {
        message: String,
    },
    /// One shard of a sharded migration (`migration.shards`) started, was done (its task
    /// exited 0) or failed.
    Shard {
        /// 0-based position in `migration.shards`.
        index: usize,
        shards: usize,
        name: String,
        state: ShardState,
        /// 0 for the first try; a `resume` after the shard failed tries it again as 1, …
        attempt: u32,
        /// The task's exit code (done and failed).
        exit_code: Option<i32>,
    },
    /// A companion service (`[[companions]]`) started its rollout, completed it, failed,
    /// or is being (was) put back on its previous task definition by the rollback.
    Companion {
        /// 0-based position in the order companions move.
        index: usize,
        companions: usize,
        name: String,
        service: String,
        state: CompanionState,
        /// The task definition it is moving to: done and failed, the release's;
        /// rolling_back and rolled_back, the one it ran before; started, none (the release's
        /// revision is registered after the intent is recorded).
        task_definition: Option<String>,
        /// Why it failed (failed only).
        reason: Option<String>,
    },
}

/// Where one companion service is (see [`Event::Companion`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CompanionState {
    /// Its previous task definition is recorded; the rollout starts.
    Started,
    /// The rollout completed with its tasks running on the new task definition.
    Done,
    /// The rollout failed: the release rolls back.
    Failed,
    /// The rollback is putting it back on its previous task definition.
    RollingBack,
    /// Back on its previous task definition, rollout completed.
    RolledBack,
}

/// Where one shard of a sharded migration is (see [`Event::Shard`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    Started,
    Done,
    Failed,
}

/// Which look at the live colour a [`Event::LiveWatch`] is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LiveStage {
    /// Before the migration: what the live colour looks like (its own yardstick).
    Baseline,
    /// After the migration, before anything is deployed.
    Watch,
    /// During the shift: the live colour is unhealthy in its own terms.
    Shift,
}

/// What the operator (or the script) tells the engine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Approve the manual gate that is waiting.
    Approve,
    /// Stop advancing (bake clock stops, weights stay).
    Pause,
    Resume,
    /// Skip the rest of the current bake and go to the next step (operator's call).
    Advance,
    /// Weights back to the live colour now.
    Rollback,
    /// Stop the release where it is (traffic stays); `resume` continues later.
    Abort,
}
