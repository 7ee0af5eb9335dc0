//! `glidepath plan validate|show`.

use crate::cli::Global;
use crate::commands::{CliError, CmdResult, OutputFormat};
use crate::plan::{
    self, duration, AssetLayout, DatabaseKind, GateMode, GreenAfterRollback, LatencyStat,
    OnGateFail, Plan,
};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum PlanCmd {
    /// Check a plan file; exit 0 when valid, 2 with diagnostics when not.
    Validate {
        /// The release plan (TOML).
        plan: PathBuf,
    },
    /// Show the resolved plan: what a release would do, in order.
    Show {
        /// The release plan (TOML).
        plan: PathBuf,
        /// `text`: the phases in order, with concrete names; `json`: the resolved plan.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

pub async fn run(_g: &Global, c: &PlanCmd) -> CmdResult {
    let path = match c {
        PlanCmd::Validate { plan } | PlanCmd::Show { plan, .. } => plan,
    };
    let plan =
        plan::load(path).map_err(|e| CliError::verbatim(crate::exit::USAGE, e.to_string()))?;
    match c {
        PlanCmd::Validate { .. } => println!("{}", summary(&plan)),
        PlanCmd::Show {
            output: OutputFormat::Text,
            ..
        } => print!("{}", describe(&plan)),
        PlanCmd::Show {
            output: OutputFormat::Json,
            ..
        } => match serde_json::to_string_pretty(&plan) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                return Err(CliError::unexpected(format!(
                    "cannot serialize the plan: {e}"
                )))
            }
        },
    }
    Ok(())
}

/// One line: the plan is fine, and what it is.
pub fn summary(p: &Plan) -> String {
    let weights: Vec<String> = p.steps.iter().map(|s| format!("{}%", s.weight)).collect();
    let kind = if p.production {
        "production"
    } else {
        "non-production"
    };
    format!(
        "ok: {} is a valid plan for {}/{} ({kind}, {}): steps {}; digest {}",
        p.source.display(),
        p.app,
        p.environment,
        p.region,
        weights.join(" → "),
        short(&p.digest)
    )
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn d(x: std::time::Duration) -> String {
    duration::format(x)
}

fn pct(x: f64) -> String {
    let s = format!("{:.3}", x * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "What a release would do, in order", with the concrete names from the plan.
pub fn describe(p: &Plan) -> String {
    let mut o = String::new();
    let where_ = match &p.endpoint_url {
        Some(url) => format!("AWS calls go to {url}"),
        None => "real AWS".to_string(),
    };
    let kind = if p.production {
        "PRODUCTION"
    } else {
        "not production"
    };
    let _ = writeln!(
        o,
        "plan {} (digest {})",
        p.source.display(),
        short(&p.digest)
    );
    let _ = writeln!(
        o,
        "{}/{} in {} — {kind}; {where_}",
        p.app, p.environment, p.region
    );
    let _ = writeln!(
        o,
        "colours on cluster {}: blue = service {} / target group {}; green = service {} / target group {}",
        p.cluster, p.blue.service, p.blue.target_group, p.green.service, p.green.target_group
    );
    let _ = writeln!(o, "\nA release of version V does, in order:");
    let mut n = 0;
    let mut phase = |o: &mut String, name: &str, text: String| {
        n += 1;
        let _ = writeln!(o, "{n:>2}. {name:<9} {text}");
    };
    let state = format!("s3://{}/{}", p.state.bucket, p.state.prefix);
    phase(
        &mut o,
        "lock",
        format!(
            "take the release lock {state}/lock.json (lease {}, renewed while the release runs)",
            d(p.state.lease)
        ),
    );
    let what = match p.database.kind {
        DatabaseKind::Instance => "RDS instance",
        DatabaseKind::Cluster => "Aurora cluster",
    };
    phase(
        &mut o,
        "snapshot",
        format!(
            "snapshot {what} {id} as {id}-<release-id>; wait up to {} for it to be available; {kept}",
            d(p.database.snapshot_timeout),
            id = p.database.id,
            kept = match p.database.keep_snapshots {
                Some(n) => format!("the newest {n} of glidepath's snapshots are kept (database.keep_snapshots), and the live and standby release's"),
                None => "every snapshot is kept (set database.keep_snapshots to delete old ones)".into(),
            }
        ),
    );
    match &p.migration {
        Some(m) => {
            let net = if m.subnets.is_empty() {
                "the service's network".to_string()
            } else {
                format!(
                    "subnets {} / security groups {}",
                    m.subnets.join(","),
                    m.security_groups.join(",")
                )
            };
            // The window wraps the task only (the watch after it sees the app writable).
            let window = match &p.read_only {
                Some(r) => format!(
                    "read-only window: `{}` right before the task starts, `{}` once it stops, however the release goes on or ends (also on abort and on `resume` after a crash); open longer than {}: `{}` runs and the release stops before deploying (exit 5); ",
                    shell_words(&r.enter),
                    shell_words(&r.exit),
                    d(r.max),
                    shell_words(&r.exit),
                ),
                None => String::new(),
            };
            phase(
                &mut o,
                "migrate",
                format!(
                    "{} on cluster {} from the new task definition (image {}), container {}: `{}`; {net}; must exit 0 within {}; {window}{}",
                    if m.shards.is_empty() {
                        "run exactly one task".to_string()
                    } else {
                        format!(
                            "run one task per shard, one at a time, each exactly once, with SHARD set ({} shards: {}); the first failing shard stops the rest",
                            m.shards.len(),
                            m.shards.join(", ")
                        )
                    },
                    p.cluster,
                    p.deploy.image.replace("{version}", "V"),
                    m.container,
                    shell_words(&m.command),
                    d(m.timeout),
                    if m.watch.is_zero() {
                        "the live colour is not watched after it (migration.watch = 0s)".to_string()
                    } else {
                        format!(
                            "the live colour is compared with itself before the task and for {} after it; if it degraded the release stops before deploying (exit 6)",
                            d(m.watch)
                        )
                    }
                ),
            );
        }
        None => phase(&mut o, "migrate", "(no [migration]: skipped)".into()),
    }
    match &p.assets {
        Some(a) => {
            let key = match a.layout {
                AssetLayout::Versioned => format!("{}/V/<path>", a.prefix),
                AssetLayout::Hashed => format!("{}/<dir>/<name>.<hash8>.<ext>", a.prefix),
            };
            let key = key.trim_start_matches('/');
            phase(
                &mut o,
                "assets",
                format!(
                    "publish {} to s3://{}/{key} (never overwriting), manifest last; cache-control \"{}\", entry points \"{}\"",
                    a.dir.display(),
                    a.bucket,
                    a.cache_control,
                    a.entry_cache_control
                ),
            );
        }
        None => phase(&mut o, "assets", "(no [assets]: skipped)".into()),
    }
    let smoke = match &p.smoke {
        Some(s) => format!(
            "; then{} run the smoke test `{}` (GREEN_URL={}, within {})",
            p.traffic
                .test_listener
                .as_ref()
                .map(|l| format!(" point test listener {l} at the idle colour only and"))
                .unwrap_or_default(),
            shell_words(&s.command),
            p.traffic.test_url.as_deref().unwrap_or("unset"),
            d(s.timeout)
        ),
        None => String::new(),
    };
    phase(
        &mut o,
        "deploy",
        format!(
            "point the idle colour's service at a new task definition revision with container {} = {}, at the live colour's task count; wait up to {} for it to be running and healthy{smoke}",
            p.deploy.container,
            p.deploy.image.replace("{version}", "V"),
            d(p.deploy.timeout)
        ),
    );
    if !p.companions.is_empty() {
        let when = match p.companions_move {
            crate::plan::CompanionsMove::BeforeShift => "before the first shift step",
            crate::plan::CompanionsMove::AfterFirstGate => {
                "once the first shift step's gate passed"
            }
            crate::plan::CompanionsMove::AtFinalize => "after the last shift step, before finalize",
        };
        let list: Vec<String> = p
            .companions
            .iter()
            .map(|c| {
                format!(
                    "{} ({}, container {} = {})",
                    c.name,
                    c.service,
                    c.container,
                    c.image.replace("{version}", "V")
                )
            })
            .collect();
        phase(
            &mut o,
            "companions",
            format!(
                "{when}, one at a time: {}; each a rolling deployment with the circuit breaker, waited on up to {}; a failed rollout rolls the release back, and every rollback puts them back in reverse order",
                list.join(", then "),
                d(p.deploy.timeout)
            ),
        );
    }
    let target = match &p.traffic.rule_arn {
        Some(rule) => format!("listener rule {rule}"),
        None => format!("listener {}", p.traffic.listener),
    };
    phase(
        &mut o,
        "shift",
        format!("step the forward weights of {target} from live to idle:"),
    );
    let manual = format!(
        "gate manual (waits up to {} for an approval: cockpit `a` or `glidepath approve`)",
        d(p.gates.approval_timeout)
    );
    for s in &p.steps {
        let gate = match s.gate {
            GateMode::Auto => "gate auto",
            GateMode::Manual => manual.as_str(),
        };
        let _ = writeln!(
            o,
            "{:>14}{:>4}%  bake {:<6} {gate}",
            "",
            s.weight,
            d(s.bake)
        );
    }
    let g = &p.gates;
    let stat = match g.latency_stat {
        LatencyStat::P95 => "p95",
        LatencyStat::Average => "average",
    };
    let alarms = if g.alarms.is_empty() {
        "none".to_string()
    } else {
        g.alarms.join(", ")
    };
    let on_fail = match g.on_fail {
        OnGateFail::Rollback => "roll back",
        OnGateFail::Pause => "pause and ask",
    };
    let _ = writeln!(
        o,
        "{:>14}gates every {}: the idle colour fails on unhealthy targets; 5xx rate above {} and above live's + {} (after {} requests); {stat} latency above {}× live's; alarms in ALARM: {alarms}{}",
        "",
        d(g.poll_interval),
        pct(g.error_rate_floor),
        pct(g.error_rate_margin),
        g.min_requests,
        g.latency_factor,
        if g.statistical {
            format!("; rank test at {} confidence", g.confidence)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "{:>14}on a failed gate: {on_fail}; no health reading for {} pauses the step",
        "",
        d(g.max_blind)
    );
    let prune = match &p.assets {
        Some(a) => format!(
            ", prune assets to {} versions (never the live or standby one; a failure only warns)",
            a.retention
        ),
        None => String::new(),
    };
    let snapshots = match p.database.keep_snapshots {
        Some(n) => format!(
            ", delete glidepath's snapshots of {} beyond the newest {n} (never the live or standby release's restore point; a failure only warns)",
            p.database.id
        ),
        None => String::new(),
    };
    phase(
        &mut o,
        "finalize",
        format!("record the release live in {state}, swap the colours{prune}{snapshots}, release the lock"),
    );
    let green = match p.rollback.green {
        GreenAfterRollback::ScaleToZero => "scale the idle colour to zero tasks",
        GreenAfterRollback::Keep => "leave the idle colour running",
    };
    let _ = writeln!(
        o,
        "\nOn rollback: all traffic back to the live colour first (read back), then {green}, then the ledger."
    );
    if let Some(c) = &p.contract {
        let _ = writeln!(
            o,
            "Never in a release: `glidepath contract` runs one task `{}` (container {}) once the latest release is finalized and has been live for {}; rollback to the version before it is refused from then on.",
            shell_words(&c.task.command),
            c.task.container,
            d(c.after)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_naturally() {
        assert_eq!(pct(0.01), "1%");
        assert_eq!(pct(0.005), "0.5%");
        assert_eq!(pct(0.0), "0%");
    }

    #[test]
    fn commands_are_quoted_only_when_needed() {
        let w = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(w(&["bin/migrate", "up"]), "bin/migrate up");
        assert_eq!(w(&["sh", "-c", "echo it's"]), "sh -c 'echo it'\\''s'");
    }
}
