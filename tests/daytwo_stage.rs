//! Day two on the stage, through the real aws-sdk clients, in both directions (blue →
//! green, and green → blue after one release made green live):
//! - a release aborted with traffic split, its lock broken with `unlock --force`, then a
//!   new release: it puts the abandoned split back on the live colour before it deploys,
//!   and closes the abandoned release as superseded in `history`;
//! - honest standby: a release rolled back after deploying to the standby colour leaves
//!   that standby marked unusable (`status` says why; `rollback` moves nothing and says so);
//! - finalize's write order: a run killed after the record says finalized, before the
//!   index is written, is brought in line by the next run;
//! - a manual rollback killed right after it moved traffic is finished by `resume` or by
//!   `rollback` (exit 0, weights read back).
//!
//! A kill is the run's future dropped at one port call (what `kill -9` leaves behind: no
//! further writes), found by wrapping that port.

use crate::common;

use async_trait::async_trait;
use glidepath::commands::release::ports_for;
use glidepath::engine::event::{ColourName, Command, Envelope, Event, Outcome, Phase};
use glidepath::engine::ledger::{self, Index};
use glidepath::engine::ports::{
    Conditional, ETag, PortResult, Ports, StateStore, Traffic, Weights,
};
use glidepath::engine::run::{self, Finished, ReleaseRequest, ResumeRequest};
use glidepath::exit;
use glidepath::plan::Plan;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;

pub(crate) fn plan() -> Plan {
    let mut p = common::rehearsal_plan();
    for s in &mut p.steps {
        s.bake = Duration::from_secs(2);
    }
    p.gates.poll_interval = Duration::from_secs(1);
    // No asset publishing here: this is about traffic and the ledger.
    p.assets = None;
    p
}

pub(crate) fn request(version: &str, holder: &str) -> ReleaseRequest {
    ReleaseRequest {
        version: version.into(),
        auto_approve: true,
        holder: holder.into(),
        endpoint: None,
    }
}

pub(crate) fn story(events: &[Envelope]) -> String {
    events
        .iter()
        .map(|e| format!("{:?}", e.event))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn all_on(c: ColourName) -> Weights {
    match c {
        ColourName::Blue => Weights::all_blue(),
        ColourName::Green => Weights::green(100),
    }
}

/// A release the operator aborts as soon as traffic is split.
async fn release_aborted_at_the_split(plan: &Plan, ports: &Ports, version: &str) -> Finished {
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request(version, "alice@ops-1"), tx, crx);
    let operator = async move {
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            if matches!(e.event, Event::WeightsChanged { blue, green } if blue > 0 && green > 0) {
                let _ = commands.send(Command::Abort);
            }
            events.push(e);
        }
        events
    };
    let (f, events) = tokio::join!(engine, operator);
    assert_eq!(
        f.outcome,
        Outcome::Interrupted,
        "{}\n{}",
        f.message,
        story(&events)
    );
    f
}

/// A release that reads the listener (with its own ports, over the SDK) when its deploy
/// phase starts. Returns how it ended, its events and those weights.
async fn release_watching_the_deploy(
    plan: &Plan,
    ports: &Ports,
    probe: &Ports,
    version: &str,
) -> (Finished, Vec<Envelope>, Option<Weights>) {
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request(version, "bob@ops-2"), tx, crx);
    let observer = async {
        let (mut at_deploy, mut events) = (None, vec![]);
        while let Some(e) = rx.recv().await {
            let deploying = matches!(
                e.event,
                Event::PhaseStarted {
                    phase: Phase::Deploy
                }
            );
            if deploying && at_deploy.is_none() {
                at_deploy = Some(probe.traffic.weights().await.expect("listener weights"));
            }
            events.push(e);
        }
        (events, at_deploy)
    };
    let (f, (events, at_deploy)) = tokio::join!(engine, observer);
    (f, events, at_deploy)
}

/// `first` finalized releases before A (0: A goes blue → green; 1: green → blue).
async fn supersede_after_forced_unlock(first: usize) {
    let seeded = common::seeded_stage("happy", plan()).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (probe, _) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    for i in 0..first {
        let (tx, _rx) = unbounded_channel();
        let (_c, crx) = unbounded_channel();
        let f = run::release(
            &plan,
            &ports,
            request(&format!("1.{}.0", 3 + i), "alice@ops-1"),
            tx,
            crx,
        )
        .await;
        assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    }
    let live = run::status(&plan, &ports)
        .await
        .expect("status")
        .live
        .map_or(ColourName::Blue, |s| s.colour);

    let a = release_aborted_at_the_split(&plan, &ports, "1.5.0").await;
    let split = probe.traffic.weights().await.expect("weights");
    assert_ne!(split, all_on(live), "A left traffic split");
    let report = run::unlock(&plan, &ports, true, "ops@test")
        .await
        .expect("unlock");
    assert!(report.broken, "{}", report.message);

    let (b, events, at_deploy) = release_watching_the_deploy(&plan, &ports, &probe, "1.6.0").await;
    assert_eq!(b.exit_code, exit::OK, "{}\n{}", b.message, story(&events));
    assert_eq!(
        at_deploy,
        Some(all_on(live)),
        "live {}: when B deployed, A's split was still on the listener\n{}",
        live.name(),
        story(&events)
    );
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            Event::Warning { message } if message.contains(&a.release_id) && message.contains("supersedes")
        )),
        "B says it supersedes A\n{}",
        story(&events)
    );

    let history = run::history(&plan, &ports).await.expect("history");
    let ids: Vec<&str> = history.iter().take(2).map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [b.release_id.as_str(), a.release_id.as_str()]);
    assert_eq!(history[0].outcome, Some(Outcome::Finalized));
    assert_eq!(
        history[1].outcome,
        Some(Outcome::Superseded),
        "{:?}",
        history[1]
    );
    assert!(history[1].finished_at.is_some());
    let status = run::status(&plan, &ports).await.expect("status");
    assert!(status.current.is_none() && status.lock.is_none());
    let now_live = status.live.expect("live").colour;
    assert_eq!(now_live, live.other(), "B is live on the other colour");
    assert_eq!(
        probe.traffic.weights().await.expect("weights"),
        all_on(now_live)
    );
}

#[tokio::test]
async fn forced_unlock_then_release_supersedes_blue_to_green() {
    supersede_after_forced_unlock(0).await;
}

#[tokio::test]
async fn forced_unlock_then_release_supersedes_green_to_blue() {
    supersede_after_forced_unlock(1).await;
}

// --- shared by the tests below ------------------------------------------------------------

/// A seeded happy stage, its ports and `first` finalized releases (0: the next release goes
/// blue → green; 1: green → blue; 2: blue → green again).
pub(crate) struct Day {
    pub(crate) seeded: common::Seeded,
    pub(crate) ports: Ports,
    pub(crate) plan: Plan,
    pub(crate) live: ColourName,
}

impl Day {
    pub(crate) async fn after(first: usize) -> Day {
        let seeded = common::seeded_stage("happy", plan()).await;
        let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
            .await
            .expect("ports");
        for i in 0..first {
            let (tx, _rx) = unbounded_channel();
            let (_c, crx) = unbounded_channel();
            let req = request(&format!("1.{}.0", 3 + i), "alice@ops-1");
            let f = run::release(&plan, &ports, req, tx, crx).await;
            assert_eq!(f.exit_code, exit::OK, "{}", f.message);
        }
        let live = live_colour(&plan, &ports).await;
        Day {
            seeded,
            ports,
            plan,
            live,
        }
    }

    /// Fresh ports over the same stage (what a new process would build).
    pub(crate) async fn new_ports(&self) -> Ports {
        ports_for(&self.seeded.config, &self.seeded.plan)
            .await
            .expect("ports")
            .0
    }
}

pub(crate) async fn live_colour(plan: &Plan, ports: &Ports) -> ColourName {
    run::status(plan, ports)
        .await
        .expect("status")
        .live
        .map_or(ColourName::Blue, |s| s.colour)
}

pub(crate) fn quiet() -> (
    tokio::sync::mpsc::UnboundedSender<Envelope>,
    tokio::sync::mpsc::UnboundedReceiver<Command>,
) {
    let (tx, _rx) = unbounded_channel();
    let (_c, crx) = unbounded_channel();
    (tx, crx)
}

pub(crate) fn resume_request(holder: &str) -> ResumeRequest {
    ResumeRequest {
        auto_approve: true,
        holder: holder.into(),
        endpoint: None,
    }
}

/// Run `fut` until it finishes (Some) or `trip` fires (None: the run is dropped there).
async fn until_tripped(trip: &Notify, fut: impl Future<Output = Finished>) -> Option<Finished> {
    tokio::select! {
        f = fut => Some(f),
        () = trip.notified() => None,
    }
}

/// The state store, killed at finalize's index write: the first index write whose live
/// slot names another release than `live_release` never happens and never returns.
struct KillAtFinalizeIndex {
    inner: Box<dyn StateStore>,
    live_release: Option<String>,
    trip: Arc<Notify>,
}

impl KillAtFinalizeIndex {
    async fn check(&self, key: &str, body: &[u8]) {
        if key != ledger::INDEX_KEY {
            return;
        }
        let ix: Index = serde_json::from_slice(body).expect("an index");
        let names = ix.live.and_then(|s| s.release);
        if names != self.live_release {
            self.trip.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl StateStore for KillAtFinalizeIndex {
    async fn get(&self, key: &str) -> PortResult<Option<(Vec<u8>, ETag)>> {
        self.inner.get(key).await
    }
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> PortResult<Conditional> {
        self.check(key, &body).await;
        self.inner.put_if_absent(key, body).await
    }
    async fn put_if_match(&self, key: &str, body: Vec<u8>, etag: &ETag) -> PortResult<Conditional> {
        self.check(key, &body).await;
        self.inner.put_if_match(key, body, etag).await
    }
    async fn delete(&self, key: &str) -> PortResult<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        self.inner.list(prefix).await
    }
}

/// The listener, killed right after the first weight change landed.
struct KillAfterFirstShift {
    inner: Box<dyn Traffic>,
    trip: Arc<Notify>,
}

#[async_trait]
impl Traffic for KillAfterFirstShift {
    async fn weights(&self) -> PortResult<Weights> {
        self.inner.weights().await
    }
    async fn set_weights(&self, weights: Weights) -> PortResult<()> {
        self.inner.set_weights(weights).await?;
        self.trip.notify_one();
        std::future::pending().await
    }
    async fn test_weights(&self) -> PortResult<Option<Weights>> {
        self.inner.test_weights().await
    }
    async fn set_test_weights(&self, weights: Weights) -> PortResult<()> {
        self.inner.set_test_weights(weights).await
    }
}

// --- honest standby -------------------------------------------------------------------------

/// B deploys to the standby colour and the operator rolls it back at the first split: the
/// standby slot names B's version, marked unusable with why (`status` shows it), and a
/// `glidepath rollback` then moves nothing (exit 0), saying the standby cannot take traffic.
async fn standby_marked_unusable(first: usize) {
    let day = Day::after(first).await;
    let (plan, ports, live) = (&day.plan, &day.ports, day.live);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request("2.0.0", "bob@ops-2"), tx, crx);
    let operator = async move {
        while let Some(e) = rx.recv().await {
            if matches!(e.event, Event::WeightsChanged { blue, green } if blue > 0 && green > 0) {
                let _ = commands.send(Command::Rollback);
            }
        }
    };
    let (b, ()) = tokio::join!(engine, operator);
    assert_eq!(b.outcome, Outcome::RolledBack, "{}", b.message);
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live)
    );

    let status = run::status(plan, ports).await.expect("status");
    let standby = status.standby.clone().expect("a standby slot");
    assert_eq!(standby.colour, live.other());
    assert_eq!(standby.version, "2.0.0", "{standby:?}");
    assert_eq!(standby.release.as_deref(), Some(b.release_id.as_str()));
    let why = standby.unusable.clone().expect("marked unusable");
    assert!(why.contains(&b.release_id), "{why}");
    let text = glidepath::commands::release::status_text(&status);
    assert!(text.contains("UNUSABLE for a rollback"), "{text}");

    let (tx, _rx) = unbounded_channel();
    let f = run::rollback(plan, ports, "dave@ops-4", tx).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert!(
        f.message.contains("standby cannot take traffic") && f.message.contains(&why),
        "{}",
        f.message
    );
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live),
        "the rollback moved nothing"
    );
    assert_eq!(live_colour(plan, ports).await, live);
}

#[tokio::test]
async fn standby_left_by_a_rolled_back_release_is_unusable_blue_to_green() {
    standby_marked_unusable(0).await;
}

#[tokio::test]
async fn standby_left_by_a_rolled_back_release_is_unusable_green_to_blue() {
    standby_marked_unusable(1).await;
}

// --- finalize's write order -----------------------------------------------------------------

/// B killed at finalize's index write (the record already says finalized): the index still
/// names the old colour live and the lock is held. `resume` brings the index in line and
/// frees the lock (exit 0); traffic stays on B's colour.
async fn killed_between_record_and_index(first: usize) {
    let day = Day::after(first).await;
    let live = day.live;
    let before = run::status(&day.plan, &day.ports).await.expect("status");
    let trip = Arc::new(Notify::new());
    let mut killable = day.new_ports().await;
    killable.state = Box::new(KillAtFinalizeIndex {
        inner: killable.state,
        live_release: before.live.and_then(|s| s.release),
        trip: trip.clone(),
    });
    let (tx, crx) = quiet();
    let b = run::release(&day.plan, &killable, request("2.0.0", "bob@ops-2"), tx, crx);
    assert!(
        until_tripped(&trip, b).await.is_none(),
        "killed in finalize"
    );
    drop(killable);

    let (plan, ports) = (&day.plan, &day.ports);
    let st = run::status(plan, ports).await.expect("status");
    let b_id = st
        .lock
        .as_ref()
        .expect("the killed run's lock")
        .body
        .release
        .clone();
    let r = ledger::load_record(ports.state.as_ref(), &b_id)
        .await
        .expect("record")
        .expect("B's record");
    assert_eq!(r.value.outcome, Some(Outcome::Finalized));
    assert_eq!(live_colour(plan, ports).await, live, "the index is behind");

    let (tx, crx) = quiet();
    let f = run::resume(plan, ports, resume_request("carol@ops-3"), tx, crx).await;
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    let st = run::status(plan, ports).await.expect("status");
    let now_live = st.live.clone().expect("live");
    assert_eq!(
        (now_live.colour, now_live.release.as_deref()),
        (live.other(), Some(b_id.as_str())),
        "{st:?}"
    );
    assert_eq!(st.standby.as_ref().expect("standby").colour, live);
    assert!(st.lock.is_none() && st.current.is_none(), "{st:?}");
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live.other())
    );
}

#[tokio::test]
async fn killed_between_finalize_record_and_index_blue_to_green() {
    killed_between_record_and_index(0).await;
}

#[tokio::test]
async fn killed_between_finalize_record_and_index_green_to_blue() {
    killed_between_record_and_index(1).await;
}

// --- a manual rollback cut short --------------------------------------------------------------

/// `glidepath rollback` of the finalized latest release, killed right after it moved
/// traffic back; `resume` (or a second `rollback`) finishes it: exit 0, traffic on the
/// colour live before that release (read back), the record rolled back, the index and the
/// lock in line.
async fn killed_manual_rollback_is_finished(first: usize, with_resume: bool) {
    let day = Day::after(first).await;
    let live = day.live;
    let latest = run::history(&day.plan, &day.ports).await.expect("history")[0]
        .id
        .clone();
    let trip = Arc::new(Notify::new());
    let mut killable = day.new_ports().await;
    killable.traffic = Box::new(KillAfterFirstShift {
        inner: killable.traffic,
        trip: trip.clone(),
    });
    let (tx, _rx) = unbounded_channel();
    let rb = run::rollback(&day.plan, &killable, "dave@ops-4", tx);
    assert!(until_tripped(&trip, rb).await.is_none(), "killed mid-way");
    drop(killable);

    let (plan, ports) = (&day.plan, &day.ports);
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live.other()),
        "the rollback moved traffic before the kill"
    );
    let f = if with_resume {
        let (tx, crx) = quiet();
        run::resume(plan, ports, resume_request("erin@ops-5"), tx, crx).await
    } else {
        let (tx, _rx) = unbounded_channel();
        run::rollback(plan, ports, "erin@ops-5", tx).await
    };
    assert_eq!(f.exit_code, exit::OK, "{}", f.message);
    assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live.other())
    );
    let st = run::status(plan, ports).await.expect("status");
    assert_eq!(live_colour(plan, ports).await, live.other(), "{st:?}");
    assert!(st.lock.is_none() && st.current.is_none(), "{st:?}");
    let r = ledger::load_record(ports.state.as_ref(), &latest)
        .await
        .expect("record")
        .expect("the latest record");
    assert_eq!(r.value.outcome, Some(Outcome::RolledBack));
    assert!(r.value.rolled_back_at.is_some());
}

/// 1.3.0 live on green; the rollback moves green → blue; `resume` finishes it.
#[tokio::test]
async fn killed_manual_rollback_green_to_blue_is_finished_by_resume() {
    killed_manual_rollback_is_finished(1, true).await;
}

/// 1.4.0 live on blue (after 1.3.0 on green); the rollback moves blue → green; a second
/// `rollback` finishes it.
#[tokio::test]
async fn killed_manual_rollback_blue_to_green_is_finished_by_rollback() {
    killed_manual_rollback_is_finished(2, false).await;
}
