//! Asset publisher test bodies, shared by the stage tests (`tests/assets_stage.rs`) and the
//! LocalStack tests: each body takes an [`S3Env`] (an S3 endpoint and a real SDK client for
//! it) and makes its own buckets, so the same bodies run against any S3-compatible endpoint.

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType};
use aws_sdk_s3::Client;
use aws_types::SdkConfig;
use glidepath::assets::hash::Digest;
use glidepath::assets::layout;
use glidepath::assets::manifest::Manifest;
use glidepath::assets::{prune, AssetsError, PublishOptions, PublishReport, Publisher};
use glidepath::plan::{AssetLayout, AssetsConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const SHORT: &str = "no-cache";
/// What the CLI uses for entry points when no plan says otherwise.
pub const CLI_SHORT: &str = "public, max-age=60, must-revalidate";

/// An S3 endpoint under test.
pub struct S3Env {
    pub s3: Client,
    pub endpoint: String,
}

impl S3Env {
    pub fn new(config: &SdkConfig) -> Self {
        S3Env {
            s3: glidepath::aws::client::s3(config),
            endpoint: config
                .endpoint_url()
                .expect("tests run against a local endpoint")
                .to_string(),
        }
    }

    /// A fresh, empty bucket with a name unique to this process and call.
    pub async fn bucket(&self, tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {}", dbg_err(&e)));
        name
    }

    /// Every key in the bucket under `prefix` with its ETag (paginated).
    pub async fn listing(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("list {bucket}/{prefix}: {}", dbg_err(&e)));
            for o in page.contents() {
                out.insert(
                    o.key().unwrap_or_default().to_string(),
                    o.e_tag().unwrap_or_default().to_string(),
                );
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return out,
            }
        }
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => true,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
            Err(e) => panic!("HEAD {bucket}/{key}: {}", dbg_err(&e)),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {}", dbg_err(&e)));
        out.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    }

    /// Put an object the way some other tool would (our publisher never overwrites).
    pub async fn put_foreign(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bytes.to_vec().into())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {bucket}/{key}: {}", dbg_err(&e)));
    }

    pub fn publisher(
        &self,
        bucket: &str,
        dir: &Path,
        layout: AssetLayout,
        opts: PublishOptions,
    ) -> Publisher {
        Publisher::new(self.s3.clone(), config(bucket, dir, layout)).with_options(opts)
    }
}

pub fn dbg_err<E: std::error::Error>(e: &E) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

pub fn config(bucket: &str, dir: &Path, layout: AssetLayout) -> AssetsConfig {
    AssetsConfig {
        dir: dir.to_path_buf(),
        bucket: bucket.into(),
        prefix: "static".into(),
        layout,
        retention: 3,
        cache_control: IMMUTABLE.into(),
        entry_cache_control: SHORT.into(),
        include: vec![],
        exclude: vec![],
    }
}

/// Small retries so an emulator hiccup is retried but a test never hangs on backoff.
pub fn opts() -> PublishOptions {
    PublishOptions {
        concurrency: 8,
        ..PublishOptions::default()
    }
}

fn quiet(_: &glidepath::assets::Progress) {}

pub async fn publish(p: &Publisher, version: &str) -> PublishReport {
    match p.publish(version, &quiet).await {
        Ok(r) => r,
        Err(e) => panic!("publish {version}: {e}"),
    }
}

pub async fn publish_err(p: &Publisher, version: &str) -> AssetsError {
    match p.publish(version, &quiet).await {
        Ok(r) => panic!("publish {version} should have failed, got: {}", r.summary()),
        Err(e) => e,
    }
}

// --- trees ---------------------------------------------------------------------------------

/// The published files of the sample site (dot files are added too, and must be skipped).
pub const SITE: &[(&str, &[u8])] = &[
    (
        "index.html",
        b"<!doctype html><title>shop</title><script src=js/app.js></script>",
    ),
    ("about/index.html", b"<!doctype html><title>about</title>"),
    ("css/site.css", b"body{margin:0;font-family:system-ui}"),
    ("css/vendor/reset.css", b"*{box-sizing:border-box}"),
    ("js/app.js", b"import('./chunks/a.js').then(m => m.start())"),
    (
        "js/chunks/a.js",
        b"export function start(){console.log('a')}",
    ),
    ("js/chunks/b.js", b"export const b = 2"),
    (
        "img/logo.svg",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>",
    ),
    (
        "img/pixel.png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\xff\xfe",
    ),
    ("fonts/body.woff2", b"wOF2\x00\x01\x00\x00\x80\x81\x82"),
    ("data/config.json", b"{\"api\":\"/api\"}"),
    ("empty.txt", b""),
    ("docs/read me é+1.txt", b"spaces, + and non-ASCII in a key"),
];

/// Files the walk must skip.
pub const HIDDEN: &[(&str, &[u8])] = &[(".env", b"SECRET=1"), (".git/HEAD", b"ref: main")];

/// The three files a new version changes.
pub const CHANGED: [&str; 3] = ["css/site.css", "js/app.js", "img/logo.svg"];

pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The sample site in a fresh temp dir.
pub fn site() -> TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for (rel, bytes) in SITE.iter().chain(HIDDEN) {
        write(t.path(), rel, bytes);
    }
    t
}

/// Change `files` in place (append a line), as a new build would.
pub fn change(root: &Path, files: &[&str], tag: &str) {
    for rel in files {
        let mut bytes = std::fs::read(root.join(rel)).expect("read");
        bytes.extend_from_slice(format!("\n/* {tag} */").as_bytes());
        write(root, rel, &bytes);
    }
}

/// A tree of `n` files of `size` bytes each with distinct, deterministic content.
pub fn bulk_tree(n: usize, size: usize) -> TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for i in 0..n {
        let mut bytes = format!("/* file {i} */\n").into_bytes();
        let mut x = i as u64 * 2_654_435_761 + 1;
        while bytes.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(size);
        write(t.path(), &format!("js/{:02}/f{i:04}.js", i % 16), &bytes);
    }
    t
}

/// Published (non-dot) files under `root`, by logical path.
pub fn local_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_name().as_bytes().first() == Some(&b'.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                go(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_str().expect("utf-8").to_string(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

// --- checks --------------------------------------------------------------------------------

/// Content-Type we expect by extension: spelled out for the common kinds, so a wrong mime
/// database entry would show here and not only agree with itself.
fn expected_type(logical: &str) -> Option<&'static str> {
    let ext = logical.rsplit('.').next()?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "json" => "application/json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// Read version `version`'s manifest and check every entry's object: its bytes hash to the
/// manifest's sha256 (and to the local file's, when `local` is given), S3's own SHA-256
/// checksum agrees, and Content-Type and Cache-Control are right. Returns the manifest.
pub async fn check_published(
    env: &S3Env,
    bucket: &str,
    version: &str,
    local: Option<&Path>,
) -> Manifest {
    check_published_with(env, bucket, version, local, SHORT).await
}

/// [`check_published`] with `short` as the manifest's and HTML pages' Cache-Control.
pub async fn check_published_with(
    env: &S3Env,
    bucket: &str,
    version: &str,
    local: Option<&Path>,
    short: &str,
) -> Manifest {
    let key = layout::manifest_key("static", version);
    let head = env
        .s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("manifest {key} missing: {}", dbg_err(&e)));
    assert_eq!(head.cache_control(), Some(short), "manifest Cache-Control");
    assert_eq!(
        head.content_type(),
        Some("application/json"),
        "manifest type"
    );
    let manifest = Manifest::parse(&key, &env.get(bucket, &key).await).expect("manifest parses");
    assert_eq!(manifest.version, version);

    if let Some(root) = local {
        let files = local_files(root);
        assert_eq!(
            manifest.files.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "manifest lists exactly the published files (no dot files)"
        );
        for (logical, bytes) in &files {
            let e = &manifest.files[logical];
            assert_eq!(
                e.sha256,
                Digest::of(bytes).hex(),
                "{logical}: manifest sha256"
            );
            assert_eq!(e.size, bytes.len() as u64, "{logical}: manifest size");
        }
    }

    for (logical, e) in &manifest.files {
        let out = env
            .s3
            .get_object()
            .bucket(bucket)
            .key(&e.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{logical}: object {} missing: {}", e.key, dbg_err(&err)));
        let ct = out.content_type().map(str::to_string);
        let cc = out.cache_control().map(str::to_string);
        let meta = out.metadata().and_then(|m| m.get("sha256")).cloned();
        let composite = matches!(out.checksum_type(), Some(ChecksumType::Composite))
            || out.checksum_sha256().is_some_and(|c| c.contains('-'));
        let checksum = out.checksum_sha256().map(str::to_string);
        let body = out.body.collect().await.expect("body").into_bytes();

        let digest = Digest::of(&body);
        assert_eq!(digest.hex(), e.sha256, "{logical}: bytes at {}", e.key);
        assert_eq!(body.len() as u64, e.size, "{logical}: size at {}", e.key);
        assert_eq!(
            meta.as_deref(),
            Some(e.sha256.as_str()),
            "{logical}: sha256 metadata"
        );
        if !composite {
            assert_eq!(
                checksum.as_deref(),
                Some(digest.base64().as_str()),
                "{logical}: S3's SHA-256 checksum of {}",
                e.key
            );
        }
        assert_eq!(
            ct.as_deref(),
            Some(e.content_type.as_str()),
            "{logical}: Content-Type"
        );
        assert_eq!(e.content_type, layout::content_type(logical));
        if let Some(want) = expected_type(logical) {
            assert_eq!(e.content_type, want, "{logical}: Content-Type");
        }
        if logical.ends_with(".js") {
            assert!(
                e.content_type.ends_with("javascript; charset=utf-8"),
                "{logical}"
            );
        }
        let want_cc = if logical.ends_with(".html") {
            short
        } else {
            IMMUTABLE
        };
        assert_eq!(cc.as_deref(), Some(want_cc), "{logical}: Cache-Control");
    }
    manifest
}

// --- bodies --------------------------------------------------------------------------------

/// Publish the site (with one file big enough for multipart), check every object; publish
/// the same version again (a no-op that says so, nothing written); publish a new version
/// with three changed files (three uploads, the rest server-side copies).
pub async fn publish_republish_and_new_version(env: &S3Env) {
    let bucket = env.bucket("versioned").await;
    let tree = site();
    // 11 MiB with 5 MiB parts: three parts, the last one short.
    let big: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    write(tree.path(), "media/intro.bin", &big);
    let n = SITE.len() as u64 + 1;
    let p = env.publisher(
        &bucket,
        tree.path(),
        AssetLayout::Versioned,
        PublishOptions {
            multipart_threshold: 5 * 1024 * 1024,
            part_size: 5 * 1024 * 1024,
            ..opts()
        },
    );

    let r1 = publish(&p, "1.0.0").await;
    let total: u64 = local_files(tree.path())
        .values()
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(
        (r1.files, r1.uploaded, r1.copied, r1.skipped),
        (n, n, 0, 0),
        "{r1:?}"
    );
    assert_eq!(r1.uploaded_bytes, total);
    assert!(!r1.already_published);
    let m1 = check_published(env, &bucket, "1.0.0", Some(tree.path())).await;
    assert_eq!(m1.files["css/site.css"].key, "static/1.0.0/css/site.css");
    let before = env.listing(&bucket, "").await;
    assert_eq!(before.len() as u64, n + 1, "files + manifest: {before:?}");

    // Same version, same tree: nothing to do, and nothing touched.
    let r2 = publish(&p, "1.0.0").await;
    assert!(r2.already_published, "{r2:?}");
    assert_eq!((r2.uploaded, r2.uploaded_bytes, r2.copied), (0, 0, 0));
    let s = r2.summary();
    assert!(
        s.contains("already published") && s.contains("nothing to do"),
        "{s}"
    );
    assert_eq!(
        env.listing(&bucket, "").await,
        before,
        "a no-op writes nothing"
    );

    // New version: three files changed.
    change(tree.path(), &CHANGED, "1.1.0");
    let changed_bytes: u64 = CHANGED
        .iter()
        .map(|f| std::fs::metadata(tree.path().join(f)).expect("stat").len())
        .sum();
    let r3 = publish(&p, "1.1.0").await;
    assert_eq!(
        (r3.uploaded, r3.copied, r3.skipped),
        (3, n - 3, 0),
        "{r3:?}"
    );
    assert_eq!(r3.uploaded_bytes, changed_bytes);
    assert!(r3.summary().starts_with(&format!(
        "published {bucket}/static 1.1.0: {n} files, 3 uploaded"
    )));
    let m2 = check_published(env, &bucket, "1.1.0", Some(tree.path())).await;
    assert_eq!(
        m2.files["media/intro.bin"].key,
        "static/1.1.0/media/intro.bin"
    );
    // The old version is intact: blue's pages still find blue's files.
    let again = check_published(env, &bucket, "1.0.0", None).await;
    assert_eq!(again, m1);
    for f in CHANGED {
        assert_ne!(m1.files[f].sha256, m2.files[f].sha256, "{f}");
    }
}

/// Hashed layout: unchanged files are shared across versions (skipped, not copied), changed
/// ones get new content-addressed keys; each version still gets its own manifest.
pub async fn hashed_layout_skips_known_content(env: &S3Env) {
    let bucket = env.bucket("hashed").await;
    let tree = site();
    let n = SITE.len() as u64;
    let p = env.publisher(&bucket, tree.path(), AssetLayout::Hashed, opts());
    let r1 = publish(&p, "1").await;
    assert_eq!((r1.uploaded, r1.copied, r1.skipped), (n, 0, 0), "{r1:?}");
    let m1 = check_published(env, &bucket, "1", Some(tree.path())).await;
    let app = &m1.files["js/app.js"];
    assert_eq!(
        app.key,
        format!("static/js/app.{}.js", &app.sha256[..8]),
        "hash before the extension"
    );

    change(tree.path(), &CHANGED, "2");
    let r2 = publish(&p, "2").await;
    assert_eq!(
        (r2.uploaded, r2.copied, r2.skipped),
        (3, 0, n - 3),
        "{r2:?}"
    );
    let m2 = check_published(env, &bucket, "2", Some(tree.path())).await;
    for (logical, e) in &m2.files {
        let same = m1.files[logical].key == e.key;
        assert_eq!(same, !CHANGED.contains(&logical.as_str()), "{logical}");
    }
    // Shared objects + 3 new ones + two manifests.
    assert_eq!(env.listing(&bucket, "").await.len() as u64, n + 3 + 2);
    assert!(publish(&p, "2").await.already_published);
}

/// Someone else's object at one of our keys: an error naming the key, their object left
/// as it was, and no manifest (the version is not visible).
pub async fn conflicting_object_is_refused(env: &S3Env) {
    // Versioned: same size, different bytes, so only the SHA-256 can tell.
    let bucket = env.bucket("conflict").await;
    let tree = site();
    let key = "static/1.0.0/css/site.css";
    let ours = std::fs::read(tree.path().join("css/site.css")).expect("read");
    let theirs = ours.to_ascii_uppercase();
    assert_eq!(ours.len(), theirs.len());
    env.put_foreign(&bucket, key, &theirs).await;
    let p = env.publisher(&bucket, tree.path(), AssetLayout::Versioned, opts());
    let err = publish_err(&p, "1.0.0").await;
    let msg = err.to_string();
    assert!(matches!(err, AssetsError::Conflict { .. }), "{msg}");
    assert!(
        msg.contains(key) && msg.contains("nothing was overwritten"),
        "{msg}"
    );
    assert_eq!(
        env.get(&bucket, key).await,
        theirs,
        "their object is untouched"
    );
    assert!(!env.exists(&bucket, "static/1.0.0/manifest.json").await);

    // Hashed: the content-addressed key of js/app.js holds other bytes (a different size).
    let bucket = env.bucket("conflict-h").await;
    let app = std::fs::read(tree.path().join("js/app.js")).expect("read");
    let key = layout::object_key(
        AssetLayout::Hashed,
        "static",
        "1",
        "js/app.js",
        &Digest::of(&app),
    );
    env.put_foreign(&bucket, &key, b"something else entirely")
        .await;
    let p = env.publisher(&bucket, tree.path(), AssetLayout::Hashed, opts());
    let msg = publish_err(&p, "1").await.to_string();
    assert!(msg.contains(&key), "{msg}");
    assert_eq!(env.get(&bucket, &key).await, b"something else entirely");
    let left: Vec<String> = env.listing(&bucket, "").await.into_keys().collect();
    assert_eq!(
        left,
        [key],
        "the conflict is found before anything is uploaded"
    );
}

/// Cancel a publish mid-way (drop its future): no manifest; a rerun finishes it, sending
/// only what was not there yet.
pub async fn interrupted_publish_resumes(env: &S3Env, layout: AssetLayout) {
    let bucket = env.bucket("cancel").await;
    // Where this layout's objects go (the manifest is the only thing under `static/7/` in
    // the hashed layout, and it must not be there).
    let under = match layout {
        AssetLayout::Versioned => "static/7/",
        AssetLayout::Hashed => "static/js/",
    };
    let files = 240u64;
    let tree = bulk_tree(files as usize, 24 * 1024);
    let p = env.publisher(
        &bucket,
        tree.path(),
        layout,
        PublishOptions {
            concurrency: 4,
            ..opts()
        },
    );
    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let progress = move |pr: &glidepath::assets::Progress| {
        if pr.uploaded >= 40 {
            signal.notify_one();
        }
    };
    tokio::select! {
        r = p.publish("7", &progress) => panic!("publish finished before it could be interrupted: {r:?}"),
        _ = reached.notified() => {}
    }
    // Requests in flight when the future was dropped either land whole or not at all, but
    // a loaded server may take its time: wait until the listing stops changing.
    let mut present = env.listing(&bucket, under).await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = env.listing(&bucket, under).await;
        if now == present {
            break;
        }
        present = now;
    }
    assert!(
        present.len() >= 40 && (present.len() as u64) < files,
        "{} objects after the interruption",
        present.len()
    );
    assert!(
        !present.contains_key("static/7/manifest.json"),
        "no manifest"
    );
    assert!(!env.exists(&bucket, "static/7/manifest.json").await);

    let r = publish(&p, "7").await;
    assert_eq!(
        r.skipped,
        present.len() as u64,
        "finished files are adopted: {r:?}"
    );
    assert_eq!(r.uploaded, files - present.len() as u64, "{r:?}");
    assert_eq!(r.copied, 0);
    let after = env.listing(&bucket, under).await;
    for (k, etag) in &present {
        assert_eq!(after.get(k), Some(etag), "{k} was not written again");
    }
    check_published(env, &bucket, "7", Some(tree.path())).await;
}

/// Retention: keep the newest N plus the protected versions; a dry run removes nothing.
pub async fn prune_keeps_newest_and_protected(env: &S3Env) {
    let bucket = env.bucket("prune").await;
    let tree = site();
    let p = env.publisher(&bucket, tree.path(), AssetLayout::Versioned, opts());
    let n = SITE.len();
    for v in 1..=5 {
        change(tree.path(), &["index.html"], &format!("v{v}"));
        publish(&p, &format!("v{v}")).await;
    }
    let cfg = config(&bucket, tree.path(), AssetLayout::Versioned);
    let all = env.listing(&bucket, "").await;
    assert_eq!(all.len(), 5 * (n + 1));

    let protected = vec!["v1".to_string()];
    let dry = prune::prune(&env.s3, &cfg, 2, &protected, true)
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.keep, ["v5", "v4", "v1"]);
    assert_eq!(dry.removed, ["v3", "v2"]);
    assert_eq!(dry.objects, 2 * (n as u64 + 1));
    assert!(
        dry.summary().starts_with("would remove 2 version(s)"),
        "{}",
        dry.summary()
    );
    assert_eq!(
        env.listing(&bucket, "").await,
        all,
        "a dry run removes nothing"
    );

    let done = prune::prune(&env.s3, &cfg, 2, &protected, false)
        .await
        .expect("prune");
    assert_eq!(done.removed, ["v3", "v2"]);
    let left = env.listing(&bucket, "").await;
    assert_eq!(left.len(), 3 * (n + 1));
    assert!(left
        .keys()
        .all(|k| !k.starts_with("static/v2/") && !k.starts_with("static/v3/")));
    for v in ["v1", "v4", "v5"] {
        check_published(env, &bucket, v, None).await;
    }
    // keep 0 still keeps the protected ones.
    let protected = vec!["v1".to_string(), "v5".to_string()];
    let r = prune::prune(&env.s3, &cfg, 0, &protected, false)
        .await
        .expect("prune");
    assert_eq!(r.removed, ["v4"]);
    let left: BTreeSet<String> = env
        .listing(&bucket, "")
        .await
        .keys()
        .filter_map(|k| k.strip_suffix("/manifest.json").map(str::to_string))
        .collect();
    assert_eq!(
        left,
        BTreeSet::from(["static/v1".into(), "static/v5".into()])
    );

    // Hashed: objects a kept version still references stay.
    let bucket = env.bucket("prune-h").await;
    let tree = site();
    let p = env.publisher(&bucket, tree.path(), AssetLayout::Hashed, opts());
    let m1 = {
        publish(&p, "1").await;
        check_published(env, &bucket, "1", None).await
    };
    change(tree.path(), &CHANGED, "2");
    publish(&p, "2").await;
    let cfg = config(&bucket, tree.path(), AssetLayout::Hashed);
    let r = prune::prune(&env.s3, &cfg, 1, &[], false)
        .await
        .expect("prune");
    assert_eq!(
        (r.removed.as_slice(), r.objects),
        (["1".to_string()].as_slice(), 3 + 1)
    );
    check_published(env, &bucket, "2", Some(tree.path())).await;
    for f in CHANGED {
        assert!(
            !env.exists(&bucket, &m1.files[f].key).await,
            "{f}: v1-only object removed"
        );
    }
}

/// One way to make a tree bad; returns the path the error must name.
pub type Spoil = fn(&Path, &Path) -> PathBuf;

/// A symlink whose absolute target is outside the folder.
pub fn spoil_symlink_escape(root: &Path, outside: &Path) -> PathBuf {
    let link = root.join("js/secret.js");
    std::os::unix::fs::symlink(outside.join("secret"), &link).expect("symlink");
    link
}

/// A relative symlink that climbs out with `..` components.
pub fn spoil_dotdot(root: &Path, outside: &Path) -> PathBuf {
    let up = "../".repeat(root.join("css").components().count());
    let target = format!(
        "{up}{}",
        outside
            .join("secret")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    let link = root.join("css/up.css");
    std::os::unix::fs::symlink(target, &link).expect("symlink");
    link
}

pub fn spoil_fifo(root: &Path, _: &Path) -> PathBuf {
    let path = root.join("js/pipe.js");
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("c path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    path
}

pub fn spoil_non_utf8(root: &Path, _: &Path) -> PathBuf {
    let path = root.join("img").join(OsStr::from_bytes(b"logo-\xff.svg"));
    std::fs::write(&path, b"<svg/>").expect("write");
    path
}

/// Each bad tree fails before anything is uploaded, naming the offending path.
pub async fn bad_trees_upload_nothing(env: &S3Env) {
    let cases: [(&str, Spoil, &str); 4] = [
        (
            "symlink escape",
            spoil_symlink_escape,
            "outside the assets folder",
        ),
        ("`..` symlink", spoil_dotdot, "outside the assets folder"),
        ("fifo", spoil_fifo, "fifo"),
        ("non-UTF-8 name", spoil_non_utf8, "not valid UTF-8"),
    ];
    let bucket = env.bucket("bad").await;
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret"), "do not publish").expect("write");
    for (what, spoil, says) in cases {
        let tree = site();
        let bad = spoil(tree.path(), outside.path());
        let p = env.publisher(&bucket, tree.path(), AssetLayout::Versioned, opts());
        let err = publish_err(&p, "1").await;
        let msg = err.to_string();
        assert!(matches!(err, AssetsError::Walk(_)), "{what}: {msg}");
        let shown = bad.display().to_string();
        assert!(
            msg.contains(&shown),
            "{what}: error must name {shown}: {msg}"
        );
        assert!(msg.contains(says), "{what}: {msg}");
        assert!(
            env.listing(&bucket, "").await.is_empty(),
            "{what}: nothing uploaded"
        );
    }
}

// --- the binary ----------------------------------------------------------------------------

/// `glidepath --endpoint-url E assets publish --dir D --bucket B --prefix static --version V`
/// with dummy credentials and no shared config files.
pub fn cli(env: &S3Env, dir: &Path, bucket: &str, version: &str) -> Command {
    cli_with(
        env!("CARGO_BIN_EXE_glidepath").as_ref(),
        env,
        dir,
        bucket,
        version,
    )
}

pub fn cli_with(bin: &Path, env: &S3Env, dir: &Path, bucket: &str, version: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg("--endpoint-url")
        .arg(&env.endpoint)
        .args(["assets", "publish", "--dir"])
        .arg(dir)
        .args([
            "--bucket",
            bucket,
            "--prefix",
            "static",
            "--version",
            version,
        ])
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    c
}

pub fn run(mut c: Command) -> (i32, String, String) {
    let out: Output = c.output().expect("run glidepath");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary: exit 0 and one summary line; again: exit 0, "already published"; a bad
/// version: exit 2 naming it.
pub async fn binary_publishes(env: &S3Env) {
    let bucket = env.bucket("cli").await;
    let tree = site();
    let n = SITE.len();
    let (code, out, err) = run(cli(env, tree.path(), &bucket, "2.0.0"));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one summary line: {out}");
    let want = format!("published {bucket}/static 2.0.0: {n} files, {n} uploaded (");
    assert!(lines[0].starts_with(&want), "{}", lines[0]);
    assert!(
        lines[0].contains("), 0 copied, 0 skipped in "),
        "{}",
        lines[0]
    );
    // The CLI's own short Cache-Control for entry points.
    let head = env
        .s3
        .head_object()
        .bucket(&bucket)
        .key("static/2.0.0/index.html")
        .send()
        .await
        .expect("index.html");
    assert_eq!(head.cache_control(), Some(CLI_SHORT));

    let (code, out, err) = run(cli(env, tree.path(), &bucket, "2.0.0"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("is already published") && out.contains("nothing to do"),
        "{out}"
    );

    let (code, out, err) = run(cli(env, tree.path(), &bucket, "a/b"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("\"a/b\""), "{err}");
}

/// Parse `N uploaded` and `M skipped` out of a summary line.
pub fn counts(summary: &str) -> (u64, u64) {
    let num = |word: &str| -> u64 {
        let at = summary
            .find(word)
            .unwrap_or_else(|| panic!("no `{word}` in {summary}"));
        summary[..at]
            .trim_end()
            .rsplit([' ', ','])
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{word}` in {summary}"))
    };
    (num(" uploaded"), num(" skipped"))
}

/// `kill -9` the binary mid-publish: no manifest; a rerun finishes and sends only the rest.
pub async fn binary_killed_midway_resumes(env: &S3Env) {
    let bucket = env.bucket("kill").await;
    let files = 400u64;
    let tree = bulk_tree(files as usize, 32 * 1024);
    let mut c = cli(env, tree.path(), &bucket, "3");
    c.args(["--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn glidepath");
    let mut seen = 0;
    for _ in 0..600 {
        seen = env.listing(&bucket, "static/3/").await.len();
        if seen >= 30 {
            break;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("publish ended ({status}) before it could be killed; {seen} objects");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let present = env.listing(&bucket, "static/3/").await;
    assert!(
        present.len() >= seen && (present.len() as u64) < files,
        "{} objects",
        present.len()
    );
    assert!(
        !env.exists(&bucket, "static/3/manifest.json").await,
        "no manifest"
    );

    let (code, out, err) = run(cli(env, tree.path(), &bucket, "3"));
    assert_eq!(code, 0, "{out}{err}");
    let (uploaded, skipped) = counts(out.trim());
    assert_eq!(skipped, present.len() as u64, "{out}");
    assert_eq!(uploaded + skipped, files, "{out}");
    let after = env.listing(&bucket, "static/3/").await;
    for (k, etag) in &present {
        assert_eq!(after.get(k), Some(etag), "{k} was not written again");
    }
    check_published_with(env, &bucket, "3", Some(tree.path()), CLI_SHORT).await;
}

/// An unreadable file: exit 2, the path named, nothing uploaded. Root reads any file, so as
/// root the binary runs without the capabilities that bypass file permissions (setpriv);
/// without setpriv the check is skipped with the reason printed.
pub async fn binary_unreadable_file(env: &S3Env) {
    let bucket = env.bucket("unreadable").await;
    let tree = site();
    let bad = tree.path().join("css/site.css");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .expect("chmod");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut c = cli(env, tree.path(), &bucket, "1");
    if root {
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(setpriv) = setpriv else {
            eprintln!("SKIPPED unreadable-file check: running as root (which reads any file) and setpriv (util-linux) is not installed to drop that privilege");
            return;
        };
        let inner = c;
        c = Command::new(setpriv);
        c.args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null());
    }
    let (code, out, err) = run(c);
    if root && err.contains("setpriv:") {
        eprintln!("SKIPPED unreadable-file check: running as root and setpriv could not drop the file-permission capabilities: {err}");
        return;
    }
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        env.listing(&bucket, "").await.is_empty(),
        "nothing uploaded"
    );
}

/// On a loopback endpoint the binary needs no credentials of the caller's (like every other
/// command there): with none in the environment it still publishes.
pub async fn binary_publishes_without_credentials(env: &S3Env) {
    let bucket = env.bucket("nocreds").await;
    let tree = site();
    let mut c = cli(env, tree.path(), &bucket, "2.0.0");
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    let (code, out, err) = run(c);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

/// `glidepath --endpoint-url E ARGS...` with dummy credentials and no shared config files.
pub fn glidepath(env: &S3Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_glidepath"));
    c.arg("--endpoint-url")
        .arg(&env.endpoint)
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    c
}

/// The example rehearsal plan, pointed at `env`, this tree and these buckets.
pub fn plan_file(env: &S3Env, dir: &Path, assets_bucket: &str, state_bucket: &str) -> TempDir {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rehearsal.toml"),
    )
    .expect("examples/rehearsal.toml");
    let mut text = String::new();
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "endpoint_url" => format!("endpoint_url = {:?}", env.endpoint),
            "dir" => format!("dir = {:?}", dir.display().to_string()),
            "bucket" if line.contains("shop-assets") => format!("bucket = {assets_bucket:?}"),
            "bucket" if line.contains("shop-glidepath-state") => {
                format!("bucket = {state_bucket:?}")
            }
            _ => line.to_string(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    assert!(
        text.contains(assets_bucket) && text.contains(state_bucket),
        "{text}"
    );
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), "plan.toml", text.as_bytes());
    t
}

/// Through the binary and a plan: publish four versions, then prune with the ledger naming
/// the live and standby versions — they stay whatever --keep says; --dry-run removes nothing.
pub async fn binary_prune_protects_ledger_versions(env: &S3Env) {
    let assets = env.bucket("prune-cli").await;
    let state = env.bucket("prune-state").await;
    let tree = site();
    let plan_dir = plan_file(env, tree.path(), &assets, &state);
    let plan = plan_dir.path().join("plan.toml");
    let plan = plan.to_str().expect("utf-8 path");
    for v in ["v1", "v2", "v3", "v4"] {
        change(tree.path(), &["index.html"], v);
        let (code, out, err) = run(glidepath(env, &["assets", "publish", plan, "--version", v]));
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with(&format!("published shop {v}: ")), "{out}");
    }
    // The ledger's index as the engine writes it: v1 live, v2 standby.
    let index = serde_json::json!({
        "live": {"version": "v1", "colour": "green", "release": "r1"},
        "standby": {"version": "v2", "colour": "blue", "release": "r0"},
        "current": null,
        "releases": []
    });
    env.s3
        .put_object()
        .bucket(&state)
        .key("glidepath/shop/rehearsal/ledger/index.json")
        .body(serde_json::to_vec(&index).expect("json").into())
        .send()
        .await
        .expect("put index");
    let manifests = |l: BTreeMap<String, String>| -> Vec<String> {
        l.into_keys()
            .filter_map(|k| k.strip_suffix("/manifest.json").map(str::to_string))
            .collect()
    };
    let before = env.listing(&assets, "").await;

    let (code, out, err) = run(glidepath(
        env,
        &["assets", "prune", plan, "--keep", "1", "--dry-run"],
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("v1, v2"),
        "names the protected versions: {err}"
    );
    assert!(out.starts_with("would remove 1 version(s) (v3; "), "{out}");
    assert_eq!(
        env.listing(&assets, "").await,
        before,
        "a dry run removes nothing"
    );

    let (code, out, err) = run(glidepath(env, &["assets", "prune", plan, "--keep", "1"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("removed 1 version(s) (v3; "), "{out}");
    assert_eq!(
        manifests(env.listing(&assets, "").await),
        ["static/v1", "static/v2", "static/v4"]
    );
}

/// An index in a shape the engine does not write (here `live` without a `version`) is an
/// error that removes nothing, not an empty list of protected versions.
pub async fn binary_prune_refuses_an_unreadable_index(env: &S3Env) {
    let assets = env.bucket("prune-odd").await;
    let state = env.bucket("prune-odd-state").await;
    let tree = site();
    let plan_dir = plan_file(env, tree.path(), &assets, &state);
    let plan = plan_dir.path().join("plan.toml");
    let plan = plan.to_str().expect("utf-8 path");
    for v in ["v1", "v2", "v3"] {
        change(tree.path(), &["index.html"], v);
        let (code, out, err) = run(glidepath(env, &["assets", "publish", plan, "--version", v]));
        assert_eq!(code, 0, "{out}{err}");
    }
    let index = serde_json::json!({"live": {"ver": "v1"}, "releases": []});
    env.s3
        .put_object()
        .bucket(&state)
        .key("glidepath/shop/rehearsal/ledger/index.json")
        .body(serde_json::to_vec(&index).expect("json").into())
        .send()
        .await
        .expect("put index");
    let before = env.listing(&assets, "").await;
    let (code, out, err) = run(glidepath(env, &["assets", "prune", plan, "--keep", "1"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("nothing was pruned") && err.contains("ledger/index.json"),
        "says why and names the index: {err}"
    );
    assert_eq!(env.listing(&assets, "").await, before, "nothing removed");
}
