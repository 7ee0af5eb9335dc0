//! Publish one version to S3: walk + hash (all cores) while reading earlier manifests, plan,
//! then upload / copy with adaptive concurrency ([`super::pace`]), and write the manifest last.
//!
//! Every write is `If-None-Match: *`, so nothing is ever overwritten; a 412 means "already
//! there", which is fine only if HEAD shows the same SHA-256. Every object carries its
//! SHA-256 as S3's checksum (S3 verifies the bytes) and as `sha256` metadata (so HEAD can
//! compare, also for multipart objects whose S3 checksum is composite).

use super::hash::{self, Digest};
use super::layout;
use super::manifest::Manifest;
use super::pace::{Aimd, Bounds, Pace, PaceReport};
use super::plan::{self, Action, Item, Known, LocalFile, Outcome, PublishPlan, Target};
use super::s3::{self, classify, retry, s3_error, Fail, Retry};
use super::walk::{self, Filter};
use super::{AssetsError, Progress, ProgressFn, Stage};
use crate::plan::{AssetLayout, AssetsConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};
use aws_sdk_s3::Client;
use aws_smithy_types::body::SdkBody;
use futures::{StreamExt, TryStreamExt};
use sha2::Digest as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tuning knobs; the defaults suit real S3 and the local stage alike.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Objects in flight at first; the limit then adapts (see [`super::pace`]) unless pinned.
    pub concurrency: usize,
    /// Keep exactly `concurrency` in flight (`--concurrency N`).
    pub pin_concurrency: bool,
    /// Hashing threads (0 = all cores).
    pub hash_threads: usize,
    /// How many of the newest manifests tell us what content is already published.
    pub recent_manifests: usize,
    /// Files larger than this go up in parts.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Files up to this size are read into memory for a single PUT; larger ones stream.
    pub in_memory_max: u64,
    pub retry: Retry,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            concurrency: Bounds::default().start,
            pin_concurrency: false,
            hash_threads: 0,
            recent_manifests: 5,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            in_memory_max: 1024 * 1024,
            retry: s3::RETRY,
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishReport {
    /// Whom the summary names (the app, or the bucket/prefix).
    pub name: String,
    pub version: String,
    pub manifest_key: String,
    pub files: u64,
    pub bytes: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub copied: u64,
    /// Already present with the same content (earlier version, or an interrupted run).
    pub skipped: u64,
    /// The version's manifest already existed with identical content: nothing was done.
    pub already_published: bool,
    pub elapsed: Duration,
    /// How many objects were in flight, and how the limit moved.
    pub pace: PaceReport,
}

impl PublishReport {
    /// `published shop 1.2.0: 12 files, 3 uploaded (210 KB), 9 copied, 0 skipped in 0.4 s`
    pub fn summary(&self) -> String {
        if self.already_published {
            return format!(
                "{} {} is already published ({} files, {}): nothing to do ({})",
                self.name,
                self.version,
                self.files,
                self.manifest_key,
                super::secs(self.elapsed)
            );
        }
        format!(
            "published {} {}: {} files, {} uploaded ({}), {} copied, {} skipped in {}",
            self.name,
            self.version,
            self.files,
            self.uploaded,
            super::human_bytes(self.uploaded_bytes),
            self.copied,
            self.skipped,
            super::secs(self.elapsed)
        )
    }
}

/// What a publish would do (see [`Publisher::preview`]): files whose content is new, and
/// files whose content is already in the bucket (copied or skipped, never uploaded).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    pub files: u64,
    pub bytes: u64,
    pub new_files: u64,
    pub new_bytes: u64,
    pub published_files: u64,
    pub published_bytes: u64,
    /// This version's manifest exists already with this content.
    pub already_published: bool,
}

/// Publishes versions of one assets configuration.
#[derive(Debug, Clone)]
pub struct Publisher {
    s3: Client,
    cfg: AssetsConfig,
    opts: PublishOptions,
    name: String,
}

enum CopyOutcome {
    /// Copied; S3's SHA-256 of the new object when it reports one.
    Copied(Option<Digest>),
    /// 412: something is already at the destination.
    Exists,
    SourceMissing,
}

/// How one item ended.
enum Done {
    Uploaded(u64),
    Copied,
    Skipped,
}

impl Publisher {
    pub fn new(s3: Client, cfg: AssetsConfig) -> Self {
        let prefix = layout::normalize_prefix(&cfg.prefix);
        let name = if prefix.is_empty() {
            cfg.bucket.clone()
        } else {
            format!("{}/{prefix}", cfg.bucket)
        };
        Publisher {
            s3,
            cfg,
            opts: PublishOptions::default(),
            name,
        }
    }

    pub fn with_options(mut self, opts: PublishOptions) -> Self {
        self.opts = opts;
        self
    }

    /// The name the summary line uses (e.g. the plan's app).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn config(&self) -> &AssetsConfig {
        &self.cfg
    }

    fn prefix(&self) -> String {
        layout::normalize_prefix(&self.cfg.prefix)
    }

    fn bucket(&self) -> &str {
        &self.cfg.bucket
    }

    /// Publish `version`. Nothing is uploaded unless the whole tree walked and hashed cleanly;
    /// the manifest is written only after every object is in place.
    pub async fn publish(
        &self,
        version: &str,
        progress: ProgressFn<'_>,
    ) -> Result<PublishReport, AssetsError> {
        let started = Instant::now();
        layout::validate_version(version)?;
        let target = Target {
            layout: self.cfg.layout,
            prefix: self.prefix(),
            version: version.to_string(),
            cache_control: self.cfg.cache_control.clone(),
            entry_cache_control: self.cfg.entry_cache_control.clone(),
        };

        // Local work (CPU/disk) and remote reads (network) overlap.
        let (files, (existing, known)) =
            tokio::try_join!(self.scan(progress), self.remote_state(&target))?;

        let mut report = PublishReport {
            name: self.name.clone(),
            version: version.to_string(),
            manifest_key: layout::manifest_key(&target.prefix, version),
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            uploaded: 0,
            uploaded_bytes: 0,
            copied: 0,
            skipped: 0,
            already_published: false,
            elapsed: Duration::ZERO,
            pace: PaceReport::default(),
        };
        match plan::plan(&target, files, &known, existing.as_ref())? {
            Outcome::AlreadyPublished { .. } => {
                report.already_published = true;
                report.skipped = report.files;
            }
            Outcome::Publish(p) => self.execute(p, &mut report, progress).await?,
        }
        report.elapsed = started.elapsed();
        progress(&Progress {
            stage: Stage::Done,
            files_total: report.files,
            files_done: report.files,
            bytes_total: report.bytes,
            bytes_done: report.bytes,
            uploaded: report.uploaded,
            uploaded_bytes: report.uploaded_bytes,
            copied: report.copied,
            skipped: report.skipped,
        });
        Ok(report)
    }

    /// What publishing `version` would do, read only: the tree is hashed and compared with
    /// the version's manifest and the newest earlier ones; nothing is written.
    pub async fn preview(&self, version: &str) -> Result<Preview, AssetsError> {
        layout::validate_version(version)?;
        let target = Target {
            layout: self.cfg.layout,
            prefix: self.prefix(),
            version: version.to_string(),
            cache_control: self.cfg.cache_control.clone(),
            entry_cache_control: self.cfg.entry_cache_control.clone(),
        };
        let quiet = |_: &Progress| {};
        let (files, (existing, known)) =
            tokio::try_join!(self.scan(&quiet), self.remote_state(&target))?;
        let mut preview = Preview {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            ..Preview::default()
        };
        match plan::plan(&target, files, &known, existing.as_ref())? {
            Outcome::AlreadyPublished { .. } => {
                preview.already_published = true;
                preview.published_files = preview.files;
                preview.published_bytes = preview.bytes;
            }
            Outcome::Publish(p) => {
                for item in &p.items {
                    if item.action == plan::Action::Upload {
                        preview.new_files += 1;
                        preview.new_bytes += item.file.size;
                    } else {
                        preview.published_files += 1;
                        preview.published_bytes += item.file.size;
                    }
                }
            }
        }
        Ok(preview)
    }

    /// Walk, validate and hash the whole tree on the blocking pool, reporting hashed bytes.
    async fn scan(&self, progress: ProgressFn<'_>) -> Result<Vec<LocalFile>, AssetsError> {
        let dir = self.cfg.dir.clone();
        let filter = Filter::new(&self.cfg.include, &self.cfg.exclude)?;
        let threads = self.opts.hash_threads;
        let hashed = Arc::new(AtomicU64::new(0));
        let totals = Arc::new(Mutex::new((0u64, 0u64)));
        let (h, t) = (hashed.clone(), totals.clone());
        let mut job = tokio::task::spawn_blocking(move || {
            let files = walk::walk(&dir, &filter)?;
            let paths: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
            let sizes: Vec<_> = files.iter().map(|f| f.size).collect();
            if let Ok(mut t) = t.lock() {
                *t = (files.len() as u64, sizes.iter().sum());
            }
            let digests = hash::hash_all(&paths, &sizes, threads, &|n| {
                h.fetch_add(n, Ordering::Relaxed);
            })?;
            Ok::<_, AssetsError>(
                files
                    .into_iter()
                    .zip(digests)
                    .map(|(f, d)| LocalFile {
                        logical: f.logical,
                        path: f.path,
                        size: d.size,
                        digest: d.digest,
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let report = || {
            let (files_total, bytes_total) = totals.lock().map(|t| *t).unwrap_or_default();
            progress(&Progress {
                stage: Stage::Hashing,
                files_total,
                bytes_total,
                bytes_done: hashed.load(Ordering::Relaxed),
                ..Progress::default()
            });
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                res = &mut job => {
                    report();
                    return res.map_err(|e| AssetsError::Internal(format!("hashing task: {e}")))?;
                }
                _ = tick.tick() => report(),
            }
        }
    }

    /// This version's manifest (if any) and what the newest earlier manifests hold.
    async fn remote_state(
        &self,
        target: &Target,
    ) -> Result<(Option<Manifest>, Known), AssetsError> {
        let (b, r) = (self.bucket(), &self.opts.retry);
        let key = layout::manifest_key(&target.prefix, &target.version);
        let existing = s3::get_manifest(&self.s3, b, &key, r);
        let recent = async {
            let mut versions = s3::list_versions(&self.s3, b, &target.prefix, r).await?;
            versions.retain(|v| v.version != target.version);
            s3::newest_first(&mut versions);
            versions.truncate(self.opts.recent_manifests);
            let manifests: Vec<Option<Manifest>> = futures::stream::iter(versions)
                .map(|v| async move { s3::get_manifest(&self.s3, b, &v.manifest_key, r).await })
                .buffered(8)
                .try_collect()
                .await?;
            Ok::<_, AssetsError>(manifests.into_iter().flatten().collect::<Vec<_>>())
        };
        let (existing, recent) = tokio::try_join!(existing, recent)?;
        Ok((existing, Known::from_manifests(&recent)))
    }

    async fn execute(
        &self,
        mut p: PublishPlan,
        report: &mut PublishReport,
        progress: ProgressFn<'_>,
    ) -> Result<(), AssetsError> {
        self.adopt_present(&mut p).await?;
        let state = Mutex::new(Progress {
            stage: Stage::Publishing,
            files_total: report.files,
            bytes_total: report.bytes,
            ..Progress::default()
        });
        let bump = |item: &Item, done: &Done| {
            let snapshot = {
                let Ok(mut s) = state.lock() else { return };
                s.files_done += 1;
                s.bytes_done += item.file.size;
                match done {
                    Done::Uploaded(n) => {
                        s.uploaded += 1;
                        s.uploaded_bytes += n;
                    }
                    Done::Copied => s.copied += 1,
                    Done::Skipped => s.skipped += 1,
                }
                s.clone()
            };
            progress(&snapshot);
        };

        // Largest first, so a big file does not start last and finish alone.
        let mut work: Vec<&Item> = Vec::new();
        for item in &p.items {
            if item.action == Action::Skip {
                bump(item, &Done::Skipped);
            } else {
                work.push(item);
            }
        }
        work.sort_by_key(|i| std::cmp::Reverse(i.file.size));
        let pace = Pace::new(self.controller());
        let result = self.drive(work, &pace, &bump).await;
        report.pace = pace.report();
        result?;

        let s = state.lock().map(|s| s.clone()).unwrap_or_default();
        report.uploaded = s.uploaded;
        report.uploaded_bytes = s.uploaded_bytes;
        report.copied = s.copied;
        report.skipped = s.skipped;
        progress(&Progress {
            stage: Stage::Manifest,
            ..s
        });
        if !self.put_manifest(&p).await? {
            // Someone else completed this very version with the same content meanwhile.
            report.already_published = true;
        }
        Ok(())
    }

    fn controller(&self) -> Aimd {
        let n = self.opts.concurrency.max(1);
        if self.opts.pin_concurrency {
            return Aimd::pinned(n);
        }
        let b = Bounds::default();
        Aimd::adaptive(Bounds {
            start: n,
            min: b.min.min(n),
            max: b.max.max(n),
        })
    }

    /// Keep as many items in flight as the controller allows, re-reading the limit as each
    /// one finishes; stop at the first error.
    async fn drive(
        &self,
        work: Vec<&Item>,
        pace: &Pace,
        bump: &(dyn Fn(&Item, &Done) + Send + Sync),
    ) -> Result<(), AssetsError> {
        let mut queue = work.into_iter();
        let mut running = futures::stream::FuturesUnordered::new();
        loop {
            while running.len() < pace.limit() {
                let Some(item) = queue.next() else { break };
                running.push(async move {
                    let done = self.apply(item, pace).await?;
                    bump(item, &done);
                    Ok::<_, AssetsError>(())
                });
                pace.launched(running.len());
            }
            match running.next().await {
                Some(r) => r?,
                None => return Ok(()),
            }
        }
    }

    /// Objects already at our keys that no recent manifest accounts for: left by an
    /// interrupted publish (versioned: under the version's folder; hashed: anywhere under the
    /// prefix, also content of versions older than the manifests read). Adopt those that hold
    /// our content (skip them, so no byte is sent twice); any other object at one of our keys
    /// is a conflict, reported before anything is uploaded.
    async fn adopt_present(&self, p: &mut PublishPlan) -> Result<(), AssetsError> {
        if p.items.iter().all(|i| i.action == Action::Skip) {
            return Ok(());
        }
        let folder = match self.cfg.layout {
            AssetLayout::Versioned => layout::version_folder(&self.prefix(), &p.manifest.version),
            AssetLayout::Hashed => layout::join(&self.prefix(), ""),
        };
        let present: std::collections::HashMap<String, u64> =
            s3::list_keys(&self.s3, self.bucket(), &folder, &self.opts.retry)
                .await?
                .into_iter()
                .collect();
        if present.is_empty() {
            return Ok(());
        }
        // Owned work list: borrowing items inside the stream trips async-trait's Send check.
        let candidates: Vec<(usize, String, Digest, u64, u64)> = p
            .items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.action != Action::Skip)
            .filter_map(|(n, i)| {
                let remote = *present.get(&i.key)?;
                Some((n, i.key.clone(), i.file.digest, i.file.size, remote))
            })
            .collect();
        let checks: Vec<(usize, bool)> = futures::stream::iter(candidates)
            .map(|(n, key, digest, size, remote)| async move {
                if size != remote {
                    // S3 writes are atomic, so a different size is different content.
                    return Err(AssetsError::Conflict {
                        bucket: self.bucket().to_string(),
                        key,
                        existing: format!("unknown ({remote} bytes)"),
                        ours: format!("{} ({size} bytes)", digest.hex()),
                    });
                }
                let same =
                    s3::verify_existing(&self.s3, self.bucket(), &key, &digest, &self.opts.retry)
                        .await?;
                Ok((n, same))
            })
            .buffer_unordered(self.opts.concurrency.max(1))
            .try_collect()
            .await?;
        for (n, same) in checks {
            if same {
                p.items[n].action = Action::Skip;
            }
        }
        Ok(())
    }

    async fn apply(&self, item: &Item, pace: &Pace) -> Result<Done, AssetsError> {
        match &item.action {
            Action::Skip => Ok(Done::Skipped),
            Action::Copy { from } => match self.copy(item, from, pace).await? {
                Some(done) => Ok(done),
                // The source is gone (pruned meanwhile): send the bytes instead.
                None => self.upload(item, pace).await,
            },
            Action::Upload => self.upload(item, pace).await,
        }
    }

    /// 412 from a conditional write: our content already there → skipped; else an error.
    async fn settle_conflict(&self, item: &Item) -> Result<Option<Done>, AssetsError> {
        let same = s3::verify_existing(
            &self.s3,
            self.bucket(),
            &item.key,
            &item.file.digest,
            &self.opts.retry,
        )
        .await?;
        Ok(same.then_some(Done::Skipped))
    }

    async fn upload(&self, item: &Item, pace: &Pace) -> Result<Done, AssetsError> {
        if item.file.size > self.opts.multipart_threshold {
            return self.upload_multipart(item, pace).await;
        }
        let body = if item.file.size <= self.opts.in_memory_max {
            let bytes =
                tokio::fs::read(&item.file.path)
                    .await
                    .map_err(|source| hash::HashError {
                        path: item.file.path.clone(),
                        source,
                    })?;
            if bytes.len() as u64 != item.file.size {
                return Err(AssetsError::Changed {
                    path: item.file.path.clone(),
                });
            }
            Some(SdkBody::from(bytes))
        } else {
            None
        };
        loop {
            let res = retry(&self.opts.retry, || async {
                let stream = match body.as_ref().and_then(SdkBody::try_clone) {
                    Some(b) => ByteStream::new(b),
                    None => ByteStream::read_from()
                        .path(&item.file.path)
                        .length(aws_sdk_s3::primitives::Length::Exact(item.file.size))
                        .build()
                        .await
                        .map_err(|e| {
                            AssetsError::Hash(hash::HashError {
                                path: item.file.path.clone(),
                                source: std::io::Error::other(e.to_string()),
                            })
                        })?,
                };
                let at = pace.send();
                let sent = self
                    .s3
                    .put_object()
                    .bucket(self.bucket())
                    .key(&item.key)
                    .body(stream)
                    .content_length(item.file.size as i64)
                    .content_type(&item.content_type)
                    .cache_control(&item.cache_control)
                    .metadata("sha256", item.file.digest.hex())
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(item.file.digest.base64())
                    .if_none_match("*")
                    .customize()
                    .config_override(no_sdk_retries())
                    // The SHA-256 checksum header already makes S3 verify the bytes; signing
                    // the payload too would hash every file a second time.
                    .disable_payload_signing()
                    .send()
                    .await;
                pace.answered(at, &sent);
                match sent {
                    Ok(_) => Ok(Some(Done::Uploaded(item.file.size))),
                    Err(e) => match classify(&e) {
                        Fail::Precondition => Ok(None),
                        Fail::Fatal(m) if is_bad_digest(&m) => Err(AssetsError::Changed {
                            path: item.file.path.clone(),
                        }),
                        f => Err(s3_error("PutObject", self.bucket(), &item.key, f)),
                    },
                }
            })
            .await?;
            match res {
                Some(done) => return Ok(done),
                None => {
                    if let Some(done) = self.settle_conflict(item).await? {
                        return Ok(done);
                    }
                    // It vanished between the 412 and the HEAD: write again.
                }
            }
        }
    }

    /// Server-side copy from an object with the same content. None: the source is gone.
    async fn copy(
        &self,
        item: &Item,
        from: &str,
        pace: &Pace,
    ) -> Result<Option<Done>, AssetsError> {
        let res = retry(&self.opts.retry, || async {
            let at = pace.send();
            let sent = self
                .s3
                .copy_object()
                .bucket(self.bucket())
                .key(&item.key)
                .copy_source(s3::copy_source(self.bucket(), from))
                .metadata_directive(MetadataDirective::Replace)
                .content_type(&item.content_type)
                .cache_control(&item.cache_control)
                .metadata("sha256", item.file.digest.hex())
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .if_none_match("*")
                .customize()
                .config_override(no_sdk_retries())
                .send()
                .await;
            pace.answered(at, &sent);
            match sent {
                Ok(out) => Ok(CopyOutcome::Copied(
                    out.copy_object_result()
                        .and_then(|r| r.checksum_sha256())
                        .filter(|c| !c.contains('-'))
                        .and_then(Digest::from_base64),
                )),
                Err(e) => match classify(&e) {
                    Fail::Precondition => Ok(CopyOutcome::Exists),
                    Fail::NotFound(m) if !m.contains("NoSuchBucket") => {
                        Ok(CopyOutcome::SourceMissing)
                    }
                    f => Err(s3_error("CopyObject", self.bucket(), &item.key, f)),
                },
            }
        })
        .await?;
        match res {
            CopyOutcome::Copied(Some(d)) if d != item.file.digest => {
                // The source no longer holds what its manifest says (changed outside
                // glidepath). Our copy is wrong: remove it and send the real bytes.
                tracing::warn!(key = %item.key, source = %from, "copy source content differs from its manifest; uploading instead");
                self.delete_own(&item.key).await?;
                Ok(None)
            }
            CopyOutcome::Copied(_) => Ok(Some(Done::Copied)),
            CopyOutcome::Exists => self.settle_conflict(item).await,
            CopyOutcome::SourceMissing => Ok(None),
        }
    }

    async fn delete_own(&self, key: &str) -> Result<(), AssetsError> {
        retry(&self.opts.retry, || async {
            self.s3
                .delete_object()
                .bucket(self.bucket())
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| s3_error("DeleteObject", self.bucket(), key, classify(&e)))
        })
        .await
    }

    /// Large files: parts with their own SHA-256 checksums, completed with `If-None-Match`.
    async fn upload_multipart(&self, item: &Item, pace: &Pace) -> Result<Done, AssetsError> {
        let (b, key) = (self.bucket(), item.key.as_str());
        // Look before sending many megabytes that a 412 would throw away.
        if s3::head(&self.s3, b, key, &self.opts.retry)
            .await?
            .is_some()
        {
            if let Some(done) = self.settle_conflict(item).await? {
                return Ok(done);
            }
        }
        let upload_id = retry(&self.opts.retry, || async {
            self.s3
                .create_multipart_upload()
                .bucket(b)
                .key(key)
                .content_type(&item.content_type)
                .cache_control(&item.cache_control)
                .metadata("sha256", item.file.digest.hex())
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| s3_error("CreateMultipartUpload", b, key, classify(&e)))
        })
        .await?
        .upload_id()
        .map(str::to_string)
        .ok_or_else(|| {
            AssetsError::Internal(format!("CreateMultipartUpload {key}: no upload id"))
        })?;

        let result = self.send_parts(item, &upload_id, pace).await;
        match result {
            Ok(Some(done)) => Ok(done),
            Ok(None) => {
                self.abort_multipart(key, &upload_id).await;
                match self.settle_conflict(item).await? {
                    Some(done) => Ok(done),
                    None => Err(AssetsError::Internal(format!(
                        "{key}: precondition failed but the object is gone; rerun the publish"
                    ))),
                }
            }
            Err(e) => {
                self.abort_multipart(key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Send every part, then complete. Ok(None): the complete hit a 412.
    async fn send_parts(
        &self,
        item: &Item,
        upload_id: &str,
        pace: &Pace,
    ) -> Result<Option<Done>, AssetsError> {
        let (b, key) = (self.bucket(), item.key.as_str());
        let part_size = self.opts.part_size.max(5 * 1024 * 1024);
        let mut file = std::fs::File::open(&item.file.path).map_err(|source| hash::HashError {
            path: item.file.path.clone(),
            source,
        })?;
        let mut whole = sha2::Sha256::new();
        let mut parts = Vec::new();
        let mut sent = 0u64;
        let mut number = 1;
        while sent < item.file.size {
            let len = part_size.min(item.file.size - sent);
            // Read and hash on the blocking pool (16 MiB of SHA-256 is milliseconds of CPU).
            let path = item.file.path.clone();
            let (f, w, chunk, digest) = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut chunk = vec![0u8; len as usize];
                let r = file.read_exact(&mut chunk);
                whole.update(&chunk);
                let digest = Digest::of(&chunk);
                r.map(|_| (file, whole, chunk, digest))
                    .map_err(|source| hash::HashError { path, source })
            })
            .await
            .map_err(|e| AssetsError::Internal(format!("reading a part: {e}")))??;
            file = f;
            whole = w;
            let chunk = SdkBody::from(chunk);
            let out = retry(&self.opts.retry, || async {
                let at = pace.send();
                let sent = self
                    .s3
                    .upload_part()
                    .bucket(b)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::new(
                        chunk.try_clone().unwrap_or_else(SdkBody::empty),
                    ))
                    .content_length(len as i64)
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(digest.base64())
                    .customize()
                    .config_override(no_sdk_retries())
                    .disable_payload_signing()
                    .send()
                    .await;
                pace.answered(at, &sent);
                sent.map_err(|e| s3_error("UploadPart", b, key, classify(&e)))
            })
            .await?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .checksum_sha256(digest.base64())
                    .build(),
            );
            sent += len;
            number += 1;
        }
        if Digest(whole.finalize().into()) != item.file.digest {
            return Err(AssetsError::Changed {
                path: item.file.path.clone(),
            });
        }
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        retry(&self.opts.retry, || async {
            match self
                .s3
                .complete_multipart_upload()
                .bucket(b)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(done.clone())
                .if_none_match("*")
                .send()
                .await
            {
                Ok(_) => Ok(Some(Done::Uploaded(item.file.size))),
                Err(e) => match classify(&e) {
                    Fail::Precondition => Ok(None),
                    f => Err(s3_error("CompleteMultipartUpload", b, key, f)),
                },
            }
        })
        .await
    }

    /// Best effort: an abandoned upload only costs storage until a lifecycle rule clears it.
    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        if let Err(e) = self
            .s3
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not abort multipart upload");
        }
    }

    /// Write the manifest last. Ok(false): an identical manifest appeared meanwhile.
    async fn put_manifest(&self, p: &PublishPlan) -> Result<bool, AssetsError> {
        let (b, key) = (self.bucket(), p.manifest_key.as_str());
        let bytes = p.manifest.to_bytes();
        let digest = Digest::of(&bytes);
        let body = SdkBody::from(bytes);
        let written = retry(&self.opts.retry, || async {
            match self
                .s3
                .put_object()
                .bucket(b)
                .key(key)
                .body(ByteStream::new(
                    body.try_clone().unwrap_or_else(SdkBody::empty),
                ))
                .content_type("application/json")
                .cache_control(&self.cfg.entry_cache_control)
                .metadata("sha256", digest.hex())
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(digest.base64())
                .if_none_match("*")
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e) => match classify(&e) {
                    Fail::Precondition => Ok(false),
                    f => Err(s3_error("PutObject", b, key, f)),
                },
            }
        })
        .await?;
        if written {
            return Ok(true);
        }
        match s3::get_manifest(&self.s3, b, key, &self.opts.retry).await? {
            Some(m) if m == p.manifest => Ok(false),
            Some(m) => Err(plan::PlanError::VersionConflict {
                version: p.manifest.version.clone(),
                key: key.to_string(),
                paths: m.differing_paths(&p.manifest),
            }
            .into()),
            None => Err(AssetsError::Internal(format!(
                "{key}: precondition failed but the manifest is gone; rerun the publish"
            ))),
        }
    }
}

/// Uploads and copies are retried by [`retry`] alone, so each throttling answer reaches the
/// pace controller instead of being absorbed by the SDK's own retries.
fn no_sdk_retries() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
}

fn is_bad_digest(message: &str) -> bool {
    message.starts_with("BadDigest") || message.contains("XAmzContentChecksumMismatch")
}
