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

#[tokio::test]
async fn resume_waits_for_a_live_holder_and_takes_over_a_killed_one_at_once() {
    let (stage, config, _dir) = slow_stage(20).await;
    let endpoint = stage.endpoint();
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
}

/// Scripted mode without --auto-approve waits at the manual gate (50 % in the rehearsal
/// plan), saying how to approve; `glidepath approve` from a second process lets it go on.
#[tokio::test]
async fn scripted_release_waits_at_the_manual_gate_until_approved_from_another_process() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();

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
    let waiting = wait_line(&out, &mut seen, Duration::from_secs(90), |l| {
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
        text(&approved.stdout).contains("step 2 (green 50%)"),
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
}
