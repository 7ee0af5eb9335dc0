//! `glidepath assets publish|prune`.

use crate::assets::{self, prune, AssetsError, Progress, PublishOptions, Publisher, Stage};
use crate::aws::client::{emulator_sdk_config, is_loopback_endpoint, s3, sdk_config, Target};
use crate::aws::SdkConfig;
use crate::cli::Global;
use crate::commands::{CliError, CmdResult};
use crate::plan::{AssetLayout, AssetsConfig, Plan};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Defaults for the `--dir/--bucket` form (the plan's own defaults apply otherwise).
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
const ENTRY_CACHE_CONTROL: &str = "public, max-age=60, must-revalidate";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// Every file at `<prefix>/<version>/<path>`.
    Versioned,
    /// `<prefix>/<dir>/<name>.<hash8>.<ext>`, shared across versions.
    Hashed,
}

#[derive(Debug, clap::Subcommand)]
pub enum AssetsCmd {
    /// Publish static files into a versioned S3 folder with a manifest (never overwrites).
    Publish {
        /// The plan naming the assets dir, bucket and prefix (or give --dir/--bucket/--prefix).
        plan: Option<PathBuf>,
        #[arg(long)]
        version: String,
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        /// Key layout for the --dir/--bucket form (a plan says its own).
        #[arg(long, value_enum)]
        layout: Option<LayoutArg>,
        /// Objects in flight at once, pinned. Without it the number adapts: it starts at 32,
        /// grows (up to 256) while round trips are long, and halves when S3 says SlowDown.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Remove old asset versions (never the live or standby release's).
    Prune {
        plan: PathBuf,
        /// Versions to keep (default: the plan's retention).
        #[arg(long)]
        keep: Option<u32>,
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(g: &Global, c: &AssetsCmd) -> CmdResult {
    match c {
        AssetsCmd::Publish {
            plan,
            version,
            dir,
            bucket,
            prefix,
            layout,
            concurrency,
        } => {
            let plan = plan
                .as_deref()
                .map(load_plan)
                .transpose()
                .map_err(CliError::usage)?;
            refuse_emulator(g, plan.as_ref()).map_err(CliError::usage)?;
            let cfg = publish_config(plan.as_ref(), dir, bucket, prefix, *layout)
                .map_err(CliError::usage)?;
            let name = plan.as_ref().map(|p| p.app.clone());
            publish(g, plan.as_ref(), cfg, name, version, *concurrency).await
        }
        AssetsCmd::Prune {
            plan,
            keep,
            dry_run,
        } => {
            let plan = load_plan(plan).map_err(CliError::usage)?;
            refuse_emulator(g, Some(&plan)).map_err(CliError::usage)?;
            prune_cmd(g, &plan, *keep, *dry_run).await
        }
    }
}

/// Bad input (tree, version, plan) is exit 2 — nothing was changed; the rest is exit 1.
fn exit_for(e: &AssetsError) -> i32 {
    match e {
        AssetsError::Walk(_)
        | AssetsError::Hash(_)
        | AssetsError::BadVersion { .. }
        | AssetsError::Plan(assets::plan::PlanError::ManifestCollision { .. }) => {
            crate::exit::USAGE
        }
        _ => crate::exit::UNEXPECTED,
    }
}

fn load_plan(path: &Path) -> Result<Plan, String> {
    crate::plan::load(path).map_err(|e| e.message)
}

/// A production plan never publishes to an emulator endpoint by accident.
fn refuse_emulator(g: &Global, plan: Option<&Plan>) -> Result<(), String> {
    match plan {
        Some(p) => crate::plan::check_endpoint(p, g.endpoint_url.as_deref()).map_err(|e| e.message),
        None => Ok(()),
    }
}

/// The plan's `[assets]`, with --dir/--bucket/--prefix overriding; or those flags alone.
fn publish_config(
    plan: Option<&Plan>,
    dir: &Option<PathBuf>,
    bucket: &Option<String>,
    prefix: &Option<String>,
    layout: Option<LayoutArg>,
) -> Result<AssetsConfig, String> {
    let mut cfg = match plan {
        Some(p) => p.assets.clone().ok_or_else(|| {
            format!(
                "plan {} has no [assets] section; add one, or give --dir/--bucket/--prefix",
                p.source.display()
            )
        })?,
        None => {
            let (Some(dir), Some(bucket)) = (dir, bucket) else {
                return Err(
                    "assets publish needs a plan, or --dir and --bucket (and usually --prefix)"
                        .into(),
                );
            };
            AssetsConfig {
                dir: dir.clone(),
                bucket: bucket.clone(),
                prefix: prefix.clone().unwrap_or_default(),
                layout: AssetLayout::Versioned,
                retention: 10,
                cache_control: CACHE_CONTROL.into(),
                entry_cache_control: ENTRY_CACHE_CONTROL.into(),
                include: vec![],
                exclude: vec![],
            }
        }
    };
    if let Some(d) = dir {
        cfg.dir = d.clone();
    }
    if let Some(b) = bucket {
        cfg.bucket = b.clone();
    }
    if let Some(p) = prefix {
        cfg.prefix = p.clone();
    }
    match layout {
        Some(LayoutArg::Versioned) => cfg.layout = AssetLayout::Versioned,
        Some(LayoutArg::Hashed) => cfg.layout = AssetLayout::Hashed,
        None => {}
    }
    Ok(cfg)
}

/// Where to call S3: the flags first, then the plan, then the environment.
fn target(g: &Global, plan: Option<&Plan>) -> Target {
    let region = g
        .region
        .clone()
        .or_else(|| plan.map(|p| p.region.clone()))
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    Target {
        region,
        endpoint_url: g
            .endpoint_url
            .clone()
            .or_else(|| plan.and_then(|p| p.endpoint_url.clone())),
        profile: g.profile.clone(),
    }
}

/// The SDK configuration for `target`: an emulator on this machine takes dummy credentials
/// (as every other command does there); real AWS uses the standard chain.
async fn config_for(g: &Global, plan: Option<&Plan>) -> SdkConfig {
    let t = target(g, plan);
    match &t.endpoint_url {
        Some(url) if is_loopback_endpoint(url) => emulator_sdk_config(url, &t.region).await,
        _ => sdk_config(&t).await,
    }
}

async fn publish(
    g: &Global,
    plan: Option<&Plan>,
    cfg: AssetsConfig,
    name: Option<String>,
    version: &str,
    concurrency: Option<usize>,
) -> CmdResult {
    let s3c = s3(&config_for(g, plan).await);
    let mut publisher = Publisher::new(s3c, cfg).with_options(PublishOptions {
        concurrency: concurrency
            .unwrap_or(PublishOptions::default().concurrency)
            .max(1),
        pin_concurrency: concurrency.is_some(),
        ..PublishOptions::default()
    });
    if let Some(n) = name {
        publisher = publisher.with_name(n);
    }
    let meter = Meter::new(std::io::stderr().is_terminal());
    let progress = |p: &Progress| meter.show(p);
    let result = publisher.publish(version, &progress).await;
    meter.clear();
    match result {
        Ok(report) => {
            println!("{}", report.summary());
            Ok(())
        }
        Err(e) => Err(CliError::verbatim(
            exit_for(&e),
            format!(
                "glidepath: assets publish failed: {e}\n\
                 glidepath: no manifest was written for {version}; the version is not visible. Fix the cause and rerun: finished files are not sent again."
            ),
        )),
    }
}

/// A one-line progress meter on a terminal, redrawn at most every 100 ms.
struct Meter {
    on: bool,
    last: Mutex<Option<Instant>>,
}

impl Meter {
    fn new(on: bool) -> Self {
        Meter {
            on,
            last: Mutex::new(None),
        }
    }

    fn show(&self, p: &Progress) {
        if !self.on {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && p.stage != Stage::Done
        {
            return;
        }
        *last = Some(Instant::now());
        let line = match p.stage {
            Stage::Hashing => format!(
                "hashing {} files: {} / {}",
                p.files_total,
                assets::human_bytes(p.bytes_done),
                assets::human_bytes(p.bytes_total)
            ),
            _ => format!(
                "{}/{} files, {} uploaded ({}), {} copied, {} skipped",
                p.files_done,
                p.files_total,
                p.uploaded,
                assets::human_bytes(p.uploaded_bytes),
                p.copied,
                p.skipped
            ),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

async fn prune_cmd(g: &Global, plan: &Plan, keep: Option<u32>, dry_run: bool) -> CmdResult {
    let Some(cfg) = plan.assets.clone() else {
        return Err(CliError::usage(format!(
            "plan {} has no [assets] section: nothing to prune",
            plan.source.display()
        )));
    };
    let keep = keep.unwrap_or(cfg.retention) as usize;
    let s3c = s3(&config_for(g, Some(plan)).await);
    let protected = match prune::read_index(&s3c, &plan.state).await {
        Ok(Some(index)) => {
            let p = prune::protected_versions(&index);
            eprintln!(
                "glidepath: protecting the live and standby versions from the ledger: {}",
                if p.is_empty() {
                    "(none recorded)".to_string()
                } else {
                    p.join(", ")
                }
            );
            p
        }
        Ok(None) => {
            eprintln!(
                "glidepath: no ledger index at {}; protecting the newest {keep} version(s) only",
                prune::index_location(&plan.state)
            );
            vec![]
        }
        Err(e) => {
            return Err(CliError::unexpected(format!(
                "cannot read the ledger index to find the live and standby versions, so nothing was pruned: {e}"
            )))
        }
    };
    match prune::prune(&s3c, &cfg, keep, &protected, dry_run).await {
        Ok(report) => {
            for v in &report.protected_missing {
                eprintln!(
                    "glidepath: note: protected version {v} is not published under this prefix"
                );
            }
            println!("{}", report.summary());
            Ok(())
        }
        Err(e) => Err(CliError::new(
            exit_for(&e),
            format!("assets prune failed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_alone_make_a_config_and_missing_flags_are_named() {
        let cfg = publish_config(
            None,
            &Some("site".into()),
            &Some("b".into()),
            &None,
            Some(LayoutArg::Hashed),
        )
        .unwrap();
        assert_eq!(cfg.layout, AssetLayout::Hashed);
        assert_eq!(cfg.prefix, "");
        let err = publish_config(None, &None, &Some("b".into()), &None, None).unwrap_err();
        assert!(err.contains("--dir"), "{err}");
    }
}
