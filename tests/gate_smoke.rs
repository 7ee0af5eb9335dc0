//! The smoke command runs real small processes: exit codes, output tails, timeouts.

use glidepath::engine::ports::Smoke;
use glidepath::gate::CommandSmoke;
use std::time::{Duration, Instant};

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exit_zero_passes_and_sees_the_environment() {
    let env = vec![(
        "GREEN_URL".to_string(),
        "http://127.0.0.1:9/green".to_string(),
    )];
    let r = CommandSmoke::new()
        .run(
            &cmd(&[
                "sh",
                "-c",
                r#"test "$GREEN_URL" = http://127.0.0.1:9/green"#,
            ]),
            &env,
            LONG,
        )
        .await;
    assert_eq!(r, Ok(()));
    // Without the variable the same check fails: the test above really looked.
    let r = CommandSmoke::new()
        .run(&cmd(&["sh", "-c", r#"test "$GREEN_URL" = x"#]), &env, LONG)
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn nonzero_exit_reports_the_code_and_the_last_lines() {
    let script =
        "for i in $(seq 1 50); do echo out $i; done; echo 'boom: 502 from /health' >&2; exit 3";
    let err = CommandSmoke::new()
        .run(&cmd(&["sh", "-c", script]), &[], LONG)
        .await
        .unwrap_err();
    assert!(err.starts_with("smoke command `sh -c for i in"), "{err}");
    assert!(err.contains("exited with code 3; last output:\n"), "{err}");
    let lines: Vec<&str> = err.lines().skip(1).collect();
    assert_eq!(lines.len(), 22, "{err}");
    assert_eq!(lines[0], "  stdout:");
    assert_eq!(lines[19], "  | out 50", "{err}");
    assert_eq!(
        lines[20..],
        ["  stderr:", "  | boom: 502 from /health"],
        "{err}"
    );
    assert!(!lines.contains(&"  | out 1"), "{err}");
}

#[tokio::test]
async fn no_shell_unless_asked() {
    // `exit` is a shell builtin, not a program: run directly it cannot start.
    let err = CommandSmoke::new()
        .run(&cmd(&["exit", "0"]), &[], LONG)
        .await
        .unwrap_err();
    assert!(err.contains("could not start"), "{err}");
    assert!(err.contains("is `exit` installed and on PATH?"), "{err}");
    // Arguments are passed as they are, never split or expanded.
    let r = CommandSmoke::new()
        .run(&cmd(&["test", "$HOME", "=", "$HOME"]), &[], LONG)
        .await;
    assert_eq!(r, Ok(()));
}

#[tokio::test]
async fn empty_command_is_refused() {
    let err = CommandSmoke::new().run(&[], &[], LONG).await.unwrap_err();
    assert!(err.contains("smoke command is empty"), "{err}");
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_what_it_started() {
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("survived");
    // The shell starts a child that would write the marker after 3 s.
    let script = format!(
        "echo starting; (sleep 3; touch {}) & sleep 30",
        file.display()
    );
    let started = Instant::now();
    let err = CommandSmoke::new()
        .run(
            &cmd(&["sh", "-c", &script]),
            &[],
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(err.contains("timed out after 0.5s and was killed"), "{err}");
    assert!(err.contains("  | starting"), "{err}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!file.exists(), "the background child outlived the timeout");
}

#[tokio::test]
async fn a_killed_command_says_so() {
    let err = CommandSmoke::new()
        .run(&cmd(&["sh", "-c", "kill -TERM $$"]), &[], LONG)
        .await
        .unwrap_err();
    assert!(err.contains("was killed by signal 15 (no output)"), "{err}");
}

#[tokio::test]
async fn a_background_child_holding_the_pipes_does_not_hang_success() {
    let started = Instant::now();
    let r = CommandSmoke::new()
        .run(&cmd(&["sh", "-c", "sleep 30 & echo done"]), &[], LONG)
        .await;
    assert_eq!(r, Ok(()));
    assert!(started.elapsed() < Duration::from_secs(5));
}
