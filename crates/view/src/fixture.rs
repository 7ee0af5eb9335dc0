//! Recorded event sequences for the views' tests, benchmarks and demos.
//!
//! A [`Script`] is a clock plus a list of envelopes: `at(secs)` moves the clock, `push`
//! records an event at the current time. Helpers add the common shapes (a phase that ran,
//! a health poll). Nothing here talks to AWS or the engine.

use crate::engine::event::{ColourName, Envelope, Event, Phase, PhaseStatus};
use crate::gate::{AlarmState, ColourSample, HealthSample, Verdict};
use crate::plan::{
    AssetLayout, AssetsConfig, Colour, DatabaseConfig, DatabaseKind, DeployConfig, GateConfig,
    GateMode, GreenAfterRollback, LatencyStat, MigrationConfig, OnGateFail, Plan, RollbackConfig,
    StateConfig, Step, TrafficConfig,
};
use chrono::{DateTime, TimeZone, Utc};
use std::path::PathBuf;
use std::time::Duration;

/// A release's events on a controllable clock.
#[derive(Debug, Clone)]
pub struct Script {
    release: String,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    events: Vec<Envelope>,
}

impl Script {
    /// Starts at 2025-06-03 12:04:00 UTC, so rendered clocks are stable.
    pub fn new(release: &str) -> Self {
        let start = Utc
            .with_ymd_and_hms(2025, 6, 3, 12, 4, 0)
            .single()
            .unwrap_or_else(Utc::now);
        Script {
            release: release.to_string(),
            start,
            now: start,
            events: Vec::new(),
        }
    }

    /// Move the clock to `secs` after the start (never backwards).
    pub fn at(&mut self, secs: f64) -> &mut Self {
        let t = self.start + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        if t > self.now {
            self.now = t;
        }
        self
    }

    /// Move the clock forward by `secs`.
    pub fn wait(&mut self, secs: f64) -> &mut Self {
        self.now += chrono::Duration::milliseconds((secs * 1000.0) as i64);
        self
    }

    pub fn push(&mut self, event: Event) -> &mut Self {
        self.events.push(Envelope {
            ts: self.now,
            release: self.release.clone(),
            event,
        });
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn events(&self) -> &[Envelope] {
        &self.events
    }

    pub fn into_events(self) -> Vec<Envelope> {
        self.events
    }

    /// `ReleaseStarted` for the sample plan (blue live, green released to).
    pub fn started(&mut self, plan: &Plan, version: &str) -> &mut Self {
        self.push(Event::ReleaseStarted {
            app: plan.app.clone(),
            environment: plan.environment.clone(),
            version: version.to_string(),
            production: plan.production,
            live: ColourName::Blue,
            target: ColourName::Green,
            endpoint: plan.endpoint_url.clone(),
            region: plan.region.clone(),
            resumed: false,
            rollback: false,
        })
    }

    /// A phase that started now and finished `secs` later.
    pub fn phase(&mut self, phase: Phase, secs: f64, detail: Option<&str>) -> &mut Self {
        self.push(Event::PhaseStarted { phase });
        self.wait(secs);
        self.finish(phase, PhaseStatus::Done, secs, detail)
    }

    pub fn finish(
        &mut self,
        phase: Phase,
        status: PhaseStatus,
        secs: f64,
        detail: Option<&str>,
    ) -> &mut Self {
        self.push(Event::PhaseFinished {
            phase,
            status,
            detail: detail.map(str::to_string),
            duration_ms: (secs * 1000.0) as u64,
        })
    }

    /// A health poll.
    pub fn health(
        &mut self,
        blue: ColourSample,
        green: ColourSample,
        verdict: Verdict,
        baked_s: f64,
        bake_s: f64,
    ) -> &mut Self {
        self.push(Event::Health {
            sample: HealthSample {
                blue,
                green,
                alarms: vec![
                    AlarmState {
                        name: "shop-5xx".into(),
                        state: "OK".into(),
                    },
                    AlarmState {
                        name: "shop-p95".into(),
                        state: "OK".into(),
                    },
                ],
            },
            verdict,
            baked_s,
            bake_s,
        })
    }
}

/// A colour's poll: `targets` healthy, `requests` in the window, a 5xx rate and latency.
pub fn sample(targets: u32, requests: f64, error_rate: f64, p95_ms: f64) -> ColourSample {
    ColourSample {
        healthy: targets,
        unhealthy: 0,
        other: 0,
        requests,
        errors_5xx: (requests * error_rate).round(),
        elb_5xx: 0.0,
        latency_avg_ms: Some(p95_ms * 0.6),
        latency_p95_ms: Some(p95_ms),
    }
}

/// A resolved plan shaped like `examples/rehearsal.toml`: steps 10% (auto), 50% (manual),
/// 100% (auto); a migration; assets.
pub fn sample_plan(production: bool) -> Plan {
    let environment = if production { "production" } else { "staging" };
    Plan {
        source: PathBuf::from(format!("plans/shop-{environment}.toml")),
        digest: "0".repeat(64),
        app: "shop".into(),
        environment: environment.into(),
        production,
        region: "eu-west-1".into(),
        endpoint_url: (!production).then(|| "http://127.0.0.1:4566".to_string()),
        state: StateConfig {
            bucket: "shop-release-state".into(),
            prefix: format!("glidepath/shop/{environment}"),
            lease: Duration::from_secs(300),
        },
        cluster: "shop".into(),
        blue: Colour {
            service: "shop-blue".into(),
            target_group: "shop-blue".into(),
        },
        green: Colour {
            service: "shop-green".into(),
            target_group: "shop-green".into(),
        },
        traffic: TrafficConfig {
            listener: "shop-alb:443".into(),
            rule_arn: None,
            test_listener: None,
            test_url: None,
        },
        database: DatabaseConfig {
            kind: DatabaseKind::Instance,
            id: "shop-db".into(),
            snapshot_timeout: Duration::from_secs(1800),
            keep_snapshots: None,
        },
        deploy: DeployConfig {
            container: "web".into(),
            image: "registry.example/shop:{version}".into(),
            timeout: Duration::from_secs(600),
        },
        migration: Some(MigrationConfig {
            container: "web".into(),
            command: vec!["bin/migrate".into()],
            timeout: Duration::from_secs(900),
            subnets: vec!["subnet-1".into()],
            security_groups: vec!["sg-1".into()],
            assign_public_ip: false,
            watch: Duration::from_secs(180),
            shards: vec![],
        }),
        contract: None,
        read_only: None,
        assets: Some(AssetsConfig {
            dir: PathBuf::from("public"),
            bucket: "shop-assets".into(),
            prefix: "assets".into(),
            layout: AssetLayout::Versioned,
            retention: 5,
            cache_control: "public, max-age=31536000, immutable".into(),
            entry_cache_control: "no-cache".into(),
            include: vec![],
            exclude: vec![],
        }),
        steps: vec![
            Step {
                weight: 10,
                bake: Duration::from_secs(60),
                gate: GateMode::Auto,
            },
            Step {
                weight: 50,
                bake: Duration::from_secs(120),
                gate: GateMode::Manual,
            },
            Step {
                weight: 100,
                bake: Duration::from_secs(60),
                gate: GateMode::Auto,
            },
        ],
        gates: GateConfig {
            poll_interval: Duration::from_secs(10),
            max_blind: Duration::from_secs(60),
            approval_timeout: Duration::from_secs(3600),
            min_requests: 50,
            error_rate_floor: 0.01,
            error_rate_margin: 0.01,
            latency_factor: 1.5,
            latency_stat: LatencyStat::P95,
            alarms: vec!["shop-5xx".into(), "shop-p95".into()],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: 0.95,
            sequential: crate::plan::SequentialConfig::default(),
            metric_period: Duration::from_secs(60),
            metric_delay: Duration::from_secs(120),
            weight_settle: Duration::from_secs(10),
        },
        smoke: None,
        rollback: RollbackConfig {
            green: GreenAfterRollback::Keep,
        },
        companions: Vec::new(),
        companions_move: crate::plan::CompanionsMove::AfterFirstGate,
    }
}
