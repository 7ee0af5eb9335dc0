//! Cockpit benchmark helper (run by `scripts/bench-tui`, not a test).
//!
//! - `bench_tui render [FRAMES]`: time to render one 200×50 frame of a cockpit holding
//!   10,000 log lines and 100 targets per colour (TestBackend, so the terminal's own speed
//!   does not count). Prints median / p99 / mean.
//! - `bench_tui idle`: a real cockpit on this terminal with a silent event source (a
//!   release mid-shift, then nothing), for measuring idle CPU from outside. Quit with q.
//! - `bench_tui panic`: the same, with a task that panics after 1 s (terminal restore check).

use glidepath::engine::event::{ColourName, Envelope, Event, Phase, PhaseStatus};
use glidepath::gate::Verdict;
use glidepath::view::fixture::{sample, sample_plan, Script};
use glidepath::view::tui::app::Cockpit;
use glidepath::view::tui::draw::draw;
use glidepath::view::tui::{cockpit, CockpitContext};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Instant;

const LOG_LINES: usize = 10_000;
const TARGETS: u32 = 100;

fn context() -> CockpitContext {
    let plan = sample_plan(false);
    CockpitContext {
        release_id: "bench-release".into(),
        version: "1.4.0".into(),
        endpoint: plan.endpoint_url.clone(),
        region: plan.region.clone(),
        plan,
        account: Some("123456789012".into()),
        watch_only: false,
    }
}

/// A release in its first shift step, with a long migration log and many polls.
fn heavy_release() -> Vec<Envelope> {
    let plan = sample_plan(false);
    let mut s = Script::new("bench-release");
    s.started(&plan, "1.4.0");
    s.push(Event::LockAcquired {
        holder: "bench".into(),
    });
    s.phase(Phase::Lock, 0.2, None);
    s.phase(Phase::Snapshot, 90.0, Some("shop-db-bench"));
    s.push(Event::PhaseStarted {
        phase: Phase::Migrate,
    });
    for i in 0..LOG_LINES {
        s.wait(0.01).push(Event::Log {
            source: "migrate".into(),
            line: format!("backfilled {i}/10000 batches of order line items (rows 1000-2000)"),
        });
    }
    s.finish(Phase::Migrate, PhaseStatus::Done, 100.0, Some("task-1"));
    s.phase(Phase::Assets, 3.0, None);
    s.phase(Phase::Deploy, 60.0, None);
    s.push(Event::PhaseStarted {
        phase: Phase::Shift,
    });
    s.push(Event::StepStarted {
        index: 0,
        steps: 3,
        weight: 10,
        bake_s: 600.0,
        manual: false,
        colour: ColourName::Green,
    });
    s.push(Event::WeightsChanged {
        blue: 90,
        green: 10,
    });
    for i in 0..600 {
        let j = (i % 7) as f64;
        s.wait(1.0).health(
            sample(TARGETS, 5_400.0 + j * 10.0, 0.002, 110.0 + j),
            sample(TARGETS, 600.0 + j * 10.0, 0.003, 115.0 + j),
            Verdict::Pass,
            f64::from(i),
            600.0,
        );
    }
    s.into_events()
}

/// CPU time of this thread (wall time on a busy machine includes other processes' turns).
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

fn render_bench(frames: usize) {
    let events = heavy_release();
    let mut app = Cockpit::new(&context(), true, events[0].ts);
    for e in &events {
        app.apply(e);
    }
    let poll = events
        .iter()
        .rev()
        .find(|e| matches!(e.event, Event::Health { .. }))
        .cloned();
    let mut terminal = match Terminal::new(TestBackend::new(200, 50)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench_tui: cannot create a test terminal: {e}");
            std::process::exit(1);
        }
    };
    let mut run = |label: &str, app: &mut Cockpit| {
        let mut times = Vec::with_capacity(frames);
        let mut cpu = Vec::with_capacity(frames);
        for i in 0..frames + 20 {
            // Something changes every frame, as in a live release.
            if let Some(p) = &poll {
                app.apply(p);
            }
            let (t, c) = (Instant::now(), thread_cpu_ms());
            if let Err(e) = terminal.draw(|f| draw(app, f)) {
                eprintln!("bench_tui: draw failed: {e}");
                std::process::exit(1);
            }
            if i >= 20 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                cpu.push(thread_cpu_ms() - c);
            }
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let p99 = times[(times.len() * 99) / 100];
        let cpu_median = cpu[cpu.len() / 2];
        println!(
            "render {label:<18} wall median {median:.3} ms  min {:.3} ms  p99 {p99:.3} ms  \
             cpu median {cpu_median:.3} ms  (goal ≤ 2 ms: median at {:.0}% of it)",
            times[0],
            median / 2.0 * 100.0
        );
    };
    println!(
        "frame 200x50, {} log lines, {TARGETS} targets per colour, {frames} frames",
        app.log.entries.len()
    );
    run("full cockpit", &mut app);
    app.zoomed = true;
    app.focus = glidepath::view::tui::app::Focus::Log;
    run("zoomed event log", &mut app);
}

async fn idle(panic_after: Option<std::time::Duration>) -> std::io::Result<()> {
    if let Some(after) = panic_after {
        // Checks that a panic anywhere leaves a usable terminal behind.
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            panic!("deliberate panic to check terminal restore");
        });
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    // A release mid-shift, then silence: only the 1 s clock should wake the cockpit.
    let plan = sample_plan(false);
    let mut s = Script::new("bench-release");
    s.started(&plan, "1.4.0");
    s.push(Event::PhaseStarted {
        phase: Phase::Shift,
    });
    s.push(Event::WeightsChanged {
        blue: 90,
        green: 10,
    });
    for e in s.into_events() {
        let _ = tx.send(Envelope {
            ts: chrono::Utc::now(),
            ..e
        });
    }
    tokio::spawn(async move { while cmd_rx.recv().await.is_some() {} });
    let result = cockpit(rx, cmd_tx, context()).await;
    drop(tx);
    result
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("render") => {
            let frames = args.next().and_then(|n| n.parse().ok()).unwrap_or(500);
            render_bench(frames);
        }
        Some(mode @ ("idle" | "panic")) => {
            let panic_after = (mode == "panic").then(|| std::time::Duration::from_secs(1));
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("bench_tui: no runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = rt.block_on(idle(panic_after)) {
                eprintln!("bench_tui: cockpit failed: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: bench_tui render [FRAMES] | bench_tui idle | bench_tui panic");
            std::process::exit(2);
        }
    }
}
