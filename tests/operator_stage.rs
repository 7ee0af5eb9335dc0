//! Operators in several terminals, through the real binary on the stage: `resume` against a
//! live and a killed releasing process (one driver per release), and `glidepath approve`
//! from another process.

use crate::common;

use glidepath::commands::release::ports_for;
use glidepath::engine::run;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn glidepath(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glidepath"));
    cmd.arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .current_dir(common::repo_root())
        .env_remove("GLIDEPATH_HOLDER")
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Lines of a child's stream, as they come (read on a thread).
pub(crate) fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait for a line matching `want`; every line seen is kept in `seen`.
pub(crate) fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if want(&l) {
                    return Some(l);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

/// Kill a child this test started (SIGKILL) and reap it.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A stage whose migration runs long enough for a process to hold the lock meanwhile.
pub(crate) async fn slow_stage(
    migration_s: u32,
) -> (
    glidepath::rehearse::stage::Stage,
    aws_types::SdkConfig,
    tempfile::TempDir,
) {
    let (dir, scenario) = common::temp_file(
        "slow.toml",
        &format!(
            "description = \"slow migration\"\n[migration]\nseconds = {migration_s}\n[snapshot]\nseconds = 1\n[deploy]\nseconds = 1\n"
        ),
    );
    let stage = common::start_stage(&common::path_str(&scenario)).await;
    let config = common::sdk_config(&stage).await;
    glidepath::rehearse::seed::seed(&config, &common::rehearsal_plan())
        .await
        .expect("seed");
    (stage, config, dir)
}

/// The lock's (holder, pid), through the library.
async fn lock_holder(config: &aws_types::SdkConfig) -> Option<(String, Option<u32>)> {
    let (ports, plan) = ports_for(config, &common::rehearsal_plan())
        .await
        .expect("ports");
    let st = run::status(&plan, &ports).await.expect("status");
    st.lock.map(|l| (l.body.holder, l.body.pid))
}

/// One finalized release through the binary, so that the next one goes green → blue.
async fn first_release(endpoint: &str) {
    let first = run_to_end(
        endpoint,
        &[
            "release",
            "examples/rehearsal.toml",
            "--version",
            "1.3.0",
            "--non-interactive",
            "--auto-approve",
            "--holder",
            "alice@ops-1",
        ],
    )
    .await;
    assert_eq!(first.0, Some(0), "release 1.3.0:\n{}\n{}", first.1, first.2);
}

#[tokio::test]
async fn resume_waits_for_a_live_holder_and_takes_over_a_killed_one_at_once() {
    resume_never_takes_a_live_holders_lease(false).await;
}

/// The same after one release: the release A drives goes green → blue.
#[tokio::test]
async fn resume_waits_for_a_live_holder_and_takes_over_a_killed_one_at_once_green_to_blue() {
    resume_never_takes_a_live_holders_lease(true).await;
}

async fn resume_never_takes_a_live_holders_lease(after_one: bool) {
    let (stage, config, _dir) = slow_stage(20).await;
    let endpoint = stage.endpoint();
    if after_one {
        first_release(&endpoint).await;
    }
    let mut a = glidepath(
        &endpoint,
        &[
            "release",
            "examples/rehearsal.toml",
            "--version",
            "1.4.0",
            "--non-interactive",
            "--auto-approve",
            "--holder",
            "alice@ops-1",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start release A");
    let a_pid = a.id();
    let held = common::wait_for("A holds the lock", Duration::from_secs(60), || async {
        lock_holder(&config).await
    })
    .await;
    assert_eq!(held, ("alice@ops-1".to_string(), Some(a_pid)));

    // B: A is alive, so B says who holds the lock and waits for its lease.
    let mut b = glidepath(
        &endpoint,
        &[
            "resume",
            "examples/rehearsal.toml",
            "--non-interactive",
            "--auto-approve",
            "--holder",
            "bob@ops-2",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start resume B");
    let b_err = lines_of(b.stderr.take().unwrap());
    let mut seen = vec![];
    let waiting = wait_line(&b_err, &mut seen, Duration::from_secs(30), |l| {
        l.contains("Waiting for its lease to expire at")
    });
    kill(&mut b);
    let waiting = waiting.unwrap_or_else(|| panic!("B did not say it waits:\n{}", seen.join("\n")));
    assert!(waiting.contains("alice@ops-1"), "{waiting}");
    assert!(waiting.contains(&format!("pid {a_pid}")), "{waiting}");
    assert!(waiting.contains("started"), "{waiting}");
    assert!(a.try_wait().unwrap().is_none(), "A still runs");
    assert_eq!(
        lock_holder(&config).await.map(|h| h.0),
        Some("alice@ops-1".to_string()),
        "B did not take the lock"
    );

    // A is killed (a crashed terminal): C takes over at once and finishes the release.
    kill(&mut a);
    let started = Instant::now();
    let c = glidepath(
        &endpoint,
        &[
            "resume",
            "examples/rehearsal.toml",
            "--non-interactive",
            "--auto-approve",
            "--holder",
            "carol@ops-3",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start resume C");
    let c = tokio::task::spawn_blocking(move || c.wait_with_output().expect("resume C"))
        .await
        .unwrap();
    let context = format!(
        "exit {:?}\n{}\n{}",
        c.status.code(),
        text(&c.stdout),
        text(&c.stderr)
    );
    assert_eq!(c.status.code(), Some(0), "{context}");
    assert!(text(&c.stderr).contains("is gone"), "{context}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "did not wait for the 5m lease: {context}"
    );
    assert!(text(&c.stdout).contains("held by carol@ops-3"), "{context}");
    let (ports, plan) = ports_for(&config, &common::rehearsal_plan())
        .await
        .expect("ports");
    let live = run::status(&plan, &ports).await.expect("status").live;
    let target = if after_one { "blue" } else { "green" };
    assert_eq!(live.map(|s| s.colour.name()), Some(target), "{context}");
}

/// Scripted mode without --auto-approve waits at the manual gate (50 % in the rehearsal
/// plan), saying how to approve; `glidepath approve` from a second process lets it go on.
#[tokio::test]
async fn scripted_release_waits_at_the_manual_gate_until_approved_from_another_process() {
    approved_from_another_process(false).await;
}

/// The same after one release: the gate waits at blue 50 % (green → blue).
#[tokio::test]
async fn scripted_release_waits_at_the_manual_gate_until_approved_from_another_process_green_to_blue(
) {
    approved_from_another_process(true).await;
}

async fn approved_from_another_process(after_one: bool) {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    if after_one {
        first_release(&endpoint).await;
    }
    let target = if after_one { "blue" } else { "green" };

    let nothing = glidepath(&endpoint, &["approve", "examples/rehearsal.toml"])
        .output()
        .expect("approve");
    assert_eq!(nothing.status.code(), Some(2), "{}", text(&nothing.stderr));
    assert!(text(&nothing.stderr).contains("no release is in progress"));

    let mut release = glidepath(
        &endpoint,
        &[
            "release",
            "examples/rehearsal.toml",
            "--version",
            "1.4.0",
            "--non-interactive",
            "--holder",
            "alice@ops-1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start release");
    let out = lines_of(release.stdout.take().unwrap());
    let mut seen = vec![];
    // The 50 % step may watch for minutes on a loaded machine before the gate passes.
    let waiting = wait_line(&out, &mut seen, Duration::from_secs(240), |l| {
        l.contains("WAITING for approval")
    });
    let Some(waiting) = waiting else {
        kill(&mut release);
        panic!("no gate waited:\n{}", seen.join("\n"));
    };
    assert!(
        waiting.contains("glidepath approve examples/rehearsal.toml --step 2"),
        "{waiting}"
    );
    assert!(waiting.contains("unapproved by"), "{waiting}");
    // Still waiting a few polls later: nobody approved yet.
    std::thread::sleep(Duration::from_secs(3));
    assert!(release.try_wait().unwrap().is_none());

    let approved = glidepath(
        &endpoint,
        &[
            "approve",
            "examples/rehearsal.toml",
            "--holder",
            "carol@ops-3",
        ],
    )
    .output()
    .expect("approve");
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}{}",
        text(&approved.stdout),
        text(&approved.stderr)
    );
    assert!(
        text(&approved.stdout).contains(&format!("step 2 ({target} 50%)")),
        "{}",
        text(&approved.stdout)
    );

    let status = tokio::task::spawn_blocking(move || {
        let status = release.wait().expect("release");
        (status, out.into_iter().collect::<Vec<_>>())
    })
    .await
    .unwrap();
    seen.extend(status.1);
    let all = seen.join("\n");
    assert_eq!(status.0.code(), Some(0), "{all}");
    assert!(all.contains("approved by carol@ops-3"), "{all}");
    assert!(all.contains("FINALIZED"), "{all}");
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let live = run::status(&plan, &ports).await.expect("status").live;
    assert_eq!(live.map(|s| s.colour.name()), Some(target));
    let w = ports.traffic.weights().await.expect("weights");
    assert_eq!(if after_one { w.blue } else { w.green }, 100, "{w:?}");
}

/// Run the binary to the end (on a blocking thread); the output and a printable context.
async fn run_to_end(endpoint: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = glidepath(endpoint, args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run glidepath"))
        .await
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Release (finalized), rollback, a release approved from another process then killed, a
/// forced unlock: `history --operations` lists each operation once, oldest first, with who,
/// when, the release it acted on and how it left it — as text and as JSON.
#[tokio::test]
async fn history_operations_lists_release_rollback_approve_and_unlock_in_order() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let plan = "examples/rehearsal.toml";
    let t0 = chrono::Utc::now();

    let a = run_to_end(
        &endpoint,
        &[
            "release",
            plan,
            "--version",
            "1.4.0",
            "--non-interactive",
            "--auto-approve",
            "--holder",
            "alice@ops-1",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(a.0, Some(0), "release A:\n{}\n{}", a.1, a.2);
    // --quiet: a release with no warning prints its final line only.
    assert_eq!(a.1.lines().count(), 1, "release A --quiet:\n{}", a.1);
    assert!(a.1.contains("FINALIZED"), "release A --quiet:\n{}", a.1);
    let rb = run_to_end(&endpoint, &["rollback", plan, "--holder", "dave@ops-4"]).await;
    assert_eq!(rb.0, Some(0), "rollback:\n{}\n{}", rb.1, rb.2);

    // B waits at the manual gate; carol approves it from here; then B is killed.
    let mut b = glidepath(
        &endpoint,
        &[
            "release",
            plan,
            "--version",
            "1.5.0",
            "--non-interactive",
            "--holder",
            "bob@ops-2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start release B");
    let out = lines_of(b.stdout.take().unwrap());
    let mut seen = vec![];
    let waiting = wait_line(&out, &mut seen, Duration::from_secs(90), |l| {
        l.contains("WAITING for approval")
    });
    if waiting.is_none() {
        kill(&mut b);
        panic!("B did not wait at the gate:\n{}", seen.join("\n"));
    }
    let ap = run_to_end(&endpoint, &["approve", plan, "--holder", "carol@ops-3"]).await;
    kill(&mut b);
    assert_eq!(ap.0, Some(0), "approve:\n{}\n{}", ap.1, ap.2);
    let un = run_to_end(
        &endpoint,
        &["unlock", plan, "--force", "--holder", "ops@test"],
    )
    .await;
    assert_eq!(un.0, Some(0), "unlock:\n{}\n{}", un.1, un.2);

    let json = run_to_end(
        &endpoint,
        &["history", plan, "--operations", "--output", "json"],
    )
    .await;
    assert_eq!(json.0, Some(0), "{}", json.2);
    let ops: Vec<serde_json::Value> = serde_json::from_str(&json.1).expect("a JSON array");
    let field = |k: &str| -> Vec<serde_json::Value> { ops.iter().map(|o| o[k].clone()).collect() };
    assert_eq!(
        field("kind"),
        ["release", "rollback", "approve", "unlock"],
        "{}",
        json.1
    );
    assert_eq!(
        field("by"),
        ["alice@ops-1", "dave@ops-4", "carol@ops-3", "ops@test"],
        "{}",
        json.1
    );
    assert_eq!(
        field("outcome"),
        [
            serde_json::json!("finalized"),
            serde_json::json!("rolled_back"),
            serde_json::Value::Null,
            serde_json::Value::Null
        ],
        "{}",
        json.1
    );
    assert!(field("exit_code").iter().all(|c| *c == 0), "{}", json.1);
    let release = field("release");
    assert!(
        release[0].is_string() && release[0] == release[1],
        "{}",
        json.1
    );
    assert!(
        release[2].is_string() && release[2] == release[3],
        "{}",
        json.1
    );
    assert_ne!(release[0], release[2]);
    let at: Vec<chrono::DateTime<chrono::Utc>> = field("at")
        .iter()
        .map(|v| serde_json::from_value(v.clone()).expect("a time"))
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "in order: {at:?}");
    assert!(at[0] >= t0 && at[3] <= chrono::Utc::now(), "{at:?}");

    let txt = run_to_end(&endpoint, &["history", plan, "--operations"]).await;
    assert_eq!(txt.0, Some(0), "{}", txt.2);
    let lines: Vec<&str> = txt.1.lines().collect();
    assert_eq!(lines.len(), 4, "{}", txt.1);
    for (line, (kind, by, outcome)) in lines.iter().zip([
        ("release", "alice@ops-1", "finalized"),
        ("rollback", "dave@ops-4", "rolled back"),
        ("approve", "carol@ops-3", " - "),
        ("unlock --force", "ops@test", " - "),
    ]) {
        assert!(
            line.contains(kind) && line.contains(by) && line.contains(outcome),
            "{line:?} should name {kind}, {by}, {outcome}\n{}",
            txt.1
        );
    }

    // --since / --limit pick the newest entries, in the listed order.
    let kinds = |args: &[&str]| {
        let mut all = vec!["history", plan, "--output", "json"];
        all.extend_from_slice(args);
        let endpoint = endpoint.clone();
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let (code, out, err) = run_to_end(&endpoint, &all).await;
            assert_eq!(code, Some(0), "{all:?}: {err}");
            let v: Vec<serde_json::Value> = serde_json::from_str(&out).expect("a JSON array");
            v.iter()
                .map(|o| {
                    o["kind"]
                        .as_str()
                        .or(o["version"].as_str())
                        .unwrap_or("?")
                        .to_string()
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        kinds(&["--operations", "--limit", "2"]).await,
        ["approve", "unlock"]
    );
    let since_approve = at[2].to_rfc3339();
    assert_eq!(
        kinds(&["--operations", "--since", &since_approve]).await,
        ["approve", "unlock"]
    );
    assert_eq!(kinds(&["--operations", "--since", "1h"]).await.len(), 4);
    assert_eq!(kinds(&["--limit", "1"]).await, ["1.5.0"]);
    assert_eq!(kinds(&["--since", "1h"]).await, ["1.5.0", "1.4.0"]);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(kinds(&["--since", &future]).await.is_empty());
}

/// Bad `--since` / `--limit` values are usage errors that name the flag and the expected
/// form, before any AWS call (nothing answers at the endpoint).
#[tokio::test]
async fn history_window_flags_refuse_bad_values_naming_the_flag() {
    let endpoint = "http://127.0.0.1:9";
    for (args, flag, form) in [
        (&["--since", "yesterday"][..], "--since", "RFC 3339"),
        (&["--since", "7"][..], "--since", "7d"),
        (&["--limit", "0"][..], "--limit", "at least 1"),
        (&["--limit", "many"][..], "--limit", "at least 1"),
    ] {
        let mut all = vec!["history", "examples/rehearsal.toml"];
        all.extend_from_slice(args);
        let (code, out, err) = run_to_end(endpoint, &all).await;
        assert_eq!(code, Some(2), "{all:?}: {out}{err}");
        assert!(err.contains(flag) && err.contains(form), "{all:?}: {err}");
    }
}
