//! glidepath's AWS adapters: one per engine port (`state` the ledger and lock in S3,
//! `traffic` the listener, `fleet` the ECS services, `tasks` the migration task, `database`
//! the snapshot, `health` target health, metrics and alarms, wired by `ports::build`), the
//! asset publisher with its S3 side ([`assets`]: publish, prune, and the ledger index prune
//! protects, read with core's typed `Index`), the rehearsal seeder ([`seed`]) and its
//! read-only counterpart for worlds glidepath did not seed ([`expect`]), name
//! resolution ([`resolve`]) and client construction ([`client`]). This crate is the only
//! one that depends on aws-sdk-*; the core sees AWS only through its ports.
//!
//! Every SDK error goes through one classifier (`errors.rs`: transient, not found,
//! precondition, fatal), and every retry loop uses core's one policy (`engine::retry`).

pub mod adopt;
pub mod assets;
pub mod client;
pub mod database;
pub mod errors;
pub mod expect;
pub mod fleet;
pub mod health;
pub mod inspect;
pub mod permissions;
pub mod ports;
pub mod resolve;
pub mod seed;
pub mod sns;
pub mod state;
pub mod tasks;
pub mod traffic;
pub mod webhook;

/// The SDK's shared configuration, so callers need not depend on the SDK to hold one.
pub use aws_types::SdkConfig;
pub use errors::AwsError;
pub use ports::build;

// The core this crate adapts; `crate::engine` etc. keep the paths the modules were written with.
pub(crate) use glidepath_core::{engine, gate, plan};

/// The plan's names turned into ARNs once per command (`resolve.rs`); every adapter
/// works from these so a name is looked up only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub blue_target_group_arn: String,
    pub green_target_group_arn: String,
    pub listener_arn: String,
    pub load_balancer_arn: String,
    pub rule_arn: Option<String>,
    pub test_listener_arn: Option<String>,
}

/// CloudWatch's `TargetGroup` dimension: the ARN's `targetgroup/<name>/<id>` suffix.
pub fn target_group_dimension(arn: &str) -> Option<&str> {
    arn.find("targetgroup/").map(|i| &arn[i..])
}

/// CloudWatch's `LoadBalancer` dimension: the ARN's `app/<name>/<id>` suffix.
pub fn load_balancer_dimension(arn: &str) -> Option<&str> {
    arn.find(":loadbalancer/")
        .map(|i| &arn[i + ":loadbalancer/".len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_arn_suffixes() {
        let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-blue/73e2d6bc24d8a067";
        assert_eq!(
            target_group_dimension(tg),
            Some("targetgroup/shop-blue/73e2d6bc24d8a067")
        );
        let lb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/shop-alb/50dc6c495c0c9188";
        assert_eq!(
            load_balancer_dimension(lb),
            Some("app/shop-alb/50dc6c495c0c9188")
        );
        assert_eq!(target_group_dimension("nonsense"), None);
    }
}
