//! Watch says what run said: for every drill scenario of the stage, a release through the
//! real binary in scripted JSON mode and, at the same time, `glidepath watch --output json`
//! on the same ledger. The durable events (`engine::durable::KINDS`, plus the
//! `release_started` header) of both must be the same, in the same order, field for field
//! (`ts` aside: watch notices later).

use crate::common;

use glidepath::engine::durable;
use glidepath::exit;
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every scenario file under localstack/scenarios has a test below.
const SCENARIOS: [&str; 10] = [
    "alarm-fires",
    "green-5xx",
    "green-5xx-alb",
    "green-slow",
    "green-unhealthy",
    "happy",
    "happy-alb",
    "migration-breaks-live",
    "migration-fails",
    "snapshot-slow",
];

#[test]
fn every_stage_scenario_is_drilled() {
    let dir = common::repo_root().join("localstack/scenarios");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(String::from)
        })
        .collect();
    found.sort();
    assert_eq!(found, SCENARIOS, "add a test below for each new scenario");
}

/// examples/rehearsal.toml, made short for a drill: absolute assets dir (the plan lives
/// in a temp dir), a quick deploy timeout and data wait, and for ALB-like scenarios the
/// plan timing they need (as `drills::alb_plan`).
fn drill_plan_text(scenario: &str) -> String {
    let root = common::repo_root();
    let mut text =
        std::fs::read_to_string(root.join("examples/rehearsal.toml")).expect("rehearsal plan");
    let mut set = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "examples/rehearsal.toml has no `{from}`"
        );
        text = text.replacen(from, to, 1);
    };
    set(
        "dir = \"../assets\"",
        &format!("dir = {:?}", common::path_str(&root.join("assets"))),
    );
    set(
        "timeout = \"2m\"                                       # green",
        "timeout = \"15s\" # green",
    );
    set("max_wait = \"4m\"", "max_wait = \"20s\"");
    if scenario.ends_with("-alb") {
        set("poll_interval = \"1s\"", "poll_interval = \"2s\"");
        set("max_blind = \"10s\"", "max_blind = \"20s\"");
        set("metric_period = \"1s\"", "metric_period = \"5s\"");
        set("metric_delay = \"1s\"", "metric_delay = \"9s\"");
        set("weight_settle = \"1s\"", "weight_settle = \"3s\"");
    }
    text
}

fn glidepath(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glidepath"));
    cmd.arg("--endpoint-url")
        .arg(endpoint)
        .args(args)
        .current_dir(common::repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The durable events of a JSON Lines stream, without `ts`.
fn durable_events(out: &str, context: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}\n{context}")))
        .filter(|v| {
            let t = v["type"].as_str().unwrap_or_default();
            t == "release_started" || durable::KINDS.contains(&t)
        })
        .map(|mut v| {
            v.as_object_mut().expect("an object").remove("ts");
            v
        })
        .collect()
}

/// A process's exit code, stdout and stderr.
struct Ran {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Ran {
    fn of(o: std::process::Output) -> Ran {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ran {
            code: o.status.code(),
            out: text(&o.stdout),
            err: text(&o.stderr),
        }
    }

    fn show(&self, who: &str) -> String {
        format!("{who} exit {:?}\n{}\n{}", self.code, self.out, self.err)
    }
}

/// `watch --wait --output json`, started before whatever it is to see.
fn watcher(endpoint: &str, plan: &str) -> Child {
    glidepath(endpoint, &["watch", plan, "--output", "json", "--wait"])
        .spawn()
        .expect("start glidepath watch")
}

/// Wait for a child on a blocking thread, failing the test after `limit` (a watcher that
/// never sees its release would wait for ever).
async fn finish(mut child: Child, limit: Duration, what: &str) -> Ran {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let ran = Ran::of(child.wait_with_output().expect("output"));
            panic!("{what} still running after {limit:?}\n{}", ran.show(what));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ran::of(child.wait_with_output().expect("output"))
}

const LIMIT: Duration = Duration::from_secs(240);

/// `glidepath release --output json` of `version` beside a watcher; returns (run, watch).
async fn release_beside_watch(endpoint: &str, plan: &str, version: &str) -> (Ran, Ran) {
    // Watch first, waiting for the release: it sees the release from its start.
    let watch = watcher(endpoint, plan);
    let release = glidepath(
        endpoint,
        &[
            "release",
            plan,
            "--version",
            version,
            "--non-interactive",
            "--auto-approve",
            "--output",
            "json",
        ],
    )
    .spawn()
    .expect("start glidepath release");
    let run = finish(release, LIMIT, "release").await;
    let watched = finish(watch, LIMIT, "watch").await;
    (run, watched)
}

/// The durable events of both, equal one by one and in number.
fn same_events(ran: &[Value], saw: &[Value], context: &str) {
    for (i, (r, w)) in ran.iter().zip(saw).enumerate() {
        assert_eq!(r, w, "durable event {i} differs\n{context}");
    }
    assert_eq!(ran.len(), saw.len(), "{context}");
}

async fn watch_says_what_run_said(scenario: &str) {
    let seeded = common::seeded_stage(scenario, common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let (_dir, plan) = common::temp_file("drill.toml", &drill_plan_text(scenario));
    let plan = common::path_str(&plan);
    let (run, watched) = release_beside_watch(&endpoint, &plan, "drill").await;
    let context = format!(
        "scenario {scenario}\n{}\n{}\nstage:\n{}",
        run.show("release"),
        watched.show("watch"),
        seeded.stage.stderr_text()
    );
    assert_eq!(
        watched.code, run.code,
        "watch exits with the release's code\n{context}"
    );
    let ran = durable_events(&run.out, &context);
    let saw = durable_events(&watched.out, &context);
    assert!(
        ran.last().is_some_and(|v| v["type"] == "release_finished")
            && ran.iter().any(|v| v["type"] == "phase_finished"),
        "{context}"
    );
    same_events(&ran, &saw, &context);
}

#[tokio::test]
async fn watch_drill_alarm_fires() {
    watch_says_what_run_said("alarm-fires").await;
}

#[tokio::test]
async fn watch_drill_green_5xx() {
    watch_says_what_run_said("green-5xx").await;
}

#[tokio::test]
async fn watch_drill_green_5xx_alb() {
    watch_says_what_run_said("green-5xx-alb").await;
}

#[tokio::test]
async fn watch_drill_green_slow() {
    watch_says_what_run_said("green-slow").await;
}

#[tokio::test]
async fn watch_drill_green_unhealthy() {
    watch_says_what_run_said("green-unhealthy").await;
}

#[tokio::test]
async fn watch_drill_happy() {
    watch_says_what_run_said("happy").await;
}

#[tokio::test]
async fn watch_drill_happy_alb() {
    watch_says_what_run_said("happy-alb").await;
}

#[tokio::test]
async fn watch_drill_migration_breaks_live() {
    watch_says_what_run_said("migration-breaks-live").await;
}

#[tokio::test]
async fn watch_drill_migration_fails() {
    watch_says_what_run_said("migration-fails").await;
}

#[tokio::test]
async fn watch_drill_snapshot_slow() {
    watch_says_what_run_said("snapshot-slow").await;
}

// --- the paths a release takes beyond one run ---------------------------------------------

/// A second release goes the other way (green → blue): watch still says what run said.
#[tokio::test]
async fn watch_drill_second_release_green_to_blue() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let (_dir, plan) = common::temp_file("drill.toml", &drill_plan_text("happy"));
    let plan = common::path_str(&plan);
    for (version, target) in [("drill-1", "green"), ("drill-2", "blue")] {
        let (run, watched) = release_beside_watch(&endpoint, &plan, version).await;
        let context = format!(
            "{version}\n{}\n{}\nstage:\n{}",
            run.show("release"),
            watched.show("watch"),
            seeded.stage.stderr_text()
        );
        assert_eq!(run.code, Some(0), "{context}");
        assert_eq!(watched.code, run.code, "{context}");
        let ran = durable_events(&run.out, &context);
        let header = ran.first().filter(|v| v["type"] == "release_started");
        assert_eq!(
            header.map(|v| &v["target"]),
            Some(&Value::from(target)),
            "{context}"
        );
        same_events(&ran, &durable_events(&watched.out, &context), &context);
    }
}

/// A run killed (`kill -9`) while traffic shifts, finished by `resume`: one watcher of the
/// whole release says what the run said, then what the resume said.
#[tokio::test]
async fn watch_drill_killed_mid_shift_then_resumed() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let (_dir, plan) = common::temp_file("drill.toml", &drill_plan_text("happy"));
    let plan = common::path_str(&plan);
    let watch = watcher(&endpoint, &plan);
    let mut release = glidepath(
        &endpoint,
        &[
            "release",
            &plan,
            "--version",
            "drill",
            "--non-interactive",
            "--auto-approve",
            "--output",
            "json",
        ],
    )
    .spawn()
    .expect("start glidepath release");
    let stdout = release.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Killed during the first step's bake: after its weights changed and a health poll
    // came after them. Events reach stdout in the order they were made, so every durable
    // event the run made before that poll is printed; the next (the gate) is seconds away.
    let mut lines = Vec::new();
    let mut shifted = false;
    let deadline = Instant::now() + LIMIT;
    loop {
        let line: String = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = release.kill();
                panic!("the release never reached the shift's first bake")
            });
        let health = line.contains("\"type\":\"health\"");
        shifted |= line.contains("\"type\":\"weights_changed\"");
        lines.push(line);
        if shifted && health {
            break;
        }
    }
    release.kill().expect("kill -9 the release");
    let killed = release.wait().expect("reap the killed release");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    let run_out = lines.join("\n");
    let resume = glidepath(
        &endpoint,
        &[
            "resume",
            &plan,
            "--non-interactive",
            "--auto-approve",
            "--output",
            "json",
        ],
    )
    .spawn()
    .expect("start glidepath resume");
    let resumed = finish(resume, LIMIT, "resume").await;
    let watched = finish(watch, LIMIT, "watch").await;
    let context = format!(
        "killed: {killed}\nrelease:\n{run_out}\n{}\n{}\nstage:\n{}",
        resumed.show("resume"),
        watched.show("watch"),
        seeded.stage.stderr_text()
    );
    assert_eq!(resumed.code, Some(0), "{context}");
    assert_eq!(watched.code, resumed.code, "{context}");
    let ran = durable_events(&run_out, &context);
    assert!(
        ran.iter().any(|v| v["type"] == "weights_changed")
            && !ran.iter().any(|v| v["type"] == "release_finished"),
        "the run was killed mid-shift\n{context}"
    );
    // The resume first tells what the record says happened, as the run told it, with who
    // took over beside the first lock (docs/events.md "Order"); then what it did itself.
    let resumed_events: Vec<Value> = durable_events(&resumed.out, &context)
        .into_iter()
        .filter(|v| v["type"] != "release_started")
        .collect();
    let takeover = resumed_events.get(2).cloned().unwrap_or_default();
    assert_eq!(takeover["type"], "lock_acquired", "{context}");
    let mut replay = ran[1..].to_vec();
    replay.insert(2, takeover.clone());
    same_events(
        &replay,
        &resumed_events[..replay.len().min(resumed_events.len())],
        &context,
    );
    // One watcher of the whole release: the run, the takeover, then the resume's own.
    let mut expected = ran;
    expected.push(takeover);
    expected.extend(resumed_events.into_iter().skip(replay.len()));
    same_events(&expected, &durable_events(&watched.out, &context), &context);
}

/// `glidepath rollback` of the finalized release, after a blue → green release and after a
/// green → blue one: a watcher waiting beside it tells what the record says (the release,
/// as its run told it), then exactly what the rollback process told, lock phase included.
#[tokio::test]
async fn watch_drill_rollback_of_a_finalized_release_both_ways() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let endpoint = seeded.stage.endpoint();
    let (dir, plan) = common::temp_file("drill.toml", &drill_plan_text("happy"));
    let plan = common::path_str(&plan);
    // drill-1 blue → green, rolled back; drill-2 blue → green; drill-3 green → blue, rolled back.
    for (version, target, roll_back) in [
        ("drill-1", "green", true),
        ("drill-2", "green", false),
        ("drill-3", "blue", true),
    ] {
        let release = glidepath(
            &endpoint,
            &[
                "release",
                &plan,
                "--version",
                version,
                "--non-interactive",
                "--auto-approve",
                "--output",
                "json",
            ],
        )
        .spawn()
        .expect("start glidepath release");
        let run = finish(release, LIMIT, "release").await;
        let context = format!("{version}\n{}", run.show("release"));
        assert_eq!(run.code, Some(0), "{context}");
        let ran = durable_events(&run.out, &context);
        assert_eq!(ran[0]["target"], Value::from(target), "{context}");
        if !roll_back {
            continue;
        }
        // The watcher waits for the next release; the rollback starts once it has looked.
        let log = dir.path().join(format!("watch-{version}.log"));
        let log_arg = common::path_str(&log);
        let watch = glidepath(
            &endpoint,
            &[
                "--log-file",
                &log_arg,
                "watch",
                &plan,
                "--output",
                "json",
                "--wait",
            ],
        )
        .spawn()
        .expect("start glidepath watch");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting for the next one")) {
            assert!(
                Instant::now() < deadline,
                "{version}: the watcher never waited"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rollback = glidepath(&endpoint, &["rollback", &plan, "--output", "json"])
            .spawn()
            .expect("start glidepath rollback");
        let rolled = finish(rollback, LIMIT, "rollback").await;
        let watched = finish(watch, LIMIT, "watch").await;
        let context = format!(
            "{context}\n{}\n{}\nstage:\n{}",
            rolled.show("rollback"),
            watched.show("watch"),
            seeded.stage.stderr_text()
        );
        assert_eq!(rolled.code, Some(0), "{context}");
        // The release's own code, as the record keeps it.
        assert_eq!(watched.code, Some(exit::ROLLED_BACK), "{context}");
        let said = durable_events(&rolled.out, &context);
        assert!(
            said.iter().any(|v| v["type"] == "lock_acquired")
                && said.iter().any(|v| v["type"] == "weights_changed"),
            "{context}"
        );
        // The watcher: a header (its endpoint is the watcher's own) saying it watches a
        // rollback, the release as its run told it, then what the rollback told (its
        // `release_finished` with the release's code, as recorded).
        let saw = durable_events(&watched.out, &context);
        for field in ["type", "version", "live", "target", "rollback", "resumed"] {
            assert_eq!(saw[0][field], said[0][field], "header {field}\n{context}");
        }
        let mut expected: Vec<Value> = ran[1..ran.len() - 1].to_vec();
        expected.extend(said[1..].iter().cloned());
        let last = expected.last_mut().expect("release_finished");
        assert_eq!(last["type"], "release_finished", "{context}");
        assert_eq!(last["exit_code"], Value::from(0), "{context}");
        last["exit_code"] = Value::from(exit::ROLLED_BACK);
        same_events(&expected, &saw[1..], &context);
    }
}
