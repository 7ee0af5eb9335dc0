//! Which release events become notifications (`[notify]`), and what they say. Pure: the
//! sending (SNS, a webhook) happens in the background outside the core, and the engine
//! never waits on it.

use crate::engine::event::{Envelope, Event, Outcome};
use crate::plan::{NotifyConfig, NotifyEvent, Plan};
use std::collections::HashSet;

/// One notification: what it is about and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NotifyEvent,
    pub release: String,
    /// One line, at most 100 characters (SNS's limit for a subject).
    pub subject: String,
    pub text: String,
}

/// Turns the event stream into notices: the plan's kinds only, each at most once per
/// release and step (a resumed release reports its durable events again).
#[derive(Debug)]
pub struct Notices {
    events: Vec<NotifyEvent>,
    app: String,
    environment: String,
    version: String,
    sent: HashSet<(NotifyEvent, String, usize)>,
}

impl Notices {
    pub fn new(plan: &Plan, cfg: &NotifyConfig) -> Notices {
        Notices {
            events: cfg.events.clone(),
            app: plan.app.clone(),
            environment: plan.environment.clone(),
            version: String::new(),
            sent: HashSet::new(),
        }
    }

    /// The notice `env` calls for, if any.
    pub fn notice(&mut self, env: &Envelope) -> Option<Notice> {
        let (kind, step, what) = match &env.event {
            Event::ReleaseStarted {
                version,
                resumed,
                rollback,
                ..
            } => {
                self.version = version.clone();
                // A manual rollback is told by how it ends (rolled back).
                if *rollback {
                    return None;
                }
                let what = if *resumed {
                    "release resumed"
                } else {
                    "release started"
                };
                (NotifyEvent::ReleaseStarted, 0, what.to_string())
            }
            Event::GateWaiting { index, reason, .. } => (
                NotifyEvent::WaitingForApproval,
                *index,
                format!("waiting for approval: {reason}"),
            ),
            Event::GateFailed {
                index,
                weight,
                signal,
                reason,
            } => (
                NotifyEvent::GateFailed,
                *index,
                format!(
                    "gate failed at step {} ({weight}%), {signal}: {reason}",
                    index + 1
                ),
            ),
            Event::ReleaseFinished {
                outcome,
                exit_code,
                message,
                ..
            } => {
                let kind = match outcome {
                    Outcome::Finalized => NotifyEvent::Finalized,
                    Outcome::RolledBack => NotifyEvent::RolledBack,
                    Outcome::Failed => NotifyEvent::Failed,
                    Outcome::Interrupted | Outcome::Superseded => return None,
                };
                (
                    kind,
                    0,
                    format!("{} (exit {exit_code}): {message}", outcome.word()),
                )
            }
            _ => return None,
        };
        if !self.events.contains(&kind) || !self.sent.insert((kind, env.release.clone(), step)) {
            return None;
        }
        let who = format!("{}/{}", self.app, self.environment);
        let version = if self.version.is_empty() {
            String::new()
        } else {
            format!(" {}", self.version)
        };
        let subject = one_line(&format!(
            "glidepath {who}{version}: {}",
            kind.name().replace('_', " ")
        ));
        Some(Notice {
            kind,
            release: env.release.clone(),
            subject,
            text: format!("{who} release {}{version}: {what}", env.release),
        })
    }
}

/// A single line of at most 100 characters (SNS refuses longer subjects and newlines).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(100)
        .collect()
}

/// The JSON a Slack-compatible incoming webhook takes.
pub fn webhook_body(n: &Notice) -> String {
    serde_json::json!({ "text": n.text }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::ColourName;
    use crate::gate::Signal;
    use chrono::Utc;

    fn env(release: &str, event: Event) -> Envelope {
        Envelope {
            ts: Utc::now(),
            release: release.into(),
            event,
        }
    }

    fn started(resumed: bool, rollback: bool) -> Event {
        Event::ReleaseStarted {
            app: "shop".into(),
            environment: "staging".into(),
            version: "1.4.0".into(),
            production: false,
            live: ColourName::Blue,
            target: ColourName::Green,
            endpoint: None,
            region: "us-east-1".into(),
            resumed,
            rollback,
        }
    }

    fn finished(outcome: Outcome, exit_code: i32) -> Event {
        Event::ReleaseFinished {
            outcome,
            exit_code,
            message: "m".into(),
            snapshot_id: None,
        }
    }

    fn notices(events: &[NotifyEvent]) -> Notices {
        Notices {
            events: events.to_vec(),
            app: "shop".into(),
            environment: "staging".into(),
            version: String::new(),
            sent: HashSet::new(),
        }
    }

    #[test]
    fn each_kind_once_per_release_and_step() {
        let mut n = notices(&NotifyEvent::ALL);
        let waiting = Event::GateWaiting {
            index: 1,
            weight: 50,
            reason: "approve with `glidepath approve p --step 2`".into(),
        };
        let failed = Event::GateFailed {
            index: 2,
            weight: 75,
            signal: Signal::ErrorRate,
            reason: "5xx 4% vs 0.5%".into(),
        };
        let stream = [
            started(false, false),
            Event::Notice {
                message: "n".into(),
            },
            waiting.clone(),
            waiting,
            failed.clone(),
            failed,
            finished(Outcome::RolledBack, 3),
        ];
        let got: Vec<Notice> = stream
            .into_iter()
            .filter_map(|e| n.notice(&env("r1", e)))
            .collect();
        let kinds: Vec<NotifyEvent> = got.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NotifyEvent::ReleaseStarted,
                NotifyEvent::WaitingForApproval,
                NotifyEvent::GateFailed,
                NotifyEvent::RolledBack
            ]
        );
        assert_eq!(
            got[0].subject,
            "glidepath shop/staging 1.4.0: release started"
        );
        assert!(got[1].text.contains("--step 2"), "{}", got[1].text);
        assert!(
            got[2].text.contains("step 3 (75%), 5xx rate: 5xx 4%"),
            "{}",
            got[2].text
        );
        assert!(got[3]
            .text
            .starts_with("shop/staging release r1 1.4.0: rolled back (exit 3)"));
        // Another release is told again.
        assert!(n
            .notice(&env("r2", finished(Outcome::Finalized, 0)))
            .is_some());
    }

    #[test]
    fn only_the_plans_kinds_and_never_interrupted_or_a_manual_rollbacks_start() {
        let mut n = notices(&[NotifyEvent::Failed, NotifyEvent::ReleaseStarted]);
        assert!(n
            .notice(&env("r", finished(Outcome::Finalized, 0)))
            .is_none());
        assert!(n
            .notice(&env("r", finished(Outcome::Interrupted, 1)))
            .is_none());
        assert!(n.notice(&env("r", started(false, true))).is_none());
        assert_eq!(
            n.notice(&env("r", finished(Outcome::Failed, 5)))
                .map(|n| n.kind),
            Some(NotifyEvent::Failed)
        );
        let resumed = n.notice(&env("r2", started(true, false))).unwrap();
        assert!(
            resumed.text.ends_with("release resumed"),
            "{}",
            resumed.text
        );
    }

    #[test]
    fn subjects_are_one_short_line_and_the_webhook_body_is_slack_json() {
        assert_eq!(one_line(&"x\n".repeat(80)).len(), 100);
        assert!(!one_line("a\nb").contains('\n'));
        let n = Notice {
            kind: NotifyEvent::Finalized,
            release: "r".into(),
            subject: "s".into(),
            text: "say \"hi\"".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&webhook_body(&n)).unwrap();
        assert_eq!(v["text"], "say \"hi\"");
    }
}

#[cfg(test)]
mod plan_tests {
    use crate::plan::{parse, NotifyEvent};
    use std::path::Path;

    fn with_notify(table: &str) -> Result<crate::plan::Plan, String> {
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rehearsal.toml"),
        )
        .unwrap();
        parse(&format!("{base}\n[notify]\n{table}\n"), Path::new("p.toml")).map_err(|e| e.message)
    }

    #[test]
    fn notify_defaults_and_choices() {
        let p = with_notify("webhook_env = \"SLACK_URL\"").unwrap();
        let n = p.notify.unwrap();
        assert_eq!(n.events, NotifyEvent::ALL);
        assert_eq!((n.attempts, n.timeout.as_secs()), (3, 5));
        let p = with_notify(
            "sns_topic_arn = \"arn:aws:sns:us-east-1:123456789012:shop\"\nevents = [\"finalized\", \"gate_failed\"]",
        )
        .unwrap();
        assert_eq!(
            p.notify.unwrap().events,
            [NotifyEvent::Finalized, NotifyEvent::GateFailed]
        );
    }

    #[test]
    fn bad_notify_tables_are_refused_with_what_to_write() {
        for (table, says) in [
            ("timeout = \"5s\"", "nowhere to send"),
            (
                "sns_topic_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"",
                "not an SNS topic",
            ),
            (
                "sns_topic_arn = \"shop-releases\"",
                "an SNS topic ARN looks like",
            ),
            (
                "sns_topic_arn = \"arn:aws:sns:eu-west-1:123456789012:t\"",
                "region",
            ),
            (
                "webhook_env = \"1BAD-NAME\"",
                "not an environment variable name",
            ),
            (
                "webhook_env = \"X\"\nevents = [\"finalised\"]",
                "did you mean `finalized`",
            ),
            ("webhook_env = \"X\"\nattempts = 0", "1 to 10"),
        ] {
            let e = with_notify(table).unwrap_err();
            assert!(e.contains(says), "{table}: {e}");
        }
        // A URL where the variable's name belongs: refused, and never echoed.
        let e = with_notify("webhook_env = \"https://hooks.example.com/T0/B0/secret-token\"")
            .unwrap_err();
        assert!(
            e.contains("holds a URL") && !e.contains("secret-token"),
            "{e}"
        );
    }
}
