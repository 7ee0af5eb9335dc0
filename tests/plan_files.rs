//! The plan file, end to end: every malformed plan under tests/plans/bad fails with the
//! message it promises (and at the place it promises), the examples load, the binary's
//! exit codes hold, and no input makes the loader panic.

use crate::common;

use glidepath::plan::{self, check_endpoint, Plan};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A bad plan and what its failure must say: `# expect: FRAGMENT` on line 1 (or a sidecar
/// `NAME.expect` file) and optionally `# at: LINE:COL` on line 2.
struct Case {
    path: PathBuf,
    expect: String,
    at: Option<String>,
}

fn bad_cases() -> Vec<Case> {
    let dir = root().join("tests/plans/bad");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/plans/bad exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("");
            let expect = match first.strip_prefix("# expect: ") {
                Some(e) => e.to_string(),
                None => std::fs::read_to_string(path.with_extension("expect"))
                    .unwrap_or_else(|_| {
                        panic!("{} has no `# expect:` line or .expect file", path.display())
                    })
                    .trim()
                    .to_string(),
            };
            let at = lines
                .next()
                .and_then(|l| l.strip_prefix("# at: "))
                .map(|s| s.trim().to_string());
            Case { path, expect, at }
        })
        .collect()
}

#[test]
fn every_bad_plan_fails_with_its_message_and_position() {
    let cases = bad_cases();
    assert!(cases.len() >= 25, "only {} bad plans", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.path.display().to_string();
        let err = match plan::load(&case.path) {
            Ok(_) => {
                failures.push(format!("{name}: loaded, but should fail"));
                continue;
            }
            Err(e) => e.message,
        };
        if !err.contains(&case.expect) {
            failures.push(format!("{name}: message lacks `{}`:\n{err}", case.expect));
        }
        if let Some(at) = &case.at {
            let place = format!("{name}:{at}: error:");
            if !err.contains(&place) {
                failures.push(format!("{name}: message lacks `{place}`:\n{err}"));
            }
        }
        // Every diagnostic names the file, and none leaks the parser's own framing.
        assert!(err.starts_with(&name), "{name}: {err}");
        assert!(!err.contains("TOML parse error"), "{name}: {err}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn positions_point_at_the_offending_text() {
    let with_position = bad_cases().iter().filter(|c| c.at.is_some()).count();
    assert!(
        with_position >= 25,
        "only {with_position} bad plans pin a position"
    );
    // The caret line sits under the offending text.
    let path = root().join("tests/plans/bad/unknown_nested_key.toml");
    let err = plan::load(&path).unwrap_err().message;
    assert!(err.contains("| bak = \"1m\"\n"), "{err}");
    assert!(err.contains("| ^^^\n"), "{err}");
}

fn glidepath(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run glidepath")
}

#[test]
fn plan_validate_exits_2_with_diagnostics_on_stderr() {
    for name in [
        "syntax_unterminated_string",
        "unknown_nested_key",
        "weights_not_increasing",
        "production_loopback_endpoint",
        "empty_file",
        "several_problems",
    ] {
        let rel = format!("tests/plans/bad/{name}.toml");
        let out = glidepath(&["plan", "validate", &rel]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rel}: {stderr}");
        assert!(stderr.contains(&rel), "{rel}: {stderr}");
        assert!(stderr.contains("error:"), "{rel}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{rel}: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{rel}: {stderr}");
    }
    let out = glidepath(&["plan", "validate", "tests/plans/no-such-plan.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the plan file"));
}

#[test]
fn both_examples_validate() {
    for rel in ["examples/rehearsal.toml", "examples/production.toml"] {
        let out = glidepath(&["plan", "validate", rel]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("ok: {rel} is a valid plan")),
            "{stdout}"
        );
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
    }
}

#[test]
fn rehearsal_example_is_the_world_the_test_harness_builds() {
    let loaded = plan::load(Path::new("examples/rehearsal.toml")).expect("rehearsal example loads");
    let mut expected = common::rehearsal_plan();
    // The documented differences between the example and the in-code plan.
    expected.digest = loaded.digest.clone();
    expected.endpoint_url = Some("http://127.0.0.1:4566".into());
    expected.deploy.image = "public.ecr.aws/glidepath/shop:{version}".into();
    if let Some(m) = expected.migration.as_mut() {
        m.command = vec!["bin/migrate".into(), "up".into()];
    }
    if let Some(a) = expected.assets.as_mut() {
        a.dir = PathBuf::from("assets");
    }
    let s = std::time::Duration::from_secs;
    expected.steps[0].bake = s(3);
    expected.steps[1].bake = s(3);
    expected.steps[1].gate = plan::GateMode::Manual;
    expected.steps[2].bake = s(2);
    assert_eq!(loaded, expected);
    assert!(
        loaded
            .assets
            .as_ref()
            .unwrap()
            .dir
            .join("index.html")
            .is_file(),
        "the sample app sits where the example says"
    );
}

#[test]
fn production_example_has_the_production_shape() {
    let p = plan::load(Path::new("examples/production.toml")).expect("production example loads");
    assert!(p.production);
    assert_eq!(p.endpoint_url, None);
    assert_eq!(p.database.kind, plan::DatabaseKind::Cluster);
    assert!(p.traffic.rule_arn.is_some() && p.traffic.test_listener.is_some() && p.smoke.is_some());
    let weights: Vec<u8> = p.steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [10, 25, 50, 100]);
    assert_eq!(
        p.steps[2].gate,
        plan::GateMode::Manual,
        "a human approves before 100%"
    );
    assert_eq!(
        p.state.prefix, "glidepath/shop/production",
        "default prefix"
    );
    assert_eq!(
        p.assets.as_ref().unwrap().dir,
        PathBuf::from("examples/public/assets")
    );
}

#[test]
fn digest_is_the_sha256_of_the_file_bytes() {
    use sha2::Digest as _;
    let bytes = std::fs::read("examples/rehearsal.toml").unwrap();
    let p = plan::load(Path::new("examples/rehearsal.toml")).unwrap();
    assert_eq!(p.digest, hex::encode(sha2::Sha256::digest(&bytes)));
}

const MINIMAL: &str = r#"
app = "shop"
environment = "staging"
region = "eu-west-1"
cluster = "shop"
[state]
bucket = "shop-release-state"
[blue]
service = "shop-blue"
target_group = "shop-blue"
[green]
service = "shop-green"
target_group = "shop-green"
[traffic]
listener = "shop-alb:443"
[database]
instance = "shop-db"
[deploy]
container = "web"
image = "registry.example.com/shop:{version}"
[[steps]]
weight = 100
bake = "0s"
[assets]
dir = "public"
bucket = "shop-assets"
"#;

#[test]
fn metric_timing_keys_parse_and_the_period_must_be_one_cloudwatch_stores() {
    let with =
        |gates: &str| plan::parse(&format!("{MINIMAL}[gates]\n{gates}\n"), Path::new("p.toml"));
    let p = with("metric_period = \"1s\"\nmetric_delay = \"1s\"\nweight_settle = \"0s\"")
        .expect("fast timing");
    let s = std::time::Duration::from_secs;
    assert_eq!(
        (
            p.gates.metric_period,
            p.gates.metric_delay,
            p.gates.weight_settle
        ),
        (s(1), s(1), s(0))
    );
    assert!(with("metric_period = \"2m\"").is_ok());
    let e = with("metric_period = \"45s\"").expect_err("45 s is no CloudWatch period");
    assert!(e.message.contains("gates.metric_period"), "{}", e.message);
    assert!(e.message.contains("60s"), "{}", e.message);
}

#[test]
fn defaults_fill_what_a_plan_leaves_out() {
    let p = plan::parse(MINIMAL, Path::new("deploy/plans/shop.toml")).expect("minimal plan");
    let s = std::time::Duration::from_secs;
    assert_eq!(p.state.prefix, "glidepath/shop/staging");
    assert_eq!(p.state.lease, s(300));
    assert_eq!(p.gates.poll_interval, s(5));
    assert_eq!(p.gates.max_blind, s(60));
    assert_eq!(p.gates.min_requests, 50);
    assert_eq!(p.gates.error_rate_floor, 0.01);
    assert_eq!(p.gates.error_rate_margin, 0.005);
    assert_eq!(p.gates.latency_factor, 1.5);
    assert_eq!(p.gates.latency_stat, plan::LatencyStat::P95);
    assert_eq!(p.gates.on_fail, plan::OnGateFail::Rollback);
    assert!(!p.gates.statistical);
    assert_eq!(p.gates.confidence, 0.95);
    assert_eq!(p.gates.metric_period, s(60));
    assert_eq!(p.gates.metric_delay, s(120));
    assert_eq!(p.gates.weight_settle, s(10));
    assert_eq!(p.rollback.green, plan::GreenAfterRollback::ScaleToZero);
    assert_eq!(p.steps[0].gate, plan::GateMode::Auto);
    assert!(p.migration.is_none() && p.smoke.is_none());
    let a = p.assets.as_ref().unwrap();
    assert_eq!(
        a.dir,
        PathBuf::from("deploy/plans/public"),
        "relative to the plan file"
    );
    assert_eq!(a.retention, 5);
    assert_eq!(a.layout, plan::AssetLayout::Versioned);
    assert_eq!(a.cache_control, "public, max-age=31536000, immutable");
    assert_eq!(a.entry_cache_control, "public, max-age=60, must-revalidate");
    assert!(!p.production);
}

#[test]
fn endpoint_overrides_are_refused_for_production_plans_only() {
    let mut p: Plan = plan::parse(MINIMAL, Path::new("shop.toml")).unwrap();
    assert!(check_endpoint(&p, Some("http://127.0.0.1:4566")).is_ok());
    assert!(check_endpoint(&p, None).is_ok());
    p.production = true;
    let e = check_endpoint(&p, Some("http://127.0.0.1:4566")).unwrap_err();
    assert!(
        e.message
            .contains("refusing to run production plan `shop/staging`"),
        "{e}"
    );
    assert!(e.message.contains("loopback"), "{e}");
    assert!(check_endpoint(&p, Some("http://localhost:5000")).is_err());
    assert!(check_endpoint(&p, Some("https://s3.eu-west-1.amazonaws.com")).is_ok());
    assert!(check_endpoint(&p, None).is_ok());
    assert!(check_endpoint(&p, Some("not a url")).is_err());
}

#[test]
fn plan_show_tells_what_a_release_does_in_order() {
    let out = glidepath(&["plan", "show", "examples/rehearsal.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let order = [
        "1. lock",
        "2. snapshot",
        "3. migrate",
        "4. assets",
        "5. deploy",
        "6. shift",
        "7. finalize",
    ];
    let mut last = 0;
    for phase in order {
        let at = text
            .find(phase)
            .unwrap_or_else(|| panic!("no `{phase}` in:\n{text}"));
        assert!(at >= last, "`{phase}` out of order:\n{text}");
        last = at;
    }
    for needle in [
        "s3://shop-glidepath-state/glidepath/shop/rehearsal/lock.json",
        "shop-db-<release-id>",
        "bin/migrate up",
        "s3://shop-assets/static/V/<path>",
        "public.ecr.aws/glidepath/shop:V",
        "listener shop:80",
        "50%  bake 3s",
        "gate manual",
        "shop-green-5xx",
        "scale the idle colour to zero",
        "every snapshot is kept",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    let out = glidepath(&["plan", "show", "examples/production.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("delete glidepath's snapshots of shop-aurora beyond the newest 10 (never the live or standby release's restore point"),
        "{text}"
    );

    let out = glidepath(&[
        "plan",
        "show",
        "examples/production.toml",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("plan show --output json is JSON");
    assert_eq!(json["app"], "shop");
    assert_eq!(json["production"], true);
    assert_eq!(json["database"]["kind"], "cluster");
    assert_eq!(json["database"]["keep_snapshots"], 10);
    assert_eq!(json["steps"][0]["weight"], 10);
    assert_eq!(json["steps"][3]["bake"], 1800.0);
}

#[test]
fn plan_show_lists_a_sharded_migrations_shards() {
    let text = std::fs::read_to_string(root().join("examples/rehearsal.toml"))
        .unwrap()
        .replace(
            "command = [\"bin/migrate\", \"up\"]",
            "command = [\"bin/migrate\", \"up\"]\nshards = [\"eu-1\", \"eu-2\", \"us-1\"]",
        );
    let (_dir, path) = common::temp_file("sharded.toml", &text);
    let plan = plan::load(&path).expect("the sharded plan loads");
    assert_eq!(
        plan.migration.as_ref().unwrap().shards,
        ["eu-1", "eu-2", "us-1"]
    );
    let out = glidepath(&["plan", "show", &common::path_str(&path)]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("run one task per shard") && shown.contains("3 shards: eu-1, eu-2, us-1"),
        "{shown}"
    );
    let out = glidepath(&["plan", "show", &common::path_str(&path), "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        json["migration"]["shards"],
        serde_json::json!(["eu-1", "eu-2", "us-1"])
    );
}

fn example_text() -> &'static str {
    include_str!("../examples/rehearsal.toml")
}

/// A random edit of the example plan: cut, insert or overwrite a range.
fn mutate(text: &str, at: usize, len: usize, insert: &str, kind: u8) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    match kind % 3 {
        0 => {
            chars.drain(at..end);
        }
        1 => {
            chars.splice(at..at, insert.chars());
        }
        _ => {
            chars.splice(at..end, insert.chars());
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let path = Path::new("fuzz.toml");
        if let Err(e) = plan::parse(&text, path) {
            prop_assert!(e.message.starts_with("fuzz.toml"), "{}", e.message);
        }
    }

    #[test]
    fn mutations_of_the_example_never_panic(
        edits in proptest::collection::vec((any::<usize>(), 0usize..40, "[a-z0-9 =\\[\\]\"'{}#.\n-]{0,12}", any::<u8>()), 1..4)
    ) {
        let mut text = example_text().to_string();
        for (at, len, insert, kind) in &edits {
            text = mutate(&text, *at, *len, insert, *kind);
        }
        match plan::parse(&text, Path::new("examples/rehearsal.toml")) {
            Ok(p) => prop_assert!(p.steps.last().is_some_and(|s| s.weight == 100)),
            Err(e) => prop_assert!(e.message.contains("error:"), "{}", e.message),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_in_a_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, &bytes).unwrap();
        let _ = plan::load(&path);
    }
}

/// The valid plan the `contract_typo` case starts from (up to its `[migration]`).
fn base_plan_text() -> String {
    let bad = std::fs::read_to_string(root().join("tests/plans/bad/contract_typo.toml")).unwrap();
    bad.lines().skip(2).take(36).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_read_only_window_loads_and_plan_show_describes_it() {
    let text = format!(
        "{}\n\n[read_only]\nenter = [\"bin/flag\", \"on\"]\nexit = [\"bin/flag\", \"off\"]\nmax = \"10m\"\n",
        base_plan_text()
    );
    let (_dir, path) = common::temp_file("read_only.toml", &text);
    let p = plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let ro = p.read_only.expect("read_only");
    assert_eq!(ro.enter, ["bin/flag", "on"]);
    assert_eq!(ro.exit, ["bin/flag", "off"]);
    assert_eq!(ro.max, std::time::Duration::from_secs(600));
    assert_eq!(ro.timeout, plan::defaults::READ_ONLY_TIMEOUT);
    let out = glidepath(&["plan", "show", &common::path_str(&path)]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("read-only window: `bin/flag on` right before the task starts, `bin/flag off` once it stops"),
        "{shown}"
    );
    assert!(shown.contains("open longer than 10m"), "{shown}");

    // Without a migration there is nothing to wrap.
    let no_migration = text.replace("[migration]\ncommand = [\"bin/migrate\", \"up\"]\n", "");
    assert_ne!(no_migration, text);
    let (_dir, path) = common::temp_file("read_only.toml", &no_migration);
    let e = plan::load(&path).unwrap_err().message;
    assert!(e.contains("`[read_only]` needs a `[migration]`"), "{e}");
    assert!(e.contains("hint: add a [migration] table"), "{e}");
}
