//! The read-only window around the migration task (`[read_only]` in the plan).
//!
//! Contract (the ledger keeps every window: `Record::read_only`, oldest first):
//! - **open** ([`open`], from `phases::migrate` right before `RunTask`): the window goes to
//!   the ledger first (its intent, `opened_at`), then `read_only.enter` runs. A failing
//!   `enter` runs `exit` (it may have half-applied) and stops the release before the task.
//! - **close** ([`close`]) runs `read_only.exit` once the task stopped, whatever its exit
//!   code, and when the operator aborts or rolls back while it runs. `closed_at` is written
//!   after `exit` exited 0, so a crash in between runs `exit` again on resume.
//! - **max**: the task is followed until `opened_at + max` at most ([`overrun`]): then
//!   `exit` runs, the task is left running (glidepath never stops it) and the release stops
//!   before deploying (exit 5), saying so.
//! - **resume** ([`close_left_open`]): a window the ledger shows open (a crash, `kill -9`)
//!   is closed before any phase continues; a migration that had not started yet opens a
//!   new window when it starts.
//! - **superseded** ([`close_superseded`]): a release closed as superseded after
//!   `unlock --force` gets its open window closed by the run that supersedes it.
//! - **any other ending** ([`at_end`], from `run::end_run`): a window still open is closed
//!   there, unless the lock was lost (whoever holds it now closes it on taking over).
//! - A failing `exit` is never swallowed: the window stays open in the ledger with the
//!   failure (a `read_only_exit_failed` event), the run ends with exit code 7 saying the
//!   app may still be read-only and what to run by hand. When the release could go on (the
//!   task exited 0, an abort) the lock is kept and `glidepath resume` runs `exit` again
//!   first. `enter` and `exit` must be safe to repeat.
//!
//! The window covers the task only: the live watch after the migration sees the app as
//! users do once it is writable again.

use super::ctx::{Ctx, Stop};
use super::event::Event;
use super::ledger::Record;
use crate::exit::Cause;
use crate::plan::ReadOnlyConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// One read-only window as the ledger records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Written before `enter` runs.
    pub opened_at: DateTime<Utc>,
    /// `read_only.max` when it opened.
    pub max_s: f64,
    /// `enter` exited 0.
    #[serde(default)]
    pub entered_at: Option<DateTime<Utc>>,
    /// `exit` exited 0: the app is writable again.
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it closed when it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// The last failure of `exit` while the window is still open.
    #[serde(default)]
    pub exit_failed: Option<String>,
}

impl Window {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

/// The window the record shows open, if any.
pub fn open_window(r: &Record) -> Option<&Window> {
    r.read_only.last().filter(|w| w.is_open())
}

/// Open the window (intent, then `enter`). Returns the instant it must close by (None:
/// the plan has no `[read_only]`).
pub async fn open(ctx: &mut Ctx<'_>) -> Result<Option<Instant>, Stop> {
    let Some(ro) = ctx.plan.read_only.as_ref() else {
        return Ok(None);
    };
    let deadline = Instant::now() + ro.max;
    ctx.rec().read_only.push(Window {
        opened_at: Utc::now(),
        max_s: ro.max.as_secs_f64(),
        entered_at: None,
        closed_at: None,
        reason: None,
        exit_failed: None,
    });
    ctx.save().await?;
    match run_own(ctx, ro, Which::Enter).await {
        Ok(()) => {
            if let Some(w) = ctx.rec().read_only.last_mut() {
                w.entered_at = Some(Utc::now());
            }
            ctx.save().await?;
            Ok(Some(deadline))
        }
        Err(why) => {
            let stop = Stop::Fail {
                cause: Cause::Unexpected,
                message: format!(
                    "{why}; the migration task was not started and nothing was deployed"
                ),
            };
            close(ctx, "read_only.enter failed", Err(stop)).await
        }
    }
}

/// Close the window if it is open: run `exit`, record it, then hand `result` on. A failing
/// `exit` is recorded and turns a result that would go on into a stop that keeps the lock.
pub async fn close<T>(ctx: &mut Ctx<'_>, reason: &str, result: Result<T, Stop>) -> Result<T, Stop> {
    // Someone else holds the release now; it closes the window when it takes over.
    if matches!(result, Err(Stop::LockLost { .. })) || open_window(&ctx.record.value).is_none() {
        return result;
    }
    let outcome = match ctx.plan.read_only.as_ref() {
        Some(ro) => run_own(ctx, ro, Which::Exit).await,
        None => Err(no_plan_table()),
    };
    let reason = match &result {
        Err(Stop::Abort) => "the release was stopped (abort)",
        Err(Stop::Rollback { .. }) => "the release is rolling back",
        _ => reason,
    };
    let now = Utc::now();
    let Some(w) = ctx.rec().read_only.last_mut() else {
        return result;
    };
    match outcome {
        Ok(()) => {
            w.closed_at = Some(now);
            w.reason = Some(reason.to_string());
            w.exit_failed = None;
            let saved = ctx.save().await;
            match (result, saved) {
                (Ok(_), Err(e)) => Err(e),
                (r, _) => r,
            }
        }
        Err(why) => {
            w.exit_failed = Some(why);
            ctx.read_only_exit_failed = true;
            // Best effort: the ending says it loudly even if the ledger cannot.
            let _ = ctx.save().await;
            match result {
                // The task is done: stop here, keep the lock, `resume` runs `exit` again.
                Ok(_) => Err(Stop::Abort),
                Err(stop) => Err(stop),
            }
        }
    }
}

/// `read_only.max` passed while the task still ran: close the window and stop the release
/// before anything is deployed (the task is not stopped).
pub async fn overrun(ctx: &mut Ctx<'_>, task_arn: &str) -> Stop {
    let max = ctx
        .plan
        .read_only
        .as_ref()
        .map_or(0.0, |r| r.max.as_secs_f64());
    let task = task_arn.rsplit('/').next().unwrap_or(task_arn);
    let stop = Stop::Fail {
        cause: Cause::MigrationFailed,
        message: format!(
            "the read-only window was open for read_only.max ({max:.0}s) and migration task {task} is still running; \
             the release stopped before deploying. glidepath did not stop the task: check it, then raise read_only.max \
             or shorten the migration"
        ),
    };
    match close(ctx, "read_only.max passed", Err::<(), _>(stop)).await {
        // Said only when true: a failing `exit` is reported by the ending instead.
        Err(Stop::Fail { cause, message }) if open_window(&ctx.record.value).is_none() => {
            Stop::Fail {
                cause,
                message: format!("{message}; read_only.exit ran, the app takes writes again"),
            }
        }
        Err(stop) => stop,
        Ok(()) => Stop::fail("read_only.max passed"),
    }
}

/// On taking a release over: a window an earlier run left open is closed first.
pub async fn close_left_open(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let Some(opened) = open_window(&ctx.record.value).map(|w| w.opened_at) else {
        return Ok(());
    };
    ctx.emit(Event::Notice {
        message: format!(
            "the read-only window opened at {} by an earlier run is still open; running read_only.exit before anything else",
            opened.format("%H:%M:%SZ")
        ),
    });
    close(
        ctx,
        "the run that opened it stopped; closed when the release was taken over",
        Ok(()),
    )
    .await
}

/// A release being superseded (its lock was broken) may have left its window open: the
/// run that closes it runs `exit` for it and notes that in `other` (the caller saves it).
/// A failing `exit` stops this run too (exit 7); `other` then stays open for the next one.
pub async fn close_superseded(ctx: &Ctx<'_>, other: &mut Record) -> Result<(), Stop> {
    if open_window(other).is_none() {
        return Ok(());
    }
    let outcome = match ctx.plan.read_only.as_ref() {
        Some(ro) => run(ctx, ro, Which::Exit, &other.id, &other.version).await,
        None => Err(no_plan_table()),
    };
    let me = ctx.release.clone();
    let Some(w) = other.read_only.last_mut() else {
        return Ok(());
    };
    match outcome {
        Ok(()) => {
            w.closed_at = Some(Utc::now());
            w.reason = Some(format!("closed by release {me}, which superseded it"));
            w.exit_failed = None;
            Ok(())
        }
        Err(why) => Err(Stop::Fail {
            cause: Cause::ReadOnlyExit,
            message: format!(
                "the app may still be read-only: release {} left its read-only window open and {why}. \
                 Run {} by hand, then start again",
                other.id,
                exit_command(ctx)
            ),
        }),
    }
}

fn no_plan_table() -> String {
    "the ledger shows a read-only window open but the plan has no [read_only] now, so glidepath cannot run its exit command".into()
}

fn exit_command(ctx: &Ctx<'_>) -> String {
    ctx.plan
        .read_only
        .as_ref()
        .map_or("your exit command".to_string(), |r| {
            format!("`{}`", r.exit.join(" "))
        })
}

/// A run is ending: close a window still open (unless `exit` already failed in this run),
/// and make an ending with the window still open say so, with exit code 7.
pub async fn at_end(ctx: &mut Ctx<'_>, cause: &mut Cause, message: &mut String, resumable: bool) {
    if open_window(&ctx.record.value).is_none() {
        return;
    }
    if !ctx.read_only_exit_failed {
        let _ = close(ctx, "the release stopped", Ok(())).await;
    }
    let Some(w) = open_window(&ctx.record.value) else {
        return;
    };
    let why = w
        .exit_failed
        .clone()
        .unwrap_or_else(|| "read_only.exit did not run".into());
    let by_hand = exit_command(ctx);
    let then = if resumable {
        format!(
            " (or fix it: `glidepath resume {}` runs it again first)",
            ctx.plan.source.display()
        )
    } else {
        String::new()
    };
    *cause = Cause::ReadOnlyExit;
    *message =
        format!("the app may still be read-only: {why}. Run {by_hand} by hand{then}. {message}");
}

#[derive(Clone, Copy)]
enum Which {
    Enter,
    Exit,
}

/// Run `enter` or `exit` for this run's release, saying so; Err(why) unless it exited 0.
async fn run_own(ctx: &Ctx<'_>, ro: &ReadOnlyConfig, which: Which) -> Result<(), String> {
    let version = ctx.record.value.version.clone();
    run(ctx, ro, which, &ctx.release, &version).await
}

/// Run `enter` or `exit` for `release` (`version`), saying so.
async fn run(
    ctx: &Ctx<'_>,
    ro: &ReadOnlyConfig,
    which: Which,
    release: &str,
    version: &str,
) -> Result<(), String> {
    let (key, command) = match which {
        Which::Enter => ("read_only.enter", &ro.enter),
        Which::Exit => ("read_only.exit", &ro.exit),
    };
    ctx.emit(Event::Notice {
        message: format!("{key}: {}", command.join(" ")),
    });
    let env = [
        ("GLIDEPATH_RELEASE".to_string(), release.to_string()),
        ("GLIDEPATH_VERSION".to_string(), version.to_string()),
    ];
    ctx.ports
        .local
        .run(&format!("{key} command"), command, &env, ro.timeout)
        .await
}
