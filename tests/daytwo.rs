//! Day two on the in-memory world (paused time): one small deterministic test per engine
//! rule that the random sequences (`sequences`) once broke — superseding a release whose
//! lock was broken, the standby slot naming what runs there, finalize's write order and a
//! manual rollback cut short. Kill points are found by name in a clean run's port calls,
//! then replayed on a fresh world (the fake is deterministic).

use crate::common;

use glidepath::engine::event::{ColourName, Command, Envelope, Event, Outcome};
use glidepath::engine::fake::{CrashMode, FakeWorld};
use glidepath::engine::ledger::{self, Index, Record};
use glidepath::engine::lock;
use glidepath::engine::ports::Weights;
use glidepath::engine::run::{self, Finished, ResumeRequest};
use glidepath::plan::{GreenAfterRollback, Plan};
use std::future::Future;
use tokio::sync::mpsc::unbounded_channel;

fn index(world: &FakeWorld) -> Index {
    world.with(|w| {
        w.objects
            .get(ledger::INDEX_KEY)
            .map(|(b, _)| serde_json::from_slice(b).unwrap())
            .unwrap_or_default()
    })
}

fn record(world: &FakeWorld, id: &str) -> Record {
    world.with(|w| {
        let (b, _) = w
            .objects
            .get(&ledger::record_key(id))
            .unwrap_or_else(|| panic!("no record of {id}"));
        serde_json::from_slice(b).unwrap()
    })
}

fn lock_held(world: &FakeWorld) -> bool {
    world.with(|w| w.objects.contains_key(lock::LOCK_KEY))
}

fn weights(world: &FakeWorld) -> Weights {
    world.with(|w| w.weights)
}

fn all_on(c: ColourName) -> Weights {
    match c {
        ColourName::Blue => Weights::all_blue(),
        ColourName::Green => Weights::green(100),
    }
}

/// Run an engine future; with `kill`, drop it at that port call (counted from now).
async fn drive(
    world: &FakeWorld,
    kill: Option<(u64, CrashMode)>,
    fut: impl Future<Output = Finished>,
) -> Option<Finished> {
    if let Some((n, mode)) = kill {
        world.with(|w| {
            w.crash_at = Some((w.call_count + n, mode));
            w.crashed = false;
        });
    }
    let out = tokio::select! {
        f = fut => Some(f),
        _ = world.crashed() => None,
    };
    world.with(|w| {
        w.crash_at = None;
        w.crashed = false;
    });
    out
}

/// `glidepath release VERSION --auto-approve`; `abort_when` sends Abort at that event.
async fn release(
    world: &FakeWorld,
    plan: &Plan,
    version: &str,
    kill: Option<(u64, CrashMode)>,
    abort_when: fn(&Event) -> bool,
) -> Option<Finished> {
    let ports = world.ports(true);
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (ctx, crx) = unbounded_channel::<Command>();
    let mut req = common::release_request(version);
    req.auto_approve = true;
    let engine = run::release(plan, &ports, req, tx, crx);
    let operator = async move {
        while let Some(env) = rx.recv().await {
            if abort_when(&env.event) {
                let _ = ctx.send(Command::Abort);
            }
        }
        std::future::pending::<()>().await
    };
    let fut = async {
        tokio::select! {
            f = engine => f,
            _ = operator => unreachable!(),
        }
    };
    drive(world, kill, fut).await
}

fn never(_: &Event) -> bool {
    false
}

/// Abort once traffic is split (the first step's weights are set).
fn at_first_split(e: &Event) -> bool {
    matches!(e, Event::WeightsChanged { blue, green } if *blue > 0 && *green > 0)
}

async fn resume(world: &FakeWorld, plan: &Plan) -> Finished {
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (_ctx, crx) = unbounded_channel();
    let req = ResumeRequest {
        auto_approve: true,
        holder: "bob@ops-2".into(),
        endpoint: None,
    };
    run::resume(plan, &ports, req, tx, crx).await
}

async fn rollback(
    world: &FakeWorld,
    plan: &Plan,
    kill: Option<(u64, CrashMode)>,
) -> Option<Finished> {
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    drive(world, kill, run::rollback(plan, &ports, "dave@ops-4", tx)).await
}

async fn unlock_force(world: &FakeWorld, plan: &Plan) {
    let ports = world.ports(true);
    let r = run::unlock(plan, &ports, true, "ops@test")
        .await
        .expect("unlock");
    assert!(r.broken, "{}", r.message);
}

/// The 1-based number of the call matching `pred` (the `nth` such, from 1) in a clean run
/// of `op` on a fresh world prepared by `setup`, counted from the start of `op`.
async fn call_number<S, O, F>(
    plan: &Plan,
    setup: S,
    op: O,
    pred: fn(&str) -> bool,
    nth: usize,
) -> u64
where
    S: AsyncFnOnce(&FakeWorld),
    O: FnOnce(FakeWorld) -> F,
    F: Future<Output = ()>,
{
    let world = FakeWorld::for_plan(plan);
    setup(&world).await;
    let from = world.with(|w| w.calls.len());
    op(world.clone()).await;
    let calls = world.with(|w| w.calls[from..].to_vec());
    let at = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| pred(c))
        .nth(nth - 1)
        .unwrap_or_else(|| panic!("no call #{nth} like that in {calls:#?}"))
        .0;
    at as u64 + 1
}

/// A fresh world in which 1.1.0 finalized and then `glidepath rollback` was killed right
/// after its first port call matching `at` took effect (found in a clean run first).
async fn finalized_then_rollback_killed_after(plan: &Plan, at: fn(&str) -> bool) -> FakeWorld {
    let setup = async |w: &FakeWorld| {
        let p = common::engine_plan();
        let f = release(w, &p, "1.1.0", None, never).await.unwrap();
        assert_eq!(f.outcome, Outcome::Finalized);
    };
    let n = call_number(
        plan,
        setup,
        |w: FakeWorld| async move {
            let p = common::engine_plan();
            rollback(&w, &p, None).await.unwrap();
        },
        at,
        1,
    )
    .await;
    let world = FakeWorld::for_plan(plan);
    setup(&world).await;
    assert!(rollback(&world, plan, Some((n, CrashMode::After)))
        .await
        .is_none());
    world
}

/// Idle and consistent: lock free, nothing current, all traffic on the index's live colour.
fn idle_and_consistent(world: &FakeWorld) {
    let ix = index(world);
    assert!(!lock_held(world), "the lock is free");
    assert_eq!(ix.current, None, "nothing is current: {ix:#?}");
    assert!(ix.abandoned.is_empty(), "nothing abandoned: {ix:#?}");
    assert_eq!(
        weights(world),
        all_on(ix.live_colour()),
        "all traffic on the live colour the index names: {ix:#?}"
    );
}

// --- (1) and (2): a release superseded after `unlock --force` ---------------------------

/// A aborted with traffic split; `unlock --force`; B. A is closed as superseded (by B,
/// with when) in its record and in history, and nothing calls it in progress.
#[tokio::test(start_paused = true)]
async fn a_superseded_release_is_closed_as_superseded_in_history() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let a = release(&world, &plan, "1.1.0", None, at_first_split)
        .await
        .expect("not killed");
    assert_eq!(a.outcome, Outcome::Interrupted, "{}", a.message);
    unlock_force(&world, &plan).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let b = release(&world, &plan, "1.2.0", None, never)
        .await
        .expect("not killed");
    assert_eq!(b.outcome, Outcome::Finalized, "{}", b.message);

    let r = record(&world, &a.release_id);
    assert_eq!(r.outcome, Some(Outcome::Superseded));
    assert_eq!(r.superseded_by.as_deref(), Some(b.release_id.as_str()));
    assert!(r.finished_at.is_some());
    let ports = world.ports(true);
    let history = run::history(&plan, &ports).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [b.release_id.as_str(), a.release_id.as_str()]);
    assert_eq!(history[1].outcome, Some(Outcome::Superseded));
    assert!(
        history[1]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&b.release_id),
        "{:?}",
        history[1].message
    );
    let status = run::status(&plan, &ports).await.unwrap();
    assert!(status.current.is_none());
    idle_and_consistent(&world);
}

/// A aborted with blue 90 / green 10; `unlock --force`; B fails before it moves traffic.
/// B put A's split back on blue (read back) before anything else, so idle all traffic is
/// on the live colour, and no deploy ran over a colour taking traffic.
#[tokio::test(start_paused = true)]
async fn a_superseding_release_puts_the_split_back_before_it_deploys() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let a = release(&world, &plan, "1.1.0", None, at_first_split)
        .await
        .expect("not killed");
    assert_eq!(a.outcome, Outcome::Interrupted);
    assert!(weights(&world).green > 0, "A left traffic split");
    unlock_force(&world, &plan).await;
    let from = world.with(|w| w.calls.len());
    world.with(|w| w.deploy_unhealthy = true);
    let b = release(&world, &plan, "1.2.0", None, never)
        .await
        .expect("not killed");
    assert_ne!(b.outcome, Outcome::Finalized, "{}", b.message);
    let calls = world.with(|w| w.calls[from..].to_vec());
    let restored = calls
        .iter()
        .position(|c| c.starts_with("traffic.set_weights"))
        .unwrap_or_else(|| panic!("B never touched the weights: {calls:#?}"));
    let deployed = calls
        .iter()
        .position(|c| c.starts_with("fleet.deploy"))
        .expect("B deployed");
    assert!(restored < deployed, "{calls:#?}");
    world.with(|w| {
        assert!(
            w.deploys_under_traffic.is_empty(),
            "{:?}",
            w.deploys_under_traffic
        );
    });
    assert_eq!(
        record(&world, &a.release_id).outcome,
        Some(Outcome::Superseded)
    );
    idle_and_consistent(&world);
}

// --- (3) the standby slot names what runs there ------------------------------------------

/// rollback.green = keep: 1.1.0 finalizes on green; 1.2.0 deploys to blue (the standby)
/// and fails there, its version left running on blue. The index's standby then names
/// 1.2.0 on blue, marked unusable (so `status` and `assets prune` see what really runs
/// there, and no rollback sends traffic to it): `glidepath rollback` leaves traffic on
/// green.
#[tokio::test(start_paused = true)]
async fn the_standby_names_the_failed_version_left_on_it() {
    let mut plan = common::engine_plan();
    plan.rollback.green = GreenAfterRollback::Keep;
    let world = FakeWorld::for_plan(&plan);
    let first = release(&world, &plan, "1.1.0", None, never).await.unwrap();
    assert_eq!(first.outcome, Outcome::Finalized, "{}", first.message);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    world.with(|w| w.deploy_unhealthy = true);
    let second = release(&world, &plan, "1.2.0", None, never).await.unwrap();
    world.with(|w| w.deploy_unhealthy = false);
    assert_ne!(second.outcome, Outcome::Finalized, "{}", second.message);
    let ports = world.ports(true);
    let status = run::status(&plan, &ports).await.unwrap();
    let standby = status.standby.clone().expect("a standby");
    assert_eq!(standby.colour, ColourName::Blue);
    assert_eq!(standby.version, "1.2.0", "{standby:?}");
    assert_eq!(standby.release.as_deref(), Some(second.release_id.as_str()));
    assert!(
        standby
            .unusable
            .as_deref()
            .unwrap_or_default()
            .contains("1.2.0"),
        "{standby:?}"
    );
    let f = rollback(&world, &plan, None).await.unwrap();
    assert_eq!(weights(&world), Weights::green(100), "{}", f.message);
    idle_and_consistent(&world);
}

// --- (4) finalize: record first, then the index -----------------------------------------

/// A release killed inside finalize, at each of its two ledger writes (before and after
/// the index write), then `glidepath rollback`: traffic, record and index agree — the
/// rolled-back release is never left named live.
#[tokio::test(start_paused = true)]
async fn a_rollback_after_a_kill_inside_finalize_leaves_one_answer() {
    let plan = common::engine_plan();
    let is_index_write = |c: &str| {
        c == "state.put_if_match ledger/index.json" || c == "state.put_if_absent ledger/index.json"
    };
    // The forward path writes the index once when it starts; finalize's is the second.
    let n = call_number(
        &plan,
        async |_| {},
        |w: FakeWorld| async move {
            let p = common::engine_plan();
            release(&w, &p, "1.1.0", None, never).await.unwrap();
        },
        is_index_write,
        2,
    )
    .await;
    for mode in [CrashMode::Before, CrashMode::After] {
        let world = FakeWorld::for_plan(&plan);
        let killed = release(&world, &plan, "1.1.0", Some((n, mode)), never).await;
        assert!(killed.is_none(), "{mode:?}: killed inside finalize");
        let f = rollback(&world, &plan, None).await.unwrap();
        let ix = index(&world);
        let id = ix.releases[0].id.clone();
        let r = record(&world, &id);
        assert_eq!(
            r.outcome,
            Some(Outcome::RolledBack),
            "{mode:?}: {}",
            f.message
        );
        assert_ne!(
            ix.live.as_ref().and_then(|s| s.release.as_deref()),
            Some(id.as_str()),
            "{mode:?}: the rolled-back release is not live: {ix:#?}"
        );
        assert_eq!(ix.live_colour(), ColourName::Blue, "{mode:?}");
        idle_and_consistent(&world);
    }
}

// --- (5) a manual rollback of a finalized release, cut short ----------------------------

/// 1.1.0 finalizes on green; `glidepath rollback` is killed right after it moved traffic
/// to blue. `resume` (or a second `rollback`) finishes it: record rolled back, index live
/// on blue, lock free — never "already ended" with the index naming green live.
#[tokio::test(start_paused = true)]
async fn a_killed_manual_rollback_is_finished_by_resume_or_rollback() {
    let plan = common::engine_plan();
    for finish_with_resume in [true, false] {
        let world =
            finalized_then_rollback_killed_after(&plan, |c| c.starts_with("traffic.set_weights"))
                .await;
        let id = index(&world).releases[0].id.clone();
        assert_eq!(
            weights(&world),
            Weights::all_blue(),
            "traffic moved before the kill"
        );
        let f = if finish_with_resume {
            resume(&world, &plan).await
        } else {
            rollback(&world, &plan, None).await.unwrap()
        };
        assert_eq!(f.outcome, Outcome::RolledBack, "{}", f.message);
        assert_eq!(f.exit_code, 0, "{}", f.message);
        assert_eq!(record(&world, &id).outcome, Some(Outcome::RolledBack));
        let ix = index(&world);
        assert_eq!(ix.live_colour(), ColourName::Blue, "{ix:#?}");
        assert_eq!(
            ix.standby.as_ref().and_then(|s| s.release.as_deref()),
            Some(id.as_str())
        );
        idle_and_consistent(&world);
    }
}

// --- (6) a superseded release never becomes current again -------------------------------

/// A killed in its shift (current); `unlock --force`; B killed right after taking the lock
/// (before it names itself current); `glidepath rollback` rolls B back. A is closed as
/// superseded, not current again: `status` shows nothing in progress, `resume` has nothing.
#[tokio::test(start_paused = true)]
async fn a_superseded_release_does_not_become_current_again() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let a = release(&world, &plan, "1.1.0", None, at_first_split)
        .await
        .unwrap();
    assert_eq!(a.outcome, Outcome::Interrupted);
    unlock_force(&world, &plan).await;
    assert_eq!(
        index(&world).current.as_deref(),
        Some(a.release_id.as_str())
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // B is killed right after its lock landed (before it names itself current).
    let setup = async |w: &FakeWorld| {
        let p = common::engine_plan();
        release(w, &p, "1.1.0", None, at_first_split).await.unwrap();
        unlock_force(w, &p).await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    let n = call_number(
        &plan,
        setup,
        |w: FakeWorld| async move {
            let p = common::engine_plan();
            release(&w, &p, "1.2.0", None, never).await.unwrap();
        },
        |c| c == format!("state.put_if_absent {}", lock::LOCK_KEY),
        1,
    )
    .await;
    let killed = release(&world, &plan, "1.2.0", Some((n, CrashMode::After)), never).await;
    assert!(killed.is_none());
    assert!(lock_held(&world));
    let f = rollback(&world, &plan, None).await.unwrap();
    assert_ne!(f.release_id, a.release_id, "{}", f.message);
    assert_eq!(
        record(&world, &a.release_id).outcome,
        Some(Outcome::Superseded)
    );
    let ports = world.ports(true);
    let status = run::status(&plan, &ports).await.unwrap();
    assert!(
        status.current.is_none(),
        "{:?}",
        status.current.map(|r| r.id)
    );
    let again = resume(&world, &plan).await;
    assert_eq!(again.exit_code, 2, "nothing to resume: {}", again.message);
    idle_and_consistent(&world);
}

// --- the append-only operations log -----------------------------------------------------

/// Releases, an approval, a forced unlock, a rollback and a resume with nothing to do: each
/// is one entry of the operations log, in order, with who and how it left its release; an
/// entry is created once and never written again.
#[tokio::test(start_paused = true)]
async fn every_operation_is_logged_once_in_order_and_never_rewritten() {
    use glidepath::engine::oplog::{self, OpKind};
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let ports = world.ports(true);
    let first = release(&world, &plan, "1.1.0", None, never).await.unwrap();
    let ops_object = |w: &FakeWorld| {
        w.with(|w| {
            w.objects
                .iter()
                .filter(|(k, _)| k.starts_with(oplog::OPS_PREFIX))
                .map(|(k, (b, _))| (k.clone(), b.clone()))
                .collect::<Vec<_>>()
        })
    };
    let after_first = ops_object(&world);
    assert_eq!(after_first.len(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let aborted = release(&world, &plan, "1.2.0", None, at_first_split)
        .await
        .unwrap();
    ledger::record_approval(&world, &aborted.release_id, 2, "carol@ops-3")
        .await
        .unwrap();
    unlock_force(&world, &plan).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let third = release(&world, &plan, "1.3.0", None, never).await.unwrap();
    let back = rollback(&world, &plan, None).await.unwrap();
    let nothing = resume(&world, &plan).await;

    let ops = run::operations(&plan, &ports).await.unwrap();
    // kind, by, release, outcome, exit code
    type Line<'a> = (OpKind, &'a str, Option<&'a str>, Option<Outcome>, i32);
    let got: Vec<Line> = ops
        .iter()
        .map(|o| {
            (
                o.kind,
                o.by.as_str(),
                o.release.as_deref(),
                o.outcome,
                o.exit_code,
            )
        })
        .collect();
    let want = vec![
        (
            OpKind::Release,
            "alice@ops-1",
            Some(first.release_id.as_str()),
            Some(Outcome::Finalized),
            0,
        ),
        (
            OpKind::Release,
            "alice@ops-1",
            Some(aborted.release_id.as_str()),
            Some(Outcome::Interrupted),
            aborted.exit_code,
        ),
        (
            OpKind::Approve,
            "carol@ops-3",
            Some(aborted.release_id.as_str()),
            None,
            0,
        ),
        (
            OpKind::Unlock,
            "ops@test",
            Some(aborted.release_id.as_str()),
            None,
            0,
        ),
        (
            OpKind::Release,
            "alice@ops-1",
            Some(third.release_id.as_str()),
            Some(Outcome::Finalized),
            0,
        ),
        (
            OpKind::Rollback,
            "dave@ops-4",
            Some(third.release_id.as_str()),
            Some(Outcome::RolledBack),
            back.exit_code,
        ),
        (OpKind::Resume, "bob@ops-2", None, None, nothing.exit_code),
    ];
    assert_eq!(got, want, "{ops:#?}");
    assert_eq!((back.exit_code, nothing.exit_code), (0, 2));
    // Append-only: the first entry is byte for byte what it was; no entry was ever
    // written over (only If-None-Match creates) or deleted.
    let now = ops_object(&world);
    assert!(
        now.contains(&after_first[0]),
        "the first entry is unchanged"
    );
    world.with(|w| {
        let rewrites: Vec<&String> = w
            .calls
            .iter()
            .filter(|c| c.contains(oplog::OPS_PREFIX))
            .filter(|c| {
                !c.starts_with("state.put_if_absent")
                    && !c.starts_with("state.get")
                    && !c.starts_with("state.list")
            })
            .collect();
        assert!(rewrites.is_empty(), "{rewrites:?}");
    });
    let text = glidepath::commands::release::operations_text(&ops);
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.lines().nth(3).unwrap().contains("unlock --force"),
        "{text}"
    );
    assert!(
        text.lines().nth(5).unwrap().contains("rolled back"),
        "{text}"
    );
}

// --- the version live before the first release -------------------------------------------

/// Before the first release the index has no live slot: the release reads what the live
/// colour runs (its image, through the plan's image template), so rolling that release
/// back names the version traffic returned to instead of "unknown".
#[tokio::test(start_paused = true)]
async fn rolling_back_the_first_release_names_the_version_it_returned_to() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    let first = release(&world, &plan, "1.1.0", None, never).await.unwrap();
    assert_eq!(first.outcome, Outcome::Finalized, "{}", first.message);
    assert_eq!(
        record(&world, &first.release_id).live_version.as_deref(),
        Some("initial")
    );
    let f = rollback(&world, &plan, None).await.unwrap();
    assert_eq!(f.exit_code, 0, "{}", f.message);
    assert!(f.message.contains("initial"), "{}", f.message);
    let live = index(&world).live.expect("a live slot");
    assert_eq!(
        (live.version.as_str(), live.colour, live.image),
        ("initial", ColourName::Blue, None)
    );
    let status = run::status(&plan, &world.ports(true)).await.unwrap();
    let text = glidepath::commands::release::status_text(&status);
    assert!(text.contains("live:     initial on blue"), "{text}");
    idle_and_consistent(&world);
}

/// An image the plan's template did not make has no version: the ledger says "unknown"
/// and `status` names the image and why.
#[tokio::test(start_paused = true)]
async fn a_live_image_not_from_the_plan_template_is_named_in_status() {
    let plan = common::engine_plan();
    let world = FakeWorld::for_plan(&plan);
    world.with(|w| {
        let td = w.services[&plan.blue.service].task_definition.clone();
        w.task_definitions
            .insert(td, "elsewhere.example.com/legacy:7".into());
    });
    let first = release(&world, &plan, "1.1.0", None, never).await.unwrap();
    assert_eq!(first.outcome, Outcome::Finalized, "{}", first.message);
    let f = rollback(&world, &plan, None).await.unwrap();
    assert_eq!(f.exit_code, 0, "{}", f.message);
    let live = index(&world).live.expect("a live slot");
    assert_eq!(live.version, "unknown");
    assert_eq!(
        live.image.as_deref(),
        Some("elsewhere.example.com/legacy:7")
    );
    let status = run::status(&plan, &world.ports(true)).await.unwrap();
    let text = glidepath::commands::release::status_text(&status);
    assert!(
        text.contains(
            "live:     unknown (image elsewhere.example.com/legacy:7, not from this plan's [deploy].image template) on blue"
        ),
        "{text}"
    );
}

// --- a manual rollback asked to stop (Ctrl-C) ------------------------------------------

/// `glidepath rollback` with the operator's commands: `abort_after` sends Abort once that
/// port call returns; `early` queues one before the rollback starts.
async fn rollback_stopped_at(
    world: &FakeWorld,
    plan: &Plan,
    abort_after: Option<&str>,
    early: bool,
) -> Finished {
    let ports = world.ports(true);
    let (tx, _rx) = unbounded_channel();
    let (ctx, crx) = unbounded_channel::<Command>();
    if early {
        ctx.send(Command::Abort).unwrap();
    }
    if let Some(op) = abort_after {
        world.with(|w| w.command_after = Some((op.into(), ctx.clone(), Command::Abort)));
    }
    let f = run::rollback_with(plan, &ports, "erin@ops-5", tx, crx).await;
    world.with(|w| w.command_after = None);
    f
}

/// A release in progress (aborted with traffic split) or finalized: a rollback stopped
/// before it took the lock changed and recorded nothing — no rollback intent a later
/// `resume` would act on — and the release goes on as if it had never been asked.
#[tokio::test(start_paused = true)]
async fn a_rollback_stopped_before_its_lock_records_nothing() {
    let plan = common::engine_plan();
    for finalized in [false, true] {
        let world = FakeWorld::for_plan(&plan);
        let abort_when = if finalized { never } else { at_first_split };
        let a = release(&world, &plan, "1.1.0", None, abort_when)
            .await
            .unwrap();
        let id = a.release_id.clone();
        let (before, weights_before, locked_before) =
            (record(&world, &id), weights(&world), lock_held(&world));
        let f = rollback_stopped_at(&world, &plan, None, true).await;
        assert_eq!(f.outcome, Outcome::Interrupted, "{}", f.message);
        assert!(f.message.contains("before it began"), "{}", f.message);
        assert_ne!(f.exit_code, 0, "{}", f.message);
        let after = record(&world, &id);
        assert_eq!(
            after.rollback_reason, None,
            "finalized={finalized}: {after:#?}"
        );
        assert_eq!(after.outcome, before.outcome);
        assert_eq!(after.rolled_back_by, before.rolled_back_by);
        assert_eq!(weights(&world), weights_before, "traffic untouched");
        assert_eq!(lock_held(&world), locked_before, "the lock as it was");
        // Nothing decided for the operator: the release goes on (or stays) finalized.
        if !finalized {
            let r = resume(&world, &plan).await;
            assert_eq!(r.outcome, Outcome::Finalized, "{}", r.message);
        }
        assert_eq!(record(&world, &id).outcome, Some(Outcome::Finalized));
        idle_and_consistent(&world);
    }
}

/// Ctrl-C right after the rollback moved traffic: it stops before the capacity step with
/// all traffic on the old colour, the lock and the intent kept; the next `rollback` finishes
/// it (the new colour scaled as the plan says), for a release in progress and a finalized one.
#[tokio::test(start_paused = true)]
async fn a_rollback_stopped_between_its_steps_is_finished_by_the_next() {
    let plan = common::engine_plan();
    assert_eq!(plan.rollback.green, GreenAfterRollback::ScaleToZero);
    for finalized in [false, true] {
        let world = FakeWorld::for_plan(&plan);
        let abort_when = if finalized { never } else { at_first_split };
        let a = release(&world, &plan, "1.1.0", None, abort_when)
            .await
            .unwrap();
        let id = a.release_id.clone();
        let f = rollback_stopped_at(&world, &plan, Some("traffic.set_weights"), false).await;
        assert_eq!(
            f.outcome,
            Outcome::Interrupted,
            "finalized={finalized}: {}",
            f.message
        );
        assert!(f.message.contains("stopped on request"), "{}", f.message);
        assert_eq!(weights(&world), Weights::all_blue(), "traffic moved first");
        assert!(
            lock_held(&world),
            "the lock is kept for the run that finishes it"
        );
        let green = world.with(|w| w.services[&plan.green.service].desired);
        assert!(green > 0, "stopped before the capacity step");
        assert!(
            record(&world, &id).rollback_reason.is_some(),
            "the intent is kept"
        );
        let done = rollback(&world, &plan, None).await.unwrap();
        assert_eq!(done.outcome, Outcome::RolledBack, "{}", done.message);
        assert_eq!(done.exit_code, 0, "{}", done.message);
        assert_eq!(record(&world, &id).outcome, Some(Outcome::RolledBack));
        let green = world.with(|w| w.services[&plan.green.service].desired);
        assert_eq!(green, 0, "the next rollback did the capacity step");
        assert_eq!(index(&world).live_colour(), ColourName::Blue);
        idle_and_consistent(&world);
    }
}

/// 1.1.0 finalizes on green; `glidepath rollback` is killed right after it scaled green to
/// zero (traffic already all on blue); `unlock --force`; a new release. It must not send
/// traffic back to green, which runs nothing: it refuses (exit 2, nothing changed) and
/// names the way out; `glidepath rollback` finishes the cut-short rollback, and the next
/// release finalizes.
#[tokio::test(start_paused = true)]
async fn a_release_after_a_cut_short_rollback_never_sends_traffic_to_an_empty_colour() {
    let plan = common::engine_plan();
    assert_eq!(plan.rollback.green, GreenAfterRollback::ScaleToZero);
    let world = finalized_then_rollback_killed_after(&plan, |c| c.starts_with("fleet.scale")).await;
    assert_eq!(weights(&world), Weights::all_blue(), "traffic moved first");
    assert_eq!(world.with(|w| w.services[&plan.green.service].running), 0);
    unlock_force(&world, &plan).await;

    let refused = release(&world, &plan, "1.2.0", None, never).await.unwrap();
    assert_eq!(refused.exit_code, 2, "{}", refused.message);
    assert!(
        refused.message.contains("runs no tasks") && refused.message.contains("glidepath rollback"),
        "{}",
        refused.message
    );
    assert_eq!(
        weights(&world),
        Weights::all_blue(),
        "traffic stayed on blue"
    );
    assert_eq!(world.with(|w| w.violations.clone()), Vec::<String>::new());

    let back = rollback(&world, &plan, None).await.unwrap();
    assert_eq!(back.outcome, Outcome::RolledBack, "{}", back.message);
    assert_eq!(index(&world).live_colour(), ColourName::Blue);
    idle_and_consistent(&world);
    // (Another version: the refused release's id, from the same second, is taken.)
    let again = release(&world, &plan, "1.3.0", None, never).await.unwrap();
    assert_eq!(again.outcome, Outcome::Finalized, "{}", again.message);
    assert_eq!(world.with(|w| w.violations.clone()), Vec::<String>::new());
    idle_and_consistent(&world);
}
