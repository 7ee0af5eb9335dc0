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
