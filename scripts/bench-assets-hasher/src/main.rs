//! `bench-assets-hasher DIR THREADS...`: hash every non-dot file under DIR with glidepath's
//! `hash_all` on each thread count and print one JSON line per count.

#[allow(dead_code)] // only hash_all is used here
#[path = "../../../crates/aws/src/assets/hash.rs"]
mod hash;

use std::path::{Path, PathBuf};
use std::time::Instant;

fn files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() {
            files(&e.path(), out)?;
        } else if ft.is_file() {
            out.push((e.path(), e.metadata()?.len()));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: bench-assets-hasher DIR THREADS...")?);
    let mut list = Vec::new();
    files(&dir, &mut list)?;
    let (paths, sizes): (Vec<PathBuf>, Vec<u64>) = list.into_iter().unzip();
    let bytes: u64 = sizes.iter().sum();
    for t in args {
        let threads: usize = t.parse()?;
        let started = Instant::now();
        let hashed = hash::hash_all(&paths, &sizes, threads, &|_| {})?;
        let secs = started.elapsed().as_secs_f64();
        let check: u64 = hashed.iter().map(|h| h.size).sum();
        assert_eq!(check, bytes, "every byte hashed");
        println!(
            "{{\"threads\": {threads}, \"files\": {}, \"bytes\": {bytes}, \"secs\": {secs:.4}}}",
            paths.len()
        );
    }
    Ok(())
}
