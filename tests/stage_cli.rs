//! `glidepath stage up|status|down` as a user runs them: the real binary, a background
//! stage, pid and log files in a private state dir.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// A private `$XDG_STATE_HOME`; any stage still recorded there is killed on drop, so a
/// failing test leaves nothing running.
struct StateHome {
    dir: tempfile::TempDir,
}

impl StateHome {
    fn new() -> Self {
        common::ensure_stage_venv();
        StateHome {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn stage_dir(&self) -> PathBuf {
        self.dir.path().join("glidepath/stage")
    }

    fn glidepath(&self, args: &[&str]) -> Output {
        self.glidepath_env(args, &[])
    }

    fn glidepath_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_glidepath"));
        cmd.args(args)
            .current_dir(common::repo_root())
            .env("XDG_STATE_HOME", self.dir.path())
            .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run glidepath")
    }
}

impl Drop for StateHome {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.stage_dir()) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    // SAFETY: kill(2) on a stage this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[test]
fn stage_up_status_down_round_trip() {
    let home = StateHome::new();
    let started = Instant::now();
    let up = home.glidepath(&["stage", "up", "--port", "0"]);
    let took = started.elapsed();
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    let out = text(&up.stdout);
    println!("{out}(`stage up` took {:.2}s in all)", took.as_secs_f64());
    let endpoint = out
        .lines()
        .find_map(|l| l.strip_prefix("stage ready on "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no ready line: {out}"))
        .to_string();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        out.contains(&format!("export AWS_ENDPOINT_URL={endpoint}")),
        "{out}"
    );
    assert!(out.contains("scenario happy"), "{out}");
    assert!(
        out.contains(&format!("glidepath stage down --port {port}")),
        "{out}"
    );
    // Start-to-ready is printed above (about 2 s alone); not asserted, since parallel tests
    // start several stages at once on small machines.

    let pid_file = home.stage_dir().join(format!("{port}.pid"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .unwrap();
    assert!(!common::process_gone(pid));
    let log = std::fs::read_to_string(home.stage_dir().join(format!("{port}.log"))).unwrap();
    assert!(log.contains("stage ready on"), "{log}");
    // The stage answers the control endpoint and AWS calls on that port.
    let health = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(health.is_ok(), "nothing listens on {port}");

    // Up again on the same port: it says so and succeeds; with another scenario it refuses.
    let again = home.glidepath(&["stage", "up", "--port", &port.to_string()]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    assert!(
        text(&again.stdout).contains(&format!("already running on {endpoint} (pid {pid})")),
        "{}",
        show(&again)
    );
    let other = home.glidepath(&[
        "stage",
        "up",
        "--port",
        &port.to_string(),
        "--scenario",
        "green-5xx",
    ]);
    assert_eq!(other.status.code(), Some(2), "{}", show(&other));
    let err = text(&other.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("with scenario happy, not green-5xx"), "{err}");

    let status = home.glidepath(&["stage", "status"]);
    assert!(
        text(&status.stdout).contains(&format!(
            "{endpoint}  pid {pid}  engine stage  scenario happy"
        )),
        "{}",
        show(&status)
    );

    let down = home.glidepath(&["stage", "down", "--port", &port.to_string()]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    assert!(
        text(&down.stdout).contains(&format!("stopped the stage on port {port} (pid {pid})")),
        "{}",
        show(&down)
    );
    assert!(common::process_gone(pid), "stage pid {pid} still running");
    assert!(!pid_file.exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Nothing left to stop: said plainly, exit 0.
    let none = home.glidepath(&["stage", "down", "--port", &port.to_string()]);
    assert_eq!(none.status.code(), Some(0), "{}", show(&none));
    assert!(text(&none.stdout).contains(&format!("no stage is running on port {port}")));
    let none = home.glidepath(&["stage", "down"]);
    assert_eq!(none.status.code(), Some(0), "{}", show(&none));
    assert!(text(&none.stdout).contains("no stage is running"));
}

#[test]
fn stage_down_without_port_stops_every_recorded_stage_and_cleans_stale_files() {
    let home = StateHome::new();
    let mut pids = Vec::new();
    for _ in 0..2 {
        let up = home.glidepath(&["stage", "up", "--port", "0"]);
        assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    }
    for e in std::fs::read_dir(home.stage_dir()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "pid") {
            pids.push(
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .trim()
                    .parse::<u32>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(pids.len(), 2);
    std::fs::write(home.stage_dir().join("1.pid"), "999999999\n").unwrap();

    let down = home.glidepath(&["stage", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
    let out = text(&down.stdout);
    assert_eq!(out.matches("stopped the stage").count(), 2, "{out}");
    assert!(
        out.contains("no stage is running on port 1 (removed a stale pid file)"),
        "{out}"
    );
    for pid in pids {
        assert!(common::process_gone(pid), "stage pid {pid} still running");
    }
    let left: Vec<_> = std::fs::read_dir(home.stage_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn stage_up_bad_input_is_one_line() {
    let home = StateHome::new();

    let unknown = home.glidepath(&["stage", "up", "--port", "0", "--scenario", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", show(&unknown));
    let err = text(&unknown.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("unknown scenario 'nope'"), "{err}");

    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let busy = home.glidepath(&["stage", "up", "--port", &port]);
    assert_eq!(busy.status.code(), Some(2), "{}", show(&busy));
    let err = text(&busy.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("port {port} is in use")), "{err}");

    // Nothing was left behind by the failed starts.
    let files: Vec<_> = std::fs::read_dir(home.stage_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn stage_up_without_the_venv_names_the_setup_script() {
    let home = StateHome::new();
    let missing = home.dir.path().join("no-venv");
    let out = home.glidepath_env(
        &["stage", "up", "--port", "0"],
        &[("GLIDEPATH_VENV", missing.as_path())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("scripts/setup-stage"), "{err}");
}

// --- with plan files -------------------------------------------------------------------------

#[test]
fn stage_seed_from_the_cli_is_idempotent_and_loopback_only() {
    let home = StateHome::new();
    let up = home.glidepath(&["stage", "up", "--port", "0"]);
    assert_eq!(up.status.code(), Some(0), "{}", show(&up));
    let out = text(&up.stdout);
    let endpoint = out
        .lines()
        .find_map(|l| l.strip_prefix("  export AWS_ENDPOINT_URL="))
        .unwrap_or_else(|| panic!("no export line: {out}"))
        .to_string();

    let seed = |extra: &[&str]| {
        let mut args = vec!["stage", "seed", "examples/rehearsal.toml"];
        args.extend_from_slice(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_glidepath"));
        cmd.args(&args)
            .current_dir(common::repo_root())
            .env("XDG_STATE_HOME", home.dir.path())
            .env("AWS_ENDPOINT_URL", &endpoint);
        cmd.output().unwrap()
    };
    let first = seed(&[]);
    assert_eq!(first.status.code(), Some(0), "{}", show(&first));
    let t = text(&first.stdout);
    assert!(
        t.starts_with(&format!("seeded shop on {endpoint} in ")),
        "{t}"
    );
    assert!(t.contains("  created  vpc shop-vpc"), "{t}");
    assert!(t.contains(", 0 already there"), "{t}");

    let again = seed(&["--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["created"], serde_json::json!([]));
    assert!(!report["existing"].as_array().unwrap().is_empty());

    // A remote endpoint is refused before anything is sent.
    let remote = seed(&["--endpoint-url", "https://s3.amazonaws.com"]);
    assert_eq!(remote.status.code(), Some(2), "{}", show(&remote));
    assert!(text(&remote.stderr).contains("refusing to seed https://s3.amazonaws.com"));

    let down = home.glidepath(&["stage", "down"]);
    assert_eq!(down.status.code(), Some(0), "{}", show(&down));
}

#[test]
fn rehearse_cli_bad_scenario_is_one_line_exit_2() {
    let home = StateHome::new();
    let out = home.glidepath(&["rehearse", "--scenario", "nope", "--non-interactive"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("unknown scenario 'nope'"), "{err}");

    let prod = home.glidepath(&["rehearse", "examples/production.toml", "--non-interactive"]);
    assert_eq!(prod.status.code(), Some(2), "{}", show(&prod));
    assert!(
        text(&prod.stderr).contains("refusing to rehearse"),
        "{}",
        show(&prod)
    );
}

#[test]
fn rehearse_cli_json_keeps_stdout_pure_event_lines() {
    let home = StateHome::new();
    let out = home.glidepath(&[
        "rehearse",
        "--output",
        "json",
        "--non-interactive",
        "--auto-approve",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last["type"], "release_finished", "{last}");
    assert_eq!(last["outcome"], "finalized", "{last}");
    // Narration and the closing report go to stderr in JSON mode.
    let err = text(&out.stderr);
    assert!(
        err.contains("rehearsal: stage ready on http://127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.contains("rehearsal of shop (scenario happy): finalized (exit 0)"),
        "{err}"
    );
    assert!(
        err.contains("listener shop now: shop-blue 0, shop-green 100"),
        "{err}"
    );
}

/// Failing commands print their error once, at the edge, with the exit code it implies.
#[test]
fn failing_commands_print_one_error_and_pick_the_exit_code() {
    let home = StateHome::new();

    let missing = home.glidepath(&["rehearse", "no/such/plan.toml", "--non-interactive"]);
    assert_eq!(missing.status.code(), Some(2), "{}", show(&missing));
    let err = text(&missing.stderr);
    assert!(
        err.starts_with("glidepath: no/such/plan.toml: error: cannot read the plan file: "),
        "{err}"
    );
    assert_eq!(err.matches("cannot read the plan file").count(), 1, "{err}");
    assert!(text(&missing.stdout).is_empty(), "{}", show(&missing));

    let unknown = home.glidepath(&["rehearse", "--scenario", "nope", "--non-interactive"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", show(&unknown));
    let err = text(&unknown.stderr);
    assert_eq!(err.matches("unknown scenario 'nope'").count(), 1, "{err}");
    assert!(err.starts_with("glidepath: "), "{err}");

    // Port 9 (discard) on loopback: nothing listens there, as when no stage was started.
    let down = home.glidepath(&[
        "status",
        "examples/rehearsal.toml",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(down.status.code(), Some(1), "{}", show(&down));
    let err = text(&down.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("glidepath: "), "{err}");
    assert!(
        err.contains(
            "nothing answers at http://127.0.0.1:9: start the stage with `glidepath stage up`"
        ),
        "{err}"
    );
}
