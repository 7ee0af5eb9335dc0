//! Retention: remove old versions, never the protected ones (the live and standby
//! releases'), keeping the newest `keep` by manifest LastModified.
//!
//! A version is removed manifest first (so it stops being a version before any of its
//! files go), then its objects: in the versioned layout everything under its folder, in the
//! hashed layout only the hashed objects no kept manifest references. A key any kept
//! manifest references is never deleted, whatever the layout.

use super::layout;
use super::manifest::Manifest;
use super::s3::{self, classify, retry, s3_error, Retry, VersionInfo};
use super::AssetsError;
use crate::engine::ledger::{Doc, EngineError, Index, INDEX_KEY};
use crate::plan::{AssetsConfig, StateConfig};
use crate::state::S3State;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeSet;

/// Which versions go and which stay (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    /// Newest first.
    pub keep: Vec<String>,
    /// Newest first.
    pub remove: Vec<String>,
    /// Protected versions that are not published under this prefix (nothing to keep).
    pub protected_missing: Vec<String>,
}

/// Keep the newest `keep` versions plus every protected one; remove the rest.
pub fn plan_prune(versions: &[VersionInfo], keep: usize, protected: &[String]) -> PrunePlan {
    let mut sorted = versions.to_vec();
    s3::newest_first(&mut sorted);
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for (i, v) in sorted.iter().enumerate() {
        if i < keep || protected.contains(&v.version) {
            kept.push(v.version.clone());
        } else {
            removed.push(v.version.clone());
        }
    }
    let protected_missing = protected
        .iter()
        .filter(|p| !sorted.iter().any(|v| &v.version == *p))
        .cloned()
        .collect();
    PrunePlan {
        keep: kept,
        remove: removed,
        protected_missing,
    }
}

/// Keys to delete for the removed manifests: their objects minus anything a kept manifest
/// references (pure). Manifest keys themselves are handled separately.
pub fn unreferenced_keys(removed: &[Manifest], kept: &[Manifest]) -> BTreeSet<String> {
    let referenced: BTreeSet<&str> = kept
        .iter()
        .flat_map(|m| m.files.values().map(|e| e.key.as_str()))
        .collect();
    removed
        .iter()
        .flat_map(|m| m.files.values().map(|e| e.key.clone()))
        .filter(|k| !referenced.contains(k.as_str()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub keep: Vec<String>,
    pub removed: Vec<String>,
    pub protected_missing: Vec<String>,
    /// Objects deleted (or, in a dry run, that would be), manifests included.
    pub objects: u64,
    pub dry_run: bool,
}

impl PruneReport {
    pub fn summary(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        if self.removed.is_empty() {
            return format!(
                "nothing to prune: {} version(s) kept ({})",
                self.keep.len(),
                self.keep.join(", ")
            );
        }
        format!(
            "{verb} {} version(s) ({}; {} objects); kept {} ({})",
            self.removed.len(),
            self.removed.join(", "),
            self.objects,
            self.keep.len(),
            self.keep.join(", ")
        )
    }
}

/// The live and standby releases' versions in the ledger index, sorted, each once.
pub fn protected_versions(index: &Index) -> Vec<String> {
    let mut out: Vec<String> = [&index.live, &index.standby]
        .into_iter()
        .flatten()
        .map(|s| s.version.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The ledger index under `[state]`, read with the engine's own types (so an index the
/// engine would not understand is an error here too, not an empty list). None: no release
/// has run yet.
pub async fn read_index(s3c: &Client, state: &StateConfig) -> Result<Option<Index>, EngineError> {
    let store = S3State::new(s3c.clone(), &state.bucket, &state.prefix);
    Ok(Doc::<Index>::load(&store, INDEX_KEY)
        .await?
        .map(|d| d.value))
}

/// `s3://bucket/prefix/ledger/index.json`, for messages.
pub fn index_location(state: &StateConfig) -> String {
    let key = layout::join(&layout::normalize_prefix(&state.prefix), INDEX_KEY);
    format!("s3://{}/{key}", state.bucket)
}

/// Prune under `cfg`'s bucket/prefix. `protected` versions are never removed.
pub async fn prune(
    s3c: &Client,
    cfg: &AssetsConfig,
    keep: usize,
    protected: &[String],
    dry_run: bool,
) -> Result<PruneReport, AssetsError> {
    let policy = s3::RETRY;
    let bucket = cfg.bucket.as_str();
    let prefix = layout::normalize_prefix(&cfg.prefix);
    let prefix = prefix.as_str();
    let versions = s3::list_versions(s3c, bucket, prefix, &policy).await?;
    let plan = plan_prune(&versions, keep, protected);

    // Every kept manifest must be readable: its references are what we must not delete.
    let kept = load_manifests(s3c, bucket, prefix, &plan.keep, &policy).await?;
    let removed = load_manifests(s3c, bucket, prefix, &plan.remove, &policy).await?;
    let referenced: BTreeSet<&str> = kept
        .iter()
        .flat_map(|m| m.files.values().map(|e| e.key.as_str()))
        .collect();

    let mut objects = 0u64;
    for m in &removed {
        let mut keys: BTreeSet<String> = unreferenced_keys(std::slice::from_ref(m), &kept);
        if m.layout == "versioned" {
            // Everything under the folder, including debris of an interrupted publish.
            let folder = layout::version_folder(prefix, &m.version);
            for (k, _) in s3::list_keys(s3c, bucket, &folder, &policy).await? {
                if !referenced.contains(k.as_str()) {
                    keys.insert(k);
                }
            }
        }
        let manifest_key = layout::manifest_key(prefix, &m.version);
        keys.remove(&manifest_key);
        objects += 1 + keys.len() as u64;
        if dry_run {
            continue;
        }
        // Manifest first: the version disappears before any of its files do.
        delete_keys(s3c, bucket, std::slice::from_ref(&manifest_key), &policy).await?;
        let keys: Vec<String> = keys.into_iter().collect();
        for chunk in keys.chunks(1000) {
            delete_keys(s3c, bucket, chunk, &policy).await?;
        }
    }
    Ok(PruneReport {
        keep: plan.keep,
        removed: plan.remove,
        protected_missing: plan.protected_missing,
        objects,
        dry_run,
    })
}

async fn load_manifests(
    s3c: &Client,
    bucket: &str,
    prefix: &str,
    versions: &[String],
    policy: &Retry,
) -> Result<Vec<Manifest>, AssetsError> {
    let keys: Vec<String> = versions
        .iter()
        .map(|v| layout::manifest_key(prefix, v))
        .collect();
    let found: Vec<Option<Manifest>> = futures::stream::iter(keys)
        .map(|key| async move { s3::get_manifest(s3c, bucket, &key, policy).await })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn delete_keys(
    s3c: &Client,
    bucket: &str,
    keys: &[String],
    policy: &Retry,
) -> Result<(), AssetsError> {
    let first = keys.first().cloned().unwrap_or_default();
    let ids = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AssetsError::Internal(e.to_string()))?;
    let delete = Delete::builder()
        .set_objects(Some(ids))
        .quiet(true)
        .build()
        .map_err(|e| AssetsError::Internal(e.to_string()))?;
    let out = retry(policy, || async {
        s3c.delete_objects()
            .bucket(bucket)
            .delete(delete.clone())
            .send()
            .await
            .map_err(|e| s3_error("DeleteObjects", bucket, &first, classify(&e)))
    })
    .await?;
    if let Some(e) = out.errors().first() {
        return Err(AssetsError::S3 {
            operation: "DeleteObjects",
            bucket: bucket.to_string(),
            key: e.key().unwrap_or("?").to_string(),
            message: format!(
                "{}: {} ({} key(s) not deleted)",
                e.code().unwrap_or("error"),
                e.message().unwrap_or(""),
                out.errors().len()
            ),
            transient: false,
            attempts: 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::manifest::{Entry, FORMAT};
    use aws_sdk_s3::primitives::DateTime;

    /// The index exactly as the engine writes it.
    #[test]
    fn protects_the_live_and_standby_versions_of_the_engines_index() {
        use crate::engine::event::ColourName;
        use crate::engine::ledger::Slot;
        let mut index = Index {
            live: Some(Slot {
                version: "2.0.0".into(),
                colour: ColourName::Green,
                release: Some("r2".into()),
                unusable: None,
                image: None,
            }),
            standby: Some(Slot {
                version: "1.9.0".into(),
                colour: ColourName::Blue,
                release: None,
                unusable: None,
                image: None,
            }),
            ..Index::default()
        };
        assert_eq!(protected_versions(&index), ["1.9.0", "2.0.0"]);
        index.standby = index.live.clone();
        assert_eq!(protected_versions(&index), ["2.0.0"]);
        assert!(protected_versions(&Index::default()).is_empty());
        let state = StateConfig {
            bucket: "b".into(),
            prefix: "/glidepath/shop/prod/".into(),
            lease: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            index_location(&state),
            format!("s3://b/glidepath/shop/prod/{INDEX_KEY}")
        );
    }

    fn v(name: &str, t: i64) -> VersionInfo {
        VersionInfo {
            version: name.into(),
            manifest_key: format!("p/{name}/manifest.json"),
            last_modified: DateTime::from_secs(t),
        }
    }

    #[test]
    fn keeps_newest_and_protected() {
        let vs = [v("1", 10), v("2", 20), v("3", 30), v("4", 40), v("5", 50)];
        let p = plan_prune(&vs, 2, &["1".into(), "9".into()]);
        assert_eq!(p.keep, ["5", "4", "1"]);
        assert_eq!(p.remove, ["3", "2"]);
        assert_eq!(p.protected_missing, ["9"]);
        let p = plan_prune(&vs, 0, &[]);
        assert_eq!(p.keep.len(), 0);
        assert_eq!(p.remove.len(), 5);
        let p = plan_prune(&vs, 10, &[]);
        assert!(p.remove.is_empty());
    }

    fn m(version: &str, keys: &[&str]) -> Manifest {
        Manifest {
            format: FORMAT,
            version: version.into(),
            layout: "hashed".into(),
            files: keys
                .iter()
                .map(|k| {
                    (
                        k.to_string(),
                        Entry {
                            key: k.to_string(),
                            sha256: "00".repeat(32),
                            size: 1,
                            content_type: "x".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn hashed_objects_still_referenced_are_kept() {
        let old = m("1", &["p/a.1.js", "p/b.1.css"]);
        let kept = m("2", &["p/a.1.js", "p/b.2.css"]);
        let gone = unreferenced_keys(&[old], &[kept]);
        assert_eq!(gone.into_iter().collect::<Vec<_>>(), ["p/b.1.css"]);
    }

    #[test]
    fn summary_says_what_happened() {
        let r = PruneReport {
            keep: vec!["3".into()],
            removed: vec!["2".into(), "1".into()],
            protected_missing: vec![],
            objects: 7,
            dry_run: true,
        };
        assert_eq!(
            r.summary(),
            "would remove 2 version(s) (2, 1; 7 objects); kept 1 (3)"
        );
    }
}
