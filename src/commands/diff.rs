//! `glidepath diff PLAN --version V`: a dry run against the account (or the stage). It
//! reads what a release of V would start from — the colours, the listener's weights, the
//! migration, the assets, the alarms, the lock — says what each phase would change, and
//! lists where the plan does not match the account (exit 2). It changes nothing: every
//! call is a Describe/List/Get (the AWS side is `aws::inspect`, the ledger's `run::status`).

use crate::assets::{Preview, Publisher};
use crate::aws::inspect::{self, Account, ServiceView};
use crate::cli::Global;
use crate::commands::release::{endpoint, load_plan, ports_for, sdk_config_for};
use crate::commands::{CliError, CmdResult, OutputFormat};
use crate::engine::run::{self, Status};
use crate::gate::ColourName;
use crate::plan::Plan;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    pub plan: PathBuf,
    /// The version a release would deploy (substituted into the plan's image).
    #[arg(long)]
    pub version: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Everything `diff` found, as `--output json` prints it.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub app: String,
    pub environment: String,
    pub version: String,
    /// The image the release would deploy.
    pub image: String,
    pub live: Side,
    pub standby: Side,
    pub traffic: TrafficView,
    pub migration: Option<MigrationView>,
    pub assets: Option<Preview>,
    pub alarms: Vec<crate::gate::AlarmState>,
    /// Who holds the release lock, if anyone.
    pub lock: Option<String>,
    /// The release in progress (or left unfinished), if any.
    pub release_in_progress: Option<String>,
    pub phases: Vec<PhaseChange>,
    /// Where the plan does not match the account; non-empty means exit 2.
    pub differences: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Side {
    pub colour: ColourName,
    /// The version the ledger records for it (None before the first release).
    pub version: Option<String>,
    pub service: ServiceView,
}

#[derive(Debug, Serialize)]
pub struct TrafficView {
    /// The listener (or rule) whose weights a release steps.
    pub stepped: String,
    /// (target group, colour or null when it is neither, weight).
    pub forwards: Vec<Forward>,
}

#[derive(Debug, Serialize)]
pub struct Forward {
    pub target_group: String,
    pub colour: Option<ColourName>,
    pub weight: u32,
}

#[derive(Debug, Serialize)]
pub struct MigrationView {
    pub container: String,
    pub command: Vec<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// Where the network comes from: `plan` or the service it is borrowed from.
    pub network_from: String,
}

#[derive(Debug, Serialize)]
pub struct PhaseChange {
    pub phase: &'static str,
    pub change: String,
}

pub async fn run(g: &Global, a: &DiffArgs) -> CmdResult {
    let plan = load_plan(&a.plan)?;
    crate::plan::check_endpoint(&plan, endpoint(g, &plan).as_deref()).map_err(CliError::usage)?;
    let config = sdk_config_for(g, &plan).await;
    let aws_error = |e: crate::aws::AwsError| {
        if e.is_transient() {
            CliError::unexpected(e)
        } else {
            CliError::usage(format!("the plan does not match the account: {e}"))
        }
    };
    let (account, _) = inspect::inspect(&config, &plan).await.map_err(aws_error)?;
    let (ports, _) = ports_for(&config, &plan).await.map_err(aws_error)?;
    let status = run::status(&plan, &ports)
        .await
        .map_err(|e| CliError::unexpected(format!("cannot read the ledger: {e}")))?;
    let assets = match &plan.assets {
        Some(cfg) => Some(
            Publisher::new(crate::aws::client::s3(&config), cfg.clone())
                .preview(&a.version)
                .await
                .map_err(|e| CliError::unexpected(format!("cannot preview the assets: {e}")))?,
        ),
        None => None,
    };
    let diff = build(&plan, &a.version, account, &status, assets);
    match a.output {
        OutputFormat::Json => {
            let s = serde_json::to_string_pretty(&diff)
                .map_err(|e| CliError::unexpected(format!("cannot format the diff: {e}")))?;
            println!("{s}");
        }
        OutputFormat::Text => print!("{}", text(&diff)),
    }
    if diff.differences.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            crate::exit::USAGE,
            format!(
                "the plan does not match the account ({} difference(s)); nothing was changed",
                diff.differences.len()
            ),
        ))
    }
}

/// Put the readings together and judge them (pure, so it is tested without AWS).
pub fn build(
    plan: &Plan,
    version: &str,
    account: Account,
    status: &Status,
    assets: Option<Preview>,
) -> Diff {
    let live_colour = status.live.as_ref().map_or(ColourName::Blue, |s| s.colour);
    let (blue, green) = (account.blue, account.green);
    let (live_svc, standby_svc) = match live_colour {
        ColourName::Blue => (blue, green),
        ColourName::Green => (green, blue),
    };
    let tg_of = |c: ColourName| match c {
        ColourName::Blue => account.resolved.blue_target_group.clone(),
        ColourName::Green => account.resolved.green_target_group.clone(),
    };
    let mut differences = vec![];

    // The listener must forward only to the plan's two target groups.
    let forwards: Vec<Forward> = account
        .forwards
        .iter()
        .map(|(tg, w)| Forward {
            target_group: tg.clone(),
            colour: [ColourName::Blue, ColourName::Green]
                .into_iter()
                .find(|c| &tg_of(*c) == tg),
            weight: *w,
        })
        .collect();
    let stepped = account.resolved.rule.as_ref().map_or_else(
        || format!("listener {}", account.resolved.listener),
        |r| format!("rule {r}"),
    );
    for f in forwards.iter().filter(|f| f.colour.is_none()) {
        differences.push(format!(
            "the {stepped} forwards to {} (weight {}), which is neither the plan's blue \
             target group ({}) nor its green one ({}); fix [blue]/[green] target_group in \
             the plan or the forward action",
            f.target_group, f.weight, plan.blue.target_group, plan.green.target_group
        ));
    }
    if forwards.iter().all(|f| f.colour.is_none() || f.weight == 0) {
        differences.push(format!(
            "the {stepped} sends no traffic to the plan's blue or green target group"
        ));
    }
    // Each service must register its tasks in its colour's target group.
    for (colour, svc) in [
        (live_colour, &live_svc),
        (live_colour.other(), &standby_svc),
    ] {
        let want = tg_of(colour);
        if !svc.target_groups.is_empty() && !svc.target_groups.contains(&want) {
            differences.push(format!(
                "service {} ({}) registers its tasks in {}, not in the plan's {} target group {}",
                svc.name,
                colour.name(),
                svc.target_groups.join(", "),
                colour.name(),
                want
            ));
        }
    }
    if live_svc.image.is_none() {
        differences.push(format!(
            "the live task definition {} has no container {:?} (plan [deploy] container)",
            live_svc.task_definition, plan.deploy.container
        ));
    }
    for a in account
        .alarms
        .iter()
        .filter(|a| a.state == crate::aws::health::MISSING)
    {
        differences.push(format!(
            "alarm {} named in [gates] alarms does not exist",
            a.name
        ));
    }

    let image = plan.deploy.image.replace("{version}", version);
    let migration = plan.migration.as_ref().map(|m| {
        let (subnets, security_groups, from) = if !m.subnets.is_empty() {
            (
                m.subnets.clone(),
                m.security_groups.clone(),
                "plan".to_string(),
            )
        } else {
            let svc = blue_first(&live_svc, &standby_svc, live_colour)
                .into_iter()
                .find(|s| !s.subnets.is_empty());
            match svc {
                Some(s) => (
                    s.subnets.clone(),
                    s.security_groups.clone(),
                    format!("service {}", s.name),
                ),
                None => (vec![], vec![], "none found".to_string()),
            }
        };
        MigrationView {
            container: m.container.clone(),
            command: m.command.clone(),
            subnets,
            security_groups,
            network_from: from,
        }
    });

    let lock = status.lock.as_ref().map(|l| l.summary.clone());
    let release_in_progress = status.current.as_ref().map(|r| r.id.clone());
    let phases = phases(
        plan,
        &image,
        live_colour,
        &live_svc,
        &standby_svc,
        &stepped,
        migration.as_ref(),
        assets.as_ref(),
        lock.as_deref(),
        release_in_progress.as_deref(),
    );
    Diff {
        app: plan.app.clone(),
        environment: plan.environment.clone(),
        version: version.to_string(),
        image,
        live: Side {
            colour: live_colour,
            version: status.live.as_ref().map(|s| s.version.clone()),
            service: live_svc,
        },
        standby: Side {
            colour: live_colour.other(),
            version: status.standby.as_ref().map(|s| s.version.clone()),
            service: standby_svc,
        },
        traffic: TrafficView { stepped, forwards },
        migration,
        assets,
        alarms: account.alarms,
        lock,
        release_in_progress,
        phases,
        differences,
    }
}

/// The services in the order the migration borrows a network from: blue, then green.
fn blue_first<'a>(
    live: &'a ServiceView,
    standby: &'a ServiceView,
    live_colour: ColourName,
) -> [&'a ServiceView; 2] {
    match live_colour {
        ColourName::Blue => [live, standby],
        ColourName::Green => [standby, live],
    }
}

#[allow(clippy::too_many_arguments)]
fn phases(
    plan: &Plan,
    image: &str,
    live: ColourName,
    live_svc: &ServiceView,
    standby_svc: &ServiceView,
    stepped: &str,
    migration: Option<&MigrationView>,
    assets: Option<&Preview>,
    lock: Option<&str>,
    in_progress: Option<&str>,
) -> Vec<PhaseChange> {
    let mut out = vec![];
    let mut add = |phase, change: String| out.push(PhaseChange { phase, change });
    add(
        "lock",
        match (lock, in_progress) {
            (Some(l), _) => format!(
                "the lock is held ({l}): a release would wait for it or exit 4; `glidepath status` says more"
            ),
            (None, Some(r)) => format!(
                "take the lock; release {r} did not finish: the new release first puts traffic back on the live colour and closes it as superseded"
            ),
            (None, None) => format!(
                "take the release lock in s3://{}/{}",
                plan.state.bucket, plan.state.prefix
            ),
        },
    );
    add(
        "snapshot",
        format!(
            "snapshot {} {} as {}",
            match plan.database.kind {
                crate::plan::DatabaseKind::Instance => "DB instance",
                crate::plan::DatabaseKind::Cluster => "Aurora cluster",
            },
            plan.database.id,
            crate::engine::ids::snapshot_id(&plan.database.id, "<release id>")
        ),
    );
    add(
        "migrate",
        match migration {
            Some(m) => format!(
                "run one task of the new task definition, container {}: {:?} on subnets [{}] with security groups [{}] (network from {})",
                m.container,
                m.command.join(" "),
                m.subnets.join(", "),
                m.security_groups.join(", "),
                m.network_from
            ),
            None => "nothing (no [migration])".into(),
        },
    );
    add(
        "assets",
        match (&plan.assets, assets) {
            (Some(cfg), Some(p)) if p.already_published => format!(
                "nothing: version already published in s3://{}/{} ({} files)",
                cfg.bucket, cfg.prefix, p.files
            ),
            (Some(cfg), Some(p)) => format!(
                "publish {} files to s3://{}/{}: {} new ({}), {} already published ({})",
                p.files,
                cfg.bucket,
                cfg.prefix,
                p.new_files,
                crate::assets::human_bytes(p.new_bytes),
                p.published_files,
                crate::assets::human_bytes(p.published_bytes)
            ),
            _ => "nothing (no [assets])".into(),
        },
    );
    add(
        "deploy",
        format!(
            "register a revision of {} with container {} running {image} (now {}), then update {} ({}) from {} to it with {} task(s) like {}",
            live_svc.task_definition,
            plan.deploy.container,
            live_svc.image.as_deref().unwrap_or("no such container"),
            standby_svc.name,
            live.other().name(),
            standby_svc.task_definition,
            live_svc.desired,
            live_svc.name
        ),
    );
    let steps: Vec<String> = plan
        .steps
        .iter()
        .map(|s| {
            format!(
                "{}/{} ({} bake{})",
                100 - s.weight,
                s.weight,
                crate::plan::duration::format(s.bake),
                if s.gate == crate::plan::GateMode::Manual {
                    ", approval"
                } else {
                    ""
                }
            )
        })
        .collect();
    add(
        "shift",
        format!(
            "step the {stepped} {}/{}: {}",
            live.name(),
            live.other().name(),
            steps.join(" → ")
        ),
    );
    add(
        "finalize",
        format!(
            "record {} live on {} and {} standby; release the lock",
            image,
            live.other().name(),
            live.name()
        ),
    );
    out
}

pub fn text(d: &Diff) -> String {
    let side = |s: &Side| {
        format!(
            "{} ({}): service {}, task definition {}, image {}, {}/{} running, rollout {}",
            s.colour.name(),
            s.version.as_deref().unwrap_or("version not recorded"),
            s.service.name,
            s.service.task_definition,
            s.service.image.as_deref().unwrap_or("-"),
            s.service.running,
            s.service.desired,
            s.service.rollout
        )
    };
    let mut out = format!(
        "{} / {}: a release of {} would deploy {}\n",
        d.app, d.environment, d.version, d.image
    );
    out.push_str(&format!("live:      {}\n", side(&d.live)));
    out.push_str(&format!("standby:   {}\n", side(&d.standby)));
    out.push_str(&format!("traffic:   {}\n", d.traffic.stepped));
    for f in &d.traffic.forwards {
        out.push_str(&format!(
            "           {:>3} → {} ({})\n",
            f.weight,
            f.target_group,
            f.colour.map_or("NOT THE PLAN'S", ColourName::name)
        ));
    }
    for a in &d.alarms {
        out.push_str(&format!("alarm:     {} {}\n", a.name, a.state));
    }
    out.push_str(&format!(
        "lock:      {}\n",
        d.lock.as_deref().unwrap_or("free")
    ));
    out.push_str(&format!(
        "release:   {}\n",
        d.release_in_progress
            .as_deref()
            .map_or("none in progress".to_string(), |r| format!(
                "{r} in progress"
            ))
    ));
    out.push_str("\nwhat a release would change:\n");
    for p in &d.phases {
        out.push_str(&format!("  {:<9} {}\n", p.phase, p.change));
    }
    if d.differences.is_empty() {
        out.push_str("\nthe plan matches the account\n");
    } else {
        out.push_str("\nthe plan does not match the account:\n");
        for x in &d.differences {
            out.push_str(&format!("  - {x}\n"));
        }
    }
    out
}
