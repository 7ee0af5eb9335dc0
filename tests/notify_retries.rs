//! `[notify]` retries on a paused clock: an in-memory release (core's fakes) with the
//! notifier between the engine and the "view", sending to in-memory destinations. A send
//! that fails twice then succeeds is delivered once, after the backoff the docs promise;
//! one that never succeeds (an error, or no answer at all) is tried `attempts` times and
//! becomes exactly one warning, while the release finalizes as it would have anyway.

use crate::common;

use futures::future::BoxFuture;
use glidepath::engine::event::{Envelope, Event, Outcome};
use glidepath::engine::fake::FakeWorld;
use glidepath::engine::run::{self, Finished};
use glidepath::notify::{backoff, Destination, Notifier};
use glidepath::notify_core::Notice;
use glidepath::plan::{NotifyConfig, NotifyEvent, Plan};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;
use tokio::time::Instant;

/// How a fake destination answers attempt `n` (0-based) of one notice.
#[derive(Clone, Copy)]
enum Answer {
    /// Fails this many times, then succeeds.
    FailFirst(usize),
    /// Always an error.
    Refuses,
    /// Never answers.
    Hangs,
}

/// Every attempt (which notice, when) and every delivery.
#[derive(Default)]
struct Seen {
    attempts: Vec<(NotifyEvent, Instant)>,
    delivered: Vec<NotifyEvent>,
}

struct Fake {
    name: &'static str,
    answer: Answer,
    seen: Arc<Mutex<Seen>>,
}

impl Destination for Fake {
    fn name(&self) -> String {
        self.name.to_string()
    }

    fn send<'a>(&'a self, n: &'a Notice) -> BoxFuture<'a, Result<(), String>> {
        let tried = {
            let mut seen = self.seen.lock().unwrap();
            seen.attempts.push((n.kind, Instant::now()));
            seen.attempts.iter().filter(|(k, _)| *k == n.kind).count() - 1
        };
        match self.answer {
            Answer::FailFirst(k) if tried >= k => {
                self.seen.lock().unwrap().delivered.push(n.kind);
                Box::pin(async { Ok(()) })
            }
            Answer::FailFirst(_) | Answer::Refuses => Box::pin(async { Err("HTTP 503".into()) }),
            Answer::Hangs => Box::pin(futures::future::pending()),
        }
    }
}

fn plan() -> Plan {
    let mut plan = common::engine_plan();
    plan.notify = Some(NotifyConfig {
        sns_topic_arn: None,
        webhook_env: Some("UNUSED_HERE".into()),
        events: NotifyEvent::ALL.to_vec(),
        timeout: Duration::from_secs(5),
        attempts: 3,
    });
    plan
}

/// A fake destination answering `answer`, and what it saw.
fn fake(name: &'static str, answer: Answer) -> (Box<dyn Destination>, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let d = Fake {
        name,
        answer,
        seen: seen.clone(),
    };
    (Box::new(d), seen)
}

/// A release on the in-memory world with the notifier attached. Returns how it finished,
/// every event the view got (warnings included), when the engine returned and when the
/// view's stream closed.
async fn release(
    plan: &Plan,
    destinations: Vec<Box<dyn Destination>>,
) -> (Finished, Vec<Envelope>, Instant, Instant) {
    let world = FakeWorld::for_plan(plan);
    let ports = world.ports(true);
    let (tx, rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let mut view = Notifier::with_destinations(plan, destinations)
        .expect("the plan has [notify]")
        .attach(rx);
    let engine = async {
        let f = run::release(plan, &ports, common::release_request("1.4.0"), tx, crx).await;
        (f, Instant::now())
    };
    let shown = async {
        let mut events = Vec::new();
        while let Some(e) = view.recv().await {
            events.push(e);
        }
        (events, Instant::now())
    };
    let ((finished, engine_done), (events, view_closed)) = tokio::join!(engine, shown);
    (finished, events, engine_done, view_closed)
}

fn warnings(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The gaps between consecutive attempts at `kind`.
fn gaps(seen: &Seen, kind: NotifyEvent) -> Vec<Duration> {
    let at: Vec<Instant> = seen
        .attempts
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, t)| *t)
        .collect();
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

/// `got` is `want` to the millisecond (the paused clock's timers are whole milliseconds).
fn about(got: &[Duration], want: &[Duration]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.abs_diff(*w) <= Duration::from_millis(2),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn the_backoff_is_the_documented_one() {
    let ms = |i| backoff(i).as_millis();
    assert_eq!(
        (0..7).map(ms).collect::<Vec<_>>(),
        [0, 500, 1000, 2000, 4000, 8000, 8000]
    );
}

#[tokio::test(start_paused = true)]
async fn a_send_failing_twice_then_succeeding_is_delivered_once_after_the_backoff() {
    let plan = plan();
    let (flaky, seen) = fake("flaky", Answer::FailFirst(2));
    let (f, events, _, _) = release(&plan, vec![flaky]).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    assert_eq!(warnings(&events), Vec::<String>::new());
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.delivered,
        [NotifyEvent::ReleaseStarted, NotifyEvent::Finalized],
        "each once"
    );
    for kind in [NotifyEvent::ReleaseStarted, NotifyEvent::Finalized] {
        about(&gaps(&seen, kind), &[backoff(1), backoff(2)]);
        assert_eq!(backoff(1) + backoff(2), Duration::from_millis(1500));
    }
}

#[tokio::test(start_paused = true)]
async fn a_send_that_never_succeeds_gives_up_with_one_warning_and_the_release_finalizes() {
    let plan = plan();
    let (refuses, refused) = fake("the refusing hook", Answer::Refuses);
    let (hangs, hung) = fake("the silent hook", Answer::Hangs);
    let (f, events, engine_done, view_closed) = release(&plan, vec![refuses, hangs]).await;
    assert_eq!(f.outcome, Outcome::Finalized, "{}", f.message);
    assert_eq!(f.exit_code, glidepath::exit::OK);

    // Per notice and destination: the plan's 3 attempts, then one warning.
    let w = warnings(&events);
    assert_eq!(w.len(), 4, "{w:#?}");
    for (kind, who, why) in [
        ("release_started", "the refusing hook", "HTTP 503"),
        ("release_started", "the silent hook", "no answer within 5s"),
        ("finalized", "the refusing hook", "HTTP 503"),
        ("finalized", "the silent hook", "no answer within 5s"),
    ] {
        let want =
            format!("notification `{kind}` not delivered to {who} after 3 attempt(s): {why}");
        assert_eq!(
            w.iter().filter(|m| **m == want).count(),
            1,
            "{want}\n{w:#?}"
        );
    }
    for kind in [NotifyEvent::ReleaseStarted, NotifyEvent::Finalized] {
        let refused = refused.lock().unwrap();
        about(&gaps(&refused, kind), &[backoff(1), backoff(2)]);
        // An attempt that never answers is cut at the timeout, then the same backoff.
        let timeout = Duration::from_secs(5);
        about(
            &gaps(&hung.lock().unwrap(), kind),
            &[timeout + backoff(1), timeout + backoff(2)],
        );
        assert!(refused.delivered.is_empty());
    }

    // The engine never waited: the release ended, and the view was told so, before the
    // last notification gave up (3 timeouts plus the backoff later).
    let finished_at = events
        .iter()
        .position(|e| matches!(e.event, Event::ReleaseFinished { .. }))
        .expect("release_finished reached the view");
    let last_warning = events
        .iter()
        .rposition(|e| matches!(e.event, Event::Warning { .. }))
        .unwrap();
    assert!(finished_at < last_warning, "{events:#?}");
    let giving_up = 3 * Duration::from_secs(5) + backoff(1) + backoff(2);
    let after = view_closed - engine_done;
    assert!(
        after + Duration::from_millis(2) >= giving_up
            && after <= giving_up + Duration::from_secs(1),
        "the stream closed {after:?} after the engine, not about {giving_up:?}"
    );
}
