//! The rehearsal stage driven from Rust: lifecycle, control endpoint and bad input.
//! (The seeded-world checks are further down.)

mod common;

use glidepath::rehearse::stage::{Stage, StageError, StageOptions};
use serde_json::json;

fn opts(scenario: &str, port: u16) -> StageOptions {
    StageOptions {
        scenario: scenario.into(),
        port,
        tick: Some(common::TEST_TICK),
    }
}

/// Start a stage that must refuse; return its error.
async fn refused(o: StageOptions) -> StageError {
    common::ensure_stage_venv();
    match Stage::start(o).await {
        Ok(stage) => panic!(
            "stage started at {} but should have refused",
            stage.endpoint()
        ),
        Err(e) => e,
    }
}

#[tokio::test]
async fn stage_starts_answers_control_and_is_gone_after_drop() {
    let stage = common::start_stage("happy").await;
    println!(
        "stage start-to-ready: {:.2}s on {}",
        stage.startup_time().as_secs_f64(),
        stage.endpoint()
    );
    assert!(stage.endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(stage.port(), 0);
    assert!(stage.endpoint().ends_with(&format!(":{}", stage.port())));

    assert_eq!(
        stage.control_get("health").await.unwrap(),
        json!({"ok": true})
    );
    let state = stage.control_get("state").await.unwrap();
    assert_eq!(state["scenario"]["name"], "happy");

    // Faults: a bad one is refused with the stage's reason, a good one is listed, then cleared.
    let err = stage
        .control_post("fault", &json!({"kind": "bogus"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StageError::ControlStatus { status: 400, .. }),
        "{err}"
    );
    let added = stage
        .control_post("fault", &json!({"kind": "5xx", "colour": "green"}))
        .await
        .unwrap();
    assert_eq!(added["ok"], true);
    let cleared = stage.control_delete("fault").await.unwrap();
    assert_eq!(cleared["cleared"], 1);

    let pid = stage.pid();
    assert!(!common::process_gone(pid));
    drop(stage);
    assert!(
        common::process_gone(pid),
        "stage pid {pid} outlived its Stage"
    );
}

#[tokio::test]
async fn stage_stops_cleanly_on_request() {
    let stage = common::start_stage("happy").await;
    let pid = stage.pid();
    stage.stop().await.expect("clean exit 0 on SIGTERM");
    assert!(common::process_gone(pid));
}

#[tokio::test]
async fn unknown_scenario_is_one_line_exit_2() {
    let err = refused(opts("no-such-scenario", 0)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains("unknown scenario 'no-such-scenario'"), "{msg}");
    assert!(msg.contains("happy"), "lists the known ones: {msg}");
}

#[tokio::test]
async fn malformed_scenario_file_is_one_line_with_position_exit_2() {
    let (_dir, path) = common::temp_file("broken.toml", "[migration]\nseconds = = 3\n");
    let err = refused(opts(&common::path_str(&path), 0)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains("broken.toml"), "names the file: {msg}");
    assert!(msg.contains("line 2"), "says where: {msg}");

    let (_dir, path) = common::temp_file("typo.toml", "[migration]\nsecnds = 3\n");
    let msg = refused(opts(&common::path_str(&path), 0)).await.to_string();
    assert!(msg.contains("unknown key 'secnds'"), "{msg}");
}

#[tokio::test]
async fn port_in_use_is_one_line_exit_2() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = refused(opts("happy", port)).await;
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains(&format!("port {port} is in use")), "{msg}");
}
