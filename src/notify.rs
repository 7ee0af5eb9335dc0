//! `[notify]`: release notifications to an SNS topic and/or a Slack-compatible webhook,
//! sent by a background task fed from the event stream. The engine never waits on it; a
//! notification that cannot be delivered (after `notify.attempts` tries of at most
//! `notify.timeout` each) becomes a warning event, never a failed release.
//!
//! The webhook URL is a secret: it is read from the environment variable the plan names and
//! appears in no message, log or error ("the webhook in $NAME").

use crate::aws::sns::SnsTopic;
use crate::aws::webhook::Webhook;
use crate::aws::SdkConfig;
use crate::commands::CliError;
use crate::engine::event::{Envelope, Event};
use crate::notify_core::{webhook_body, Notice, Notices};
use crate::plan::{NotifyConfig, Plan};
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Before any change: the webhook's variable must hold an http(s) URL. Returns its client.
pub fn webhook(cfg: &NotifyConfig) -> Result<Option<Hook>, CliError> {
    let Some(name) = &cfg.webhook_env else {
        return Ok(None);
    };
    let value = std::env::var(name).unwrap_or_default();
    if value.trim().is_empty() {
        return Err(CliError::usage(format!(
            "notify.webhook_env names ${name}, which is not set; export the webhook URL in ${name}, or remove webhook_env from [notify]; nothing was changed"
        )));
    }
    // Never echo the value: it is the secret.
    match Webhook::new(&value) {
        Ok(client) => Ok(Some(Hook {
            env: name.clone(),
            client,
        })),
        Err(e) => Err(CliError::usage(format!(
            "the webhook in ${name} {e}; set ${name} to the webhook's https:// URL; nothing was changed"
        ))),
    }
}

/// The webhook and the name of the variable it came from, the only way messages refer to it.
pub struct Hook {
    env: String,
    client: Webhook,
}

/// Where a notice goes. SNS and the webhook in production; tests put in-memory ones in
/// (`Notifier::with_destinations`) to check retries and timeouts on a paused clock.
pub trait Destination: Send + Sync {
    /// How warnings name it; never a secret ("the webhook in $NAME").
    fn name(&self) -> String;
    /// One delivery attempt; the error says why in words safe to print.
    fn send<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), String>>;
}

impl Destination for SnsTopic {
    fn name(&self) -> String {
        format!("SNS topic {}", self.arn())
    }

    fn send<'a>(&'a self, n: &'a Notice) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.publish(&n.subject, &n.text))
    }
}

impl Destination for Hook {
    fn name(&self) -> String {
        format!("the webhook in ${}", self.env)
    }

    fn send<'a>(&'a self, n: &'a Notice) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.client.post(webhook_body(n)))
    }
}

/// Where notices go, and how hard to try.
pub struct Notifier {
    notices: Notices,
    destinations: Vec<Box<dyn Destination>>,
    timeout: Duration,
    attempts: u32,
}

/// Pause before attempt `i` (0-based) of a notification: none, then 0.5 s, 1 s, 2 s, 4 s,
/// and 8 s from then on.
pub fn backoff(i: u32) -> Duration {
    if i == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(500 << (i - 1).min(4))
    }
}

impl Notifier {
    /// The plan's notifier, or None without `[notify]`. Fails (exit 2) when the webhook's
    /// variable is not set: call it before the release changes anything.
    pub fn for_plan(plan: &Plan, config: &SdkConfig) -> Result<Option<Notifier>, CliError> {
        let Some(cfg) = &plan.notify else {
            return Ok(None);
        };
        let mut destinations: Vec<Box<dyn Destination>> = Vec::new();
        if let Some(arn) = cfg.sns_topic_arn.as_deref() {
            destinations.push(Box::new(SnsTopic::new(config, arn)));
        }
        if let Some(hook) = webhook(cfg)? {
            destinations.push(Box::new(hook));
        }
        Ok(Notifier::with_destinations(plan, destinations))
    }

    /// A notifier for the plan's `[notify]` events, attempts and timeout that sends to
    /// `destinations`; None without `[notify]`.
    pub fn with_destinations(
        plan: &Plan,
        destinations: Vec<Box<dyn Destination>>,
    ) -> Option<Notifier> {
        let cfg = plan.notify.as_ref()?;
        Some(Notifier {
            notices: Notices::new(plan, cfg),
            destinations,
            timeout: cfg.timeout,
            attempts: cfg.attempts.max(1),
        })
    }

    /// Put the notifier between the engine's events and the view: the view gets every
    /// event (plus the notifier's warnings), the notifier a copy. The returned stream
    /// closes once the engine's has and the last notification was tried.
    pub fn attach(self, mut rx: UnboundedReceiver<Envelope>) -> UnboundedReceiver<Envelope> {
        let (view_tx, view_rx) = unbounded_channel();
        let (note_tx, note_rx) = unbounded_channel();
        let warn = view_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let _ = note_tx.send(e.clone());
                // A view that is gone must not stop the drain: the engine never waits on it.
                let _ = view_tx.send(e);
            }
        });
        tokio::spawn(self.run(note_rx, warn));
        view_rx
    }

    async fn run(mut self, mut rx: UnboundedReceiver<Envelope>, warn: UnboundedSender<Envelope>) {
        while let Some(env) = rx.recv().await {
            let Some(notice) = self.notices.notice(&env) else {
                continue;
            };
            let tries = self
                .destinations
                .iter()
                .map(|d| self.deliver(d.as_ref(), &notice));
            for failure in futures::future::join_all(tries).await.into_iter().flatten() {
                let _ = warn.send(Envelope {
                    ts: chrono::Utc::now(),
                    release: env.release.clone(),
                    event: Event::Warning { message: failure },
                });
            }
        }
    }

    /// Up to `attempts` tries of at most `timeout` each, `backoff` apart; the warning when
    /// none got through.
    async fn deliver(&self, to: &dyn Destination, n: &Notice) -> Option<String> {
        let mut last = String::new();
        for i in 0..self.attempts {
            tokio::time::sleep(backoff(i)).await;
            match tokio::time::timeout(self.timeout, to.send(n)).await {
                Ok(Ok(())) => return None,
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
        }
        Some(format!(
            "notification `{}` not delivered to {} after {} attempt(s): {last}",
            n.kind.name(),
            to.name(),
            self.attempts
        ))
    }
}
