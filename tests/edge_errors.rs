//! Errors reach the edge (`cli::main`) as typed errors and are printed there once.
//!
//! A cockpit that cannot draw: the release stops where it is (as `q` leaves it) and the
//! command ends with one error that says what became of it. The terminal is a
//! pseudo-terminal that nobody reads, its output buffer filled up beforehand, and
//! glidepath's stdout a non-blocking descriptor of it: both stdin and stdout are terminals,
//! so the cockpit is picked, and its first write (entering the alternate screen) fails with
//! "would block".

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A new pseudo-terminal: (master, slave path). The slave hangs up when the master closes.
fn open_pty() -> (OwnedFd, String) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into our buffer.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let slave = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (master, slave)
    }
}

#[tokio::test]
async fn a_cockpit_that_fails_stops_the_release_and_says_so_once() {
    let seeded = common::seeded_stage("happy", common::rehearsal_plan()).await;
    let (_master, slave) = open_pty();
    let open = |write: bool, flags: i32| {
        OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NOCTTY | flags)
            .open(&slave)
            .expect("open the pty")
    };
    let stdin = open(false, 0);
    let mut stdout = open(true, libc::O_NONBLOCK);
    // Raw mode first, as the cockpit sets it: switching modes later would free some room.
    // SAFETY: termios calls on a descriptor we own, into a zeroed struct they fill.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(stdin.as_raw_fd(), &mut t), 0, "tcgetattr");
        libc::cfmakeraw(&mut t);
        assert_eq!(
            libc::tcsetattr(stdin.as_raw_fd(), libc::TCSANOW, &t),
            0,
            "tcsetattr"
        );
    }
    // Full once a write would block three times in a row, 100 ms apart (the kernel moves
    // what was written towards the reader's side in the background, making room).
    let chunk = [b'.'; 4096];
    let (mut filled, mut blocked) = (0usize, 0);
    while blocked < 3 {
        match stdout.write(&chunk) {
            Ok(n) => (filled, blocked) = (filled + n, 0),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("filling the pty: {e}"),
        }
        assert!(filled < 64 << 20, "the pty never filled up");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .arg("--endpoint-url")
        .arg(seeded.stage.endpoint())
        .args(["release", "examples/rehearsal.toml", "--version", "unseen"])
        .current_dir(common::repo_root())
        .env_remove("GLIDEPATH_HOLDER")
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start glidepath release");
    // It stops at its first wait (the snapshot); unseen, the old code went on to the
    // manual gate and waited there for an approval nobody could give.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for glidepath") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    let context = format!("stderr:\n{stderr}\nstage:\n{}", seeded.stage.stderr_text());
    let status = status.unwrap_or_else(|| panic!("still running after 90 s\n{context}"));
    assert_eq!(status.code(), Some(1), "{context}");
    assert_eq!(
        stderr.matches("the cockpit failed").count(),
        1,
        "one error, printed once\n{context}"
    );
    let error = stderr
        .lines()
        .find(|l| l.contains("the cockpit failed"))
        .unwrap_or_default();
    assert!(
        error.starts_with("glidepath: ") && error.contains("glidepath resume"),
        "the error says how to continue the stopped release: {error}\n{context}"
    );

    // The ledger agrees: the release stopped (not finalized), lock kept for `resume`.
    let (ports, plan) = glidepath::commands::release::ports_for(&seeded.config, &seeded.plan)
        .await
        .expect("ports");
    let st = glidepath::engine::run::status(&plan, &ports)
        .await
        .expect("status");
    assert!(st.lock.is_some(), "the lock is kept for resume\n{context}");
}

#[test]
fn a_log_file_that_cannot_be_opened_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("no-such-dir").join("glidepath.log");
    let out = Command::new(env!("CARGO_BIN_EXE_glidepath"))
        .arg("--log-file")
        .arg(&log)
        .args(["plan", "validate", "examples/rehearsal.toml"])
        .current_dir(common::repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run glidepath");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "nothing was done: {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "one error:\n{stderr}");
    assert!(
        stderr.starts_with("glidepath: cannot open the log file")
            && stderr.contains(&log.display().to_string())
            && stderr.contains("--log-file"),
        "names the file and the option: {stderr}"
    );
}
