//! `[notify]` on the stage: the plan's SNS topic (read back through the stage) and a tiny
//! webhook server on loopback get each notification once; a webhook that refuses or fails
//! only warns (without its URL) and the release ends as it would have anyway. The same
//! through the `glidepath release` binary, the URL only in its environment: each kind once,
//! in order, and the URL in none of its output or log.

use crate::common;
use crate::operator_stage::{glidepath, lines_of, text};

use glidepath::commands::release::ports_for;
use glidepath::engine::event::{Envelope, Event};
use glidepath::engine::run::{self, ReleaseRequest};
use glidepath::notify::Notifier;
use glidepath::plan::{GateMode, NotifyConfig, NotifyEvent, Plan};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::unbounded_channel;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:shop-releases";

/// A webhook on loopback answering `status`; the bodies it got, in order.
async fn webhook(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/T0/B0/secret-token",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let got = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    got.lock()
                        .unwrap()
                        .push(text[end + 4..end + 4 + len].to_string());
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (url, bodies)
}

fn plan_with(env: &str) -> Plan {
    let mut plan = common::rehearsal_plan();
    // A manual gate, so that "waiting for approval" is told too.
    plan.steps[1].gate = GateMode::Manual;
    plan.notify = Some(NotifyConfig {
        sns_topic_arn: Some(TOPIC.into()),
        webhook_env: Some(env.into()),
        events: NotifyEvent::ALL.to_vec(),
        timeout: Duration::from_secs(2),
        attempts: 2,
    });
    plan
}

/// Release `version` with the plan's notifier between the engine and the "view"; approves
/// a waiting manual gate from the ledger, as `glidepath approve` does. Returns the exit
/// code and every event the view got (the notifier's warnings included).
async fn release(
    seeded: &common::Seeded,
    version: &str,
    auto_approve: bool,
) -> (i32, Vec<Envelope>) {
    let (ports, plan) = ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let notifier = Notifier::for_plan(&plan, &seeded.config)
        .expect("the webhook variable is set")
        .expect("the plan has [notify]");
    let (tx, rx) = unbounded_channel();
    let (_commands, crx) = unbounded_channel();
    let mut view = notifier.attach(rx);
    let req = ReleaseRequest {
        version: version.into(),
        auto_approve,
        holder: "notify@test".into(),
        endpoint: None,
    };
    let engine = {
        let plan = plan.clone();
        tokio::spawn(async move {
            let (ports, _) = ports_for(&seeded_config(&plan).await, &plan).await.unwrap();
            run::release(&plan, &ports, req, tx, crx).await
        })
    };
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(300), view.recv())
        .await
        .expect("the view's stream closes after the release")
    {
        if let Event::GateWaiting { index, .. } = &e.event {
            glidepath::engine::ledger::record_approval(
                ports.state.as_ref(),
                &e.release,
                index + 1,
                "approver@test",
            )
            .await
            .expect("approve");
        }
        events.push(e);
    }
    (engine.await.unwrap().exit_code, events)
}

async fn seeded_config(plan: &Plan) -> glidepath::aws::SdkConfig {
    glidepath::rehearse::emulator_sdk_config(plan.endpoint_url.as_deref().unwrap(), &plan.region)
        .await
}

/// The subjects published to the topic, read back through the stage.
async fn published(seeded: &common::Seeded) -> Vec<String> {
    let sns = seeded
        .stage
        .control_get("sns")
        .await
        .expect("GET /_stage/sns");
    sns["topics"][TOPIC]
        .as_array()
        .unwrap_or_else(|| panic!("no topic {TOPIC}: {sns}"))
        .iter()
        .map(|n| n["subject"].as_str().unwrap_or("").to_string())
        .collect()
}

fn kinds_in(texts: &[String], version: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for t in texts {
        for k in NotifyEvent::ALL {
            let word = k.name().replace('_', " ");
            if t.contains(version)
                && (t.contains(&format!(": {word}")) || t.contains(&format!("{version}: {word}")))
            {
                out.push(k.name());
            }
        }
    }
    out
}

fn warnings(events: &[Envelope]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

async fn seeded(scenario: &str, env: &str) -> common::Seeded {
    let mut s = common::seeded_stage(scenario, plan_with(env)).await;
    s.plan.endpoint_url = Some(s.stage.endpoint());
    s
}

#[tokio::test]
async fn each_notification_reaches_sns_and_the_webhook_once() {
    let (url, bodies) = webhook(200).await;
    std::env::set_var("GLIDEPATH_TEST_HOOK_OK", &url);
    let s = seeded("happy", "GLIDEPATH_TEST_HOOK_OK").await;
    let (code, events) = release(&s, "2.0.0", false).await;
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(warnings(&events), Vec::<String>::new());
    let want = ["release_started", "waiting_for_approval", "finalized"];
    assert_eq!(kinds_in(&published(&s).await, "2.0.0"), want);
    let texts: Vec<String> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).expect("JSON body");
            let t = v["text"].as_str().expect("a text field").to_string();
            // The body's text names the kind the way the subject does.
            let kind = if t.contains("release started") {
                "glidepath shop/rehearsal 2.0.0: release started"
            } else if t.contains("waiting for approval") {
                "glidepath shop/rehearsal 2.0.0: waiting for approval"
            } else if t.contains("finalized") {
                "glidepath shop/rehearsal 2.0.0: finalized"
            } else {
                "?"
            };
            kind.to_string()
        })
        .collect();
    assert_eq!(kinds_in(&texts, "2.0.0"), want, "{texts:?}");
}

#[tokio::test]
async fn a_failing_webhook_only_warns_and_sns_still_hears_of_the_rollback() {
    let (url, bodies) = webhook(500).await;
    std::env::set_var("GLIDEPATH_TEST_HOOK_500", &url);
    let s = seeded("green-5xx", "GLIDEPATH_TEST_HOOK_500").await;
    let (code, events) = release(&s, "2.1.0", true).await;
    assert_eq!(code, glidepath::exit::ROLLED_BACK, "{events:#?}");
    assert_eq!(
        kinds_in(&published(&s).await, "2.1.0"),
        ["release_started", "gate_failed", "rolled_back"]
    );
    // Two attempts per notification, each answered 500.
    assert_eq!(bodies.lock().unwrap().len(), 6);
    let w = warnings(&events);
    assert_eq!(w.len(), 3, "{w:#?}");
    for m in &w {
        assert!(
            m.contains("the webhook in $GLIDEPATH_TEST_HOOK_500") && m.contains("HTTP 500"),
            "{m}"
        );
    }
    let all = format!("{events:?}");
    assert!(
        !all.contains("secret-token"),
        "the webhook URL leaked into an event"
    );
}

#[tokio::test]
async fn a_dead_webhook_only_warns_and_the_release_finalizes() {
    // A port nothing listens on: connection refused.
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks/secret-token", l.local_addr().unwrap())
    };
    std::env::set_var("GLIDEPATH_TEST_HOOK_DEAD", &url);
    let s = seeded("happy", "GLIDEPATH_TEST_HOOK_DEAD").await;
    let (code, events) = release(&s, "2.2.0", true).await;
    assert_eq!(code, 0, "{events:#?}");
    let w = warnings(&events);
    assert_eq!(w.len(), 2, "release_started and finalized: {w:#?}");
    for m in &w {
        assert!(
            m.contains("$GLIDEPATH_TEST_HOOK_DEAD") && m.contains("could not connect"),
            "{m}"
        );
    }
    assert!(!format!("{events:?}").contains("secret-token"));
    assert_eq!(
        kinds_in(&published(&s).await, "2.2.0"),
        ["release_started", "finalized"]
    );
}

#[test]
fn an_unset_webhook_variable_is_a_usage_error_naming_it_before_any_change() {
    let mut cfg = plan_with("GLIDEPATH_TEST_HOOK_UNSET").notify.unwrap();
    std::env::remove_var("GLIDEPATH_TEST_HOOK_UNSET");
    let e = glidepath::notify::webhook(&cfg).err().unwrap();
    assert_eq!(e.code, 2);
    assert!(e.message.unwrap().contains("$GLIDEPATH_TEST_HOOK_UNSET"));
    cfg.webhook_env = Some("GLIDEPATH_TEST_HOOK_BAD".into());
    std::env::set_var("GLIDEPATH_TEST_HOOK_BAD", "ftp://secret-token");
    let e = glidepath::notify::webhook(&cfg).err().unwrap();
    let m = e.message.unwrap();
    assert!(
        m.contains("$GLIDEPATH_TEST_HOOK_BAD") && !m.contains("secret-token"),
        "{m}"
    );
}

// --- through the binary ----------------------------------------------------------------

/// examples/rehearsal.toml with `[notify]` (the stage's topic, the webhook in `env`),
/// written to a temp dir; its assets directory made absolute so the copy still finds it.
fn plan_file(env: &str) -> (tempfile::TempDir, String) {
    let base = std::fs::read_to_string(common::repo_root().join("examples/rehearsal.toml"))
        .expect("examples/rehearsal.toml");
    let assets = common::path_str(&common::repo_root().join("assets"));
    assert!(
        base.contains("dir = \"../assets\""),
        "the example's assets dir moved"
    );
    let text = format!(
        "{}\n[notify]\nsns_topic_arn = \"{TOPIC}\"\nwebhook_env = \"{env}\"\ntimeout = \"2s\"\nattempts = 2\n",
        base.replace("dir = \"../assets\"", &format!("dir = {assets:?}"))
    );
    let (dir, path) = common::temp_file("notify.toml", &text);
    (dir, common::path_str(&path))
}

/// `glidepath release` of `plan` as a child with the webhook URL only in its environment,
/// JSON Lines on stdout; approves a waiting gate with `glidepath approve` from another
/// process. Returns (exit code, stdout lines, stderr, the log file's text).
fn release_binary(
    endpoint: &str,
    plan: &str,
    version: &str,
    env: (&str, &str),
    auto_approve: bool,
) -> (Option<i32>, Vec<String>, String, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = common::path_str(log.path());
    let mut args = vec![
        "-vv",
        "--log-file",
        &log_path,
        "release",
        plan,
        "--version",
        version,
        "--non-interactive",
        "--output",
        "json",
    ];
    if auto_approve {
        args.push("--auto-approve");
    }
    let mut child = glidepath(endpoint, &args)
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start glidepath release");
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while let Ok(line) =
        out.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.contains("\"type\":\"gate_waiting\"") {
            let approved = glidepath(endpoint, &["approve", plan]).output().unwrap();
            assert!(
                approved.status.success(),
                "approve: {}",
                text(&approved.stderr)
            );
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let stderr: Vec<String> = err.iter().collect();
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    (status.code(), lines, stderr.join("\n"), logged)
}

/// The `type` of each JSON line.
fn types(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["type"].as_str().map(String::from))
        .collect()
}

/// The notification kinds the webhook got, in order (each body's text ends in what happened).
fn webhook_kinds(bodies: &Mutex<Vec<String>>) -> Vec<&'static str> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).expect("JSON body");
            let t = v["text"].as_str().expect("a text field").to_string();
            // The first kind named after a colon (a rollback's message may name the gate).
            NotifyEvent::ALL
                .iter()
                .filter_map(|k| {
                    let word = k.name().replace('_', " ");
                    t.find(&format!(": {word}")).map(|at| (at, k.name()))
                })
                .min()
                .map(|(_, name)| name)
                .unwrap_or_else(|| panic!("which notification is {t:?}?"))
        })
        .collect()
}

/// Nothing the process printed or logged holds the webhook's URL or its secret path.
fn never_printed(url: &str, out: &[String], err: &str, log: &str) {
    for (what, text) in [
        ("stdout", out.join("\n")),
        ("stderr", err.into()),
        ("log", log.into()),
    ] {
        assert!(
            !text.contains(url) && !text.contains("secret-token"),
            "the webhook URL is in the {what}"
        );
    }
}

/// The release through the binary; returns what `release_binary` returns.
async fn run_binary(
    s: &common::Seeded,
    url: &str,
    version: &str,
    auto_approve: bool,
) -> (Option<i32>, Vec<String>, String, String) {
    let (dir, plan) = plan_file("GLIDEPATH_TEST_HOOK_BIN");
    let endpoint = s.stage.endpoint();
    let (url, version) = (url.to_string(), version.to_string());
    let got = tokio::task::spawn_blocking(move || {
        release_binary(
            &endpoint,
            &plan,
            &version,
            ("GLIDEPATH_TEST_HOOK_BIN", &url),
            auto_approve,
        )
    })
    .await
    .unwrap();
    drop(dir);
    got
}

#[tokio::test]
async fn the_binary_notifies_a_release_with_an_approval_once_each_in_order() {
    let (url, bodies) = webhook(200).await;
    let s = common::seeded_stage("happy", plan_with("UNUSED")).await;
    let (code, out, err, log) = run_binary(&s, &url, "3.0.0", false).await;
    assert_eq!(code, Some(0), "{}\n{err}", out.join("\n"));
    let t = types(&out);
    assert!(t.iter().any(|t| t == "gate_waiting"), "{t:?}");
    assert!(!t.iter().any(|t| t == "warning"), "{}", out.join("\n"));
    let want = ["release_started", "waiting_for_approval", "finalized"];
    assert_eq!(kinds_in(&published(&s).await, "3.0.0"), want);
    assert_eq!(webhook_kinds(&bodies), want);
    never_printed(&url, &out, &err, &log);
}

#[tokio::test]
async fn the_binary_notifies_a_green_5xx_rollback_once_each_in_order() {
    let (url, bodies) = webhook(200).await;
    let s = common::seeded_stage("green-5xx", plan_with("UNUSED")).await;
    let (code, out, err, log) = run_binary(&s, &url, "3.1.0", true).await;
    assert_eq!(
        code,
        Some(glidepath::exit::ROLLED_BACK),
        "{}\n{err}",
        out.join("\n")
    );
    assert!(
        !types(&out).iter().any(|t| t == "warning"),
        "{}",
        out.join("\n")
    );
    let want = ["release_started", "gate_failed", "rolled_back"];
    assert_eq!(kinds_in(&published(&s).await, "3.1.0"), want);
    assert_eq!(webhook_kinds(&bodies), want);
    never_printed(&url, &out, &err, &log);
}
