//! `glidepath gate replay` through the binary: a written recording, bad input, and a real
//! `--output json` rehearsal replayed.

use crate::common;

use serde_json::json;
use std::process::{Command, Output};

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .current_dir(common::repo_root())
        .args(["gate", "replay", "--plan", "examples/rehearsal.toml"])
        .args(args)
        .output()
        .expect("run glidepath")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One step at 10 % on green, 10 periods; green's 5xx share `err` from period 5 on.
fn recording(err: f64) -> String {
    let env = |n: u32, v: serde_json::Value| {
        let mut v = v;
        v["ts"] = json!(format!("2025-01-01T00:00:{n:02}Z"));
        v["release"] = json!("r1");
        v.to_string()
    };
    let colour = |requests: f64, errors: f64| {
        json!({"healthy": 2, "unhealthy": 0, "other": 0, "requests": requests,
               "errors_5xx": errors, "elb_5xx": 0.0, "latency_avg_ms": 40.0,
               "latency_p95_ms": 100.0})
    };
    let mut lines = vec![
        env(
            0,
            json!({"type": "release_started", "app": "shop", "environment": "rehearsal",
            "version": "v2", "production": false, "live": "blue", "target": "green",
            "endpoint": null, "region": "us-east-1", "resumed": false}),
        ),
        env(
            1,
            json!({"type": "step_started", "index": 0, "steps": 3, "weight": 10,
            "bake_s": 3.0, "manual": false}),
        ),
        env(
            1,
            json!({"type": "weights_changed", "blue": 90, "green": 10}),
        ),
    ];
    for p in 0..10u32 {
        let e = if p >= 5 { (100.0 * err).round() } else { 0.0 };
        lines.push(env(
            2 + p,
            json!({"type": "health", "sample": {"blue": colour(900.0, 1.0), "green": colour(100.0, e),
                   "alarms": []}, "verdict": {"verdict": "pass"}, "baked_s": 1.0, "bake_s": 3.0}),
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn gate_replay_exit_codes_and_reports() {
    let (_dir, healthy) = common::temp_file("healthy.jsonl", &recording(0.0));
    let out = replay(&[&common::path_str(&healthy)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("step 1 at 10%: 10 periods, 1000 green requests"),
        "{stdout}"
    );
    assert!(stdout.contains("5xx e-value"), "{stdout}");
    assert!(stdout.contains("would have passed"), "{stdout}");

    let (_dir, faulty) = common::temp_file("faulty.jsonl", &recording(0.1));
    let out = replay(&[&common::path_str(&faulty)]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("would have rolled back: step 1 at 10%"),
        "{stdout}"
    );
    assert!(stdout.contains("5xx rate"), "{stdout}");

    let out = replay(&["--output", "json", &common::path_str(&faulty)]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["failure"]["signal"], "error_rate");
    assert_eq!(report["failure"]["step"], 0);
    assert_eq!(report["steps"][0]["evidence"][0]["signal"], "error_rate");

    let broken = recording(0.0).replacen("\"weight\":10", "\"weight\":\"ten\"", 1);
    let (_dir, bad) = common::temp_file("bad.jsonl", &broken);
    let out = replay(&[&common::path_str(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl: line 2: bad `step_started` event"),
        "{stderr}"
    );

    let out = replay(&["/no/such/recording.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /no/such/recording.jsonl"));

    let (_dir, empty) = common::temp_file("empty.jsonl", "");
    let out = replay(&[&common::path_str(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("empty"), "{}", text(&out.stderr));
}

/// A real rehearsal with a 5xx fault on green, recorded with `--output json` and replayed
/// through the same plan: the replay rolls back too, on 5xx.
#[test]
fn gate_replay_of_a_recorded_green_5xx_rehearsal_rolls_back() {
    common::ensure_stage_venv();
    let rec = Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .current_dir(common::repo_root())
        .args([
            "rehearse",
            "--scenario",
            "green-5xx",
            "--output",
            "json",
            "--non-interactive",
        ])
        .output()
        .expect("run glidepath rehearse");
    assert_eq!(rec.status.code(), Some(3), "{}", text(&rec.stderr));
    let (_dir, path) = common::temp_file("green-5xx.jsonl", &text(&rec.stdout));
    let out = replay(&[&common::path_str(&path)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("would have rolled back"), "{stdout}");
    assert!(stdout.contains("5xx rate"), "{stdout}");
    assert!(
        stdout.contains("the recorded release failed its gate"),
        "{stdout}"
    );
}
