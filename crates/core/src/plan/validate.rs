//! Semantic checks and resolution: raw plan → [`Plan`]. Every problem is collected (with
//! its span) so an operator fixes a plan in one pass, not one error per run.

use super::diag::{suggest, Diag};
use super::names::{self, Check, Problem};
use super::raw::{DurationText, RawPlan, S};
use super::*;
use super::{duration, endpoint};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// Defaults for optional keys (docs/plan.md lists the same values).
pub mod defaults {
    use std::time::Duration;
    pub const LEASE: Duration = Duration::from_secs(300);
    pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1800);
    pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
    pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(900);
    /// `migration.watch` when not given: this many metric periods.
    pub const MIGRATION_WATCH_PERIODS: u32 = 3;
    pub const CONTRACT_AFTER: Duration = Duration::from_secs(24 * 3600);
    pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const READ_ONLY_TIMEOUT: Duration = Duration::from_secs(60);
    pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
    pub const MAX_BLIND: Duration = Duration::from_secs(60);
    pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(3600);
    pub const MIN_REQUESTS: u64 = 50;
    pub const ERROR_RATE_FLOOR: f64 = 0.01;
    pub const ERROR_RATE_MARGIN: f64 = 0.005;
    pub const LATENCY_FACTOR: f64 = 1.5;
    pub const CONFIDENCE: f64 = 0.95;
    pub const ALPHA: f64 = 0.01;
    pub const ERROR_TOLERANCE: f64 = 1.25;
    pub const ERROR_TOLERANCE_ABS: f64 = 0.002;
    pub const LATENCY_TOLERANCE: f64 = 1.1;
    pub const CATASTROPHIC_ERROR_RATE: f64 = 0.2;
    pub const CATASTROPHIC_MIN_REQUESTS: u64 = 50;
    pub const METRIC_PERIOD: Duration = Duration::from_secs(60);
    pub const MAX_WAIT: Duration = Duration::from_secs(600);
    pub const METRIC_DELAY: Duration = Duration::from_secs(120);
    pub const WEIGHT_SETTLE: Duration = Duration::from_secs(10);
    pub const RETENTION: u32 = 5;
    pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
    pub const ENTRY_CACHE_CONTROL: &str = "public, max-age=60, must-revalidate";
}

pub(super) struct Checker {
    diags: Vec<Diag>,
}

impl Checker {
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diags.push(Diag::at(span, message));
    }

    pub(super) fn error_hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diag::at(span, message).hint(hint));
    }

    fn problem(&mut self, span: Range<usize>, p: Problem) {
        self.diags
            .push(Diag::at(span, p.message).maybe_hint(p.hint));
    }

    /// Run a shape check on a spanned string; the string is returned either way.
    pub(super) fn check(&mut self, v: &S<String>, f: impl FnOnce(&str) -> Check) -> String {
        if let Err(p) = f(v.get_ref()) {
            self.problem(v.span(), p);
        }
        v.get_ref().clone()
    }

    fn non_empty(&mut self, v: &S<String>, key: &str) -> String {
        if v.get_ref().trim().is_empty() {
            self.error(v.span(), format!("`{key}` must not be empty"));
        }
        v.get_ref().clone()
    }

    /// An ARN's region must be the plan's: the SDK clients are built for one region.
    fn same_region(&mut self, span: Range<usize>, key: &str, arn_region: &str, plan_region: &str) {
        if arn_region != plan_region {
            self.error_hint(
                span,
                format!("`{key}` is in region {arn_region}, but the plan's region is {plan_region}"),
                "every resource of a release must be in the plan's `region`; fix the ARN or the region",
            );
        }
    }

    fn duration(&mut self, v: Option<&S<DurationText>>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match v.get_ref() {
            DurationText::Text(t) => match duration::parse(t) {
                Ok(d) => d,
                Err(e) => {
                    self.error_hint(v.span(), format!("`{key}`: {}", e.message), e.hint);
                    default
                }
            },
            DurationText::Number(n) => {
                self.error_hint(
                    v.span(),
                    format!("`{key}` = {n} has no unit"),
                    format!("durations are text with a unit: \"{n}s\" for seconds, \"{n}m\" for minutes"),
                );
                default
            }
        }
    }

    fn positive(&mut self, v: Option<&S<DurationText>>, key: &str, default: Duration) -> Duration {
        let d = self.duration(v, key, default);
        if let (Some(v), true) = (v, d.is_zero()) {
            self.error(v.span(), format!("`{key}` must be longer than 0s"));
        }
        d
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        v: Option<&S<String>>,
        key: &str,
        options: &[(&'static str, T)],
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        if let Some((_, t)) = options.iter().find(|(name, _)| name == v.get_ref()) {
            return *t;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = match suggest(v.get_ref(), &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use one of: {}", names.join(", ")),
        };
        self.error_hint(
            v.span(),
            format!("`{key}` = `{}` is not a known value", v.get_ref()),
            hint,
        );
        default
    }

    fn fraction(
        &mut self,
        v: Option<&S<f64>>,
        key: &str,
        range: (f64, f64),
        default: f64,
        what: &str,
    ) -> f64 {
        let Some(v) = v else { return default };
        let x = *v.get_ref();
        if !(x.is_finite() && x >= range.0 && x <= range.1) {
            self.error_hint(
                v.span(),
                format!("`{key}` = {x} is out of range ({} to {})", range.0, range.1),
                what.to_string(),
            );
            return default;
        }
        x
    }

    fn command(&mut self, v: &S<Vec<S<String>>>, key: &str) -> Vec<String> {
        let words: Vec<String> = v.get_ref().iter().map(|w| w.get_ref().clone()).collect();
        match v.get_ref().first() {
            None => self.error_hint(
                v.span(),
                format!("`{key}` is empty"),
                "give the program and its arguments, e.g. [\"bin/migrate\", \"up\"]",
            ),
            Some(first) if first.get_ref().trim().is_empty() => self.error(
                first.span(),
                format!("`{key}` starts with an empty program name"),
            ),
            Some(_) => {}
        }
        words
    }
}

/// Resolve a raw plan; `path` is where it was read from, `digest` the file's SHA-256.
pub fn resolve(raw: RawPlan, path: &Path, digest: String) -> Result<Plan, Vec<Diag>> {
    let mut c = Checker { diags: Vec::new() };

    let app = c.check(&raw.app, |s| names::simple_name(s, "app name"));
    let environment = c.check(&raw.environment, |s| {
        names::simple_name(s, "environment name")
    });
    let region = c.check(&raw.region, names::region_name);
    let production = raw.production.as_ref().is_some_and(|p| *p.get_ref());

    let endpoint_url = raw.endpoint_url.as_ref().map(|e| {
        let url = e.get_ref().clone();
        if let Err(p) = endpoint::host_port(&url) {
            c.problem(e.span(), p);
        } else if production {
            let why = endpoint::emulator_reason(&url)
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            c.error_hint(
                e.span(),
                format!("a production plan must not set `endpoint_url`{why}"),
                "production releases go to real AWS; remove `endpoint_url` (a private endpoint can be given with --endpoint-url)",
            );
        }
        url
    });

    let cluster = c.check(&raw.cluster, |s| match names::parse_arn(s) {
        Ok(arn) if arn.service == "ecs" && arn.resource.starts_with("cluster/") => Ok(()),
        Ok(_) => Err(Problem {
            message: format!("`{s}` is not an ECS cluster ARN"),
            hint: Some("give the cluster's name, e.g. \"shop\"".into()),
        }),
        Err(_) => names::ecs_name(s, "ECS cluster"),
    });

    // [state]
    let st = raw.state.get_ref();
    let bucket = c.check(&st.bucket, names::bucket_name);
    let prefix = match &st.prefix {
        Some(p) => key_prefix(&mut c, p, "state.prefix"),
        None => format!("glidepath/{app}/{environment}"),
    };
    let lease = c.duration(st.lease.as_ref(), "state.lease", defaults::LEASE);
    if let Some(l) = &st.lease {
        if lease < Duration::from_secs(10) {
            c.error_hint(
                l.span(),
                "`state.lease` is shorter than 10s",
                "a lease that short would expire between renewals; the default is \"5m\"",
            );
        }
    }
    let state = StateConfig {
        bucket,
        prefix,
        lease,
    };

    // [blue] / [green]
    let blue = colour(&mut c, raw.blue.get_ref(), "blue", &region);
    let green = colour(&mut c, raw.green.get_ref(), "green", &region);
    if blue.service == green.service {
        c.error_hint(
            raw.green.get_ref().service.span(),
            format!("blue and green are the same ECS service `{}`", green.service),
            "blue/green needs two services: the live one and the idle one that receives the new version",
        );
    }
    if blue.target_group == green.target_group {
        c.error_hint(
            raw.green.get_ref().target_group.span(),
            format!(
                "blue and green use the same target group `{}`",
                green.target_group
            ),
            "each colour needs its own target group, or the listener cannot weigh them",
        );
    }

    let traffic = traffic(&mut c, raw.traffic.get_ref(), &region);
    let database = database(&mut c, &raw.database);

    // [deploy]
    let d = raw.deploy.get_ref();
    let container = c.check(&d.container, |s| names::ecs_name(s, "container"));
    let image = d.image.get_ref().clone();
    if !image.contains("{version}") {
        c.error_hint(
            d.image.span(),
            format!("`deploy.image` = `{image}` has no `{{version}}` placeholder"),
            "write e.g. \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:{version}\"; glidepath puts the release version there",
        );
    } else if image.contains(char::is_whitespace) {
        c.error(d.image.span(), "`deploy.image` contains whitespace");
    }
    let deploy = DeployConfig {
        container,
        image,
        timeout: c.positive(
            d.timeout.as_ref(),
            "deploy.timeout",
            defaults::DEPLOY_TIMEOUT,
        ),
    };

    let migration = raw.migration.as_ref().map(|m| {
        let m = m.get_ref();
        let task = task(
            &mut c,
            &deploy,
            TaskKeys {
                container: m.container.as_ref(),
                command: &m.command,
                timeout: m.timeout.as_ref(),
                subnets: &m.subnets,
                security_groups: &m.security_groups,
                assign_public_ip: m.assign_public_ip,
            },
            "migration",
        );
        let shards = m
            .shards
            .as_ref()
            .map(|s| shards(&mut c, s))
            .unwrap_or_default();
        (MigrationConfig { shards, ..task }, m.watch.as_ref())
    });
    let contract = raw.contract.as_ref().map(|t| {
        let t = t.get_ref();
        let task = task(
            &mut c,
            &deploy,
            TaskKeys {
                container: t.container.as_ref(),
                command: &t.command,
                timeout: t.timeout.as_ref(),
                subnets: &t.subnets,
                security_groups: &t.security_groups,
                assign_public_ip: t.assign_public_ip,
            },
            "contract",
        );
        ContractConfig {
            task,
            after: c.duration(t.after.as_ref(), "contract.after", defaults::CONTRACT_AFTER),
        }
    });

    let assets = raw
        .assets
        .as_ref()
        .map(|a| assets(&mut c, a.get_ref(), path));
    let steps = steps(&mut c, &raw.steps);
    let gates = gates(&mut c, raw.gates.as_ref().map(|g| g.get_ref()));
    let gates = GateConfig {
        sequential: sequential(
            &mut c,
            raw.gates.as_ref().map(|g| g.get_ref()),
            production,
            gates.metric_period,
        ),
        ..gates
    };

    // The watch's default is counted in metric periods, so it needs the gates first.
    let migration = migration.map(|(task, watch)| MigrationConfig {
        watch: c.duration(
            watch,
            "migration.watch",
            gates.metric_period * defaults::MIGRATION_WATCH_PERIODS,
        ),
        ..task
    });

    let read_only = raw
        .read_only
        .as_ref()
        .map(|r| read_only(&mut c, r, migration.is_some()));
    // The window wraps one migration task; around a sharded migration it would have to span
    // every shard's task (and their resumes), which is not built: refuse rather than leave
    // shards outside the window.
    if let (Some(r), Some(m)) = (raw.read_only.as_ref(), migration.as_ref()) {
        if !m.shards.is_empty() {
            c.error_hint(
                r.span(),
                "`[read_only]` cannot be combined with `migration.shards` yet: the window wraps one migration task",
                "remove [read_only], or run the shards' migration without a read-only window",
            );
        }
    }

    let smoke = raw.smoke.as_ref().map(|s| {
        let s = s.get_ref();
        SmokeConfig {
            command: c.command(&s.command, "smoke.command"),
            timeout: c.positive(s.timeout.as_ref(), "smoke.timeout", defaults::SMOKE_TIMEOUT),
        }
    });

    let rollback = RollbackConfig {
        green: c.choice(
            raw.rollback
                .as_ref()
                .and_then(|r| r.get_ref().green.as_ref()),
            "rollback.green",
            &[
                ("scale_to_zero", GreenAfterRollback::ScaleToZero),
                ("keep", GreenAfterRollback::Keep),
            ],
            GreenAfterRollback::ScaleToZero,
        ),
    };

    let companions = super::companions::resolve(
        &mut c,
        raw.companions.as_ref(),
        &deploy.image,
        [&blue.service, &green.service],
    );
    let companions_move = c.choice(
        d.companions_move.as_ref(),
        "deploy.companions_move",
        &[
            ("before_shift", CompanionsMove::BeforeShift),
            ("after_first_gate", CompanionsMove::AfterFirstGate),
            ("at_finalize", CompanionsMove::AtFinalize),
        ],
        CompanionsMove::AfterFirstGate,
    );

    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    Ok(Plan {
        source: path.to_path_buf(),
        digest,
        app,
        environment,
        production,
        region,
        endpoint_url,
        state,
        cluster,
        blue,
        green,
        traffic,
        database,
        deploy,
        migration,
        contract,
        read_only,
        assets,
        steps,
        gates,
        smoke,
        rollback,
        companions,
        companions_move,
    })
}

/// `[read_only]`: both commands, a positive `max`, and a migration for the window to wrap.
fn read_only(
    c: &mut Checker,
    r: &S<super::raw::RawReadOnly>,
    has_migration: bool,
) -> ReadOnlyConfig {
    let span = r.span();
    let r = r.get_ref();
    if !has_migration {
        c.error_hint(
            span.clone(),
            "`[read_only]` needs a `[migration]`: the window opens right before the migration task and closes after it",
            "add a [migration] table, or remove [read_only]",
        );
    }
    let mut command = |v: Option<&S<Vec<S<String>>>>, key: &str, hint: &str| match v {
        Some(v) => c.command(v, key),
        None => {
            c.error_hint(span.clone(), format!("`{key}` is missing"), hint);
            vec![]
        }
    };
    let enter = command(
        r.enter.as_ref(),
        "read_only.enter",
        "set `enter` to the command that makes the app read-only, e.g. [\"bin/flag\", \"read-only\", \"on\"]",
    );
    let exit = command(
        r.exit.as_ref(),
        "read_only.exit",
        "set `exit` to the command that makes the app writable again; it runs however the window ends",
    );
    let max = match r.max.as_ref() {
        Some(m) => c.positive(Some(m), "read_only.max", Duration::ZERO),
        None => {
            c.error_hint(
                span,
                "`read_only.max` is missing",
                "set how long the app may stay read-only, e.g. max = \"10m\"; a migration still running then stops the release",
            );
            Duration::ZERO
        }
    };
    ReadOnlyConfig {
        enter,
        exit,
        max,
        timeout: c.positive(
            r.timeout.as_ref(),
            "read_only.timeout",
            defaults::READ_ONLY_TIMEOUT,
        ),
    }
}

/// The keys a one-off task (`[migration]`, `[contract]`) has in common.
struct TaskKeys<'a> {
    container: Option<&'a S<String>>,
    command: &'a S<Vec<S<String>>>,
    timeout: Option<&'a S<DurationText>>,
    subnets: &'a [S<String>],
    security_groups: &'a [S<String>],
    assign_public_ip: Option<bool>,
}

/// A one-off task under table `table` (`watch` is set by the caller).
fn task(c: &mut Checker, deploy: &DeployConfig, k: TaskKeys<'_>, table: &str) -> MigrationConfig {
    MigrationConfig {
        container: match k.container {
            Some(name) => c.check(name, |s| names::ecs_name(s, "container")),
            None => deploy.container.clone(),
        },
        command: c.command(k.command, &format!("{table}.command")),
        timeout: c.positive(
            k.timeout,
            &format!("{table}.timeout"),
            defaults::MIGRATION_TIMEOUT,
        ),
        subnets: ids(c, k.subnets, "subnet-", &format!("{table}.subnets")),
        security_groups: ids(
            c,
            k.security_groups,
            "sg-",
            &format!("{table}.security_groups"),
        ),
        assign_public_ip: k.assign_public_ip.unwrap_or(false),
        watch: Duration::ZERO,
        shards: Vec::new(),
    }
}

/// Longest shard name: it goes into the task's environment and its log lines.
const SHARD_NAME_MAX: usize = 64;

/// `migration.shards`: at least one, no repeats, each a short plain word (it becomes the
/// value of `SHARD` and part of messages, so nothing that needs quoting).
fn shards(c: &mut Checker, list: &S<Vec<S<String>>>) -> Vec<String> {
    if list.get_ref().is_empty() {
        c.error_hint(
            list.span(),
            "`migration.shards` is empty",
            "list the shards, e.g. [\"eu\", \"us\"], or remove the key to run one migration task",
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for v in list.get_ref() {
        let name = v.get_ref().as_str();
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name.is_empty() || name.len() > SHARD_NAME_MAX || !plain {
            c.error_hint(
                v.span(),
                format!("shard name `{name}` in `migration.shards` cannot be used"),
                format!(
                    "a shard name becomes the task's SHARD environment value: 1 to {SHARD_NAME_MAX} letters, digits, `-`, `_` or `.`"
                ),
            );
        } else if seen.contains(&name) {
            c.error_hint(
                v.span(),
                format!("shard `{name}` is listed twice in `migration.shards`"),
                "each shard is migrated exactly once per release; remove the repeat",
            );
        }
        seen.push(name);
    }
    list.get_ref().iter().map(|v| v.get_ref().clone()).collect()
}

/// An S3 key prefix: no leading slash, no empty segments; a trailing slash is dropped.
fn key_prefix(c: &mut Checker, v: &S<String>, key: &str) -> String {
    let p = v.get_ref().trim_end_matches('/');
    if p.starts_with('/') {
        c.error_hint(
            v.span(),
            format!("`{key}` starts with `/`"),
            "S3 keys do not start with a slash; write e.g. \"static\"",
        );
    } else if p.contains("//") || p.contains(char::is_whitespace) {
        c.error(
            v.span(),
            format!(
                "`{key}` = `{}` has an empty segment or whitespace",
                v.get_ref()
            ),
        );
    }
    p.to_string()
}

fn colour(c: &mut Checker, raw: &super::raw::RawColour, name: &str, region: &str) -> Colour {
    let service = c.check(&raw.service, |s| names::ecs_name(s, "ECS service"));
    let tg = raw.target_group.get_ref();
    if tg.starts_with("arn:") {
        match names::target_group_arn(tg) {
            Ok(r) => c.same_region(
                raw.target_group.span(),
                &format!("{name}.target_group"),
                r,
                region,
            ),
            Err(p) => c.problem(raw.target_group.span(), p),
        }
    } else {
        c.check(&raw.target_group, names::target_group_name);
    }
    Colour {
        service,
        target_group: tg.clone(),
    }
}

/// A listener given as an ARN or `<lb>:<port>`: (load balancer name, listener path if ARN).
fn listener(
    c: &mut Checker,
    v: &S<String>,
    key: &str,
    region: &str,
) -> Option<(String, Option<String>)> {
    let text = v.get_ref();
    if text.starts_with("arn:") {
        match names::listener_arn(text) {
            Ok(l) => {
                c.same_region(v.span(), key, l.region, region);
                Some((l.load_balancer.to_string(), Some(l.path)))
            }
            Err(p) => {
                c.problem(v.span(), p);
                None
            }
        }
    } else {
        match names::listener_by_name(text) {
            Ok(lb) => Some((lb.to_string(), None)),
            Err(p) => {
                c.problem(v.span(), p);
                None
            }
        }
    }
}

fn traffic(c: &mut Checker, t: &super::raw::RawTraffic, region: &str) -> TrafficConfig {
    let main = listener(c, &t.listener, "traffic.listener", region);
    if let Some(rule) = &t.rule_arn {
        match names::rule_arn(rule.get_ref()) {
            Ok((rule_region, rule_listener)) => {
                c.same_region(rule.span(), "traffic.rule_arn", rule_region, region);
                let mismatch = match &main {
                    Some((_, Some(path))) => *path != rule_listener,
                    Some((lb, None)) => rule_listener.split('/').nth(1) != Some(lb.as_str()),
                    None => false,
                };
                if mismatch {
                    c.error_hint(
                        rule.span(),
                        "`traffic.rule_arn` belongs to a different listener than `traffic.listener`",
                        "the rule must be on the listener whose traffic is shifted",
                    );
                }
            }
            Err(p) => c.problem(rule.span(), p),
        }
    }
    if let Some(test) = &t.test_listener {
        listener(c, test, "traffic.test_listener", region);
        if test.get_ref() == t.listener.get_ref() {
            c.error_hint(
                test.span(),
                "`traffic.test_listener` is the production listener",
                "the test listener must be a separate listener (e.g. port 8443) that only reaches the idle colour",
            );
        }
    }
    if let Some(url) = &t.test_url {
        if let Err(p) = endpoint::host_port(url.get_ref()) {
            c.problem(url.span(), p);
        }
    }
    TrafficConfig {
        listener: t.listener.get_ref().clone(),
        rule_arn: t.rule_arn.as_ref().map(|r| r.get_ref().clone()),
        test_listener: t.test_listener.as_ref().map(|r| r.get_ref().clone()),
        test_url: t.test_url.as_ref().map(|r| r.get_ref().clone()),
    }
}

fn database(c: &mut Checker, db: &S<super::raw::RawDatabase>) -> DatabaseConfig {
    let raw = db.get_ref();
    let (kind, id) = match (&raw.instance, &raw.cluster) {
        (Some(i), None) => (DatabaseKind::Instance, c.check(i, names::db_identifier)),
        (None, Some(cl)) => (DatabaseKind::Cluster, c.check(cl, names::db_identifier)),
        (Some(_), Some(cl)) => {
            c.error_hint(
                cl.span(),
                "[database] names both an `instance` and a `cluster`",
                "keep `instance` for an RDS DB instance, or `cluster` for an Aurora cluster",
            );
            (DatabaseKind::Cluster, cl.get_ref().clone())
        }
        (None, None) => {
            c.error_hint(
                db.span(),
                "[database] names no database",
                "add `instance = \"<RDS DB instance id>\"` or `cluster = \"<Aurora cluster id>\"`",
            );
            (DatabaseKind::Instance, String::new())
        }
    };
    let keep_snapshots = raw.keep_snapshots.as_ref().map(|k| {
        let n = *k.get_ref();
        if n < 2 {
            c.error_hint(
                k.span(),
                format!("`database.keep_snapshots` = {n} is too small"),
                "keep at least 2: the live release's and the standby release's restore points \
                 (the snapshots taken before their migrations) are never deleted, and the newest \
                 count among what is kept",
            );
        } else if n > 1000 {
            c.error(
                k.span(),
                format!("`database.keep_snapshots` = {n} is more than 1000"),
            );
        }
        u32::try_from(n.clamp(2, 1000)).unwrap_or(2)
    });
    DatabaseConfig {
        kind,
        id,
        snapshot_timeout: c.positive(
            raw.snapshot_timeout.as_ref(),
            "database.snapshot_timeout",
            defaults::SNAPSHOT_TIMEOUT,
        ),
        keep_snapshots,
    }
}

fn ids(c: &mut Checker, list: &[S<String>], prefix: &str, key: &str) -> Vec<String> {
    list.iter()
        .map(|v| {
            let s = v.get_ref();
            let ok = s.strip_prefix(prefix).is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if !ok {
                c.error_hint(
                    v.span(),
                    format!("`{s}` in `{key}` is not an id"),
                    format!("ids look like \"{prefix}0a1b2c3d4e5f67890\""),
                );
            }
            s.clone()
        })
        .collect()
}

fn assets(c: &mut Checker, a: &super::raw::RawAssets, plan_path: &Path) -> AssetsConfig {
    let dir_text = c.non_empty(&a.dir, "assets.dir");
    let base = plan_path.parent().unwrap_or(Path::new(""));
    let dir = normalize(&base.join(&dir_text));
    let retention = match &a.retention {
        None => defaults::RETENTION,
        Some(r) => {
            let n = *r.get_ref();
            if n < 2 {
                c.error_hint(
                    r.span(),
                    format!("`assets.retention` = {n} is too small"),
                    "keep at least 2 versions: the live one and the standby one rollback returns to",
                );
            } else if n > 1000 {
                c.error(
                    r.span(),
                    format!("`assets.retention` = {n} is more than 1000"),
                );
            }
            u32::try_from(n.clamp(2, 1000)).unwrap_or(defaults::RETENTION)
        }
    };
    let globs = |c: &mut Checker, list: &[S<String>], key: &str| -> Vec<String> {
        list.iter()
            .map(|g| {
                if let Err(e) = globset::Glob::new(g.get_ref()) {
                    c.error(g.span(), format!("`{key}` has a bad glob: {}", e.kind()));
                }
                g.get_ref().clone()
            })
            .collect()
    };
    AssetsConfig {
        dir,
        bucket: c.check(&a.bucket, names::bucket_name),
        prefix: a
            .prefix
            .as_ref()
            .map(|p| key_prefix(c, p, "assets.prefix"))
            .unwrap_or_default(),
        layout: c.choice(
            a.layout.as_ref(),
            "assets.layout",
            &[
                ("versioned", AssetLayout::Versioned),
                ("hashed", AssetLayout::Hashed),
            ],
            AssetLayout::Versioned,
        ),
        retention,
        cache_control: a
            .cache_control
            .as_ref()
            .map(|v| c.non_empty(v, "assets.cache_control"))
            .unwrap_or_else(|| defaults::CACHE_CONTROL.into()),
        entry_cache_control: a
            .entry_cache_control
            .as_ref()
            .map(|v| c.non_empty(v, "assets.entry_cache_control"))
            .unwrap_or_else(|| defaults::ENTRY_CACHE_CONTROL.into()),
        include: globs(c, &a.include, "assets.include"),
        exclude: globs(c, &a.exclude, "assets.exclude"),
    }
}

/// `examples/../assets` → `assets`, lexically (the plan names a directory, not a symlink maze).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else if !matches!(out.components().next_back(), Some(Component::RootDir)) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn steps(c: &mut Checker, raw: &S<Vec<S<super::raw::RawStep>>>) -> Vec<Step> {
    let list = raw.get_ref();
    if list.is_empty() {
        c.error_hint(
            raw.span(),
            "the plan has no traffic steps",
            "add [[steps]] tables, e.g. weight = 10, then 50, then 100",
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(list.len());
    let mut previous: Option<i64> = None;
    for (i, step) in list.iter().enumerate() {
        let s = step.get_ref();
        let n = i + 1;
        let w = *s.weight.get_ref();
        if !(1..=100).contains(&w) {
            c.error_hint(
                s.weight.span(),
                format!("step {n}: weight {w} is out of range"),
                "a step's weight is green's share of traffic in percent, 1 to 100",
            );
        } else if let Some(p) = previous.filter(|p| w <= *p) {
            c.error_hint(
                s.weight.span(),
                format!("step {n}: weight {w} does not increase (the step before is {p})"),
                "weights must be strictly increasing, e.g. 10, 50, 100",
            );
        }
        previous = Some(w);
        let bake = c.duration(Some(&s.bake), &format!("steps[{n}].bake"), Duration::ZERO);
        let gate = c.choice(
            s.gate.as_ref(),
            &format!("steps[{n}].gate"),
            &[("auto", GateMode::Auto), ("manual", GateMode::Manual)],
            GateMode::Auto,
        );
        out.push(Step {
            weight: u8::try_from(w.clamp(0, 100)).unwrap_or(100),
            bake,
            gate,
        });
    }
    if let Some(last) = list.last() {
        let w = *last.get_ref().weight.get_ref();
        if w != 100 && (1..100).contains(&w) {
            c.error_hint(
                last.get_ref().weight.span(),
                format!("the last step sends {w}% to green, not 100%"),
                "end with a step of weight = 100 so the release completes",
            );
        }
    }
    out
}

fn gates(c: &mut Checker, g: Option<&super::raw::RawGates>) -> GateConfig {
    let Some(g) = g else {
        return GateConfig {
            poll_interval: defaults::POLL_INTERVAL,
            max_blind: defaults::MAX_BLIND,
            approval_timeout: defaults::APPROVAL_TIMEOUT,
            min_requests: defaults::MIN_REQUESTS,
            error_rate_floor: defaults::ERROR_RATE_FLOOR,
            error_rate_margin: defaults::ERROR_RATE_MARGIN,
            latency_factor: defaults::LATENCY_FACTOR,
            latency_stat: LatencyStat::P95,
            alarms: vec![],
            on_fail: OnGateFail::Rollback,
            statistical: false,
            confidence: defaults::CONFIDENCE,
            sequential: SequentialConfig::default(),
            metric_period: defaults::METRIC_PERIOD,
            metric_delay: defaults::METRIC_DELAY,
            weight_settle: defaults::WEIGHT_SETTLE,
        };
    };
    let poll_interval = c.positive(
        g.poll_interval.as_ref(),
        "gates.poll_interval",
        defaults::POLL_INTERVAL,
    );
    let max_blind = c.duration(g.max_blind.as_ref(), "gates.max_blind", defaults::MAX_BLIND);
    if let Some(mb) = &g.max_blind {
        if max_blind < poll_interval {
            c.error_hint(
                mb.span(),
                "`gates.max_blind` is shorter than `gates.poll_interval`",
                "a single slow poll would pause the release; make max_blind a few poll intervals",
            );
        }
    }
    let approval_timeout = c.positive(
        g.approval_timeout.as_ref(),
        "gates.approval_timeout",
        defaults::APPROVAL_TIMEOUT,
    );
    let min_requests = match &g.min_requests {
        None => defaults::MIN_REQUESTS,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                c.error_hint(
                    v.span(),
                    format!("`gates.min_requests` = {} must be at least 1", v.get_ref()),
                    "green's error rate means nothing without requests",
                );
                defaults::MIN_REQUESTS
            }
        },
    };
    let metric_period = c.positive(
        g.metric_period.as_ref(),
        "gates.metric_period",
        defaults::METRIC_PERIOD,
    );
    if let Some(v) = &g.metric_period {
        let ms = metric_period.as_millis();
        let ok = ms.is_multiple_of(1000) && matches!(ms / 1000, 1 | 5 | 10 | 30 | 60)
            || ms.is_multiple_of(60_000) && ms > 0;
        if !ok {
            c.error_hint(
                v.span(),
                "`gates.metric_period` is not a CloudWatch period",
                "use \"60s\" (or a multiple of a minute) for ALB metrics; \"1s\", \"5s\", \"10s\" or \"30s\" only for high-resolution metrics such as the rehearsal stage's",
            );
        }
    }
    let metric_delay = c.duration(
        g.metric_delay.as_ref(),
        "gates.metric_delay",
        defaults::METRIC_DELAY,
    );
    let weight_settle = c.duration(
        g.weight_settle.as_ref(),
        "gates.weight_settle",
        defaults::WEIGHT_SETTLE,
    );
    let alarms = g
        .alarms
        .iter()
        .map(|a| {
            if a.get_ref().trim().is_empty() {
                c.error(a.span(), "an alarm name in `gates.alarms` is empty");
            }
            a.get_ref().clone()
        })
        .collect();
    GateConfig {
        poll_interval,
        max_blind,
        approval_timeout,
        min_requests,
        error_rate_floor: c.fraction(
            g.error_rate_floor.as_ref(),
            "gates.error_rate_floor",
            (0.0, 1.0),
            defaults::ERROR_RATE_FLOOR,
            "a share of requests: 0.01 means 1%",
        ),
        error_rate_margin: c.fraction(
            g.error_rate_margin.as_ref(),
            "gates.error_rate_margin",
            (0.0, 1.0),
            defaults::ERROR_RATE_MARGIN,
            "a share of requests above blue's rate: 0.005 means half a percentage point",
        ),
        latency_factor: c.fraction(
            g.latency_factor.as_ref(),
            "gates.latency_factor",
            (1.0, 100.0),
            defaults::LATENCY_FACTOR,
            "green fails when its latency exceeds blue's times this; 1.5 means 50% slower",
        ),
        latency_stat: c.choice(
            g.latency_stat.as_ref(),
            "gates.latency_stat",
            &[("p95", LatencyStat::P95), ("average", LatencyStat::Average)],
            LatencyStat::P95,
        ),
        alarms,
        on_fail: c.choice(
            g.on_fail.as_ref(),
            "gates.on_fail",
            &[
                ("rollback", OnGateFail::Rollback),
                ("pause", OnGateFail::Pause),
            ],
            OnGateFail::Rollback,
        ),
        statistical: g.statistical.unwrap_or(false),
        confidence: c.fraction(
            g.confidence.as_ref(),
            "gates.confidence",
            (0.5, 0.999),
            defaults::CONFIDENCE,
            "a confidence level such as 0.95",
        ),
        metric_period,
        metric_delay,
        weight_settle,
        // Filled in by `sequential`, which also needs to know whether the plan is production.
        sequential: SequentialConfig::default(),
    }
}

/// The sequential gate's keys of `[gates]`.
fn sequential(
    c: &mut Checker,
    g: Option<&super::raw::RawGates>,
    production: bool,
    // Parsed once with the other `[gates]` keys (they stay there): checked against production.
    metric_period: Duration,
) -> SequentialConfig {
    let base = SequentialConfig::default();
    let Some(g) = g else { return base };
    let alpha = match &g.alpha {
        None => base.alpha,
        Some(v) => {
            let a = *v.get_ref();
            if a.is_finite() && a > 0.0 && a <= 0.2 {
                a
            } else {
                c.error_hint(
                    v.span(),
                    format!("`gates.alpha` = {a} is out of range (above 0, at most 0.2)"),
                    "the share of healthy releases you accept to roll back by mistake: 0.01 is about 1 in 100",
                );
                base.alpha
            }
        }
    };
    if let (Some(v), true) = (&g.metric_period, production) {
        if metric_period < Duration::from_secs(60) {
            c.error_hint(
                v.span(),
                "`gates.metric_period` is under 60s in a production plan",
                "ALB metrics are standard resolution: one datapoint a minute; use \"60s\" or a multiple of it",
            );
        }
    }
    let catastrophic_min_requests = match &g.catastrophic_min_requests {
        None => base.catastrophic_min_requests,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                c.error(
                    v.span(),
                    format!(
                        "`gates.catastrophic_min_requests` = {} must be at least 1",
                        v.get_ref()
                    ),
                );
                base.catastrophic_min_requests
            }
        },
    };
    let catastrophic_error_rate = c.fraction(
        g.catastrophic_error_rate.as_ref(),
        "gates.catastrophic_error_rate",
        (0.0, 1.0),
        base.catastrophic_error_rate,
        "a share of requests: 0.2 means 20%",
    );
    if let (Some(v), true) = (&g.catastrophic_error_rate, catastrophic_error_rate <= 0.0) {
        c.error_hint(
            v.span(),
            "`gates.catastrophic_error_rate` must be above 0",
            "a share of requests: 0.2 means 20%",
        );
    }
    SequentialConfig {
        mode: c.choice(
            g.mode.as_ref(),
            "gates.mode",
            &[
                ("sequential", JudgeMode::Sequential),
                ("threshold", JudgeMode::Threshold),
            ],
            base.mode,
        ),
        alpha,
        error_tolerance: c.fraction(
            g.error_tolerance.as_ref(),
            "gates.error_tolerance",
            (1.0, 100.0),
            base.error_tolerance,
            "a ratio of 5xx rates: 1.25 lets the new colour have 25% more 5xx than the live one",
        ),
        error_tolerance_abs: c.fraction(
            g.error_tolerance_abs.as_ref(),
            "gates.error_tolerance_abs",
            (0.0, 0.5),
            base.error_tolerance_abs,
            "a share of requests: 0.002 means 5xx up to 0.2% are never blamed on the new colour",
        ),
        latency_tolerance: c.fraction(
            g.latency_tolerance.as_ref(),
            "gates.latency_tolerance",
            (1.0, 100.0),
            base.latency_tolerance,
            "a ratio of latencies: 1.1 lets the new colour be 10% slower than the live one",
        ),
        catastrophic_error_rate,
        catastrophic_min_requests,
        max_wait: c.duration(g.max_wait.as_ref(), "gates.max_wait", base.max_wait),
        on_no_data: c.choice(
            g.on_no_data.as_ref(),
            "gates.on_no_data",
            &[
                ("pause", OnNoData::Pause),
                ("rollback", OnNoData::Rollback),
                ("proceed", OnNoData::Proceed),
            ],
            base.on_no_data,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use std::path::{Path, PathBuf};

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(
            normalize(Path::new("examples/../assets")),
            PathBuf::from("assets")
        );
        assert_eq!(
            normalize(Path::new("../assets")),
            PathBuf::from("../assets")
        );
        assert_eq!(normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(normalize(Path::new("/x/../../y")), PathBuf::from("/y"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
    }
}
