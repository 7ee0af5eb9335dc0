//! The plan file exactly as written: the TOML schema, with source spans kept on every
//! value that a semantic check may point at. Unknown keys are refused here (serde's
//! `deny_unknown_fields`), so a typo never silently falls back to a default.
//!
//! Values with a fixed set of choices and durations are kept as text so that
//! `validate.rs` can report every bad one at once, with suggestions.

use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub type S<T> = Spanned<T>;

/// Keys allowed at the top level (messages use it to spot a key under the wrong header).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "app",
    "environment",
    "production",
    "region",
    "endpoint_url",
    "cluster",
    "state",
    "blue",
    "green",
    "traffic",
    "database",
    "deploy",
    "migration",
    "contract",
    "read_only",
    "assets",
    "steps",
    "gates",
    "smoke",
    "rollback",
    "companions",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub app: S<String>,
    pub environment: S<String>,
    pub production: Option<S<bool>>,
    pub region: S<String>,
    pub endpoint_url: Option<S<String>>,
    pub cluster: S<String>,
    pub state: S<RawState>,
    pub blue: S<RawColour>,
    pub green: S<RawColour>,
    pub traffic: S<RawTraffic>,
    pub database: S<RawDatabase>,
    pub deploy: S<RawDeploy>,
    pub migration: Option<S<RawMigration>>,
    pub contract: Option<S<RawContract>>,
    pub read_only: Option<S<RawReadOnly>>,
    pub assets: Option<S<RawAssets>>,
    pub steps: S<Vec<S<RawStep>>>,
    pub gates: Option<S<RawGates>>,
    pub smoke: Option<S<RawSmoke>>,
    pub rollback: Option<S<RawRollback>>,
    /// `[[companions]]`: services beside the blue/green pair that take the release's image.
    pub companions: Option<S<Vec<S<RawCompanion>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompanion {
    pub name: S<String>,
    pub service: Option<S<String>>,
    pub container: S<String>,
    pub image: Option<S<String>>,
    #[serde(default)]
    pub depends_on: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub bucket: S<String>,
    pub prefix: Option<S<String>>,
    pub lease: Option<S<DurationText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColour {
    pub service: S<String>,
    pub target_group: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    pub listener: S<String>,
    pub rule_arn: Option<S<String>>,
    pub test_listener: Option<S<String>>,
    pub test_url: Option<S<String>>,
}

/// Exactly one of `instance` / `cluster` (checked in validation, with a span).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub instance: Option<S<String>>,
    pub cluster: Option<S<String>>,
    pub snapshot_timeout: Option<S<DurationText>>,
    pub keep_snapshots: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    pub container: S<String>,
    pub image: S<String>,
    pub timeout: Option<S<DurationText>>,
    /// When `[[companions]]` move: before_shift, after_first_gate, at_finalize.
    pub companions_move: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigration {
    pub container: Option<S<String>>,
    pub command: S<Vec<S<String>>>,
    pub timeout: Option<S<DurationText>>,
    #[serde(default)]
    pub subnets: Vec<S<String>>,
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
    pub assign_public_ip: Option<bool>,
    pub watch: Option<S<DurationText>>,
    /// Run the task once per shard, in this order, with `SHARD=<name>`.
    pub shards: Option<S<Vec<S<String>>>>,
}

/// `[contract]`: the migration that removes what the old version still needed; the same
/// shape as `[migration]` plus `after`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContract {
    pub container: Option<S<String>>,
    pub command: S<Vec<S<String>>>,
    pub timeout: Option<S<DurationText>>,
    #[serde(default)]
    pub subnets: Vec<S<String>>,
    #[serde(default)]
    pub security_groups: Vec<S<String>>,
    pub assign_public_ip: Option<bool>,
    pub after: Option<S<DurationText>>,
}

/// `[read_only]`: local commands that put the app into and out of read-only mode around
/// the migration task. Both commands are optional here so validation can say which is missing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadOnly {
    pub enter: Option<S<Vec<S<String>>>>,
    pub exit: Option<S<Vec<S<String>>>>,
    pub max: Option<S<DurationText>>,
    pub timeout: Option<S<DurationText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssets {
    pub dir: S<String>,
    pub bucket: S<String>,
    pub prefix: Option<S<String>>,
    pub layout: Option<S<String>>,
    pub retention: Option<S<i64>>,
    pub cache_control: Option<S<String>>,
    pub entry_cache_control: Option<S<String>>,
    #[serde(default)]
    pub include: Vec<S<String>>,
    #[serde(default)]
    pub exclude: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub weight: S<i64>,
    pub bake: S<DurationText>,
    pub gate: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGates {
    pub poll_interval: Option<S<DurationText>>,
    pub max_blind: Option<S<DurationText>>,
    pub approval_timeout: Option<S<DurationText>>,
    pub min_requests: Option<S<i64>>,
    pub error_rate_floor: Option<S<f64>>,
    pub error_rate_margin: Option<S<f64>>,
    pub latency_factor: Option<S<f64>>,
    pub latency_stat: Option<S<String>>,
    #[serde(default)]
    pub alarms: Vec<S<String>>,
    pub on_fail: Option<S<String>>,
    pub statistical: Option<bool>,
    pub confidence: Option<S<f64>>,
    // The sequential gate (docs/plan.md, "[gates]").
    pub mode: Option<S<String>>,
    pub alpha: Option<S<f64>>,
    pub error_tolerance: Option<S<f64>>,
    pub error_tolerance_abs: Option<S<f64>>,
    pub latency_tolerance: Option<S<f64>>,
    pub catastrophic_error_rate: Option<S<f64>>,
    pub catastrophic_min_requests: Option<S<i64>>,
    pub metric_period: Option<S<DurationText>>,
    pub metric_delay: Option<S<DurationText>>,
    pub max_wait: Option<S<DurationText>>,
    pub on_no_data: Option<S<String>>,
    pub weight_settle: Option<S<DurationText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmoke {
    pub command: S<Vec<S<String>>>,
    pub timeout: Option<S<DurationText>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    pub green: Option<S<String>>,
}

/// A duration as written: normally text (`"90s"`), but a bare number is kept too so the
/// check can say "add a unit" instead of a generic type error.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationText {
    Text(String),
    Number(String),
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"90s\", \"5m\" or \"1h30m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText::Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationText, E> {
                Ok(DurationText::Number(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText::Number(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationText, E> {
                Ok(DurationText::Number(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
