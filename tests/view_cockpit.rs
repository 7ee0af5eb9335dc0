//! Cockpit: TestBackend snapshots of recorded releases, and key handling.

use crate::view_support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use glidepath::engine::event::Command;
use glidepath::view::tui::app::{Action, Cockpit, Focus, Overlay};
use glidepath::view::tui::draw::draw;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use view_support::{cockpit_at, production, staging, Stage};

fn render(c: &Cockpit, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| draw(c, f)).expect("draw");
    t
}

fn screen(c: &Cockpit, w: u16, h: u16) -> String {
    render(c, w, h).backend().to_string()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(c: &mut Cockpit, codes: &[KeyCode]) -> Vec<Action> {
    codes.iter().flat_map(|k| c.handle_key(key(*k))).collect()
}

fn type_text(c: &mut Cockpit, text: &str) -> Vec<Action> {
    text.chars()
        .flat_map(|ch| c.handle_key(key(KeyCode::Char(ch))))
        .collect()
}

// ---- snapshots -------------------------------------------------------------------------

#[test]
fn snapshot_waiting_for_snapshot() {
    let c = cockpit_at(&staging(), Stage::WaitingForSnapshot, false);
    let s = screen(&c, 100, 30);
    assert!(s.contains("45%"), "snapshot gauge shows progress:\n{s}");
    insta::assert_snapshot!("waiting_for_snapshot", s);
}

#[test]
fn snapshot_migration_running_with_logs() {
    let c = cockpit_at(&staging(), Stage::MigrationRunning, false);
    let s = screen(&c, 100, 30);
    assert!(s.contains("RUNNING") && s.contains("backfilled 20000/42000 rows"));
    insta::assert_snapshot!("migration_running", s);
}

#[test]
fn snapshot_shifting_at_10_percent() {
    let c = cockpit_at(&staging(), Stage::Shifting10, false);
    let s = screen(&c, 120, 34);
    assert!(s.contains("90%") && s.contains("10%"));
    assert!(s.contains("PASS"));
    insta::assert_snapshot!("shifting_10", s);
}

/// A plan with a worker and a scheduler after it, at the moment the worker is done and
/// the scheduler is rolling out: one row each under the phases, the shift's progress line
/// following the scheduler's rollout.
#[test]
fn snapshot_companions_one_done_the_next_rolling_out() {
    let mut plan = staging();
    plan.companions = ["worker", "scheduler"]
        .iter()
        .map(|name| glidepath::plan::Companion {
            name: name.to_string(),
            service: format!("shop-{name}"),
            container: name.to_string(),
            image: plan.deploy.image.clone(),
            depends_on: vec![],
        })
        .collect();
    plan.companions[1].depends_on = vec!["worker".into()];
    let c = cockpit_at(&plan, Stage::CompanionsMoving, false);
    let s = screen(&c, 120, 34);
    let line = |needle: &str| {
        s.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle}:\n{s}"))
            .to_string()
    };
    assert!(
        line("↳ worker").contains("✓ ↳ worker")
            && line("↳ worker").contains("on the new version (shop-worker)"),
        "{s}"
    );
    assert!(
        line("↳ scheduler").contains("▶ ↳ scheduler")
            && line("↳ scheduler").contains("rolling out (shop-scheduler)"),
        "{s}"
    );
    let rows: Vec<usize> = ["shift", "↳ worker", "↳ scheduler"]
        .iter()
        .map(|n| s.lines().position(|l| l.contains(n)).expect(n))
        .collect();
    assert!(
        rows[0] < rows[1] && rows[1] < rows[2],
        "under the phases, in order:\n{s}"
    );
    insta::assert_snapshot!("companions_moving", s);
}

#[test]
fn snapshot_gate_failed_rolling_back() {
    let c = cockpit_at(&staging(), Stage::GateFailedRollingBack, false);
    let s = screen(&c, 120, 34);
    assert!(s.contains("ROLLING BACK"), "{s}");
    assert!(s.contains("31.0%"), "{s}");
    // The evidence that failed the gate, next to its threshold.
    assert!(
        s.contains(" evidence 5xx 410 / 222 needed · p95 0.38 / 222 needed"),
        "{s}"
    );
    insta::assert_snapshot!("gate_failed_rolling_back", s);
}

#[test]
fn snapshot_waiting_for_approval() {
    let c = cockpit_at(&staging(), Stage::WaitingForApproval, false);
    let s = screen(&c, 120, 34);
    assert!(s.contains("WAITING FOR APPROVAL"));
    insta::assert_snapshot!("waiting_for_approval", s);
}

#[test]
fn snapshot_finalized() {
    let c = cockpit_at(&staging(), Stage::Finalized, false);
    let s = screen(&c, 120, 34);
    assert!(s.contains("FINALIZED"));
    insta::assert_snapshot!("finalized", s);
}

#[test]
fn snapshot_production_banner() {
    let c = cockpit_at(&production(), Stage::WaitingForApproval, false);
    let t = render(&c, 120, 34);
    let s = t.backend().to_string();
    assert!(s.contains("PRODUCTION"));
    insta::assert_snapshot!("production", s);
}

#[test]
fn snapshot_80x24() {
    for (name, stage) in [
        ("small_migration", Stage::MigrationRunning),
        ("small_shifting", Stage::Shifting10),
        ("small_approval", Stage::WaitingForApproval),
    ] {
        let c = cockpit_at(&staging(), stage, false);
        insta::assert_snapshot!(name, screen(&c, 80, 24));
    }
}

#[test]
fn snapshot_help_overlay_lists_every_key() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    press(&mut c, &[KeyCode::Char('?')]);
    let s = screen(&c, 80, 24);
    for k in [
        "a ", "space", "r ", "n ", "tab", "enter", "/", "?", "q ", "ctrl-c",
    ] {
        assert!(s.contains(k), "help shows {k:?}:\n{s}");
    }
    insta::assert_snapshot!("help", s);
}

#[test]
fn snapshot_production_rollback_confirm() {
    let mut c = cockpit_at(&production(), Stage::Shifting10, false);
    press(&mut c, &[KeyCode::Char('r')]);
    type_text(&mut c, "prod");
    let s = screen(&c, 80, 24);
    assert!(s.contains("Type production"), "{s}");
    insta::assert_snapshot!("production_rollback_confirm", s);
}

#[test]
fn snapshot_zoomed_filtered_log() {
    let mut c = cockpit_at(&staging(), Stage::Finalized, false);
    press(&mut c, &[KeyCode::Char('/')]);
    type_text(&mut c, "gate");
    press(&mut c, &[KeyCode::Enter, KeyCode::Enter]);
    assert_eq!(c.focus, Focus::Log);
    assert!(c.zoomed);
    let s = screen(&c, 100, 20);
    assert!(s.contains("passed at 50%"), "{s}");
    assert!(
        !s.contains("weights blue"),
        "filter hides other events:\n{s}"
    );
    insta::assert_snapshot!("zoomed_filtered_log", s);
}

// ---- styling ---------------------------------------------------------------------------

/// Production is a red banner with colour, and reversed without (NO_COLOR).
#[test]
fn production_banner_is_unmistakable_with_and_without_colour() {
    let mut c = cockpit_at(&production(), Stage::Shifting10, false);
    c.theme.colour = true;
    let t = render(&c, 80, 24);
    let cell = &t.backend().buffer()[(70, 0)];
    assert_eq!(cell.bg, Color::Red, "the whole first row is red");

    c.theme.colour = false;
    let t = render(&c, 80, 24);
    let buf = t.backend().buffer();
    let coloured = buf
        .content()
        .iter()
        .any(|cell| cell.fg != Color::Reset || cell.bg != Color::Reset);
    assert!(!coloured, "NO_COLOR: not a single coloured cell");
    assert!(buf[(70, 0)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn resizes_without_panicking_down_to_tiny() {
    let c = cockpit_at(&staging(), Stage::WaitingForApproval, false);
    for (w, h) in [(200, 50), (80, 24), (60, 15), (20, 5), (1, 1)] {
        render(&c, w, h);
    }
}

// ---- keys ------------------------------------------------------------------------------

#[test]
fn approve_only_when_a_gate_waits() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    assert!(press(&mut c, &[KeyCode::Char('a')]).is_empty());
    assert_eq!(c.flash.as_deref(), Some("no gate is waiting for approval"));

    let mut c = cockpit_at(&staging(), Stage::WaitingForApproval, false);
    assert_eq!(
        press(&mut c, &[KeyCode::Char('a')]),
        vec![Action::Send(Command::Approve)]
    );
    // A second press does not approve twice.
    assert!(press(&mut c, &[KeyCode::Char('a')]).is_empty());
}

#[test]
fn rollback_asks_then_sends() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    assert!(press(&mut c, &[KeyCode::Char('r')]).is_empty());
    assert!(matches!(c.overlay, Overlay::Confirm(_)));
    assert_eq!(
        press(&mut c, &[KeyCode::Char('y')]),
        vec![Action::Send(Command::Rollback)]
    );
    assert_eq!(c.overlay, Overlay::None);

    // n / esc cancel without sending.
    assert!(press(&mut c, &[KeyCode::Char('r'), KeyCode::Char('n')]).is_empty());
    assert!(press(&mut c, &[KeyCode::Char('r'), KeyCode::Esc]).is_empty());
    assert_eq!(c.overlay, Overlay::None);
}

#[test]
fn advance_asks_and_only_while_a_step_bakes() {
    let mut c = cockpit_at(&staging(), Stage::MigrationRunning, false);
    assert!(press(&mut c, &[KeyCode::Char('n')]).is_empty());
    assert_eq!(
        c.overlay,
        Overlay::None,
        "nothing to advance before the shift"
    );

    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    assert_eq!(
        press(&mut c, &[KeyCode::Char('n'), KeyCode::Char('y')]),
        vec![Action::Send(Command::Advance)]
    );
}

#[test]
fn production_traffic_actions_need_the_environment_typed() {
    for (k, cmd, stage) in [
        ('r', Command::Rollback, Stage::Shifting10),
        ('n', Command::Advance, Stage::Shifting10),
        ('a', Command::Approve, Stage::WaitingForApproval),
    ] {
        let mut c = cockpit_at(&production(), stage, false);
        assert!(press(&mut c, &[KeyCode::Char(k)]).is_empty());
        // `y` is just a typed letter here, not a yes.
        assert!(press(&mut c, &[KeyCode::Char('y'), KeyCode::Enter]).is_empty());
        assert!(matches!(&c.overlay, Overlay::Confirm(s) if s.error.is_some()));
        assert!(type_text(&mut c, "production").is_empty());
        assert_eq!(
            press(&mut c, &[KeyCode::Enter]),
            vec![Action::Send(cmd)],
            "{k} after typing the environment"
        );
    }
}

#[test]
fn space_pauses_and_resumes() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    assert_eq!(
        press(&mut c, &[KeyCode::Char(' ')]),
        vec![Action::Send(Command::Pause)]
    );
    let mut s = view_support::script(&staging(), Stage::Shifting10);
    s.push(glidepath::engine::event::Event::Paused {
        reason: "operator".into(),
    });
    c.apply(s.events().last().expect("event"));
    assert_eq!(
        press(&mut c, &[KeyCode::Char(' ')]),
        vec![Action::Send(Command::Resume)]
    );
}

#[test]
fn quitting_mid_release_asks_aborts_and_says_how_to_resume() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    assert!(press(&mut c, &[KeyCode::Char('q')]).is_empty());
    assert_eq!(
        press(&mut c, &[KeyCode::Char('y')]),
        vec![Action::Send(Command::Abort), Action::Quit]
    );
    let bye = c.farewell().expect("a farewell");
    assert!(
        bye.contains("glidepath resume plans/shop-staging.toml"),
        "{bye}"
    );
    assert!(bye.contains("blue 90% / green 10%"), "{bye}");
}

#[test]
fn ctrl_c_quits_at_once_and_aborts_a_running_release() {
    let mut c = cockpit_at(&staging(), Stage::Shifting10, false);
    let actions = c.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(actions, vec![Action::Send(Command::Abort), Action::Quit]);
}

#[test]
fn quitting_after_the_release_just_quits() {
    let mut c = cockpit_at(&staging(), Stage::Finalized, false);
    assert_eq!(press(&mut c, &[KeyCode::Char('q')]), vec![Action::Quit]);
    let bye = c.farewell().expect("the outcome");
    assert!(bye.contains("FINALIZED"), "{bye}");
}

#[test]
fn watch_only_sends_nothing() {
    let mut c = cockpit_at(&staging(), Stage::WaitingForApproval, true);
    let s = screen(&c, 120, 34);
    assert!(
        s.contains("WAITING FOR APPROVAL ·")
            && !s.contains("press a")
            && !s.contains("releasing terminal"),
        "a watcher is told where approval happens:\n{s}"
    );
    for k in ['a', ' ', 'r', 'n'] {
        assert!(press(&mut c, &[KeyCode::Char(k), KeyCode::Char('y')]).is_empty());
    }
    press(&mut c, &[KeyCode::Tab]);
    assert_eq!(c.focus, Focus::Health, "navigation still works");
    assert_eq!(press(&mut c, &[KeyCode::Char('q')]), vec![Action::Quit]);
}

#[test]
fn a_confirm_closes_when_the_release_moves_on() {
    let plan = production();
    let mut c = cockpit_at(&plan, Stage::WaitingForApproval, false);
    press(&mut c, &[KeyCode::Char('a')]);
    assert!(matches!(c.overlay, Overlay::Confirm(_)));
    // Someone approved elsewhere (or --auto-approve): the gate passes under the dialog.
    let full = view_support::script(&plan, Stage::Finalized);
    let waiting = view_support::script(&plan, Stage::WaitingForApproval);
    for env in &full.events()[waiting.events().len()..] {
        c.apply(env);
    }
    assert_eq!(c.overlay, Overlay::None);
    assert!(type_text(&mut c, "production").is_empty());
}

#[test]
fn focus_cycles_and_scrolls_the_focused_log() {
    let mut c = cockpit_at(&staging(), Stage::MigrationRunning, false);
    assert_eq!(c.focus, Focus::Traffic);
    press(&mut c, &[KeyCode::Tab, KeyCode::Tab]);
    assert_eq!(c.focus, Focus::Migration);
    press(&mut c, &[KeyCode::Up, KeyCode::Up]);
    assert_eq!(c.migration.scroll.from_bottom, 2);
    let s = screen(&c, 80, 24);
    assert!(s.contains("migration · ↑2"), "{s}");
    assert!(
        !s.contains("backfilled 20000/42000"),
        "scrolled up past the tail:\n{s}"
    );
    press(&mut c, &[KeyCode::Char('G')]);
    assert_eq!(c.migration.scroll.from_bottom, 0);
    press(&mut c, &[KeyCode::BackTab]);
    assert_eq!(c.focus, Focus::Health);
}

#[test]
fn the_event_log_is_bounded_and_keeps_the_newest() {
    let plan = staging();
    let mut c = Cockpit::new(
        &view_support::context(&plan, false),
        false,
        chrono::Utc::now(),
    );
    let mut s = glidepath::view::fixture::Script::new("r1");
    for i in 0..60_000 {
        s.push(glidepath::engine::event::Event::Log {
            source: "migrate".into(),
            line: format!("line {i}"),
        });
    }
    for e in s.events() {
        c.apply(e);
    }
    assert!(c.log.entries.len() <= 50_000);
    assert!(c
        .log
        .entries
        .last()
        .is_some_and(|e| e.text.ends_with("line 59999")));
    assert_eq!(c.log.visible_len(), c.log.entries.len());
}

#[test]
fn the_read_only_window_shows_a_running_clock_while_open() {
    use chrono::TimeZone;
    use glidepath::engine::event::{Envelope, Event};
    let plan = staging();
    let t0 = chrono::Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let env = |ts, event| Envelope {
        ts,
        release: "shop-1.4.0".into(),
        event,
    };
    let mut c = Cockpit::new(&view_support::context(&plan, false), false, t0);
    c.apply(&env(
        t0,
        Event::ReadOnlyOpened {
            opened_at: t0,
            max_s: 600.0,
        },
    ));
    c.tick(at(83));
    let s = screen(&c, 100, 30);
    assert!(s.contains("READ-ONLY 1m23s of max 10m00s"), "{s}");
    // The clock runs with the cockpit's clock alone, no event needed.
    c.tick(at(95));
    assert!(screen(&c, 100, 30).contains("READ-ONLY 1m35s of max"));
    c.apply(&env(
        at(96),
        Event::ReadOnlyClosed {
            duration_ms: 96_000,
            reason: "the migration task stopped".into(),
        },
    ));
    c.tick(at(200));
    let s = screen(&c, 100, 30);
    assert!(s.contains("read-only window closed after 1m36s"), "{s}");
    assert!(!s.contains("READ-ONLY"), "{s}");
}
