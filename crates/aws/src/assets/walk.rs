//! Walk the assets folder and validate every file *before* anything is uploaded: a bad tree
//! must fail with the offending path and leave the bucket untouched.
//!
//! Rules:
//! - `.git` is never published; other dot files and dot folders are skipped unless an include
//!   pattern names a dot segment explicitly (e.g. `.well-known/**`).
//! - include globs (none = everything) and exclude globs match the `/`-separated path relative
//!   to the folder; `*` also crosses `/`, so `*.map` excludes maps at any depth.
//! - symlinks are followed only when they stay inside the folder; links that leave it (via
//!   `..` or an absolute target), broken links and link loops are errors.
//! - fifos, sockets and device files are errors (reading one would hang or make no sense).
//! - names must be UTF-8 and must not contain `.`/`..` segments or control characters.
//!
//! Only files that would be published are checked, so an excluded socket does not block.

use globset::{Glob, GlobSet, GlobSetBuilder};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedFile {
    /// `/`-separated path relative to the assets folder: the manifest's key.
    pub logical: String,
    /// Where to read it (through an in-tree symlink if there is one).
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("assets folder {path}: {source}; check the plan's assets.dir or --dir")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("assets folder {path} is not a directory; point assets.dir (or --dir) at the folder of built files")]
    RootNotDir { path: PathBuf },
    #[error("assets glob `{pattern}` is invalid: {message}")]
    BadGlob { pattern: String, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a symlink leading outside the assets folder (to {target}); copy the file in or exclude it")]
    SymlinkEscapes { path: PathBuf, target: PathBuf },
    #[error("{path} is a broken symlink; fix or remove it, or exclude it")]
    BrokenSymlink { path: PathBuf },
    #[error("{path} is a symlink loop back to {target}; remove it or exclude it")]
    SymlinkLoop { path: PathBuf, target: PathBuf },
    #[error("{path} is a {kind}, not a regular file; remove it or exclude it")]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("{path}: the name is not valid UTF-8 (S3 keys and URLs need UTF-8); rename it or exclude it")]
    NonUtf8Name { path: PathBuf },
    #[error("{path}: {reason}; rename it or exclude it")]
    BadName { path: PathBuf, reason: String },
}

/// Include/exclude filter over relative paths.
#[derive(Debug, Clone)]
pub struct Filter {
    include: Option<GlobSet>,
    /// The include patterns that name a dot segment: the only way to publish dot files.
    dot_include: Option<GlobSet>,
    exclude: GlobSet,
}

fn build(patterns: &[&String]) -> Result<Option<GlobSet>, WalkError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| WalkError::BadGlob {
            pattern: (*p).clone(),
            message: e.kind().to_string(),
        })?;
        b.add(glob);
    }
    b.build().map(Some).map_err(|e| WalkError::BadGlob {
        pattern: patterns
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        message: e.to_string(),
    })
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, WalkError> {
        let inc: Vec<&String> = include.iter().collect();
        let dot: Vec<&String> = include
            .iter()
            .filter(|p| p.split('/').any(|seg| seg.starts_with('.')))
            .collect();
        let exc: Vec<&String> = exclude.iter().collect();
        Ok(Filter {
            include: build(&inc)?,
            dot_include: build(&dot)?,
            exclude: build(&exc)?.unwrap_or_else(GlobSet::empty),
        })
    }

    /// Whether a file at `rel` is published. `dotted`: some segment starts with a dot.
    pub fn selects(&self, rel: &Path, dotted: bool) -> bool {
        if self.exclude.is_match(rel) {
            return false;
        }
        if dotted {
            return self.dot_include.as_ref().is_some_and(|s| s.is_match(rel));
        }
        self.include.as_ref().is_none_or(|s| s.is_match(rel))
    }

    /// Dot folders are only entered when some include pattern could publish a dot file.
    fn enters_dot_dirs(&self) -> bool {
        self.dot_include.is_some()
    }
}

fn is_dot(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

fn special_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

struct Dir {
    path: PathBuf,
    rel: PathBuf,
    dotted: bool,
    /// Canonical paths of this folder and its ancestors (to catch symlink loops).
    chain: Vec<PathBuf>,
}

/// Walk `root` and return the files to publish, sorted by logical path.
pub fn walk(root: &Path, filter: &Filter) -> Result<Vec<WalkedFile>, WalkError> {
    let canon_root = std::fs::canonicalize(root).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !canon_root.is_dir() {
        return Err(WalkError::RootNotDir {
            path: root.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    let mut stack = vec![Dir {
        path: root.to_path_buf(),
        rel: PathBuf::new(),
        dotted: false,
        chain: vec![canon_root.clone()],
    }];
    while let Some(dir) = stack.pop() {
        let io = |source| WalkError::Io {
            path: dir.path.clone(),
            source,
        };
        let mut entries = std::fs::read_dir(&dir.path)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if name == ".git" {
                continue;
            }
            let path = entry.path();
            let rel = dir.rel.join(&name);
            let dotted = dir.dotted || is_dot(&name);
            let mut ft = entry.file_type().map_err(|source| WalkError::Io {
                path: path.clone(),
                source,
            })?;
            // Resolve symlinks, refusing any that leave the folder.
            let mut canon = None;
            if ft.is_symlink() {
                if filter.exclude.is_match(&rel) || (dotted && !filter.enters_dot_dirs()) {
                    continue;
                }
                let target = std::fs::canonicalize(&path)
                    .map_err(|_| WalkError::BrokenSymlink { path: path.clone() })?;
                if !target.starts_with(&canon_root) {
                    return Err(WalkError::SymlinkEscapes { path, target });
                }
                ft = std::fs::metadata(&target)
                    .map_err(|source| WalkError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .file_type();
                canon = Some(target);
            }
            if ft.is_dir() {
                if dotted && !filter.enters_dot_dirs() {
                    continue;
                }
                let canon = match canon {
                    Some(c) => c,
                    None => std::fs::canonicalize(&path).map_err(|source| WalkError::Io {
                        path: path.clone(),
                        source,
                    })?,
                };
                if dir.chain.contains(&canon) {
                    return Err(WalkError::SymlinkLoop {
                        path,
                        target: canon,
                    });
                }
                let mut chain = dir.chain.clone();
                chain.push(canon);
                stack.push(Dir {
                    path,
                    rel,
                    dotted,
                    chain,
                });
                continue;
            }
            if !filter.selects(&rel, dotted) {
                continue;
            }
            if !ft.is_file() {
                return Err(WalkError::SpecialFile {
                    path,
                    kind: special_kind(&ft),
                });
            }
            let Some(rel_str) = rel.to_str() else {
                return Err(WalkError::NonUtf8Name { path });
            };
            let logical = rel_str.to_string();
            super::layout::validate_logical(&logical).map_err(|reason| WalkError::BadName {
                path: path.clone(),
                reason,
            })?;
            let size = std::fs::metadata(&path)
                .map_err(|source| WalkError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            out.push(WalkedFile {
                logical,
                path,
                size,
            });
        }
    }
    out.sort_by(|a, b| a.logical.cmp(&b.logical));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("css")).unwrap();
        fs::create_dir_all(r.join(".git/objects")).unwrap();
        fs::create_dir_all(r.join(".well-known")).unwrap();
        fs::write(r.join("index.html"), "<html>").unwrap();
        fs::write(r.join("css/a.css"), "a{}").unwrap();
        fs::write(r.join("css/a.css.map"), "{}").unwrap();
        fs::write(r.join("empty.txt"), "").unwrap();
        fs::write(r.join(".env"), "SECRET=1").unwrap();
        fs::write(r.join(".git/HEAD"), "ref").unwrap();
        fs::write(r.join(".well-known/security.txt"), "x").unwrap();
        t
    }

    fn names(files: &[WalkedFile]) -> Vec<&str> {
        files.iter().map(|f| f.logical.as_str()).collect()
    }

    #[test]
    fn skips_dotfiles_and_git_by_default() {
        let t = tree();
        let files = walk(t.path(), &Filter::new(&[], &[]).unwrap()).unwrap();
        assert_eq!(
            names(&files),
            ["css/a.css", "css/a.css.map", "empty.txt", "index.html"]
        );
        assert_eq!(files[2].size, 0);
    }

    #[test]
    fn include_exclude_and_explicit_dot_include() {
        let t = tree();
        let f = Filter::new(
            &["**/*.css".into(), "*.html".into(), ".well-known/**".into()],
            &["*.map".into()],
        )
        .unwrap();
        let files = walk(t.path(), &f).unwrap();
        assert_eq!(
            names(&files),
            [".well-known/security.txt", "css/a.css", "index.html"]
        );
        let f = Filter::new(&[], &["*.map".into(), "css/**".into()]).unwrap();
        assert_eq!(
            names(&walk(t.path(), &f).unwrap()),
            ["empty.txt", "index.html"]
        );
    }

    #[test]
    fn bad_glob_is_named() {
        let err = Filter::new(&["a[".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("`a[`"), "{err}");
    }

    #[test]
    fn in_tree_symlinks_are_followed_escaping_ones_refused() {
        let t = tree();
        std::os::unix::fs::symlink("css/a.css", t.path().join("alias.css")).unwrap();
        let files = walk(t.path(), &Filter::new(&[], &[]).unwrap()).unwrap();
        assert!(names(&files).contains(&"alias.css"));

        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        // A relative target with `..` components that climbs out of the folder.
        let up = "../".repeat(t.path().components().count() + 1);
        let target = format!(
            "{up}{}",
            outside.path().display().to_string().trim_start_matches('/')
        );
        std::os::unix::fs::symlink(target, t.path().join("css/up")).unwrap();
        let err = walk(t.path(), &Filter::new(&[], &[]).unwrap()).unwrap_err();
        assert!(matches!(err, WalkError::SymlinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("css/up"), "{err}");
        // Excluding the link makes the tree publishable again.
        let f = Filter::new(&[], &["css/up".into()]).unwrap();
        assert!(walk(t.path(), &f).is_ok());
    }

    #[test]
    fn symlink_loops_and_broken_links_are_refused() {
        let t = tree();
        std::os::unix::fs::symlink("..", t.path().join("css/loop")).unwrap();
        let err = walk(t.path(), &Filter::new(&[], &[]).unwrap()).unwrap_err();
        assert!(matches!(err, WalkError::SymlinkLoop { .. }), "{err}");

        let t = tree();
        std::os::unix::fs::symlink("nowhere", t.path().join("dead.js")).unwrap();
        let err = walk(t.path(), &Filter::new(&[], &[]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("dead.js"), "{err}");
    }

    #[test]
    fn missing_root_is_clear() {
        let err = walk(
            Path::new("/nonexistent/assets"),
            &Filter::new(&[], &[]).unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/assets"), "{err}");
    }
}
