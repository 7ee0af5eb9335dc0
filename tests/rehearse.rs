//! `glidepath rehearse`: stage up, seed, release, report, stage down — and never a stage
//! left running, whatever happened.

use crate::common;

use glidepath::cli::Global;
use glidepath::commands::rehearse::{rehearse, RehearseArgs};

fn global() -> Global {
    Global {
        endpoint_url: None,
        profile: None,
        region: None,
        verbose: 0,
        log_file: None,
    }
}

fn args(scenario: &str) -> RehearseArgs {
    RehearseArgs {
        scenario: scenario.into(),
        ..RehearseArgs::default()
    }
}

#[tokio::test]
async fn rehearse_refuses_production_plans_before_starting_anything() {
    let mut plan = common::rehearsal_plan();
    plan.production = true;
    plan.environment = "production".into();
    let done = rehearse(&global(), plan, &args("happy")).await;
    assert_eq!(done.exit_code, 2);
    assert_eq!(done.stage_pid, None, "no stage for a production plan");
    let message = done.error.and_then(|e| e.message).unwrap_or_default();
    assert!(
        message.starts_with("glidepath: refusing to rehearse"),
        "{message}"
    );
}

#[tokio::test]
async fn rehearse_with_an_unknown_scenario_exits_2() {
    common::ensure_stage_venv();
    let done = rehearse(&global(), common::rehearsal_plan(), &args("no-such-drill")).await;
    assert_eq!(done.exit_code, 2);
    assert_eq!(done.stage_pid, None);
    // Returned for the edge to print, not printed here.
    let error = done.error.expect("an error to print");
    assert_eq!(error.code, 2);
    let message = error.message.unwrap_or_default();
    assert!(
        message.contains("unknown scenario 'no-such-drill'"),
        "{message}"
    );
}

/// Whatever the release does (the engine may not even be built), the stage was seeded with
/// the plan's world, answered for the report, and is gone afterwards.
#[tokio::test]
async fn rehearse_seeds_reports_and_leaves_no_stage_behind() {
    common::ensure_stage_venv();
    let done = rehearse(&global(), common::rehearsal_plan(), &args("happy")).await;
    println!("{}", done.report);
    let pid = done.stage_pid.expect("a stage was started");
    assert!(
        common::process_gone(pid),
        "stage pid {pid} outlived the rehearsal"
    );
    let state = done
        .stage_state
        .expect("the stage answered after the release");
    assert_eq!(state["scenario"]["name"], "happy");
    assert_eq!(state["target_groups"]["shop-blue"]["colour"], "blue");
    assert!(
        done.report.starts_with(&format!(
            "rehearsal of shop (scenario happy): {} (exit {})",
            glidepath::commands::rehearse::outcome(done.exit_code),
            done.exit_code
        )),
        "{}",
        done.report
    );
    assert!(
        done.report.contains("listener shop now: shop-blue "),
        "{}",
        done.report
    );
}

#[tokio::test]
async fn rehearse_happy_finalizes_with_green_live() {
    let done = rehearse(&global(), common::rehearsal_plan(), &args("happy")).await;
    println!("{}", done.report);
    assert_eq!(done.exit_code, 0, "{}", done.report);
    let state = done.stage_state.unwrap();
    assert_eq!(state["target_groups"]["shop-green"]["weight"], 100);
    assert_eq!(state["target_groups"]["shop-blue"]["weight"], 0);
    let tasks = state["migration_tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "exactly one migration task");
    assert_eq!(tasks[0]["exit_code"], 0);
}

#[tokio::test]
async fn rehearse_migration_failure_exits_5_without_moving_traffic() {
    let done = rehearse(
        &global(),
        common::rehearsal_plan(),
        &args("migration-fails"),
    )
    .await;
    println!("{}", done.report);
    assert_eq!(done.exit_code, 5, "{}", done.report);
    let state = done.stage_state.unwrap();
    assert_eq!(state["target_groups"]["shop-blue"]["weight"], 100);
    assert_eq!(state["migration_tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rehearse_green_5xx_rolls_back() {
    let done = rehearse(&global(), common::rehearsal_plan(), &args("green-5xx")).await;
    println!("{}", done.report);
    assert_eq!(done.exit_code, 3, "{}", done.report);
    let state = done.stage_state.unwrap();
    assert_eq!(state["target_groups"]["shop-blue"]["weight"], 100);
    assert!(done.report.contains("fault 5xx on green: active from"));
}
