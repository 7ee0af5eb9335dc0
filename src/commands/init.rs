//! `glidepath init --cluster C --service S`: write a commented plan for an existing ECS
//! service behind an ALB (read by `aws::adopt`), marking with `NOT INFERRED` what it could
//! not tell. `--create-green` creates the blue/green twin (service and target group) after a
//! typed confirmation (or `--yes`); without it, it says what it would create.

use crate::aws::adopt::{self, Found};
use crate::cli::Global;
use crate::commands::{CliError, CmdResult};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The ECS cluster of the existing service.
    #[arg(long)]
    pub cluster: String,
    /// The existing service: it becomes the plan's blue colour.
    #[arg(long)]
    pub service: String,
    /// The listener whose weights releases step (default: the one that forwards to the
    /// service's target group).
    #[arg(long, value_name = "ARN")]
    pub listener: Option<String>,
    /// The environment name in the plan (default: `production`, or `rehearsal` on an
    /// emulator endpoint).
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Write the plan here (refuses to overwrite) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Create the green twin (service and target group) that does not exist yet.
    #[arg(long)]
    pub create_green: bool,
    /// With --create-green: do not ask for the typed confirmation (scripted mode).
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(g: &Global, a: &InitArgs) -> CmdResult {
    if let Some(out) = &a.out {
        if out.exists() {
            return Err(CliError::usage(format!(
                "{} exists; init never overwrites a plan (choose another --out)",
                out.display()
            )));
        }
    }
    let loopback = g
        .endpoint_url
        .as_deref()
        .is_some_and(crate::rehearse::is_loopback_endpoint);
    let config = match (&g.endpoint_url, loopback) {
        (Some(url), true) => {
            let region = g.region.clone().unwrap_or_else(|| "us-east-1".into());
            crate::rehearse::emulator_sdk_config(url, &region).await
        }
        (url, _) => {
            crate::aws::client::sdk_config_chain_region(&crate::aws::client::Target {
                region: g.region.clone().unwrap_or_default(),
                endpoint_url: url.clone(),
                profile: g.profile.clone(),
            })
            .await
        }
    };
    let region = config
        .region()
        .map(|r| r.to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| CliError::usage("no AWS region: pass --region or set AWS_REGION"))?;
    let aws = |e: crate::aws::AwsError| {
        if e.is_transient() {
            CliError::unexpected(e)
        } else {
            CliError::usage(e)
        }
    };
    let found = adopt::discover(&config, &a.cluster, &a.service, a.listener.as_deref())
        .await
        .map_err(aws)?;

    let twin_missing = !found.twin.service_exists || !found.twin.target_group_exists;
    let would = format!(
        "{}{}",
        if found.twin.target_group_exists {
            String::new()
        } else {
            format!(
                "target group {} (like {}), ",
                found.twin.target_group, found.target_group_name
            )
        },
        if found.twin.service_exists {
            String::new()
        } else {
            format!(
                "service {} in {} (task definition {}, 0 tasks until the first release)",
                found.twin.service, found.cluster, found.task_definition
            )
        }
    );
    if a.create_green && twin_missing {
        confirm(&found, a.yes)?;
        let created = adopt::create_twin(&config, &found).await.map_err(aws)?;
        eprintln!(
            "created the green twin: service {} ({}), target group {}",
            found.twin.service, created.service_arn, created.target_group_arn
        );
    } else if twin_missing {
        eprintln!(
            "the green twin does not exist yet; `--create-green` would create: {}",
            would.trim_end_matches(", ")
        );
    }

    let environment = a.environment.clone().unwrap_or_else(|| {
        if loopback {
            "rehearsal".into()
        } else {
            "production".into()
        }
    });
    let endpoint = g.endpoint_url.as_deref().filter(|_| loopback);
    let text = render(&found, &region, &environment, endpoint);
    match &a.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                CliError::unexpected(format!("cannot write {}: {e}", path.display()))
            })?;
            eprintln!(
                "wrote {}; check the NOT INFERRED lines, then `glidepath plan validate {}`",
                path.display(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The operator types the twin's service name (or passes --yes in scripted mode).
fn confirm(found: &Found, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "--create-green creates service {} and target group {}; pass --yes to confirm in scripted mode",
            found.twin.service, found.twin.target_group
        )));
    }
    eprint!(
        "Create service {} and target group {}? Type the service name to continue: ",
        found.twin.service, found.twin.target_group
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_ok() && line.trim() == found.twin.service {
        return Ok(());
    }
    Err(CliError::usage("not confirmed; nothing was created"))
}

/// The app name: the service name without its colour, as the plan allows it.
fn app_name(service: &str) -> String {
    let base = service.strip_suffix("-blue").unwrap_or(service);
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "app".into()
    } else {
        out
    }
}

/// `repo:tag` → `repo:{version}` (the tag after the last `/`); a digest or no tag gets
/// `:{version}` on the repository.
fn image_template(image: &str) -> (String, bool) {
    let repo = image.split('@').next().unwrap_or(image);
    let slash = repo.rfind('/').map_or(0, |i| i + 1);
    match repo[slash..].rfind(':') {
        Some(i) if !image.contains('@') => (format!("{}:{{version}}", &repo[..slash + i]), true),
        _ => (format!("{repo}:{{version}}"), false),
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

/// The plan text, commented; `NOT INFERRED` marks guesses to check.
pub fn render(f: &Found, region: &str, environment: &str, endpoint: Option<&str>) -> String {
    let app = app_name(&f.service);
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    line(format!(
        "# A release plan written by `glidepath init` from service {} in cluster {}.",
        f.service, f.cluster
    ));
    line("# Lines marked NOT INFERRED are guesses: check them before the first release.".into());
    line("# Every key: docs/plan.md. Check it: glidepath plan validate <this file>".into());
    line(String::new());
    line(format!("app = {}", q(&app)));
    line(format!("environment = {}", q(environment)));
    match endpoint {
        Some(url) => {
            line("production = false".into());
            line(format!("region = {}", q(region)));
            line(format!("endpoint_url = {}", q(url)));
        }
        None => {
            line("production = true            # typed confirmation before each release".into());
            line(format!("region = {}", q(region)));
        }
    }
    line(format!("cluster = {}", q(&f.cluster)));
    line(String::new());
    line("[state]".into());
    line(format!(
        "bucket = {}   # NOT INFERRED: an S3 bucket for the lock and the ledger (create it)",
        q(&format!("{app}-glidepath-state"))
    ));
    line(String::new());
    line("[blue]".into());
    line(format!("service = {}", q(&f.service)));
    line(format!("target_group = {}", q(&f.target_group_name)));
    line(String::new());
    line("[green]".into());
    let twin_note = if f.twin.service_exists && f.twin.target_group_exists {
        ""
    } else {
        "   # does not exist yet: `glidepath init ... --create-green` creates it"
    };
    line(format!("service = {}{twin_note}", q(&f.twin.service)));
    line(format!("target_group = {}", q(&f.twin.target_group)));
    line(String::new());
    line("[traffic]".into());
    match (&f.listener, &f.load_balancer_name) {
        (Some((_, port)), Some(lb)) if f.rule_arn.is_none() => {
            line(format!("listener = {}", q(&format!("{lb}:{port}"))))
        }
        (Some((arn, _)), _) => line(format!("listener = {}", q(arn))),
        (None, _) => line(format!(
            "listener = {}   # NOT INFERRED: no listener forwards to {}; pass --listener ARN",
            q(&format!(
                "{}:443",
                f.load_balancer_name.as_deref().unwrap_or("my-alb")
            )),
            f.target_group_name
        )),
    }
    if let Some(rule) = &f.rule_arn {
        line(format!(
            "rule_arn = {}   # this rule forwards to the service, not the listener's default action",
            q(rule)
        ));
    }
    line(String::new());
    line("[database]".into());
    match &f.database {
        Some((id, how)) => line(format!("instance = {}   # {how}", q(id))),
        None => line(
            "instance = \"change-me\"   # NOT INFERRED: the RDS instance to snapshot (or cluster = \"...\" for Aurora)"
                .into(),
        ),
    }
    line(String::new());
    line("[deploy]".into());
    line(format!(
        "container = {}   # the container the load balancer sends traffic to",
        q(&f.container)
    ));
    match f.image.as_deref().map(image_template) {
        Some((t, true)) => line(format!(
            "image = {}   # now {}",
            q(&t),
            f.image.as_deref().unwrap_or("")
        )),
        Some((t, false)) => line(format!(
            "image = {}   # NOT INFERRED: the running image {} has no tag to replace",
            q(&t),
            f.image.as_deref().unwrap_or("")
        )),
        None => line(format!(
            "image = {}   # NOT INFERRED: no image in the task definition",
            q("registry.example.com/app:{version}")
        )),
    }
    line(String::new());
    line(
        "# NOT INFERRED: the migration command. Uncomment to run one task before each deploy;"
            .into(),
    );
    line(format!(
        "# the network defaults to the service's (subnets {}).",
        if f.subnets.is_empty() {
            "none found".to_string()
        } else {
            f.subnets.join(", ")
        }
    ));
    line("# [migration]".into());
    line("# command = [\"bin/migrate\"]".into());
    line(String::new());
    line("# Traffic steps: the new colour's share, how long it bakes behind the gates.".into());
    // The stage publishes per-second metrics, so a plan for it bakes in seconds; against
    // AWS the defaults fit one-minute ALB metrics that land late.
    let bake = if endpoint.is_some() { "3s" } else { "5m" };
    for (weight, gate) in [(10, "auto"), (50, "manual"), (100, "auto")] {
        line("[[steps]]".into());
        line(format!("weight = {weight}"));
        line(format!("bake = {}", q(bake)));
        line(format!("gate = {}", q(gate)));
        line(String::new());
    }
    line("[gates]".into());
    line("# NOT INFERRED: CloudWatch alarms that must not be in ALARM during a step.".into());
    line("alarms = []".into());
    line("on_fail = \"rollback\"".into());
    if endpoint.is_some() {
        line("# The stage's metrics are per second and readable at once (against AWS: the".into());
        line("# defaults, one-minute periods about two minutes late). A rehearsal goes on".into());
        line("# when a step lacks data.".into());
        for (key, value) in [
            ("metric_period", "1s"),
            ("metric_delay", "1s"),
            ("weight_settle", "1s"),
            ("poll_interval", "1s"),
            ("max_blind", "10s"),
            ("max_wait", "4m"),
            ("on_no_data", "proceed"),
        ] {
            line(format!("{key} = {}", q(value)));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_templates() {
        assert_eq!(
            image_template("registry.example.com:5000/shop:1.3.0"),
            ("registry.example.com:5000/shop:{version}".into(), true)
        );
        assert_eq!(
            image_template("registry.example.com:5000/shop"),
            ("registry.example.com:5000/shop:{version}".into(), false)
        );
        assert_eq!(
            image_template("shop@sha256:abc"),
            ("shop:{version}".into(), false)
        );
    }

    #[test]
    fn app_names() {
        assert_eq!(app_name("shop-blue"), "shop");
        assert_eq!(app_name("Shop_Web"), "shop-web");
    }
}
