//! `glidepath iam-policy PLAN`: the least-privilege IAM policy for this plan's release,
//! rollback, watch and assets publish, built from the one operations list next to the
//! adapters (`aws::permissions`). The policy goes to stdout as JSON, the explanation to
//! stderr, so `glidepath iam-policy plan.toml > policy.json` stays valid JSON.

use crate::aws::permissions::{self, Scope};
use crate::cli::Global;
use crate::commands::release::{load_plan, sdk_config_for};
use crate::commands::{CliError, CmdResult};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct IamPolicyArgs {
    pub plan: PathBuf,
    /// The AWS account id to put in the ARNs. Default: from an ARN in the plan, else the
    /// account of the current credentials (STS GetCallerIdentity), else any account (`*`).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
}

pub async fn run(g: &Global, a: &IamPolicyArgs) -> CmdResult {
    let mut plan = load_plan(&a.plan)?;
    if let Some(r) = &g.region {
        plan.region = r.clone();
    }
    let account = match &a.account {
        Some(id) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) => Some(id.clone()),
        Some(id) => {
            return Err(CliError::usage(format!(
                "--account {id:?} is not an AWS account id (12 digits)"
            )))
        }
        None => match account_in_plan(&plan) {
            Some(id) => Some(id),
            None => crate::aws::client::account_id(&sdk_config_for(g, &plan).await).await,
        },
    };
    // The roles and log group live in the task definitions, only the account knows them;
    // without them the policy stays valid, with a wildcard that stderr points out.
    let config = sdk_config_for(g, &plan).await;
    let facts = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        permissions::read_task_facts(&config, &plan),
    )
    .await
    .unwrap_or_else(|_| Err("no answer within 15s".into()));
    let scope = Scope {
        plan: &plan,
        account: account.clone(),
        facts: facts.clone().unwrap_or_default(),
    };
    let doc = permissions::policy(&scope);
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::unexpected(format!("cannot format the policy: {e}")))?;
    println!("{text}");
    eprint!("{}", explanation(&plan, account.as_deref()));
    eprint!("{}", scoping(&plan, &facts));
    Ok(())
}

/// How iam:PassRole and logs:GetLogEvents are scoped, and why a wildcard stayed.
fn scoping(plan: &crate::plan::Plan, facts: &Result<permissions::TaskFacts, String>) -> String {
    let services = format!("{} / {}", plan.blue.service, plan.green.service);
    let unknown = |what: &str, fix: &str| match facts {
        Err(e) => {
            format!("{what}: any (could not read the task definitions of {services}: {e}); {fix}\n")
        }
        Ok(_) => format!("{what}: any (the task definitions of {services} name none); {fix}\n"),
    };
    let mut out = String::new();
    match facts {
        Ok(f) if !f.roles.is_empty() => out.push_str(&format!(
            "iam:PassRole: only {} (the task definitions' task and execution roles), only to ecs-tasks.amazonaws.com.\n",
            f.roles.join(", ")
        )),
        _ => out.push_str(&unknown(
            "iam:PassRole on role",
            "still only to ecs-tasks.amazonaws.com; run it with credentials that can read the services to scope it",
        )),
    }
    if plan.migration.is_some() {
        match facts {
            Ok(f) if !f.log_groups.is_empty() => out.push_str(&format!(
                "logs:GetLogEvents: only log group {} (the migration container's awslogs group).\n",
                f.log_groups.join(", ")
            )),
            _ => out.push_str(&unknown(
                "logs:GetLogEvents on log group",
                "give the migration container an awslogs log configuration, or read the services, to scope it",
            )),
        }
    }
    out
}

/// The account id of the first ARN the plan names (target groups, listeners, rule).
fn account_in_plan(plan: &crate::plan::Plan) -> Option<String> {
    [
        Some(&plan.blue.target_group),
        Some(&plan.green.target_group),
        Some(&plan.traffic.listener),
        plan.traffic.rule_arn.as_ref(),
        plan.traffic.test_listener.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| s.starts_with("arn:"))
    .find_map(|arn| {
        let id = arn.split(':').nth(4)?;
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
    })
}

fn explanation(plan: &crate::plan::Plan, account: Option<&str>) -> String {
    let mut out = format!(
        "IAM policy for {} / {}: what a release (with resume and finalize), a rollback, \
`watch` and `assets publish` of this plan call, in {} account {}.\n",
        plan.app,
        plan.environment,
        plan.region,
        account.unwrap_or("* (unknown: pass --account ID to scope the ARNs to one account)")
    );
    out.push_str(&format!(
        "Resource \"*\": these actions have no resource-level permissions in IAM: {}.\n",
        permissions::account_wide_actions(plan).join(", ")
    ));
    out.push_str(
        "Wildcards: ecs:RunTask on any task definition but only in the plan's cluster \
(the family is whatever the service runs); snapshots by their `<db>-` prefix; a listener \
named `<load-balancer>:<port>` as every listener of that load balancer (the port is not in \
its ARN).\n",
    );
    out
}
