//! Key naming: where each file lands in the bucket, and with which headers.
//!
//! Pure functions only. The two layouts:
//! - versioned: `<prefix>/<version>/<path>`, one complete copy per version;
//! - hashed: `<prefix>/<dir>/<name>.<hash8>.<ext>`, shared by every version with that content.
//!
//! Either way each version gets `<prefix>/<version>/manifest.json`, written last.

use super::hash::Digest;
use super::AssetsError;
use crate::plan::{AssetLayout, AssetsConfig};

/// The manifest's file name inside a version's folder.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The plan's prefix without leading or trailing slashes ("" means the bucket root).
pub fn normalize_prefix(prefix: &str) -> String {
    prefix.trim_matches('/').to_string()
}

/// `<prefix>/<rest>`, or just `<rest>` at the bucket root.
pub fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// Versions become one key segment, so they must be plain names: `1.2.0`, `2024-06-01.3`,
/// `v7+build.5`, a git sha.
pub fn validate_version(version: &str) -> Result<(), AssetsError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    let bad = version.is_empty()
        || version.len() > 128
        || version == "."
        || version == ".."
        || !version.chars().all(fine);
    if bad {
        return Err(AssetsError::BadVersion {
            version: version.to_string(),
        });
    }
    Ok(())
}

/// Folder (with trailing slash) holding one version's manifest (and, versioned, its files).
pub fn version_folder(prefix: &str, version: &str) -> String {
    join(prefix, &format!("{version}/"))
}

pub fn manifest_key(prefix: &str, version: &str) -> String {
    join(prefix, &format!("{version}/{MANIFEST_NAME}"))
}

/// `dir/name.ext` → `dir/name.<hash8>.ext`; no extension → `name.<hash8>`. The hash goes
/// before the last extension so servers and browsers still see the right type.
pub fn hashed_name(logical: &str, digest: &Digest) -> String {
    let short = digest.short();
    let (dir, file) = match logical.rfind('/') {
        Some(i) => (&logical[..=i], &logical[i + 1..]),
        None => ("", logical),
    };
    // A leading dot is part of the name (".htaccess"), not an extension.
    match file.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{dir}{}.{short}{}", &file[..i], &file[i..]),
        None => format!("{dir}{file}.{short}"),
    }
}

/// Where `logical` goes for this layout.
pub fn object_key(
    layout: AssetLayout,
    prefix: &str,
    version: &str,
    logical: &str,
    digest: &Digest,
) -> String {
    match layout {
        AssetLayout::Versioned => join(prefix, &format!("{version}/{logical}")),
        AssetLayout::Hashed => join(prefix, &hashed_name(logical, digest)),
    }
}

/// HTML pages are entry points: browsers fetch them by a stable URL, so they must not be
/// cached for a year.
pub fn is_entry_point(logical: &str) -> bool {
    let lower = logical.to_ascii_lowercase();
    lower.ends_with(".html") || lower.ends_with(".htm")
}

pub fn cache_control<'a>(cfg: &'a AssetsConfig, logical: &str) -> &'a str {
    if is_entry_point(logical) {
        &cfg.entry_cache_control
    } else {
        &cfg.cache_control
    }
}

/// Content-Type from the extension; text types get `charset=utf-8` (static site builds emit
/// UTF-8, and without a charset browsers may guess windows-1252).
pub fn content_type(logical: &str) -> String {
    let mime = mime_guess::from_path(logical).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    if texty {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_string()
    }
}

/// A logical path is safe as part of a key and a URL: relative, `/`-separated, no empty,
/// `.` or `..` segment, no control characters.
pub fn validate_logical(logical: &str) -> Result<(), String> {
    if logical.is_empty() {
        return Err("empty path".into());
    }
    if logical.starts_with('/') {
        return Err("absolute path".into());
    }
    for seg in logical.split('/') {
        match seg {
            "" => return Err("empty path segment".into()),
            "." | ".." => return Err(format!("`{seg}` path component")),
            _ => {}
        }
    }
    if logical.chars().any(|c| c.is_control()) {
        return Err("control character in name".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d() -> Digest {
        Digest::of(b"hello")
    }

    #[test]
    fn versioned_and_hashed_keys() {
        let h = d().short();
        assert_eq!(h, "2cf24dba");
        assert_eq!(
            object_key(AssetLayout::Versioned, "shop", "1.2.0", "css/a.css", &d()),
            "shop/1.2.0/css/a.css"
        );
        assert_eq!(
            object_key(AssetLayout::Hashed, "shop", "1.2.0", "css/a.min.css", &d()),
            format!("shop/css/a.min.{h}.css")
        );
        assert_eq!(hashed_name("LICENSE", &d()), format!("LICENSE.{h}"));
        assert_eq!(hashed_name("x/.htaccess", &d()), format!("x/.htaccess.{h}"));
        assert_eq!(
            object_key(AssetLayout::Versioned, "", "v1", "a.js", &d()),
            "v1/a.js"
        );
        assert_eq!(manifest_key("a/b", "v1"), "a/b/v1/manifest.json");
        assert_eq!(manifest_key("", "v1"), "v1/manifest.json");
        assert_eq!(normalize_prefix("/static/"), "static");
    }

    #[test]
    fn versions_are_plain_names() {
        for ok in ["1.2.0", "v7+build.5", "2024-06-01_3", "abc123"] {
            assert!(validate_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "1 2", "ü", "a\\b"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_by_kind() {
        assert_eq!(content_type("a/b.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a.png"), "image/png");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
        assert!(content_type("app.js").ends_with("javascript; charset=utf-8"));
        assert!(is_entry_point("index.html"));
        assert!(is_entry_point("docs/INDEX.HTM"));
        assert!(!is_entry_point("html/app.js"));
    }

    #[test]
    fn logical_paths_are_checked() {
        assert!(validate_logical("a/b.js").is_ok());
        assert!(validate_logical(".well-known/x").is_ok());
        assert!(validate_logical("a/../b").is_err());
        assert!(validate_logical("./b").is_err());
        assert!(validate_logical("a//b").is_err());
        assert!(validate_logical("/a").is_err());
        assert!(validate_logical("a\nb").is_err());
    }

    proptest! {
        /// Hashed names keep the directory and the final extension and contain the hash.
        #[test]
        fn hashed_name_keeps_dir_and_ext(dir in "[a-z]{1,5}(/[a-z]{1,5}){0,2}", stem in "[a-z]{1,8}", ext in "[a-z]{1,4}") {
            let logical = format!("{dir}/{stem}.{ext}");
            let name = hashed_name(&logical, &d());
            let want_prefix = format!("{dir}/{stem}.");
            let want_suffix = format!(".{ext}");
            prop_assert!(name.starts_with(&want_prefix));
            prop_assert!(name.ends_with(&want_suffix));
            prop_assert!(name.contains(&d().short()));
            prop_assert!(validate_logical(&name).is_ok());
        }
    }
}
