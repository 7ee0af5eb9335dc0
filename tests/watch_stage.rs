//! `glidepath watch` as a user runs it: a release through the real binary in the
//! background on the stage, and a second binary watching it with `--output json`.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn glidepath(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glidepath"));
    cmd.arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .current_dir(common::repo_root())
        .stdin(Stdio::null());
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn watch_follows_a_release_run_by_another_process_to_finalized() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();

    // Watch first, waiting for the release to start: no race with a fast release.
    let watcher = glidepath(
        &endpoint,
        &[
            "watch",
            "examples/rehearsal.toml",
            "--output",
            "json",
            "--wait",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start glidepath watch");
    let release = glidepath(
        &endpoint,
        &[
            "release",
            "examples/rehearsal.toml",
            "--version",
            "1.4.0",
            "--non-interactive",
            "--auto-approve",
            "--output",
            "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start glidepath release");

    let started = Instant::now();
    let (release, watched) = tokio::task::spawn_blocking(move || {
        (
            release.wait_with_output().expect("release"),
            watcher.wait_with_output().expect("watch"),
        )
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let release_out = text(&release.stdout);
    let watch_out = text(&watched.stdout);
    let context = format!(
        "release exit {:?}\n{release_out}\n{}\nwatch exit {:?}\n{watch_out}\n{}",
        release.status.code(),
        text(&release.stderr),
        watched.status.code(),
        text(&watched.stderr)
    );
    assert_eq!(release.status.code(), Some(0), "{context}");
    assert_eq!(
        watched.status.code(),
        Some(0),
        "watch exits with the release's code:\n{context}"
    );
    assert!(took < Duration::from_secs(300), "{context}");

    let lines: Vec<serde_json::Value> = watch_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{context}")))
        .collect();
    let release_id = release_out
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["release"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("{context}"));
    assert!(
        lines.iter().all(|v| v["release"] == release_id.as_str()),
        "{context}"
    );
    let types: Vec<&str> = lines.iter().filter_map(|v| v["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"release_started"), "{context}");
    assert_eq!(types.last(), Some(&"release_finished"), "{context}");
    let last = lines.last().unwrap();
    assert_eq!(last["outcome"], "finalized", "{context}");
    assert_eq!(last["exit_code"], 0, "{context}");

    let phases: Vec<&str> = lines
        .iter()
        .filter(|v| v["type"] == "phase_started")
        .filter_map(|v| v["phase"].as_str())
        .collect();
    assert_eq!(
        phases,
        ["lock", "snapshot", "migrate", "assets", "deploy", "shift", "finalize"],
        "{context}"
    );
    let weights: Vec<(u64, u64)> = lines
        .iter()
        .filter(|v| v["type"] == "weights_changed")
        .map(|v| (v["blue"].as_u64().unwrap(), v["green"].as_u64().unwrap()))
        .collect();
    assert_eq!(weights.last(), Some(&(0, 100)), "{context}");
    assert!(weights.len() >= 2, "{context}");
    assert_eq!(
        types.iter().filter(|t| **t == "gate_passed").count(),
        3,
        "{context}"
    );
    // The migration task as ECS reports it, read live by the watcher.
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "task" && v["status"] == "STOPPED" && v["exit_code"] == 0),
        "{context}"
    );
}

#[test]
fn nothing_in_progress_exits_0_and_says_so() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seeded = rt.block_on(common::seeded_stage("happy", common::rehearsal_plan()));
    let out = glidepath(
        &seeded.stage.endpoint(),
        &["watch", "examples/rehearsal.toml", "--non-interactive"],
    )
    .output()
    .expect("glidepath watch");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no release is in progress"),
        "{}",
        text(&out.stdout)
    );
}
