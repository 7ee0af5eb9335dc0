//! The upload plan: pure decisions, no I/O. Given the hashed tree, what earlier manifests say
//! is already in the bucket, and this version's existing manifest (if any), decide per file:
//! upload it, copy it server-side from an object with the same content, or skip it.

use super::hash::Digest;
use super::layout;
use super::manifest::{self, Entry, Manifest};
use crate::plan::AssetLayout;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// S3 refuses single-request CopyObject above 5 GiB; such files are uploaded instead.
pub const MAX_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// What a publish targets.
#[derive(Debug, Clone)]
pub struct Target {
    pub layout: AssetLayout,
    /// Normalized (no leading/trailing slash).
    pub prefix: String,
    pub version: String,
    pub cache_control: String,
    pub entry_cache_control: String,
}

/// A walked and hashed local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub logical: String,
    pub path: PathBuf,
    pub size: u64,
    pub digest: Digest,
}

/// Objects earlier manifests say exist, by content and by key.
#[derive(Debug, Clone, Default)]
pub struct Known {
    by_digest: HashMap<Digest, String>,
    by_key: HashMap<String, Digest>,
}

impl Known {
    /// `manifests` newest first: when several objects hold the same content, copy from the
    /// newest (the least likely to be pruned).
    pub fn from_manifests<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Self {
        let mut k = Known::default();
        for m in manifests {
            for e in m.files.values() {
                let Some(d) = Digest::from_hex(&e.sha256) else {
                    continue;
                };
                k.by_digest.entry(d).or_insert_with(|| e.key.clone());
                k.by_key.entry(e.key.clone()).or_insert(d);
            }
        }
        k
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the bytes.
    Upload,
    /// Server-side copy from an existing object with the same content.
    Copy { from: String },
    /// The object already exists with this content.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub file: LocalFile,
    pub key: String,
    pub content_type: String,
    pub cache_control: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishPlan {
    pub items: Vec<Item>,
    pub manifest: Manifest,
    pub manifest_key: String,
}

impl PublishPlan {
    pub fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        self.items.iter().filter(|i| pred(&i.action)).count()
    }
    pub fn upload_bytes(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| i.action == Action::Upload)
            .map(|i| i.file.size)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// This version's manifest already exists with exactly this content: nothing to do.
    AlreadyPublished {
        manifest_key: String,
        files: usize,
    },
    Publish(PublishPlan),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the assets folder has a top-level manifest.json, which would collide with the version manifest {key}; rename it or exclude it")]
    ManifestCollision { key: String },
    #[error("version {version} is already published ({key}) with different content ({} path(s) differ, e.g. {}); publish under a new version — published versions are never overwritten", paths.len(), paths.first().map(String::as_str).unwrap_or("?"))]
    VersionConflict {
        version: String,
        key: String,
        paths: Vec<String>,
    },
}

/// Build the manifest and the per-file actions.
pub fn plan(
    target: &Target,
    files: Vec<LocalFile>,
    known: &Known,
    existing: Option<&Manifest>,
) -> Result<Outcome, PlanError> {
    let manifest_key = layout::manifest_key(&target.prefix, &target.version);
    let mut entries = BTreeMap::new();
    let mut items = Vec::with_capacity(files.len());
    for file in files {
        let key = layout::object_key(
            target.layout,
            &target.prefix,
            &target.version,
            &file.logical,
            &file.digest,
        );
        if key == manifest_key {
            return Err(PlanError::ManifestCollision { key });
        }
        let content_type = layout::content_type(&file.logical);
        let cache_control = if layout::is_entry_point(&file.logical) {
            target.entry_cache_control.clone()
        } else {
            target.cache_control.clone()
        };
        entries.insert(
            file.logical.clone(),
            Entry {
                key: key.clone(),
                sha256: file.digest.hex(),
                size: file.size,
                content_type: content_type.clone(),
            },
        );
        let action = if known.by_key.get(&key) == Some(&file.digest) {
            Action::Skip
        } else {
            match known.by_digest.get(&file.digest) {
                Some(from) if file.size <= MAX_COPY_BYTES => Action::Copy { from: from.clone() },
                _ => Action::Upload,
            }
        };
        items.push(Item {
            file,
            key,
            content_type,
            cache_control,
            action,
        });
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        version: target.version.clone(),
        layout: match target.layout {
            AssetLayout::Versioned => "versioned",
            AssetLayout::Hashed => "hashed",
        }
        .to_string(),
        files: entries,
    };
    if let Some(old) = existing {
        if *old == manifest {
            return Ok(Outcome::AlreadyPublished {
                manifest_key,
                files: manifest.files.len(),
            });
        }
        return Err(PlanError::VersionConflict {
            version: target.version.clone(),
            key: manifest_key,
            paths: old.differing_paths(&manifest),
        });
    }
    Ok(Outcome::Publish(PublishPlan {
        items,
        manifest,
        manifest_key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(layout: AssetLayout, version: &str) -> Target {
        Target {
            layout,
            prefix: "shop".into(),
            version: version.into(),
            cache_control: "public, max-age=31536000, immutable".into(),
            entry_cache_control: "no-cache".into(),
        }
    }

    fn file(logical: &str, content: &str) -> LocalFile {
        LocalFile {
            logical: logical.into(),
            path: PathBuf::from(logical),
            size: content.len() as u64,
            digest: Digest::of(content.as_bytes()),
        }
    }

    fn tree(v: &str) -> Vec<LocalFile> {
        vec![
            file("index.html", &format!("<html>{v}")),
            file("app.js", "console.log(1)"),
            file("css/site.css", "body{}"),
        ]
    }

    fn publish(o: Outcome) -> PublishPlan {
        match o {
            Outcome::Publish(p) => p,
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn first_version_uploads_everything_with_headers() {
        let p = publish(
            plan(
                &target(AssetLayout::Versioned, "1"),
                tree("1"),
                &Known::default(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(p.count(|a| *a == Action::Upload), 3);
        assert_eq!(p.manifest_key, "shop/1/manifest.json");
        let html = p
            .items
            .iter()
            .find(|i| i.file.logical == "index.html")
            .unwrap();
        assert_eq!(html.cache_control, "no-cache");
        assert_eq!(html.key, "shop/1/index.html");
        let js = p.items.iter().find(|i| i.file.logical == "app.js").unwrap();
        assert!(js.cache_control.contains("immutable"));
        assert_eq!(p.manifest.files["app.js"].key, "shop/1/app.js");
    }

    #[test]
    fn versioned_second_version_copies_unchanged_files() {
        let t1 = target(AssetLayout::Versioned, "1");
        let m1 = publish(plan(&t1, tree("1"), &Known::default(), None).unwrap()).manifest;
        let known = Known::from_manifests([&m1]);
        let p = publish(
            plan(
                &target(AssetLayout::Versioned, "2"),
                tree("2"),
                &known,
                None,
            )
            .unwrap(),
        );
        let js = p.items.iter().find(|i| i.file.logical == "app.js").unwrap();
        assert_eq!(
            js.action,
            Action::Copy {
                from: "shop/1/app.js".into()
            }
        );
        assert_eq!(js.key, "shop/2/app.js");
        assert_eq!(p.count(|a| *a == Action::Upload), 1); // only index.html changed
        assert_eq!(p.upload_bytes(), "<html>2".len() as u64);
    }

    #[test]
    fn hashed_layout_skips_known_content() {
        let t1 = target(AssetLayout::Hashed, "1");
        let m1 = publish(plan(&t1, tree("1"), &Known::default(), None).unwrap()).manifest;
        let known = Known::from_manifests([&m1]);
        let p = publish(plan(&target(AssetLayout::Hashed, "2"), tree("2"), &known, None).unwrap());
        assert_eq!(p.count(|a| *a == Action::Skip), 2);
        assert_eq!(p.count(|a| *a == Action::Upload), 1);
        assert_eq!(p.manifest_key, "shop/2/manifest.json");
        assert!(p.manifest.files["app.js"].key.starts_with("shop/app."));
    }

    #[test]
    fn republishing_is_a_noop_and_a_changed_tree_is_refused() {
        let t = target(AssetLayout::Versioned, "1");
        let m = publish(plan(&t, tree("1"), &Known::default(), None).unwrap()).manifest;
        assert_eq!(
            plan(&t, tree("1"), &Known::default(), Some(&m)).unwrap(),
            Outcome::AlreadyPublished {
                manifest_key: "shop/1/manifest.json".into(),
                files: 3
            }
        );
        let err = plan(&t, tree("other"), &Known::default(), Some(&m)).unwrap_err();
        assert!(
            matches!(&err, PlanError::VersionConflict { paths, .. } if paths == &["index.html"]),
            "{err}"
        );
        assert!(err.to_string().contains("new version"));
    }

    #[test]
    fn a_root_manifest_json_collides_in_versioned_layout_only() {
        let files = vec![file("manifest.json", "{}")];
        let err = plan(
            &target(AssetLayout::Versioned, "1"),
            files.clone(),
            &Known::default(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::ManifestCollision { .. }));
        assert!(plan(
            &target(AssetLayout::Hashed, "1"),
            files,
            &Known::default(),
            None
        )
        .is_ok());
    }
}
