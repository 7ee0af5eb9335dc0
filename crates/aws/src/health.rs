//! `ports::Health` over ELBv2 and CloudWatch: one poll = one `DescribeTargetHealth` per
//! target group, one `GetMetricData` for every metric of both colours, and one
//! `DescribeAlarms` for the plan's alarms (none when the plan names none), all at once.
//!
//! Periods (`poll`, what the bake uses). ALB metrics are standard resolution: one datapoint
//! per `gates.metric_period` (60 s), published a minute or two late and sometimes revised.
//! So a poll never asks for "the last few seconds": it asks for period-aligned windows with
//! `Period = metric_period`, only for periods whose end is at least `gates.metric_delay` in
//! the past, and an instance remembers which periods it reported ([`PeriodBook`]). What the
//! gate sees:
//! - each complete period exactly once, as a sample of that period's counts and statistics
//!   (with the poll's target counts and alarm states);
//! - late data: the last few complete periods are read again on every poll; counts that grew
//!   come as a *correction* carrying only the added requests/5xx (no latency, no bake time);
//! - a period with no datapoint for either colour is "no data yet" until its end is
//!   `metric_delay` + grace (another `metric_delay`, at least a period) in the past, then an
//!   observed empty period: zero requests, which the gate reads as not enough data.
//!
//! `sample(window)` remains for ad-hoc readings (tests, diagnostics): the window ending now.
//!
//! Metrics (namespace `AWS/ApplicationELB`, dimensions `TargetGroup` + `LoadBalancer`):
//! `RequestCount`, `HTTPCode_Target_5XX_Count`, `HTTPCode_ELB_5XX_Count` (Sum),
//! `TargetResponseTime` (Average, p95 and SampleCount, the latter to weigh periods).
//!
//! Caveats on real AWS:
//! - `HTTPCode_ELB_5XX_Count` is published per load balancer, not per target group, so the
//!   per-colour query usually returns nothing there (the stage does write it per group).
//!   The gate does not blame ELB 5xx on a colour, so this is informational only.
//! - `metric_period` must be one CloudWatch stores: 60 s (or whole minutes) for ALB metrics;
//!   1–30 s only exists for high-resolution metrics (the rehearsal stage writes those). A
//!   `poll_interval` of about half a period (30 s) sees each period soon after it is due.
//!
//! Throttling and transient failures are retried by the SDK with a short, bounded backoff;
//! a poll that still cannot observe returns `PortError::Transient` (classified by
//! `errors::classify`, like every adapter), which the engine records as blind time.

use super::errors::classify;
use super::{load_balancer_dimension, target_group_dimension, Resolved};
use crate::engine::periods::{period_sample, PeriodBook, PeriodMetrics, Timing};
use crate::engine::ports::{Health, Poll, PortError, PortResult, Preflight};
use crate::gate::{AlarmState, ColourSample, HealthSample};
use crate::plan::GateConfig;
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use aws_types::SdkConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NAMESPACE: &str = "AWS/ApplicationELB";
/// Retries per call (including the first attempt) and their backoff: a poll gives up within
/// a couple of seconds, so an outage shows as blind time instead of a stuck cockpit.
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);

/// The health port for one release: both colours' target groups on one load balancer.
#[derive(Debug, Clone)]
pub struct AwsHealth {
    elb: aws_sdk_elasticloadbalancingv2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    blue_arn: String,
    green_arn: String,
    load_balancer_arn: String,
    alarms: Vec<String>,
    /// Periods reported by this instance (shared by clones: one release, one book).
    book: Arc<Mutex<PeriodBook>>,
}

impl AwsHealth {
    pub fn new(config: &SdkConfig, resolved: &Resolved, gates: &GateConfig) -> Self {
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(INITIAL_BACKOFF)
            .with_max_backoff(MAX_BACKOFF);
        let timeout = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(config)
            .retry_config(retry.clone())
            .timeout_config(timeout.clone())
            .build();
        let cloudwatch = aws_sdk_cloudwatch::config::Builder::from(config)
            .retry_config(retry)
            .timeout_config(timeout)
            .build();
        AwsHealth {
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch),
            blue_arn: resolved.blue_target_group_arn.clone(),
            green_arn: resolved.green_target_group_arn.clone(),
            load_balancer_arn: resolved.load_balancer_arn.clone(),
            alarms: gates.alarms.clone(),
            book: Arc::new(Mutex::new(PeriodBook::new(Timing::new(
                gates.metric_period,
                gates.metric_delay,
            )))),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, PeriodBook> {
        // The book is plain data; a panic elsewhere cannot leave it half-updated.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Target counts of one target group.
    async fn targets(&self, arn: &str) -> PortResult<(u32, u32, u32)> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| {
                classify(
                    "elbv2:DescribeTargetHealth",
                    &format!("target group {arn}"),
                    e,
                )
            })?;
        let (mut healthy, mut unhealthy, mut other) = (0, 0, 0);
        for d in out.target_health_descriptions() {
            match d.target_health().and_then(|h| h.state()) {
                Some(TargetHealthStateEnum::Healthy) => healthy += 1,
                Some(
                    TargetHealthStateEnum::Unhealthy | TargetHealthStateEnum::UnhealthyDraining,
                ) => unhealthy += 1,
                _ => other += 1,
            }
        }
        Ok((healthy, unhealthy, other))
    }

    /// Every metric of both colours over `[start, end)`, in one GetMetricData (more calls
    /// only if CloudWatch pages the answer, which a handful of datapoints never needs).
    async fn metrics(&self, window: &Window) -> PortResult<Series> {
        let lb =
            load_balancer_dimension(&self.load_balancer_arn).ok_or_else(|| PortError::Fatal {
                operation: "cloudwatch:GetMetricData".into(),
                message: format!(
                    "`{}` is not a load balancer ARN (expected …:loadbalancer/app/<name>/<id>)",
                    self.load_balancer_arn
                ),
            })?;
        let mut queries = Vec::new();
        for (prefix, arn) in [("b", &self.blue_arn), ("g", &self.green_arn)] {
            let tg = target_group_dimension(arn).ok_or_else(|| PortError::Fatal {
                operation: "cloudwatch:GetMetricData".into(),
                message: format!(
                    "`{arn}` is not a target group ARN (expected …:targetgroup/<name>/<id>)"
                ),
            })?;
            for q in QUERIES {
                queries.push(query(prefix, q, tg, lb, window.period));
            }
        }
        let mut series = Series::default();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .cloudwatch
                .get_metric_data()
                .start_time(aws_smithy_types::DateTime::from_secs(window.start))
                .end_time(aws_smithy_types::DateTime::from_secs(window.end))
                .scan_by(ScanBy::TimestampAscending)
                .set_metric_data_queries(Some(queries.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify("cloudwatch:GetMetricData", "ALB metrics", e))?;
            for r in out.metric_data_results() {
                let Some(id) = r.id() else { continue };
                let entry = series.0.entry(id.to_string()).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    entry.push((t.secs(), *v));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(series)
    }

    /// Target counts of both colours and alarm states, at once; the most actionable error.
    async fn instant(&self) -> PortResult<((u32, u32, u32), (u32, u32, u32), Vec<AlarmState>)> {
        let (blue, green, alarms) = tokio::join!(
            self.targets(&self.blue_arn),
            self.targets(&self.green_arn),
            self.alarm_states(),
        );
        Ok((blue?, green?, alarms?))
    }

    /// States of the plan's alarms, in the plan's order. An alarm the account does not have
    /// is reported as `MISSING` (it never fails the gate; `plan check` should catch it).
    pub async fn alarm_states(&self) -> PortResult<Vec<AlarmState>> {
        if self.alarms.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: HashMap<String, String> = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(self.alarms.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| {
                    classify(
                        "cloudwatch:DescribeAlarms",
                        &format!("alarms {}", self.alarms.join(", ")),
                        e,
                    )
                })?;
            for a in out.metric_alarms() {
                if let (Some(n), Some(s)) = (a.alarm_name(), a.state_value()) {
                    found.insert(n.to_string(), s.as_str().to_string());
                }
            }
            for a in out.composite_alarms() {
                if let (Some(n), Some(s)) = (a.alarm_name(), a.state_value()) {
                    found.insert(n.to_string(), s.as_str().to_string());
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(self
            .alarms
            .iter()
            .map(|name| AlarmState {
                name: name.clone(),
                state: found.get(name).cloned().unwrap_or_else(|| MISSING.into()),
            })
            .collect())
    }
}

#[async_trait]
impl Health for AwsHealth {
    async fn sample(&self, window: Duration) -> PortResult<HealthSample> {
        let w = Window::ending_now(window);
        let (blue, green, metrics, alarms) = tokio::join!(
            self.targets(&self.blue_arn),
            self.targets(&self.green_arn),
            self.metrics(&w),
            self.alarm_states(),
        );
        // Report the most actionable failure: a missing group or bad config before a blip.
        let errors: Vec<PortError> = [
            blue.as_ref().err(),
            green.as_ref().err(),
            metrics.as_ref().err(),
            alarms.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        if let Some(e) = errors
            .iter()
            .find(|e| !e.is_transient())
            .or_else(|| errors.first())
        {
            return Err(e.clone());
        }
        let (Ok(blue), Ok(green), Ok(metrics), Ok(alarms)) = (blue, green, metrics, alarms) else {
            // Unreachable: every error was returned above.
            return Err(PortError::Transient {
                operation: "health poll".into(),
                message: "incomplete poll".into(),
            });
        };
        Ok(HealthSample {
            blue: metrics.colour("b", blue),
            green: metrics.colour("g", green),
            alarms,
        })
    }

    async fn poll(&self) -> PortResult<Poll> {
        let now = unix_now();
        let (window, period) = {
            let book = self.book();
            (book.window(now), book.timing().period)
        };
        let fetch = async {
            match window {
                Some((start, end)) => self
                    .metrics(&Window {
                        start,
                        end,
                        period: period as i32,
                    })
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (instant, metrics) = tokio::join!(self.instant(), fetch);
        // Report the most actionable failure: a missing group or bad config before a blip.
        let (instant, metrics) = match (instant, metrics) {
            (Ok(i), Ok(m)) => (i, m),
            (Err(a), Err(b)) if a.is_transient() => return Err(b),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let ((blue, green, alarms), series) = (instant, metrics);
        let instant = HealthSample {
            blue: Series::default().colour("b", blue),
            green: Series::default().colour("g", green),
            alarms,
        };
        let data = series.map(|s| s.periods()).unwrap_or_default();
        let reported = self.book().take(now, &data);
        Ok(Poll {
            at: now,
            periods: reported
                .into_iter()
                .map(|r| period_sample(&instant, r, period))
                .collect(),
            now: instant,
        })
    }

    async fn preflight(&self) -> PortResult<Preflight> {
        // The latest few complete periods: any answer (even empty) proves the metrics are
        // readable for both target groups.
        let period = self.book().timing().period;
        let end = Timing::new(Duration::from_secs(period as u64), Duration::ZERO)
            .complete_end(unix_now());
        let window = Window {
            start: end - 5 * period,
            end,
            period: period as i32,
        };
        let (metrics, alarms) = tokio::join!(self.metrics(&window), self.alarm_states());
        metrics?;
        Ok(Preflight {
            missing_alarms: alarms?
                .into_iter()
                .filter(|a| a.state == MISSING)
                .map(|a| a.name)
                .collect(),
        })
    }
}

/// The state reported for an alarm the account does not have.
/// The state reported for an alarm the account does not have.
pub const MISSING: &str = "MISSING";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What each query asks for: (id suffix, metric, statistic).
const QUERIES: [(&str, &str, &str); 6] = [
    ("req", "RequestCount", "Sum"),
    ("t5xx", "HTTPCode_Target_5XX_Count", "Sum"),
    ("e5xx", "HTTPCode_ELB_5XX_Count", "Sum"),
    ("avg", "TargetResponseTime", "Average"),
    ("p95", "TargetResponseTime", "p95"),
    ("n", "TargetResponseTime", "SampleCount"),
];

fn query(
    prefix: &str,
    (id, metric, stat): (&str, &str, &str),
    tg: &str,
    lb: &str,
    period: i32,
) -> MetricDataQuery {
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    MetricDataQuery::builder()
        .id(format!("{prefix}_{id}"))
        .return_data(true)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(NAMESPACE)
                        .metric_name(metric)
                        .dimensions(dimension("TargetGroup", tg))
                        .dimensions(dimension("LoadBalancer", lb))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

/// The query window: whole seconds `[start, end)` ending at the last whole second, so
/// consecutive polls tile time without gaps or double counting, and `period` divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub period: i32,
}

impl Window {
    fn ending_now(window: Duration) -> Window {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Window::ending_at(now, window)
    }

    pub fn ending_at(end_secs: i64, window: Duration) -> Window {
        let secs = window_secs(window);
        Window {
            start: end_secs - secs,
            end: end_secs,
            period: period_for(secs),
        }
    }
}

/// The poll window in whole seconds (at least 1).
fn window_secs(window: Duration) -> i64 {
    (window.as_secs_f64().round() as i64).max(1)
}

/// The CloudWatch period for a window of `secs` seconds: the largest period CloudWatch
/// accepts (1, 5, 10, 30 s high resolution, then multiples of 60) that divides the window,
/// so every period lies wholly inside it. A 1 s poll gets one 1 s datapoint; a 60 s poll
/// one 60 s datapoint; a 90 s poll three 30 s datapoints, aggregated by [`Series`].
pub fn period_for(secs: i64) -> i32 {
    if secs >= 60 && secs % 60 == 0 {
        return 60;
    }
    [30, 10, 5, 1]
        .into_iter()
        .find(|p| secs % i64::from(*p) == 0)
        .unwrap_or(1)
}

/// Datapoints by query id: (timestamp seconds, value).
#[derive(Debug, Default)]
struct Series(HashMap<String, Vec<(i64, f64)>>);

impl Series {
    fn sum(&self, id: &str) -> f64 {
        self.0
            .get(id)
            .map(|v| v.iter().map(|p| p.1).sum())
            .unwrap_or(0.0)
    }

    /// Mean of a per-period statistic, each period weighted by its SampleCount (periods
    /// without a count weigh 1). Exact for Average; for p95 an approximation — with one
    /// period per window (the usual case) it is exact too.
    fn weighted(&self, id: &str, counts: &str) -> Option<f64> {
        let values = self.0.get(id)?;
        let weights: HashMap<i64, f64> = self
            .0
            .get(counts)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default();
        let (mut sum, mut total) = (0.0, 0.0);
        for (t, v) in values.iter().filter(|p| p.1.is_finite()) {
            let w = weights.get(t).copied().filter(|w| *w > 0.0).unwrap_or(1.0);
            sum += v * w;
            total += w;
        }
        (total > 0.0).then(|| sum / total)
    }

    /// Datapoints regrouped by period start: one [`PeriodMetrics`] per period in which any
    /// query of either colour has a datapoint.
    fn periods(&self) -> BTreeMap<i64, PeriodMetrics> {
        let mut by_start: BTreeMap<i64, Series> = BTreeMap::new();
        for (id, points) in &self.0 {
            for (t, v) in points {
                by_start
                    .entry(*t)
                    .or_default()
                    .0
                    .entry(id.clone())
                    .or_default()
                    .push((*t, *v));
            }
        }
        by_start
            .into_iter()
            .map(|(t, s)| {
                let m = PeriodMetrics {
                    blue: s.colour("b", (0, 0, 0)),
                    green: s.colour("g", (0, 0, 0)),
                };
                (t, m)
            })
            .collect()
    }

    fn colour(&self, p: &str, (healthy, unhealthy, other): (u32, u32, u32)) -> ColourSample {
        let id = |s: &str| format!("{p}_{s}");
        let secs_to_ms = |v: f64| v * 1000.0;
        ColourSample {
            healthy,
            unhealthy,
            other,
            requests: self.sum(&id("req")),
            errors_5xx: self.sum(&id("t5xx")),
            elb_5xx: self.sum(&id("e5xx")),
            latency_avg_ms: self.weighted(&id("avg"), &id("n")).map(secs_to_ms),
            latency_p95_ms: self.weighted(&id("p95"), &id("n")).map(secs_to_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_divide_the_window() {
        assert_eq!(period_for(1), 1);
        assert_eq!(period_for(3), 1);
        assert_eq!(period_for(5), 5);
        assert_eq!(period_for(15), 5);
        assert_eq!(period_for(20), 10);
        assert_eq!(period_for(30), 30);
        assert_eq!(period_for(45), 5);
        assert_eq!(period_for(60), 60);
        assert_eq!(period_for(90), 30);
        assert_eq!(period_for(300), 60);
        for secs in 1..400 {
            let p = i64::from(period_for(secs));
            assert_eq!(secs % p, 0, "{secs}");
            assert!([1, 5, 10, 30, 60].contains(&p));
        }
    }

    #[test]
    fn windows_tile_whole_seconds() {
        let w = Window::ending_at(1000, Duration::from_millis(1400));
        assert_eq!((w.start, w.end, w.period), (999, 1000, 1));
        let w = Window::ending_at(1000, Duration::from_millis(100));
        assert_eq!((w.start, w.end), (999, 1000), "never an empty window");
        let w = Window::ending_at(1000, Duration::from_secs(60));
        assert_eq!((w.start, w.period), (940, 60));
    }

    #[test]
    fn series_regroup_by_period_start() {
        let mut s = Series::default();
        s.0.insert("b_req".into(), vec![(60, 100.0), (120, 90.0)]);
        s.0.insert("g_req".into(), vec![(120, 10.0)]);
        s.0.insert("g_t5xx".into(), vec![(120, 1.0)]);
        s.0.insert("g_avg".into(), vec![(120, 0.05)]);
        let p = s.periods();
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), vec![60, 120]);
        assert_eq!((p[&60].blue.requests, p[&60].green.requests), (100.0, 0.0));
        let g = &p[&120].green;
        assert_eq!((g.requests, g.errors_5xx), (10.0, 1.0));
        assert!((g.latency_avg_ms.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(p[&60].green.latency_avg_ms, None);
    }

    #[test]
    fn series_aggregate_periods() {
        let mut s = Series::default();
        s.0.insert("g_req".into(), vec![(1, 10.0), (2, 30.0)]);
        s.0.insert("g_t5xx".into(), vec![(1, 1.0), (2, 2.0)]);
        s.0.insert("g_avg".into(), vec![(1, 0.1), (2, 0.2)]);
        s.0.insert("g_p95".into(), vec![(1, 0.3)]);
        s.0.insert("g_n".into(), vec![(1, 1.0), (2, 3.0)]);
        let c = s.colour("g", (2, 1, 0));
        assert_eq!((c.healthy, c.unhealthy), (2, 1));
        assert_eq!(c.requests, 40.0);
        assert_eq!(c.errors_5xx, 3.0);
        assert_eq!(c.elb_5xx, 0.0);
        // (0.1*1 + 0.2*3) / 4 = 0.175 s
        assert!((c.latency_avg_ms.unwrap() - 175.0).abs() < 1e-9);
        assert!((c.latency_p95_ms.unwrap() - 300.0).abs() < 1e-9);
        // No data at all: no latency, zero counts.
        let b = s.colour("b", (0, 0, 0));
        assert_eq!(b.requests, 0.0);
        assert_eq!(b.latency_avg_ms, None);
    }
}
