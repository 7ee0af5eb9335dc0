//! End to end: the real binary's cockpit in tmux, driving a rehearsal on the local stage.
//!
//! Needs tmux (installed by the project's setup) and everything `glidepath rehearse` needs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A detached tmux session running one command; killed when dropped.
struct Tmux {
    session: String,
}

impl Tmux {
    fn start(name: &str, cmd: &str) -> Tmux {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "tmux is required for this test (apt-get install -y tmux)"
        );
        let session = format!("glidepath-e2e-{name}-{}", std::process::id());
        // Keep the pane after the program exits, to read its last words and exit status.
        let shell = format!("{cmd}; echo \"EXIT=$?\"; sleep 600");
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "120", "-y", "40"])
            .arg(shell)
            .status()
            .expect("tmux new-session");
        assert!(status.success(), "tmux new-session failed");
        Tmux { session }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Wait until the screen shows `text`; the last screen is in the failure message.
    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {text:?}; the screen was:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn rehearse(args: &str) -> String {
    glidepath(&format!("rehearse examples/rehearsal.toml {args}"))
}

/// `glidepath ARGS` from the project root (where the example plan is).
fn glidepath(args: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = env!("CARGO_BIN_EXE_glidepath");
    assert!(Path::new(root).join("examples/rehearsal.toml").exists());
    format!("cd '{root}' && '{bin}' {args}")
}

/// A loopback port nobody listens on right now (for the rehearsal's stage).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Generous: a loaded 2-core machine may take minutes for a rehearsal phase.
const PHASE: Duration = Duration::from_secs(240);
/// How long a key may take to show on screen.
const KEYS: Duration = Duration::from_secs(30);

#[test]
fn rehearsal_shows_migration_log_waits_for_approval_and_finalizes() {
    let t = Tmux::start("happy", &rehearse(""));
    let s = t.wait_for("WAITING FOR APPROVAL", PHASE);
    assert!(s.contains("REHEARSAL"), "a rehearsal says so:\n{s}");
    assert!(
        s.contains("exit 0"),
        "the migration finished with exit 0:\n{s}"
    );

    // The migration pane, enlarged, shows its task and log tail.
    t.keys(&["Tab", "Tab", "Enter"]);
    let s = t.wait_for("╔ migration", KEYS);
    let log_lines = s
        .lines()
        .skip_while(|l| !l.contains("╔ migration"))
        .skip(2) // title row, task row
        .take_while(|l| !l.contains("╚"))
        .filter(|l| !l.trim_matches(|c| c == '║' || c == ' ').is_empty())
        .count();
    assert!(log_lines > 0, "the migration log is shown:\n{s}");
    t.keys(&["Escape"]);

    // Nothing moves past the manual gate until `a`.
    std::thread::sleep(Duration::from_secs(3));
    assert!(t.screen().contains("WAITING FOR APPROVAL"));
    t.keys(&["a"]);
    t.wait_for("FINALIZED", PHASE);
    t.keys(&["q"]);
    let s = t.wait_for("EXIT=", KEYS);
    assert!(s.contains("EXIT=0"), "finalized exits 0:\n{s}");
    assert!(
        s.contains("FINALIZED"),
        "the outcome is printed after the cockpit:\n{s}"
    );
}

#[test]
fn rehearsal_with_green_5xx_fails_the_gate_and_rolls_back() {
    let t = Tmux::start("green5xx", &rehearse("--scenario green-5xx"));
    let s = t.wait_for("ROLLED BACK", PHASE);
    assert!(s.contains("✗ FAILED"), "the failed gate is shown:\n{s}");
    assert!(s.contains("5xx"), "the failing signal is named:\n{s}");
    assert!(s.contains("blue  100%"), "traffic is back on blue:\n{s}");
    t.keys(&["q"]);
    let s = t.wait_for("EXIT=", KEYS);
    assert!(s.contains("EXIT=3"), "rolled back by a gate exits 3:\n{s}");
}

#[test]
fn watch_in_a_second_terminal_follows_the_rehearsal_read_only() {
    let port = free_port();
    let rel = Tmux::start("rel", &rehearse(&format!("--port {port}")));
    // Attach once the release is under way (its world exists on the stage by then).
    rel.wait_for("✓ snapshot", PHASE);
    let watch = Tmux::start(
        "watch",
        &glidepath(&format!(
            "--endpoint-url http://127.0.0.1:{port} watch examples/rehearsal.toml --wait"
        )),
    );
    let s = watch.wait_for("(watching, read-only)", PHASE);
    assert!(s.contains("REHEARSAL"), "{s}");
    let s = watch.wait_for("WAITING FOR APPROVAL ·", PHASE);
    assert!(!s.contains("APPROVAL in the releasing terminal"), "{s}");
    assert!(s.contains("50%"), "{s}");
    assert!(s.contains("exit 0"), "the migration is shown:\n{s}");
    // Keys that steer a release do nothing here.
    watch.keys(&["a"]);
    watch.wait_for("this cockpit is read-only", KEYS);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        rel.screen().contains("WAITING FOR APPROVAL"),
        "{}",
        rel.screen()
    );

    rel.keys(&["a"]);
    rel.wait_for("FINALIZED", PHASE);
    let s = watch.wait_for("FINALIZED", PHASE);
    assert!(s.contains("100% green"), "{s}");
    watch.keys(&["q"]);
    let s = watch.wait_for("EXIT=", KEYS);
    assert!(
        s.contains("EXIT=0"),
        "watch exits with the release's code:\n{s}"
    );
    rel.keys(&["q"]);
    let s = rel.wait_for("EXIT=", KEYS);
    assert!(s.contains("EXIT=0"), "{s}");
}
