//! The S3 calls publish and prune share: error classification, retries with backoff,
//! reading manifests, finding published versions, and verifying an existing object's content.

use super::hash::Digest;
use super::layout;
use super::manifest::Manifest;
use super::AssetsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures::{StreamExt, TryStreamExt};
use std::future::Future;

use crate::engine::retry::{self as backoff, Backoff, Retryable};
pub(crate) use crate::errors::Fail;

/// The one classifier (`errors.rs`), without a resource: [`s3_error`] names the object.
pub(crate) fn classify<E>(err: &SdkError<E, HttpResponse>) -> Fail
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::errors::judge(err, None)
}

/// Retry budget for one object operation (on top of the SDK client's own retries).
pub type Retry = Backoff;

/// The engine's schedule, with jitter: dozens of uploads in flight are throttled together
/// and should not all come back at the same moment. Three more attempts than the engine's,
/// since uploads and copies skip the SDK's own retries (so pushback reaches the pace).
pub const RETRY: Retry = Backoff {
    jitter: true,
    attempts: backoff::ATTEMPTS + 3,
    ..Backoff::STANDARD
};

impl Retryable for AssetsError {
    fn is_transient(&self) -> bool {
        AssetsError::is_transient(self)
    }

    fn gave_up(self, attempts: u32) -> Self {
        match self {
            AssetsError::S3 {
                operation,
                bucket,
                key,
                message,
                transient: true,
                ..
            } => AssetsError::S3 {
                operation,
                bucket,
                key,
                message,
                transient: true,
                attempts,
            },
            other => other,
        }
    }
}

/// Run `op` until it succeeds, fails for good, or the budget is spent.
pub(crate) async fn retry<T, F, Fut>(policy: &Retry, op: F) -> Result<T, AssetsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AssetsError>>,
{
    backoff::with(policy, op, |attempt, e, _| {
        tracing::debug!(attempt, error = %e, "transient S3 failure; backing off");
    })
    .await
}

pub(crate) fn s3_error(
    operation: &'static str,
    bucket: &str,
    key: &str,
    fail: Fail,
) -> AssetsError {
    let (message, transient) = match fail {
        Fail::Transient(m) => (m, true),
        Fail::Fatal(m) => (m, false),
        Fail::Precondition => ("precondition failed (HTTP 412)".to_string(), false),
        Fail::NotFound(m) => (m, false),
    };
    AssetsError::S3 {
        operation,
        bucket: bucket.to_string(),
        key: key.to_string(),
        message,
        transient,
        attempts: 1,
    }
}

/// What HEAD says about an existing object.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub sha256: Option<Digest>,
}

/// HEAD with checksum mode: our `sha256` metadata, else S3's full-object SHA-256 checksum.
pub(crate) async fn head(
    s3: &Client,
    bucket: &str,
    key: &str,
    policy: &Retry,
) -> Result<Option<Head>, AssetsError> {
    retry(policy, || async {
        match s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => {
                let from_meta = out
                    .metadata()
                    .and_then(|m| m.get("sha256"))
                    .and_then(|v| Digest::from_hex(v));
                // A composite (multipart) checksum is a hash of part hashes, not of the content.
                let full_object = !matches!(out.checksum_type(), Some(ChecksumType::Composite));
                let from_checksum = out
                    .checksum_sha256()
                    .filter(|c| full_object && !c.contains('-'))
                    .and_then(Digest::from_base64);
                Ok(Some(Head {
                    sha256: from_meta.or(from_checksum),
                }))
            }
            Err(e) => match classify(&e) {
                Fail::NotFound(_) => Ok(None),
                f => Err(s3_error("HeadObject", bucket, key, f)),
            },
        }
    })
    .await
}

/// An object is already at `key`: fine if it holds our content, an error otherwise.
/// Returns false if it vanished in between (the caller may simply try again).
pub(crate) async fn verify_existing(
    s3: &Client,
    bucket: &str,
    key: &str,
    ours: &Digest,
    policy: &Retry,
) -> Result<bool, AssetsError> {
    let Some(h) = head(s3, bucket, key, policy).await? else {
        return Ok(false);
    };
    match h.sha256 {
        Some(d) if d == *ours => Ok(true),
        Some(d) => Err(AssetsError::Conflict {
            bucket: bucket.to_string(),
            key: key.to_string(),
            existing: d.hex(),
            ours: ours.hex(),
        }),
        None => Err(AssetsError::Unverifiable {
            bucket: bucket.to_string(),
            key: key.to_string(),
        }),
    }
}

/// GET and parse a manifest; None if it does not exist.
pub(crate) async fn get_manifest(
    s3: &Client,
    bucket: &str,
    key: &str,
    policy: &Retry,
) -> Result<Option<Manifest>, AssetsError> {
    let bytes = retry(policy, || async {
        match s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => match out.body.collect().await {
                Ok(b) => Ok(Some(b.into_bytes())),
                Err(e) => Err(s3_error(
                    "GetObject",
                    bucket,
                    key,
                    Fail::Transient(e.to_string()),
                )),
            },
            Err(e) => match classify(&e) {
                Fail::NotFound(_) => Ok(None),
                f => Err(s3_error("GetObject", bucket, key, f)),
            },
        }
    })
    .await?;
    match bytes {
        Some(b) => Ok(Some(Manifest::parse(key, &b)?)),
        None => Ok(None),
    }
}

/// A published version: its manifest exists.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: String,
    pub manifest_key: String,
    pub last_modified: DateTime,
}

/// Every object key (and size) under `prefix` (paginated).
pub(crate) async fn list_keys(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    policy: &Retry,
) -> Result<Vec<(String, u64)>, AssetsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = retry(policy, || async {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", bucket, prefix, classify(&e)))
        })
        .await?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Published versions under `prefix` (normalized), in no particular order: every folder
/// right under the prefix that holds a `manifest.json`. A folder without one is a publish in
/// progress (or interrupted) and is not a version yet.
pub(crate) async fn list_versions(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    policy: &Retry,
) -> Result<Vec<VersionInfo>, AssetsError> {
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut folders = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = retry(policy, || async {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(&list_prefix)
                .delimiter("/")
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", bucket, &list_prefix, classify(&e)))
        })
        .await?;
        for cp in page.common_prefixes() {
            let Some(p) = cp.prefix() else { continue };
            let name = p[list_prefix.len().min(p.len())..].trim_end_matches('/');
            if layout::validate_version(name).is_ok() {
                folders.push(name.to_string());
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    // One HEAD per folder tells version folders (with a manifest) from hashed-layout folders.
    let found: Vec<Option<VersionInfo>> = futures::stream::iter(folders)
        .map(|version| async move {
            let key = layout::manifest_key(prefix, &version);
            let out = retry(policy, || async {
                match s3.head_object().bucket(bucket).key(&key).send().await {
                    Ok(o) => Ok(o.last_modified().copied()),
                    Err(e) => match classify(&e) {
                        Fail::NotFound(_) => Ok(None),
                        f => Err(s3_error("HeadObject", bucket, &key, f)),
                    },
                }
            })
            .await?;
            Ok::<_, AssetsError>(out.map(|last_modified| VersionInfo {
                version,
                manifest_key: key.clone(),
                last_modified,
            }))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// Sort newest first (by manifest LastModified, then by version name for equal times).
pub(crate) fn newest_first(versions: &mut [VersionInfo]) {
    versions.sort_by(|a, b| {
        (
            b.last_modified.secs(),
            b.last_modified.subsec_nanos(),
            &b.version,
        )
            .cmp(&(
                a.last_modified.secs(),
                a.last_modified.subsec_nanos(),
                &a.version,
            ))
    });
}

/// `bucket/key` for CopySource, percent-encoded (keys may hold spaces, `+`, non-ASCII).
pub(crate) fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    for b in format!("{bucket}/{key}").bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(copy_source("b", "p/1/a b+c.js"), "b/p/1/a%20b%2Bc.js");
        assert_eq!(copy_source("b", "é"), "b/%C3%A9");
    }

    #[test]
    fn backoff_is_the_engines_with_jitter() {
        assert_eq!(RETRY.attempts, Backoff::STANDARD.attempts + 3);
        assert!(RETRY.delay(1) <= Backoff::STANDARD.delay(1));
        assert!(RETRY.delay(1) >= Backoff::STANDARD.delay(1) / 2);
        assert!(RETRY.delay(30) <= Backoff::STANDARD.max);
    }

    #[tokio::test]
    async fn retry_gives_up_after_the_budget_and_says_so() {
        let r = Retry {
            attempts: 3,
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
            jitter: true,
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let err = retry(&r, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(s3_error(
                "PutObject",
                "b",
                "k",
                Fail::Transient("503".into()),
            ))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
        let calls = std::sync::atomic::AtomicU32::new(0);
        let err = retry(&r, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>(s3_error("PutObject", "b", "k", Fail::Fatal("403".into())))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(!err.is_transient());
    }
}
