//! The smoke test: the plan's command, run locally against green before it takes traffic.
//!
//! The command runs as given (program + arguments, no shell unless the plan says
//! `["sh", "-c", "…"]`), with the engine's variables (GREEN_URL …) added to the environment.
//! It runs in its own process group so a timeout kills everything it started, not only
//! the first process. A failure reports the exit code and the last lines of output.

use async_trait::async_trait;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The smoke test runs a local command, not an AWS call; a port so engine tests can fake it.
#[async_trait]
pub trait Smoke: Send + Sync {
    /// Ok(()) on exit 0, Err(reason) otherwise.
    async fn run(
        &self,
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), String>;
}

/// Lines of output kept for the failure message.
pub const TAIL_LINES: usize = 20;
/// Longer lines are cut (a minified blob or a progress bar must not flood the report).
const MAX_LINE_CHARS: usize = 300;
/// After the command exits, how long its output may take to drain before leftovers
/// (background children holding the pipes) are killed.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Runs the smoke command as a child process (`ports::Smoke`).
#[derive(Debug, Clone, Default)]
pub struct CommandSmoke;

impl CommandSmoke {
    pub fn new() -> Self {
        CommandSmoke
    }
}

#[async_trait]
impl Smoke for CommandSmoke {
    async fn run(
        &self,
        command: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), String> {
        run_command("smoke command", command, env, timeout).await
    }
}

/// Run a plan's local command as the smoke test does (own process group, timeout, output
/// tail); `what` names it in messages, e.g. "read_only.exit command".
pub async fn run_command(
    what: &str,
    command: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err(format!("{what} is empty: set it in the plan"));
    };
    let shown = display(command);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        format!("{what} `{shown}` could not start: {e} (is `{program}` installed and on PATH?)")
    })?;
    // Kills the whole group if this future is dropped midway (the release was aborted).
    let mut group = GroupGuard(child.id());

    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = {
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let tail = tail.clone();
        tokio::spawn(async move {
            tokio::join!(
                collect(out, Stream::Stdout, tail.clone()),
                collect(err, Stream::Stderr, tail)
            );
        })
    };

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => {
            group.kill();
            return Err(format!("{what} `{shown}`: could not wait for it: {e}"));
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            None
        }
    };
    if tokio::time::timeout(DRAIN_GRACE, &mut readers)
        .await
        .is_err()
    {
        // Something it started in the background still holds the pipes.
        group.kill();
        readers.abort();
    }
    group.disarm();

    let outcome = match status {
        Some(s) if s.success() => return Ok(()),
        Some(s) => exit_reason(s),
        None => format!("timed out after {} and was killed", secs(timeout)),
    };
    let lines = tail.lock().map(|t| t.render()).unwrap_or_default();
    Err(if lines.is_empty() {
        format!("{what} `{shown}` {outcome} (no output)")
    } else {
        format!("{what} `{shown}` {outcome}; last output:\n{lines}")
    })
}

fn exit_reason(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    format!("failed ({status})")
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The command for messages: short, on one line. Environment values are never shown.
fn display(command: &[String]) -> String {
    let s = command.join(" ").replace('\n', " ");
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// The last lines of each stream. The two pipes are read concurrently, so their relative
/// order is not known; each keeps its own tail, and stderr (where the reason usually is)
/// is never crowded out by a chatty stdout.
#[derive(Debug, Default)]
struct Tail {
    stdout: VecDeque<String>,
    stderr: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let lines = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let line = String::from_utf8_lossy(bytes);
        let line = line.trim_end_matches(['\r', '\n']);
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(MAX_LINE_CHARS).collect());
    }

    /// At most [`TAIL_LINES`] lines in all: stderr gets at least half when it has that
    /// many, stdout the rest; stderr is printed last, nearest the failure.
    fn render(&self) -> String {
        let half = TAIL_LINES / 2;
        let n_err = self
            .stderr
            .len()
            .min(half.max(TAIL_LINES.saturating_sub(self.stdout.len())));
        let n_out = self.stdout.len().min(TAIL_LINES - n_err);
        let mut out = Vec::new();
        for (name, lines, n) in [
            ("stdout", &self.stdout, n_out),
            ("stderr", &self.stderr, n_err),
        ] {
            if n > 0 {
                out.push(format!("  {name}:"));
                out.extend(
                    lines
                        .iter()
                        .skip(lines.len() - n)
                        .map(|l| format!("  | {l}")),
                );
            }
        }
        out.join("\n")
    }
}

/// Read a stream to its end, keeping complete lines in `tail`. Memory stays bounded
/// whatever the command prints: a line longer than the cut is truncated as it arrives.
async fn collect(stream: Option<impl AsyncRead + Unpin>, which: Stream, tail: Arc<Mutex<Tail>>) {
    let Some(mut stream) = stream else { return };
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let limit = MAX_LINE_CHARS * 4; // bytes: room for multi-byte characters
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Ok(mut t) = tail.lock() {
                    t.push(which, &line);
                }
                line.clear();
            } else if line.len() < limit {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        if let Ok(mut t) = tail.lock() {
            t.push(which, &line);
        }
    }
}

/// Kills the child's process group on drop unless disarmed.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0 {
            if let Ok(pgid) = libc::pid_t::try_from(pid) {
                // SAFETY: killpg only sends a signal; the group is the one the child leads
                // (process_group(0)), so nothing outside what the smoke command started.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_cuts_long_ones() {
        let mut t = Tail::default();
        for i in 0..50 {
            t.push(Stream::Stdout, format!("line {i}\r\n").as_bytes());
        }
        t.push(Stream::Stdout, "x".repeat(1000).as_bytes());
        let r = t.render();
        assert_eq!(r.lines().count(), TAIL_LINES + 1);
        assert!(r.starts_with("  stdout:\n  | line 31\n"), "{r}");
        assert!(r.ends_with(&format!("  | {}", "x".repeat(MAX_LINE_CHARS))));
    }

    #[test]
    fn stderr_is_never_crowded_out() {
        let mut t = Tail::default();
        for i in 0..50 {
            t.push(Stream::Stdout, format!("out {i}").as_bytes());
        }
        for i in 0..3 {
            t.push(Stream::Stderr, format!("err {i}").as_bytes());
        }
        let r = t.render();
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES + 2);
        assert_eq!(lines[1], "  | out 33");
        assert_eq!(
            &lines[17..],
            [
                "  | out 49",
                "  stderr:",
                "  | err 0",
                "  | err 1",
                "  | err 2"
            ]
        );
        // A flood on both sides: half each.
        for i in 0..50 {
            t.push(Stream::Stderr, format!("err {i}").as_bytes());
        }
        let r = t.render();
        assert_eq!(
            r.lines().filter(|l| l.starts_with("  | err")).count(),
            TAIL_LINES / 2
        );
        assert_eq!(
            r.lines().filter(|l| l.starts_with("  | out")).count(),
            TAIL_LINES / 2
        );
    }

    #[test]
    fn long_commands_are_shortened() {
        let c: Vec<String> = vec!["sh".into(), "-c".into(), "y".repeat(200)];
        assert_eq!(display(&c).chars().count(), 80);
    }
}
