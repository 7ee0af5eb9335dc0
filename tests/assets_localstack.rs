//! The asset publisher's stage tests, run against the real LocalStack runtime (installed
//! from PyPI and run on the host, see tests/common): the same bodies, through the same SDK.

use crate::assets_support;
use crate::common;

use assets_support::{self as body, S3Env};
use glidepath::plan::AssetLayout;

async fn localstack() -> (common::LocalStack, S3Env) {
    let ls = common::start_localstack().await;
    let env = S3Env::new(&common::localstack_sdk_config(&ls).await);
    (ls, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_publish_republish_and_new_version() {
    let (_ls, env) = localstack().await;
    body::publish_republish_and_new_version(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_hashed_layout_skips_known_content() {
    let (_ls, env) = localstack().await;
    body::hashed_layout_skips_known_content(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_conflicting_object_is_refused() {
    let (_ls, env) = localstack().await;
    body::conflicting_object_is_refused(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_interrupted_publish_resumes() {
    let (_ls, env) = localstack().await;
    body::interrupted_publish_resumes(&env, AssetLayout::Versioned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_prune_keeps_newest_and_protected() {
    let (_ls, env) = localstack().await;
    body::prune_keeps_newest_and_protected(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_bad_trees_upload_nothing() {
    let (_ls, env) = localstack().await;
    body::bad_trees_upload_nothing(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_binary_publishes() {
    let (_ls, env) = localstack().await;
    body::binary_publishes(&env).await;
}
