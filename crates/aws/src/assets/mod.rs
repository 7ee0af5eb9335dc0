//! Static assets: publish a built folder to S3 so that, during a traffic shift, pages served
//! by blue still find blue's JS/CSS while green's pages load green's.
//!
//! Pipeline (`publish.rs`): walk + validate the whole tree ([`walk`]) and hash every file on
//! all cores ([`hash`]) *before* anything is uploaded; read the newest manifests; decide per
//! file upload / server-side copy / skip ([`plan`], pure); upload with adaptive concurrency ([`pace`]),
//! SHA-256 checksums and `If-None-Match: *`; write the version's manifest last ([`manifest`]).
//! Keys come from [`layout`]; retention is [`prune`]; the engine's port is [`port`].

pub mod hash;
pub mod layout;
pub mod manifest;
pub mod pace;
pub mod plan;
pub mod port;
pub mod prune;
pub mod publish;
mod s3;
pub mod walk;

pub use pace::PaceReport;
pub use port::S3Assets;
pub use publish::{Preview, PublishOptions, PublishReport, Publisher};
pub use s3::{Retry, VersionInfo};

use serde::Serialize;
use std::time::Duration;

/// Everything that can go wrong publishing or pruning assets, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    #[error("{0}; check its permissions")]
    Hash(#[from] hash::HashError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("asset version {version:?} is not usable as a key segment; use letters, digits and . _ - + only (e.g. 1.2.0)")]
    BadVersion { version: String },
    #[error("s3://{bucket}/{key} already exists with different content (sha256 {existing}, ours {ours}); nothing was overwritten — publish under a new version, or remove that object if it is debris")]
    Conflict {
        bucket: String,
        key: String,
        existing: String,
        ours: String,
    },
    #[error("s3://{bucket}/{key} already exists and carries no SHA-256 (no `sha256` metadata, no full-object checksum) to compare with ours; nothing was overwritten — remove it or publish under a new version")]
    Unverifiable { bucket: String, key: String },
    #[error("{path} changed while it was being published; rebuild, then publish again")]
    Changed { path: std::path::PathBuf },
    #[error("S3 {operation} s3://{bucket}/{key}: {message}{}", if *.transient { format!(" (gave up after {attempts} attempts; the endpoint may be down — rerun to resume)") } else { String::new() })]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
        transient: bool,
        attempts: u32,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl AssetsError {
    /// Worth retrying: throttling, 5xx, timeouts, connection failures.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AssetsError::S3 {
                transient: true,
                ..
            }
        )
    }
}

/// What a publish is doing right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Walking and hashing the local tree (and reading earlier manifests).
    #[default]
    Hashing,
    /// Uploading / copying objects.
    Publishing,
    /// Writing the manifest.
    Manifest,
    Done,
}

/// Progress for the views: counts of files and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub stage: Stage,
    pub files_total: u64,
    /// Files finished (uploaded, copied or skipped).
    pub files_done: u64,
    pub bytes_total: u64,
    /// Bytes hashed while hashing; bytes of finished files while publishing.
    pub bytes_done: u64,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub copied: u64,
    pub skipped: u64,
}

/// Progress callback; called from the publishing task, keep it quick.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// Human size in decimal units, as the summary line shows it ("210 KB", "1.4 MB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(210_000), "210 KB");
        assert_eq!(human_bytes(1_400_000), "1.4 MB");
        assert_eq!(secs(Duration::from_millis(420)), "0.4 s");
    }

    #[test]
    fn transient_is_only_transient_s3() {
        let e = AssetsError::S3 {
            operation: "PutObject",
            bucket: "b".into(),
            key: "k".into(),
            message: "503".into(),
            transient: true,
            attempts: 5,
        };
        assert!(e.is_transient());
        assert!(e.to_string().contains("gave up after 5 attempts"));
        assert!(!AssetsError::Internal("x".into()).is_transient());
    }
}
