//! The per-version manifest: logical path → where the file is and what it is.
//!
//! Written last, so a version is visible only when complete. It is deterministic (sorted,
//! no timestamps): the same tree and version always give the same bytes, which is how a
//! re-publish recognises itself. S3's LastModified is the publish time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    /// `versioned` or `hashed`.
    pub layout: String,
    pub files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Full object key in the bucket.
    pub key: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
}

#[derive(Debug, thiserror::Error)]
#[error("manifest {key} is not a glidepath manifest ({message}); remove it or use another prefix")]
pub struct ManifestError {
    pub key: String,
    pub message: String,
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and maps cannot fail.
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(ManifestError {
                key: key.to_string(),
                message: format!("format {} (this glidepath reads {FORMAT})", m.format),
            });
        }
        Ok(m)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|e| e.size).sum()
    }

    /// Paths whose entry differs between `self` and `other` (added, removed or changed).
    pub fn differing_paths(&self, other: &Manifest) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .iter()
            .filter(|(p, e)| other.files.get(*p) != Some(e))
            .map(|(p, _)| p.clone())
            .collect();
        out.extend(
            other
                .files
                .keys()
                .filter(|p| !self.files.contains_key(*p))
                .cloned(),
        );
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Manifest {
        let mut files = BTreeMap::new();
        files.insert(
            "a.js".into(),
            Entry {
                key: "p/1/a.js".into(),
                sha256: "00".repeat(32),
                size: 3,
                content_type: "text/javascript".into(),
            },
        );
        Manifest {
            format: FORMAT,
            version: "1".into(),
            layout: "versioned".into(),
            files,
        }
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let a = m();
        let bytes = a.to_bytes();
        assert_eq!(bytes, m().to_bytes());
        assert_eq!(Manifest::parse("k", &bytes).unwrap(), a);
        assert_eq!(a.total_bytes(), 3);
    }

    #[test]
    fn rejects_foreign_json_naming_the_key() {
        let err = Manifest::parse("p/1/manifest.json", b"{\"hello\":1}").unwrap_err();
        assert!(err.to_string().contains("p/1/manifest.json"));
        let mut other = m();
        other.format = 9;
        let err = Manifest::parse("k", &other.to_bytes()).unwrap_err();
        assert!(err.to_string().contains("format 9"));
    }

    #[test]
    fn differing_paths_lists_changes_both_ways() {
        let a = m();
        let mut b = m();
        assert!(a.differing_paths(&b).is_empty());
        b.files.get_mut("a.js").unwrap().size = 4;
        b.files.insert("b.js".into(), a.files["a.js"].clone());
        assert_eq!(a.differing_paths(&b), ["a.js", "b.js"]);
    }
}
