//! Driving one release: the entry points commands call. The state machine itself lives
//! beside this file (one file per phase).

use super::event::{Command, Envelope, Outcome};
use super::ports::Ports;
use crate::plan::Plan;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub version: String,
    /// Approve manual gates without waiting (scripted mode).
    pub auto_approve: bool,
    /// `user@host`, shown to anyone who finds the lock held.
    pub holder: String,
    /// Endpoint override in use (a rehearsal), for the `release_started` event.
    pub endpoint: Option<String>,
}

/// How a release run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub release_id: String,
    pub outcome: Outcome,
    /// The process exit code (crate::exit).
    pub exit_code: i32,
    pub message: String,
}

/// Start a new release of `req.version`. Events go to `events` (the channel closes when
/// this returns); `commands` carries the operator's Approve/Pause/Rollback/Abort.
pub async fn release(
    _plan: &Plan,
    _ports: &Ports,
    _req: ReleaseRequest,
    _events: UnboundedSender<Envelope>,
    _commands: UnboundedReceiver<Command>,
) -> Finished {
    Finished {
        release_id: String::new(),
        outcome: Outcome::Failed,
        exit_code: crate::exit::UNEXPECTED,
        message: "the release engine is not built yet in this version of glidepath".into(),
    }
}
