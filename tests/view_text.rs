//! The line printer and JSON Lines: pure formatting, throttling, colour, round trips.

use crate::view_support;

use glidepath::engine::event::{Envelope, Event, Phase, Unit};
use glidepath::gate::Signal;
use glidepath::view::fixture::Script;
use glidepath::view::OutputFormat;
use glidepath::view::{json, lines, write_events};
use view_support::{script, staging, Stage};

fn one(event: Event) -> Envelope {
    let mut s = Script::new("r1");
    s.at(5.0).push(event);
    s.into_events().remove(0)
}

#[test]
fn lines_read_like_the_examples() {
    assert_eq!(
        lines::format(&one(Event::Progress {
            phase: Phase::Snapshot,
            done: 45,
            total: 100,
            unit: Unit::Percent,
            message: Some("creating shop-db-1-4-0-…".into()),
        })),
        "12:04:05 snapshot  creating shop-db-1-4-0-… 45%"
    );
    assert_eq!(
        lines::format(&one(Event::WeightsChanged {
            blue: 90,
            green: 10
        })),
        "12:04:05 shift     weights blue 90% / green 10%"
    );
    assert_eq!(
        lines::format(&one(Event::GateFailed {
            index: 0,
            weight: 10,
            signal: Signal::ErrorRate,
            reason: "5xx rate 31.0% vs blue 0.2% (margin 1.0%)".into(),
        })),
        "12:04:05 gate      FAILED at 10%: 5xx rate 31.0% vs blue 0.2% (margin 1.0%)"
    );
}

/// The evidence line shows each signal's statistic next to where it fails the gate.
#[test]
fn evidence_lines_show_the_statistic_and_its_threshold() {
    let line = lines::format(&one(Event::GateEvidence {
        evidence: view_support::evidence(14.2, 0.31, 12),
    }));
    assert_eq!(
        line,
        "12:04:05 evidence  5xx 14 / 222 needed (new 0.30 % vs live 0.20 %, 12 periods) · \
         latency 0.31 / 222 needed (new/live p95 ×1.07 latest, tolerance ×1.1, 12 periods)"
    );
}

#[test]
fn every_event_of_a_release_is_one_line() {
    for stage in [Stage::GateFailedRollingBack, Stage::Finalized] {
        for env in script(&staging(), stage).events() {
            let l = lines::format(env);
            assert!(!l.contains('\n'), "one line: {l:?}");
            assert!(l.len() > 19, "has a message: {l:?}");
        }
    }
}

#[test]
fn progress_prints_per_tenth_and_at_the_end() {
    let mut s = Script::new("r1");
    s.push(Event::PhaseStarted {
        phase: Phase::Snapshot,
    });
    for pct in 0..=100 {
        s.wait(1.0).push(Event::Progress {
            phase: Phase::Snapshot,
            done: pct,
            total: 100,
            unit: Unit::Percent,
            message: None,
        });
    }
    let mut p = lines::Printer::new(false);
    let printed: Vec<String> = s.events().iter().filter_map(|e| p.line(e)).collect();
    let progress: Vec<&String> = printed.iter().filter(|l| l.ends_with('%')).collect();
    assert_eq!(progress.len(), 11, "0%, 10% … 100%: {progress:#?}");
    assert!(progress[10].ends_with(" 100%"));
}

#[test]
fn colour_only_when_asked() {
    let failed = one(Event::GateFailed {
        index: 0,
        weight: 10,
        signal: Signal::Alarm,
        reason: "shop-5xx is in ALARM".into(),
    });
    let plain = lines::Printer::new(false).line(&failed).expect("printed");
    assert!(!plain.contains('\x1b'));
    let coloured = lines::Printer::new(true).line(&failed).expect("printed");
    assert!(coloured.starts_with("\x1b[1;31m") && coloured.ends_with("\x1b[0m"));
    assert!(coloured.contains("alarm: shop-5xx is in ALARM"));
}

#[test]
fn json_is_one_envelope_per_line_and_round_trips() {
    for env in script(&staging(), Stage::Finalized).events() {
        let line = json::format(env);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        for key in ["type", "ts", "release"] {
            assert!(v.get(key).is_some(), "{key} in {line}");
        }
        let back: Envelope = serde_json::from_str(&line).expect("parses back");
        assert_eq!(&back, env);
    }
}

#[tokio::test]
async fn write_events_streams_until_the_channel_closes() {
    let events = script(&staging(), Stage::Finalized).into_events();
    for (format, expect_json) in [(OutputFormat::Text, false), (OutputFormat::Json, true)] {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for e in &events {
            tx.send(e.clone()).expect("send");
        }
        drop(tx);
        let mut out = Vec::new();
        write_events(rx, format, false, &mut out).await;
        let text = String::from_utf8(out).expect("utf-8");
        let n = text.lines().count();
        if expect_json {
            assert_eq!(n, events.len(), "every event, one per line");
        } else {
            assert!(n > 10 && n <= events.len());
            assert!(text.lines().last().is_some_and(|l| l.contains("FINALIZED")));
        }
    }
}

/// A closed stdout must not make the view stop draining the engine's events.
#[tokio::test]
async fn a_broken_writer_still_drains_the_channel() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(write_events(rx, OutputFormat::Json, false, Broken));
    for e in script(&staging(), Stage::Shifting10).into_events() {
        assert!(tx.send(e).is_ok(), "the receiver is still there");
    }
    drop(tx);
    task.await.expect("finished");
}
