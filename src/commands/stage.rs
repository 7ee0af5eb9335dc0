//! `glidepath stage up|seed|down|status`: the local rehearsal stage.

use crate::cli::Global;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum StageCmd {
    /// Start the stage in the background and wait until it is ready.
    Up {
        #[arg(long, default_value = "happy")]
        scenario: String,
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
    /// Create the plan's world (VPC, cluster, services, load balancer, DB, buckets) on the endpoint.
    Seed { plan: PathBuf },
    /// Stop the stage started by `stage up`.
    Down {
        #[arg(long, default_value_t = 4566)]
        port: u16,
    },
}

pub async fn run(_g: &Global, _c: &StageCmd) -> i32 {
    super::not_built("stage")
}
