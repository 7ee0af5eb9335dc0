//! Rehearsals on the LocalStack engine: LocalStack (community, on the host) with the
//! glidepath plugin plays the stage. A happy rehearsal and the green-5xx and
//! migration-fails drills must end as they do on the moto stage (exit 0, 3, 5), with the
//! listener read back from LocalStack's ELBv2 and ARNs in LocalStack's account.
//!
//! LocalStack is heavy: these tests share one nextest group that runs one at a time.

use crate::common;

use glidepath::cli::Global;
use glidepath::commands::rehearse::{rehearse, RehearseArgs};
use glidepath::rehearse::stage::Engine;

fn global() -> Global {
    Global {
        endpoint_url: None,
        profile: None,
        region: None,
        verbose: 0,
        log_file: None,
    }
}

async fn rehearse_on_localstack(scenario: &str) -> glidepath::commands::rehearse::Rehearsal {
    common::ensure_stage_venv();
    common::ensure_localstack_venv();
    let args = RehearseArgs {
        scenario: scenario.into(),
        engine: Engine::Localstack,
        ..RehearseArgs::default()
    };
    let done = rehearse(&global(), common::rehearsal_plan(), &args).await;
    println!("{}", done.report);
    if let Some(pid) = done.stage_pid {
        assert!(
            common::process_gone(pid),
            "LocalStack pid {pid} outlived the rehearsal"
        );
    }
    done
}

/// The listener's weights as the stage last read them from LocalStack's ELBv2.
fn weights(state: &serde_json::Value) -> (i64, i64) {
    let tg = &state["target_groups"];
    (
        tg["shop-blue"]["weight"].as_i64().unwrap_or(-1),
        tg["shop-green"]["weight"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test]
async fn localstack_happy_rehearsal_finalizes_with_green_live() {
    let done = rehearse_on_localstack("happy").await;
    assert_eq!(done.exit_code, 0, "{}\n{:?}", done.report, done.error);
    let state = done
        .stage_state
        .expect("the stage answered after the release");
    assert_eq!(weights(&state), (0, 100), "listener read back");
    assert!(
        done.report
            .contains("listener shop now: shop-blue 0, shop-green 100"),
        "{}",
        done.report
    );
    let tasks = state["migration_tasks"]
        .as_array()
        .expect("migration tasks");
    assert_eq!(tasks.len(), 1, "exactly one migration task: {tasks:?}");
    assert_eq!(tasks[0]["exit_code"], 0);
    // ARNs come from LocalStack's request context: its default account, not moto's.
    let arn = tasks[0]["task_arn"].as_str().unwrap_or_default();
    assert!(
        arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/shop/"),
        "{arn}"
    );
    // The ECS, ELBv2 and RDS calls went through LocalStack into the plugin's moto guard.
    let requests = &state["requests"];
    for op in [
        "ecs:RunTask",
        "elbv2:ModifyListener",
        "rds:CreateDBSnapshot",
        "cloudwatch:GetMetricData",
    ] {
        assert!(
            requests[op].as_u64().unwrap_or(0) >= 1,
            "no {op} in {requests}"
        );
    }
}

#[tokio::test]
async fn localstack_green_5xx_drill_rolls_back() {
    let done = rehearse_on_localstack("green-5xx").await;
    assert_eq!(done.exit_code, 3, "{}\n{:?}", done.report, done.error);
    let state = done
        .stage_state
        .expect("the stage answered after the release");
    assert_eq!(weights(&state), (100, 0), "listener read back");
    assert!(
        done.report
            .contains("listener shop now: shop-blue 100, shop-green 0"),
        "{}",
        done.report
    );
    assert!(
        done.report.contains("fault 5xx on green: active from"),
        "{}",
        done.report
    );
}

#[tokio::test]
async fn localstack_migration_fails_drill_exits_5_without_moving_traffic() {
    let done = rehearse_on_localstack("migration-fails").await;
    assert_eq!(done.exit_code, 5, "{}\n{:?}", done.report, done.error);
    let state = done
        .stage_state
        .expect("the stage answered after the release");
    assert_eq!(weights(&state), (100, 0), "listener read back");
    let tasks = state["migration_tasks"]
        .as_array()
        .expect("migration tasks");
    assert_eq!(tasks.len(), 1, "exactly one migration task: {tasks:?}");
    assert_ne!(tasks[0]["exit_code"], 0, "{tasks:?}");
    assert!(
        state["requests"]["elbv2:ModifyListener"]
            .as_u64()
            .is_none_or(|n| n == 0),
        "no weight change after a failed migration: {}",
        state["requests"]
    );
}
