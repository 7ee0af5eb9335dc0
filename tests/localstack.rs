//! The S3-facing parts against the real LocalStack runtime (installed from PyPI by
//! scripts/setup-localstack and run on the host): the state store's conditional writes,
//! SHA-256 checksums, and an assets publish. Same code paths as against AWS, through the
//! real aws-sdk-s3 client.

use crate::common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use glidepath::assets::{Progress, Publisher};
use glidepath::aws::state::S3State;
use glidepath::engine::ports::{Conditional, ETag, PortError, StateStore};
use glidepath::plan::{AssetLayout, AssetsConfig};
use sha2::Digest as _;

async fn s3_with_bucket(ls: &common::LocalStack, bucket: &str) -> aws_sdk_s3::Client {
    let config = common::localstack_sdk_config(ls).await;
    let s3 = glidepath::aws::client::s3(&config);
    if let Err(e) = s3.create_bucket().bucket(bucket).send().await {
        panic!(
            "create bucket {bucket}: {}\nLocalStack log:\n{}",
            aws_smithy_types::error::display::DisplayErrorContext(&e),
            ls.log_text()
        );
    }
    s3
}

fn written(c: Conditional) -> ETag {
    match c {
        Conditional::Written(tag) => tag,
        Conditional::Conflict => panic!("expected the write to win, got Conflict"),
    }
}

#[tokio::test]
async fn state_store_compare_and_swap_on_localstack() {
    let ls = common::start_localstack().await;
    println!(
        "LocalStack start-to-ready: {:.2}s on {}",
        ls.startup_time().as_secs_f64(),
        ls.endpoint()
    );
    let s3 = s3_with_bucket(&ls, "shop-glidepath-state").await;
    let store = S3State::new(
        s3.clone(),
        "shop-glidepath-state",
        "glidepath/shop/rehearsal",
    );

    // Create-if-absent: the first writer wins, the second gets Conflict.
    let first = written(
        store
            .put_if_absent("lock.json", br#"{"holder":"a"}"#.to_vec())
            .await
            .unwrap(),
    );
    let second = store
        .put_if_absent("lock.json", br#"{"holder":"b"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(second, Conditional::Conflict);
    let (body, tag) = store.get("lock.json").await.unwrap().expect("lock exists");
    assert_eq!(body, br#"{"holder":"a"}"#);
    assert_eq!(tag, first);

    // Swap on the current etag wins; the stale etag then loses.
    let renewed = written(
        store
            .put_if_match("lock.json", br#"{"holder":"a","n":2}"#.to_vec(), &first)
            .await
            .unwrap(),
    );
    assert_ne!(renewed, first);
    let stale = store
        .put_if_match("lock.json", br#"{"holder":"b"}"#.to_vec(), &first)
        .await
        .unwrap();
    assert_eq!(stale, Conditional::Conflict);
    let (body, _) = store.get("lock.json").await.unwrap().unwrap();
    assert_eq!(body, br#"{"holder":"a","n":2}"#);

    // The prefix is the adapter's business: keys come back relative; the object is under it.
    written(
        store
            .put_if_absent("releases/r1.json", b"{}".to_vec())
            .await
            .unwrap(),
    );
    let mut keys = store.list("").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["lock.json", "releases/r1.json"]);
    s3.head_object()
        .bucket("shop-glidepath-state")
        .key("glidepath/shop/rehearsal/lock.json")
        .send()
        .await
        .expect("stored under the prefix");

    // Delete, then a swap against the deleted version loses; a missing key reads as None.
    store.delete("lock.json").await.unwrap();
    store
        .delete("lock.json")
        .await
        .expect("deleting twice is fine");
    assert_eq!(store.get("lock.json").await.unwrap(), None);
    let gone = store
        .put_if_match("lock.json", b"{}".to_vec(), &renewed)
        .await
        .unwrap();
    assert_eq!(gone, Conditional::Conflict);

    // A missing bucket is a configuration error naming the bucket.
    let nowhere = S3State::new(s3, "no-such-state-bucket", "x");
    let err = nowhere.get("lock.json").await.unwrap_err();
    assert!(matches!(err, PortError::Fatal { .. }), "{err:?}");
    assert!(
        format!("{err:?}").contains("no-such-state-bucket"),
        "{err:?}"
    );
}

#[tokio::test]
async fn sha256_checksums_are_verified_on_localstack() {
    let ls = common::start_localstack().await;
    let s3 = s3_with_bucket(&ls, "shop-assets").await;
    let body = b"console.log('green');\n".to_vec();
    let sha = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sha2::Sha256::digest(&body),
    );

    // The SDK computes the SHA-256; LocalStack stores it and returns it on HEAD.
    let put = s3
        .put_object()
        .bucket("shop-assets")
        .key("static/app.js")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put with a SHA-256 checksum");
    assert_eq!(put.checksum_sha256(), Some(sha.as_str()));
    let head = s3
        .head_object()
        .bucket("shop-assets")
        .key("static/app.js")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_sha256(), Some(sha.as_str()));

    // A checksum that does not match the bytes is refused and nothing is stored.
    let wrong = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        sha2::Sha256::digest(b"something else"),
    );
    let err = s3
        .put_object()
        .bucket("shop-assets")
        .key("static/bad.js")
        .checksum_sha256(&wrong)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect_err("a wrong SHA-256 must be refused");
    let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&err)
        .unwrap_or_default()
        .to_string();
    assert!(
        ["BadDigest", "InvalidRequest", "XAmzContentSHA256Mismatch"].contains(&code.as_str()),
        "unexpected error code {code:?}: {}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert!(s3
        .head_object()
        .bucket("shop-assets")
        .key("static/bad.js")
        .send()
        .await
        .is_err());
}

fn write_tree(root: &std::path::Path) {
    let files = [
        (
            "index.html",
            "<!doctype html><script src=app.js></script>\n",
        ),
        ("app.js", "console.log('shop');\n"),
        ("css/site.css", "body { margin: 0 }\n"),
        (
            "img/logo.svg",
            "<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        ),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[tokio::test]
async fn assets_publish_and_republish_on_localstack() {
    let ls = common::start_localstack().await;
    let s3 = s3_with_bucket(&ls, "shop-assets").await;
    let tree = tempfile::tempdir().unwrap();
    write_tree(tree.path());
    let cfg = AssetsConfig {
        dir: tree.path().to_path_buf(),
        bucket: "shop-assets".into(),
        prefix: "static".into(),
        layout: AssetLayout::Versioned,
        retention: 3,
        cache_control: "public, max-age=31536000, immutable".into(),
        entry_cache_control: "no-cache".into(),
        include: vec![],
        exclude: vec![],
    };
    let publisher = Publisher::new(s3.clone(), cfg).with_name("shop");
    let quiet = |_: &Progress| {};

    let first = match publisher.publish("1.0.0", &quiet).await {
        Ok(r) => r,
        Err(e) => panic!("publish 1.0.0: {e}\nLocalStack log:\n{}", ls.log_text()),
    };
    println!("{}", first.summary());
    assert_eq!(first.files, 4);
    assert_eq!(first.uploaded, 4);
    assert!(first.uploaded_bytes > 0);
    let manifest = s3
        .get_object()
        .bucket("shop-assets")
        .key(&first.manifest_key)
        .send()
        .await
        .expect("the manifest is written");
    let manifest = manifest.body.collect().await.unwrap().into_bytes();
    let text = String::from_utf8_lossy(&manifest);
    assert!(text.contains("css/site.css"), "{text}");
    let head = s3
        .head_object()
        .bucket("shop-assets")
        .key("static/1.0.0/app.js")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("app.js under its version folder");
    assert!(head.checksum_sha256().is_some(), "S3 verified a SHA-256");

    // The same version again: nothing to do, nothing sent.
    let again = publisher.publish("1.0.0", &quiet).await.unwrap();
    println!("{}", again.summary());
    assert!(again.already_published);
    assert_eq!(again.uploaded_bytes, 0);

    // A new version of the same tree: server-side copies, still 0 bytes uploaded.
    let next = publisher.publish("1.0.1", &quiet).await.unwrap();
    println!("{}", next.summary());
    assert!(!next.already_published);
    assert_eq!(next.uploaded_bytes, 0, "{}", next.summary());
    assert_eq!(next.copied + next.skipped, 4, "{}", next.summary());
    s3.head_object()
        .bucket("shop-assets")
        .key(&next.manifest_key)
        .send()
        .await
        .expect("1.0.1's manifest");
}

// --- the engine's lock and ledger ------------------------------------------------------------

use glidepath::engine::event::ColourName;
use glidepath::engine::ledger::{self, Doc, EngineError, Record};
use glidepath::engine::lock::{self, Acquire};
use std::time::Duration;

#[tokio::test]
async fn release_lock_round_trip_on_localstack() {
    let ls = common::start_localstack().await;
    let s3 = s3_with_bucket(&ls, "shop-glidepath-state").await;
    let store = S3State::new(s3, "shop-glidepath-state", "glidepath/shop/rehearsal");
    let lease = Duration::from_secs(300);

    let Acquire::Acquired(mut mine) =
        lock::acquire(&store, "alice@ops-1", "r1", "1.4.0", lease, false)
            .await
            .unwrap()
    else {
        panic!("a free lock must be acquired");
    };
    // A second operator finds it held, and learns by whom.
    match lock::acquire(&store, "bob@ops-2", "r2", "1.4.1", lease, false)
        .await
        .unwrap()
    {
        Acquire::Held(theirs) => {
            assert_eq!(theirs.holder, "alice@ops-1");
            assert_eq!(theirs.release, "r1");
        }
        Acquire::Acquired(_) => panic!("two holders of one lock"),
    }
    // Renewal is a compare-and-swap on the lock's etag, and is visible to readers.
    let before = mine.body.expires_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    mine.renew(&store).await.unwrap();
    let (stored, _) = lock::read(&store).await.unwrap().unwrap();
    assert!(stored.expires_at > before);
    assert_eq!(stored, mine.body);

    // Broken behind our back: the next renewal refuses instead of overwriting.
    let report = lock::unlock(&store, true).await.unwrap();
    assert!(report.broken, "{report:?}");
    let Acquire::Acquired(bobs) = lock::acquire(&store, "bob@ops-2", "r2", "1.4.1", lease, false)
        .await
        .unwrap()
    else {
        panic!("the broken lock is free again");
    };
    let err = mine.renew(&store).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused(_)), "{err}");
    assert!(err.to_string().contains("bob@ops-2"), "{err}");

    // Releasing only deletes one's own lock.
    mine.release(&store).await.unwrap();
    assert_eq!(
        lock::read(&store).await.unwrap().unwrap().0.holder,
        "bob@ops-2"
    );
    bobs.release(&store).await.unwrap();
    assert!(lock::read(&store).await.unwrap().is_none());
}

#[tokio::test]
async fn ledger_record_and_index_round_trip_on_localstack() {
    let ls = common::start_localstack().await;
    let s3 = s3_with_bucket(&ls, "shop-glidepath-state").await;
    let store = S3State::new(s3, "shop-glidepath-state", "glidepath/shop/rehearsal");

    let record = Record::new(
        "r1",
        "shop",
        "rehearsal",
        "1.4.0",
        "digest",
        "alice@ops-1",
        ColourName::Blue,
        None,
        chrono::Utc::now(),
    );
    let mut doc = Doc::fresh(&ledger::record_key("r1"), record);
    doc.save(&store).await.unwrap();

    // Two readers of the same version: the first writer wins, the second is refused.
    let mut a = ledger::load_record(&store, "r1").await.unwrap().unwrap();
    let mut b = ledger::load_record(&store, "r1").await.unwrap().unwrap();
    assert_eq!(a.value, doc.value);
    a.value.snapshot_id = Some("shop-db-r1".into());
    a.save(&store).await.unwrap();
    b.value.task_arn = Some("arn:aws:ecs:us-east-1:123456789012:task/shop/x".into());
    let err = b.save(&store).await.unwrap_err();
    assert!(matches!(err, EngineError::Conflict { .. }), "{err}");
    let read = ledger::load_record(&store, "r1").await.unwrap().unwrap();
    assert_eq!(read.value.snapshot_id.as_deref(), Some("shop-db-r1"));
    assert_eq!(read.value.task_arn, None);

    // Creating a record that already exists is a conflict too (no silent overwrite).
    let mut dup = Doc::fresh(&ledger::record_key("r1"), read.value.clone());
    dup.value.version = "other".into();
    assert!(matches!(
        dup.save(&store).await,
        Err(EngineError::Conflict { .. })
    ));

    // The index: upsert through read-modify-write, then read back.
    let rec = read.value.clone();
    ledger::update_index(&store, |ix| ix.upsert(&rec))
        .await
        .unwrap();
    ledger::update_index(&store, |ix| ix.current = Some("r1".into()))
        .await
        .unwrap();
    let index = ledger::load_index(&store).await.unwrap();
    assert_eq!(index.current.as_deref(), Some("r1"));
    assert_eq!(index.releases.len(), 1);
    assert_eq!(index.releases[0].version, "1.4.0");
    assert_eq!(index.live_colour(), ColourName::Blue);
}
