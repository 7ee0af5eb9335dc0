//! Start, talk to and stop the rehearsal stage: an AWS emulator on one loopback port. Two
//! engines play it ([`Engine`]): the stage's own moto server (`localstack/stage/stage.py`,
//! venv from `scripts/setup-stage`), or LocalStack with the glidepath plugin
//! (`python -m glidepath_localstack`, venv from `scripts/setup-localstack`). Both take the
//! same arguments, print the same ready line and share the stagehand and control endpoint.
//!
//! Two ways to run it:
//! - [`Stage::start`]: an owned child (tests, `glidepath rehearse`). Dropping the [`Stage`]
//!   kills and reaps it, so no stage outlives its owner, even on panic or error.
//! - [`start_detached`]: a background stage in its own session (`glidepath stage up`),
//!   logging to a file, stopped later with [`stop_detached`].
//!
//! Blocking threads (not tokio tasks) drain the child's pipes, so a `Stage` can be dropped
//! from any context, including after its runtime is gone.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the stage prints on stdout once it serves.
const READY_PREFIX: &str = "stage ready on ";
/// How long a stage may take from spawn to ready (it takes about 2 s).
/// Generous: on a loaded 2-core machine (tests start several stages while cargo builds)
/// start-up was seen at 6 s, and a slow start must not read as a broken stage.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// LocalStack loads every service before it is ready: about 10 s idle, minutes on a busy machine.
pub const LOCALSTACK_READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a SIGTERM gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// LocalStack shuts its services down one by one (about 7 s idle).
const LOCALSTACK_STOP_GRACE: Duration = Duration::from_secs(40);
/// Keep at most this much of the stage's stderr (the tail matters for diagnosis).
const STDERR_KEEP: usize = 64 * 1024;
/// A control request must answer within this.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the stage's Python venv is missing ({python} does not exist): run scripts/setup-stage (or set GLIDEPATH_VENV)")]
    VenvMissing { python: PathBuf },
    #[error("the LocalStack venv is missing ({python} does not exist): run scripts/setup-localstack (or set GLIDEPATH_LOCALSTACK_VENV)")]
    LocalStackMissing { python: PathBuf },
    #[error("the LocalStack venv {venv} has no glidepath plugin: run scripts/setup-localstack")]
    PluginMissing { venv: PathBuf },
    #[error("the stage program is missing ({script} does not exist): run from a glidepath checkout or set GLIDEPATH_STAGE_DIR")]
    ScriptMissing { script: PathBuf },
    #[error("cannot start the stage with {python}: {source}")]
    Spawn {
        python: PathBuf,
        source: std::io::Error,
    },
    /// The stage refused its input (unknown scenario, malformed scenario file, port in
    /// use): its own one-line message, passed through.
    #[error("{message}")]
    Refused { message: String },
    #[error("the stage exited ({status}) before it was ready; its stderr:\n{stderr}")]
    Exited { status: String, stderr: String },
    #[error("the stage was not ready after {}s; its stderr:\n{stderr}", .waited.as_secs())]
    NotReady { waited: Duration, stderr: String },
    #[error("cannot write the stage log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stage control {method} {path} failed: {reason}")]
    Control {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("stage control {method} {path} answered HTTP {status}: {body}")]
    ControlStatus {
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },
    #[error("cannot stop the stage (pid {pid}): {reason}")]
    Stop { pid: u32, reason: String },
}

impl StageError {
    /// The process exit code a command should end with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            StageError::Refused { .. } => crate::exit::USAGE,
            _ => crate::exit::UNEXPECTED,
        }
    }
}

/// Which emulator plays the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// The stage's own moto server: starts in about 2 s, no Docker, no account.
    #[default]
    Stage,
    /// LocalStack (community, on the host) with the glidepath plugin.
    Localstack,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Stage => "stage",
            Engine::Localstack => "localstack",
        }
    }

    /// The account id ARNs carry (both take any credentials).
    pub fn account(self) -> &'static str {
        match self {
            Engine::Stage => "123456789012",
            Engine::Localstack => "000000000000",
        }
    }

    fn ready_timeout(self) -> Duration {
        match self {
            Engine::Stage => READY_TIMEOUT,
            Engine::Localstack => LOCALSTACK_READY_TIMEOUT,
        }
    }

    fn stop_grace(self) -> Duration {
        match self {
            Engine::Stage => STOP_GRACE,
            Engine::Localstack => LOCALSTACK_STOP_GRACE,
        }
    }
}

/// How to start a stage.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// A scenario name from `localstack/scenarios/` or a path to a scenario file.
    pub scenario: String,
    /// TCP port on 127.0.0.1; 0 lets the stage pick a free one.
    pub port: u16,
    /// Stagehand tick in seconds (the stage's default, 0.5 s, when `None`).
    pub tick: Option<f64>,
    pub engine: Engine,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions {
            scenario: "happy".into(),
            port: 0,
            tick: None,
            engine: Engine::Stage,
        }
    }
}

impl StageOptions {
    pub fn scenario(scenario: impl Into<String>) -> Self {
        StageOptions {
            scenario: scenario.into(),
            ..Self::default()
        }
    }
}

/// Where the stage's interpreter and program live.
#[derive(Debug, Clone)]
pub struct StageInstall {
    pub python: PathBuf,
    pub script: PathBuf,
    pub engine: Engine,
}

impl StageInstall {
    /// Stage engine: `$GLIDEPATH_VENV` (else `~/.cache/glidepath/stage-venv`). LocalStack
    /// engine: `$GLIDEPATH_LOCALSTACK_VENV` (else `~/.cache/glidepath/localstack-venv`) with
    /// the plugin installed. Both run the stage code in `$GLIDEPATH_STAGE_DIR` (else
    /// `localstack/stage` under the current directory, else under the crate source).
    pub fn locate(engine: Engine) -> Result<StageInstall, StageError> {
        let python = match engine {
            Engine::Stage => venv_dir().join("bin").join("python"),
            Engine::Localstack => localstack_venv_dir().join("bin").join("python"),
        };
        if !python.exists() {
            return Err(match engine {
                Engine::Stage => StageError::VenvMissing { python },
                Engine::Localstack => StageError::LocalStackMissing { python },
            });
        }
        if engine == Engine::Localstack && !has_plugin(&localstack_venv_dir()) {
            return Err(StageError::PluginMissing {
                venv: localstack_venv_dir(),
            });
        }
        let script = stage_dir().join("stage.py");
        if !script.exists() {
            return Err(StageError::ScriptMissing { script });
        }
        Ok(StageInstall {
            python,
            script,
            engine,
        })
    }

    fn command(&self, opts: &StageOptions) -> Command {
        let mut cmd = Command::new(&self.python);
        match self.engine {
            Engine::Stage => {
                cmd.arg(&self.script);
            }
            Engine::Localstack => {
                // The plugin runs the stage code from this folder (not a copy of it).
                let dir = self.script.parent().unwrap_or(Path::new("."));
                let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
                cmd.args(["-m", "glidepath_localstack"])
                    .env("GLIDEPATH_STAGE_DIR", dir)
                    // The emulator must not send its own calls anywhere but itself.
                    .env_remove("AWS_ENDPOINT_URL");
            }
        }
        cmd.arg("--port")
            .arg(opts.port.to_string())
            .arg("--scenario")
            .arg(&opts.scenario)
            .stdin(Stdio::null())
            // Python buffers stdout when it is not a terminal; the stage flushes its ready
            // line itself, this only keeps any other output in order with stderr.
            .env("PYTHONUNBUFFERED", "1");
        if let Some(tick) = opts.tick {
            cmd.arg("--tick").arg(tick.to_string());
        }
        cmd
    }
}

/// The stage venv: `$GLIDEPATH_VENV`, else `~/.cache/glidepath/stage-venv`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("GLIDEPATH_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => home().join(".cache/glidepath/stage-venv"),
    }
}

/// The LocalStack venv: `$GLIDEPATH_LOCALSTACK_VENV`, else `~/.cache/glidepath/localstack-venv`.
pub fn localstack_venv_dir() -> PathBuf {
    match std::env::var_os("GLIDEPATH_LOCALSTACK_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => home().join(".cache/glidepath/localstack-venv"),
    }
}

/// Whether `scripts/setup-localstack` installed the plugin package into this venv.
fn has_plugin(venv: &Path) -> bool {
    std::fs::read_dir(venv.join("lib"))
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.path()
                    .join("site-packages/glidepath_localstack/__main__.py")
                    .exists()
            })
        })
        .unwrap_or(false)
}

/// The stage program's folder: `$GLIDEPATH_STAGE_DIR`, else `./localstack/stage`, else the
/// one in the glidepath source tree this binary was built from.
pub fn stage_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GLIDEPATH_STAGE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("localstack/stage");
    if here.join("stage.py").exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("localstack/stage")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A running stage owned by this process. Dropping it kills and reaps the stage.
#[derive(Debug)]
pub struct Stage {
    child: Option<Child>,
    pid: u32,
    port: u16,
    endpoint: String,
    startup: Duration,
    stderr: Arc<Mutex<String>>,
    stop_grace: Duration,
}

impl Stage {
    /// Spawn the stage and wait (up to [`READY_TIMEOUT`]) until it serves.
    pub async fn start(opts: StageOptions) -> Result<Stage, StageError> {
        let install = StageInstall::locate(opts.engine)?;
        let started = Instant::now();
        let mut cmd = install.command(&opts);
        // Its own process group: the terminal's Ctrl-C goes to us (the release aborts and
        // reports) rather than killing the stage under a running release.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| StageError::Spawn {
                python: install.python.clone(),
                source,
            })?;
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_done = child
            .stderr
            .take()
            .map(|pipe| drain_stderr(pipe, Arc::clone(&stderr)));

        // The ready line arrives through a oneshot so the wait is async and can time out.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Option<String>>();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let mut ready_tx = Some(ready_tx);
                for line in lines.by_ref().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix(READY_PREFIX) {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(Some(url.trim().to_string()));
                        }
                    }
                }
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(None); // stdout closed before the ready line
                }
            });
        }

        let mut stage = Stage {
            child: Some(child),
            pid,
            port: 0,
            endpoint: String::new(),
            startup: Duration::ZERO,
            stderr,
            stop_grace: opts.engine.stop_grace(),
        };
        let ready_timeout = opts.engine.ready_timeout();
        match tokio::time::timeout(ready_timeout, ready_rx).await {
            Ok(Ok(Some(url))) => {
                stage.port = port_of(&url).unwrap_or(opts.port);
                stage.endpoint = url;
                stage.startup = started.elapsed();
                Ok(stage)
            }
            Ok(_) => {
                // Exited (or closed stdout): collect its status and all of its stderr.
                let status = stage.reap_blocking();
                if let Some(done) = stderr_done {
                    let _ = tokio::task::spawn_blocking(move || done.join()).await;
                }
                let err = stage.stderr_text();
                Err(classify_failure(status, err))
            }
            Err(_) => {
                stage.kill();
                Err(StageError::NotReady {
                    waited: ready_timeout,
                    stderr: stage.stderr_text(),
                })
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` and SDK endpoint overrides.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The stage's process id (it is gone once the `Stage` is dropped).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Spawn-to-ready time.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// What the stage wrote to stderr so far (the last 64 KiB): tracebacks of emulator
    /// errors show up here.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `GET /_stage/<path>` (e.g. `"state"` or `"/_stage/state"`).
    pub async fn control_get(&self, path: &str) -> Result<serde_json::Value, StageError> {
        self.control("GET", path, None).await
    }

    /// `POST /_stage/<path>` with a JSON body.
    pub async fn control_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, StageError> {
        self.control("POST", path, Some(body)).await
    }

    /// `DELETE /_stage/<path>`.
    pub async fn control_delete(&self, path: &str) -> Result<serde_json::Value, StageError> {
        self.control("DELETE", path, None).await
    }

    /// One control request; non-2xx answers are errors carrying the stage's body.
    pub async fn control(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, StageError> {
        control_at(self.port, method, path, body).await
    }

    /// Stop gracefully (SIGTERM, then SIGKILL after a grace period) and check it exited cleanly.
    pub async fn stop(mut self) -> Result<(), StageError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + self.stop_grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await
                }
                Ok(None) => {
                    self.kill();
                    return Err(StageError::Stop {
                        pid: self.pid,
                        reason: format!(
                            "it ignored SIGTERM for {}s and was killed",
                            self.stop_grace.as_secs()
                        ),
                    });
                }
                Err(e) => {
                    return Err(StageError::Stop {
                        pid: self.pid,
                        reason: e.to_string(),
                    })
                }
            }
        };
        self.child = None;
        if status.success() {
            Ok(())
        } else {
            Err(StageError::Stop {
                pid: self.pid,
                reason: format!(
                    "it exited with {status} on SIGTERM; its stderr:\n{}",
                    self.stderr_text()
                ),
            })
        }
    }

    /// SIGKILL and reap (idempotent).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait for a child that has closed its stdout (it is exiting).
    fn reap_blocking(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ask the kernel to SIGTERM an owned stage when its parent dies, so a `glidepath
/// rehearse` killed with SIGKILL (where `Drop` never runs) leaves no stage behind.
/// Linux only; the signal is tied to the spawning thread, which for us is a runtime worker
/// or the test thread, both of which outlive the `Stage`.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Turn a stage that exited before ready into an error: exit 2 is the stage refusing its
/// input, with one `stage: ...` line on stderr saying what to fix.
fn classify_failure(status: Option<ExitStatus>, stderr: String) -> StageError {
    if status.and_then(|s| s.code()) == Some(crate::exit::USAGE) {
        if let Some(line) = stderr.lines().rev().find(|l| l.starts_with("stage: ")) {
            return StageError::Refused {
                message: line.to_string(),
            };
        }
    }
    StageError::Exited {
        status: status.map_or_else(|| "unknown status".to_string(), |s| s.to_string()),
        stderr,
    }
}

fn drain_stderr(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(mut buf) = into.lock() {
                        buf.push_str(&line);
                        if buf.len() > STDERR_KEEP {
                            let mut cut = buf.len() - STDERR_KEEP;
                            while !buf.is_char_boundary(cut) {
                                cut += 1;
                            }
                            buf.drain(..cut);
                        }
                    }
                }
            }
        }
    })
}

/// One control request to the stage on `127.0.0.1:port` (for a stage this process does not
/// own, e.g. one `glidepath stage up` started); non-2xx answers are errors with the body.
pub async fn control_at(
    port: u16,
    method: &'static str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, StageError> {
    let path = control_path(path);
    let fail = |reason: String| StageError::Control {
        method,
        path: path.clone(),
        reason,
    };
    let (status, text) =
        tokio::time::timeout(CONTROL_TIMEOUT, http_request(port, method, &path, body))
            .await
            .map_err(|_| fail(format!("no answer within {}s", CONTROL_TIMEOUT.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(StageError::ControlStatus {
            method,
            path,
            status,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| fail(format!("answer is not JSON ({e}): {text}")))
}

/// The port of an `http://host:PORT` URL, if it names one.
pub fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

fn control_path(path: &str) -> String {
    let p = path.trim_start_matches('/');
    if p.starts_with("_stage/") {
        format!("/{p}")
    } else {
        format!("/_stage/{p}")
    }
}

fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory effects; a stale pid at worst gets ESRCH.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Whether a process with this id exists (signal 0 probes without sending anything).
pub fn process_alive(pid: u32) -> bool {
    pid != 0
        && (signal(pid, 0) || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// A minimal HTTP/1.1 exchange with the stage on loopback (`Connection: close`, so the
/// body ends at EOF; the stage always sends Content-Length).
async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<(u16, String)> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    request.push_str(&payload);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers in the answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("no HTTP status line in the answer"))?;
    let mut body = &raw[split + 4..];
    let length = head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(n) = length {
        body = &body[..n.min(body.len())];
    }
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

// --- background stage (`glidepath stage up` / `down`) --------------------------------------

/// A stage started in the background; it outlives this process.
#[derive(Debug, Clone)]
pub struct Detached {
    pub pid: u32,
    pub port: u16,
    pub endpoint: String,
    pub startup: Duration,
    pub log: PathBuf,
}

/// Start a stage in its own session (so the terminal's Ctrl-C and hangup do not reach it),
/// stdout and stderr going to `log`; wait until it serves.
pub async fn start_detached(opts: StageOptions, log: &Path) -> Result<Detached, StageError> {
    use std::os::unix::process::CommandExt;
    let install = StageInstall::locate(opts.engine)?;
    let log_err = |source| StageError::Log {
        path: log.to_path_buf(),
        source,
    };
    let out = File::create(log).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let mut cmd = install.command(&opts);
    cmd.stdout(out).stderr(err);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| StageError::Spawn {
        python: install.python.clone(),
        source,
    })?;
    let pid = child.id();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(url) = text
            .lines()
            .find_map(|l| l.strip_prefix(READY_PREFIX))
            .map(|u| u.trim().to_string())
        {
            return Ok(Detached {
                pid,
                port: port_of(&url).unwrap_or(opts.port),
                endpoint: url,
                startup: started.elapsed(),
                log: log.to_path_buf(),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(classify_failure(Some(status), text));
        }
        if started.elapsed() > opts.engine.ready_timeout() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StageError::NotReady {
                waited: opts.engine.ready_timeout(),
                stderr: text,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `pid` runs the stage program (guards against a pid reused by something else).
pub fn is_stage_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| engine_in_cmdline(&String::from_utf8_lossy(&c)).is_some())
        .unwrap_or_else(|_| process_alive(pid))
}

/// The engine a running stage process plays, from its command line.
pub fn engine_of(pid: u32) -> Option<Engine> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    engine_in_cmdline(&String::from_utf8_lossy(&cmdline))
}

fn engine_in_cmdline(cmdline: &str) -> Option<Engine> {
    if cmdline.contains("glidepath_localstack") {
        Some(Engine::Localstack)
    } else if cmdline.contains("stage.py") {
        Some(Engine::Stage)
    } else {
        None
    }
}

/// SIGTERM a background stage and wait until it is gone (SIGKILL after the engine's grace).
pub async fn stop_detached(pid: u32) -> Result<(), StageError> {
    let grace = engine_of(pid).unwrap_or_default().stop_grace();
    if !signal(pid, libc::SIGTERM) {
        return Err(StageError::Stop {
            pid,
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    let deadline = Instant::now() + grace;
    while process_alive(pid) && !is_zombie(pid) {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
            tokio::time::sleep(Duration::from_millis(200)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// A zombie has exited; only its parent's wait is missing (e.g. our own test harness).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_are_under_stage() {
        assert_eq!(control_path("state"), "/_stage/state");
        assert_eq!(control_path("/_stage/fault"), "/_stage/fault");
        assert_eq!(control_path("_stage/health"), "/_stage/health");
    }

    #[test]
    fn engines_are_told_apart_by_their_command_line() {
        let stage = "/venv/bin/python\0/src/localstack/stage/stage.py\0--port\x004566";
        let ls = "/venv/bin/python\0-m\0glidepath_localstack\0--port\x004566";
        assert_eq!(engine_in_cmdline(stage), Some(Engine::Stage));
        assert_eq!(engine_in_cmdline(ls), Some(Engine::Localstack));
        assert_eq!(engine_in_cmdline("/usr/bin/python3\0-m\0http.server"), None);
    }

    #[test]
    fn a_localstack_venv_without_the_plugin_is_refused_with_the_fix() {
        let venv = tempfile::tempdir().unwrap();
        assert!(!has_plugin(venv.path()));
        let pkg = venv
            .path()
            .join("lib/python3.11/site-packages/glidepath_localstack");
        std::fs::create_dir_all(&pkg).unwrap();
        assert!(
            !has_plugin(venv.path()),
            "an empty package folder is not the plugin"
        );
        std::fs::write(pkg.join("__main__.py"), "").unwrap();
        assert!(has_plugin(venv.path()));
        let err = StageError::PluginMissing {
            venv: venv.path().to_path_buf(),
        };
        assert!(
            err.to_string().contains("run scripts/setup-localstack"),
            "{err}"
        );
    }

    #[test]
    fn port_comes_from_the_ready_url() {
        assert_eq!(port_of("http://127.0.0.1:45123"), Some(45123));
        assert_eq!(port_of("http://[::1]:4566/"), Some(4566));
        assert_eq!(port_of("nonsense"), None);
    }

    #[test]
    fn responses_parse_status_and_body() {
        let raw = b"HTTP/1.1 400 BAD REQUEST\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\":false}";
        let (status, body) = parse_response(raw).unwrap();
        assert_eq!(status, 400);
        assert_eq!(body, "{\"ok\":false}");
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn exit_2_with_a_stage_line_is_a_refusal() {
        use std::os::unix::process::ExitStatusExt;
        let status = ExitStatus::from_raw(2 << 8);
        let err = classify_failure(
            Some(status),
            "noise\nstage: unknown scenario 'x'; known scenarios: happy\n".into(),
        );
        assert_eq!(
            err.to_string(),
            "stage: unknown scenario 'x'; known scenarios: happy"
        );
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        let crash = classify_failure(Some(ExitStatus::from_raw(1 << 8)), "Traceback".into());
        assert!(matches!(crash, StageError::Exited { .. }));
        assert_eq!(crash.exit_code(), crate::exit::UNEXPECTED);
    }
}
