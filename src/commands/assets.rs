//! `glidepath assets publish|prune`.

use crate::cli::Global;
use std::path::PathBuf;

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

pub async fn run(_g: &Global, _c: &AssetsCmd) -> i32 {
    super::not_built("assets")
}
