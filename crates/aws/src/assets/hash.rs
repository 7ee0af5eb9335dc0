//! SHA-256 of every file, on all cores, streamed through a fixed buffer (constant memory
//! per file however large it is).

use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Read buffer per hashing thread.
pub const BUF_SIZE: usize = 256 * 1024;

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The form S3 wants in `x-amz-checksum-sha256`.
    pub fn base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// First 8 hex digits, for hashed file names.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        use base64::Engine as _;
        let v = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        Some(Digest(v.try_into().ok()?))
    }
}

/// Hash of one file and the number of bytes actually read (the size we publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub digest: Digest,
    pub size: u64,
}

/// A file that could not be read while hashing.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct HashError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Stream one file through SHA-256 using `buf`.
pub fn hash_file(path: &Path, buf: &mut [u8]) -> Result<Hashed, HashError> {
    let err = |source| HashError {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Hashed {
        digest: Digest(hasher.finalize().into()),
        size,
    })
}

/// Hash `paths` on `threads` threads (0 = all cores). Results are in input order. Work is
/// handed out largest file first, so one big file does not finish last on a single core.
/// `sizes` (same order) only guides scheduling; `on_done(bytes)` is called per file.
pub fn hash_all(
    paths: &[PathBuf],
    sizes: &[u64],
    threads: usize,
    on_done: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Hashed>, HashError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, paths.len().max(1));

    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes.get(i).copied().unwrap_or(0)));

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Hashed>>> = Mutex::new(vec![None; paths.len()]);
    let first_error: Mutex<Option<HashError>> = Mutex::new(None);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = vec![0u8; BUF_SIZE];
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    match hash_file(&paths[i], &mut buf) {
                        Ok(h) => {
                            on_done(h.size);
                            local.push((i, h));
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            slot.get_or_insert(e);
                        }
                    }
                }
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                for (i, h) in local {
                    all[i] = Some(h);
                }
            });
        }
    });

    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    all.into_iter()
        .zip(paths)
        .map(|(h, p)| {
            h.ok_or_else(|| HashError {
                path: p.clone(),
                source: std::io::Error::other("not hashed (internal error)"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_and_encodings() {
        let d = Digest::of(b"");
        assert_eq!(
            d.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.base64(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(Digest::from_hex(&d.hex()), Some(d));
        assert_eq!(Digest::from_base64(&d.base64()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }

    #[test]
    fn hashes_many_files_in_order_with_a_small_buffer_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let mut want = Vec::new();
        for i in 0..40usize {
            // Sizes straddle the buffer size to exercise the streaming loop.
            let len = (i * 37_013) % (BUF_SIZE * 3);
            let bytes: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, &bytes).unwrap();
            want.push(Hashed {
                digest: Digest::of(&bytes),
                size: len as u64,
            });
            paths.push(p);
        }
        let sizes: Vec<u64> = want.iter().map(|h| h.size).collect();
        let seen = AtomicUsize::new(0);
        let got = hash_all(&paths, &sizes, 3, &|_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(seen.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gone.js");
        let err = hash_all(std::slice::from_ref(&p), &[0], 0, &|_| {}).unwrap_err();
        assert_eq!(err.path, p);
        assert!(err.to_string().contains("gone.js"));
    }
}
