//! The asset publisher against the rehearsal stage's S3 (moto) through the real SDK and the
//! real binary. The bodies live in `assets_support` so the LocalStack tests run them too.

use crate::assets_support;
use crate::common;

use assets_support::{self as body, S3Env};
use glidepath::plan::AssetLayout;
use glidepath::rehearse::stage::Stage;

async fn stage() -> (Stage, S3Env) {
    let stage = common::start_stage("happy").await;
    let env = S3Env::new(&common::sdk_config(&stage).await);
    (stage, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_republish_and_new_version() {
    let (_stage, env) = stage().await;
    body::publish_republish_and_new_version(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_layout_skips_known_content() {
    let (_stage, env) = stage().await;
    body::hashed_layout_skips_known_content(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_object_is_refused() {
    let (_stage, env) = stage().await;
    body::conflicting_object_is_refused(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_publish_resumes() {
    let (_stage, env) = stage().await;
    body::interrupted_publish_resumes(&env, AssetLayout::Versioned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_hashed_publish_resumes() {
    let (_stage, env) = stage().await;
    body::interrupted_publish_resumes(&env, AssetLayout::Hashed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_newest_and_protected() {
    let (_stage, env) = stage().await;
    body::prune_keeps_newest_and_protected(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trees_upload_nothing() {
    let (_stage, env) = stage().await;
    body::bad_trees_upload_nothing(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_publishes() {
    let (_stage, env) = stage().await;
    body::binary_publishes(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_publishes_without_credentials() {
    let (_stage, env) = stage().await;
    body::binary_publishes_without_credentials(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_killed_midway_resumes() {
    let (_stage, env) = stage().await;
    body::binary_killed_midway_resumes(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_unreadable_file() {
    let (_stage, env) = stage().await;
    body::binary_unreadable_file(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prune_protects_ledger_versions() {
    let (_stage, env) = stage().await;
    body::binary_prune_protects_ledger_versions(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prune_refuses_an_unreadable_index() {
    let (_stage, env) = stage().await;
    body::binary_prune_refuses_an_unreadable_index(&env).await;
}

/// S3 answering SlowDown to a share of writes: publish halves what it keeps in flight (each
/// pushback reaches the pace controller, not just a retry) and still completes, every file
/// readable under its version folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowdown_lowers_concurrency_and_publish_completes() {
    use glidepath::assets::{PublishOptions, Retry};
    use serde_json::json;
    use std::time::Duration;

    let (stage, env) = stage().await;
    let bucket = env.bucket("slow").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("js/f{i}.js"), format!("export const n = {i};")))
        .collect();
    std::fs::create_dir_all(dir.path().join("js")).expect("mkdir");
    for (path, text) in &files {
        std::fs::write(dir.path().join(path), text).expect("write");
    }
    stage
        .control_post(
            "slowdown",
            &json!({"rate": 0.3, "operations": ["s3:PutObject"]}),
        )
        .await
        .expect("start slowdown");
    let opts = PublishOptions {
        concurrency: 32,
        // Many short retries: 0.3^12 per file makes giving up practically impossible.
        retry: Retry {
            attempts: 12,
            first: Duration::from_millis(10),
            max: Duration::from_millis(100),
            jitter: true,
        },
        ..PublishOptions::default()
    };
    let p = env.publisher(&bucket, dir.path(), AssetLayout::Versioned, opts);
    let r = body::publish(&p, "1.0.0").await;
    stage
        .control_post("slowdown", &json!({"rate": 0.0}))
        .await
        .expect("end slowdown");
    let state = stage.control_get("state").await.expect("state");
    let slowdowns = state["slowdowns"].as_u64().expect("slowdowns in state");

    let pace = r.pace;
    assert_eq!(r.uploaded, 200, "{}", r.summary());
    // ~86 SlowDowns expected (0.3/0.7 per upload); 20 is far below any plausible count.
    assert!(
        pace.throttled >= 20 && pace.throttled <= slowdowns,
        "{pace:?}, stage counted {slowdowns}"
    );
    assert!(pace.peak_in_flight >= 32, "{pace:?}");
    assert!(
        pace.lowest <= 16,
        "the limit halved at least once: {pace:?}"
    );
    let after = pace
        .peak_in_flight_after_cut
        .expect("the limit was cut, so there is an after");
    assert!(
        after < pace.peak_in_flight,
        "fewer in flight after the pushback: {pace:?}"
    );
    for (path, text) in &files {
        let key = format!("static/1.0.0/{path}");
        assert_eq!(env.get(&bucket, &key).await, text.as_bytes(), "{key}");
    }
    assert!(env.exists(&bucket, "static/1.0.0/manifest.json").await);
}
