//! The read-only window on the rehearsal stage, through the real aws-sdk clients and real
//! local commands: `enter` and `exit` append a line to a file, so their side effects show
//! that `exit` ran after a failed migration, and after `kill -9` of the releasing process
//! once `glidepath resume` took over.

use crate::common;
use crate::operator_stage::{glidepath, kill, lines_of, slow_stage, text, wait_line};

use glidepath::commands::release::ports_for;
use glidepath::engine::run::{self, ReleaseRequest};
use glidepath::exit;
use glidepath::plan::{Plan, ReadOnlyConfig};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

/// A command that appends `word` and the release id to `log`.
fn append(word: &str, log: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo \"{word} $GLIDEPATH_RELEASE\" >> '{}'", log.display()),
    ]
}

fn window(log: &Path) -> ReadOnlyConfig {
    ReadOnlyConfig {
        enter: append("enter", log),
        exit: append("exit", log),
        max: Duration::from_secs(120),
        timeout: Duration::from_secs(10),
    }
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn exit_runs_after_a_failed_migration() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("window.log");
    let mut plan: Plan = common::rehearsal_plan();
    plan.assets = None;
    plan.read_only = Some(window(&log));
    let seeded = common::seeded_stage("migration-fails", plan).await;
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let (tx, _rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let req = ReleaseRequest {
        version: "1.4.0".into(),
        auto_approve: true,
        holder: "alice@ops-1".into(),
        endpoint: None,
    };
    let f = run::release(&plan, &ports, req, tx, crx).await;
    assert_eq!(f.exit_code, exit::MIGRATION_FAILED, "{}", f.message);
    let id = &f.release_id;
    assert_eq!(lines(&log), [format!("enter {id}"), format!("exit {id}")]);
    // The migration task did run (and failed) inside the window.
    let st = run::status(&plan, &ports).await.expect("status");
    assert!(st.lock.is_none(), "lock released");
}

#[tokio::test]
async fn exit_runs_on_resume_after_kill_9_during_the_migration() {
    let (stage, _config, _scenario) = slow_stage(20).await;
    let endpoint = stage.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("window.log");
    // The rehearsal example with a read-only window; its assets stay where they are.
    let example = std::fs::read_to_string(common::repo_root().join("examples/rehearsal.toml"))
        .expect("example plan");
    let assets = common::repo_root().join("assets");
    let quote = |v: Vec<String>| {
        v.iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plan_text = format!(
        "{}\n[read_only]\nenter = [{}]\nexit = [{}]\nmax = \"5m\"\n",
        example.replace(
            "dir = \"../assets\"",
            &format!("dir = {:?}", assets.display().to_string())
        ),
        quote(append("enter", &log)),
        quote(append("exit", &log)),
    );
    let plan_path = dir.path().join("plan.toml");
    std::fs::write(&plan_path, plan_text).unwrap();
    let plan_arg = common::path_str(&plan_path);
    let args = |cmd: &str| {
        let mut a = vec![cmd.to_string(), plan_arg.clone()];
        if cmd == "release" {
            a.extend(["--version".into(), "1.4.0".into()]);
        }
        a.extend(
            [
                "--non-interactive",
                "--auto-approve",
                "--holder",
                "alice@ops-1",
            ]
            .map(String::from),
        );
        a
    };

    let a_args = args("release");
    let a_args: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let mut a = glidepath(&endpoint, &a_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start release");
    let out = lines_of(a.stdout.take().unwrap());
    let mut seen = vec![];
    // The migration task is running inside the window: kill -9 there.
    let running = wait_line(&out, &mut seen, Duration::from_secs(90), |l| {
        l.get(9..17).map(str::trim) == Some("task")
    });
    kill(&mut a);
    assert!(running.is_some(), "no migration task:\n{}", seen.join("\n"));
    let opened = lines(&log);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(opened[0].starts_with("enter "), "{opened:?}");
    let id = opened[0].trim_start_matches("enter ").to_string();

    let r_args = args("resume");
    let r_args: Vec<&str> = r_args.iter().map(String::as_str).collect();
    let resumed = glidepath(&endpoint, &r_args).output().expect("resume");
    let said = text(&resumed.stdout);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{said}{}",
        text(&resumed.stderr)
    );
    // exit ran once, for the same release, and before anything was deployed.
    assert_eq!(lines(&log), [format!("enter {id}"), format!("exit {id}")]);
    let closed = said
        .find("window closed")
        .unwrap_or_else(|| panic!("no window closed in:\n{said}"));
    let deploy = said.find("deploy    started").expect("deploy started");
    assert!(closed < deploy, "{said}");
    assert!(
        said.contains("still open; running read_only.exit"),
        "{said}"
    );
}
