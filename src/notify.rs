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

/// Where notices go, and how hard to try.
pub struct Notifier {
    notices: Notices,
    sns: Option<SnsTopic>,
    webhook: Option<Hook>,
    timeout: Duration,
    attempts: u32,
}

impl Notifier {
    /// The plan's notifier, or None without `[notify]`. Fails (exit 2) when the webhook's
    /// variable is not set: call it before the release changes anything.
    pub fn for_plan(plan: &Plan, config: &SdkConfig) -> Result<Option<Notifier>, CliError> {
        let Some(cfg) = &plan.notify else {
            return Ok(None);
        };
        let webhook = webhook(cfg)?;
        Ok(Some(Notifier {
            notices: Notices::new(plan, cfg),
            sns: cfg
                .sns_topic_arn
                .as_deref()
                .map(|a| SnsTopic::new(config, a)),
            webhook,
            timeout: cfg.timeout,
            attempts: cfg.attempts.max(1),
        }))
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
            let (sns, hook) = tokio::join!(self.to_sns(&notice), self.to_webhook(&notice));
            for failure in [sns, hook].into_iter().flatten() {
                let _ = warn.send(Envelope {
                    ts: chrono::Utc::now(),
                    release: env.release.clone(),
                    event: Event::Warning { message: failure },
                });
            }
        }
    }

    async fn to_sns(&self, n: &Notice) -> Option<String> {
        let topic = self.sns.as_ref()?;
        let result = self
            .retry(|| topic.publish(&n.subject, &n.text))
            .await
            .err()?;
        Some(format!(
            "notification `{}` not delivered to SNS topic {} after {} attempt(s): {result}",
            n.kind.name(),
            topic.arn(),
            self.attempts
        ))
    }

    async fn to_webhook(&self, n: &Notice) -> Option<String> {
        let hook = self.webhook.as_ref()?;
        let body = webhook_body(n);
        let result = self.retry(|| hook.client.post(body.clone())).await.err()?;
        Some(format!(
            "notification `{}` not delivered to the webhook in ${} after {} attempt(s): {result}",
            n.kind.name(),
            hook.env,
            self.attempts
        ))
    }

    /// Up to `attempts` tries of at most `timeout` each, 0.5 s, 1 s, 2 s … apart.
    async fn retry<F, Fut>(&self, mut attempt: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut last = String::new();
        for i in 0..self.attempts {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(500 << (i - 1).min(4))).await;
            }
            match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
        }
        Err(last)
    }
}
