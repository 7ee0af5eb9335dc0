//! Header: what is being released where, by whom, for how long. Production is a red
//! banner; a rehearsal (an endpoint override) says so.

use super::Theme;
use crate::engine::event::{Envelope, Event, Outcome};
use crate::text;
use chrono::{DateTime, Utc};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

#[derive(Debug, Clone)]
pub struct HeaderState {
    pub app: String,
    pub environment: String,
    pub production: bool,
    pub version: String,
    pub release_id: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub account: Option<String>,
    pub watch_only: bool,
    pub holder: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub resumed: bool,
    pub finished: Option<(DateTime<Utc>, Outcome)>,
    /// The engine's event stream closed.
    pub engine_gone: bool,
}

impl HeaderState {
    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::ReleaseStarted {
                app,
                environment,
                version,
                production,
                endpoint,
                region,
                resumed,
                ..
            } => {
                self.app = app.clone();
                self.environment = environment.clone();
                self.version = version.clone();
                self.production = *production;
                self.endpoint = endpoint.clone();
                self.region = region.clone();
                self.resumed = *resumed;
                self.release_id = env.release.clone();
                self.started.get_or_insert(env.ts);
            }
            Event::LockAcquired { holder } => self.holder = Some(holder.clone()),
            Event::ReleaseFinished { outcome, .. } => self.finished = Some((env.ts, *outcome)),
            _ => {}
        }
    }

    pub fn running(&self) -> bool {
        self.started.is_some() && self.finished.is_none() && !self.engine_gone
    }
}

pub fn render(s: &HeaderState, now: DateTime<Utc>, theme: Theme, f: &mut Frame, area: Rect) {
    let (badge, badge_style) = if s.production {
        (" ▲ PRODUCTION ▲ ", theme.production())
    } else if s.endpoint.is_some() {
        (" REHEARSAL ", theme.rehearsal())
    } else {
        (" ", theme.strong())
    };
    let elapsed = match (s.started, s.finished) {
        (Some(start), Some((end, _))) => (end - start).num_seconds(),
        (Some(start), None) => (now - start).num_seconds(),
        _ => 0,
    };
    let (status, status_style) = match (s.finished, s.engine_gone, s.started) {
        (Some((_, Outcome::Finalized)), ..) => ("FINALIZED", theme.good()),
        (Some((_, Outcome::RolledBack)), ..) => ("ROLLED BACK", theme.bad()),
        (Some((_, Outcome::Failed)), ..) => ("FAILED", theme.bad()),
        (Some((_, Outcome::Interrupted)), ..) => ("INTERRUPTED", theme.attention()),
        (Some((_, Outcome::Superseded)), ..) => ("SUPERSEDED", theme.attention()),
        (None, true, _) => ("engine stopped", theme.attention()),
        (None, false, None) => ("starting", theme.quiet()),
        (None, false, Some(_)) if s.resumed => ("resumed", theme.strong()),
        (None, false, Some(_)) => ("running", theme.strong()),
    };
    let mut top = vec![
        Span::styled(badge, badge_style),
        Span::styled(format!(" {}/{} ", s.app, s.environment), theme.strong()),
        Span::raw(format!(" {} ", s.version)),
        Span::raw(format!(" ⏱ {} ", text::clock(elapsed))),
        Span::styled(format!(" {status} "), status_style),
        Span::styled(format!(" {}", s.release_id), theme.label()),
    ];
    if s.watch_only {
        top.push(Span::styled("  (watching, read-only)", theme.attention()));
    }
    let account = s
        .account
        .as_ref()
        .map(|a| format!("account {a} · "))
        .unwrap_or_default();
    let where_ = match &s.endpoint {
        Some(ep) => format!("{account}region {} · endpoint {ep}", s.region),
        None => format!("{account}region {} · AWS", s.region),
    };
    let bottom = Line::from(vec![
        Span::styled(" lock ", theme.label()),
        Span::raw(s.holder.clone().unwrap_or_else(|| "—".into())),
        Span::styled(" · ", theme.quiet()),
        Span::raw(where_),
    ]);
    let top_row = Rect {
        height: area.height.min(1),
        ..area
    };
    let mut banner = Paragraph::new(Line::from(top));
    if s.production {
        // The whole first row turns red, not just the badge.
        banner = banner.style(theme.production());
    }
    f.render_widget(banner, top_row);
    if area.height > 1 {
        let rest = Rect {
            y: area.y + 1,
            height: area.height - 1,
            ..area
        };
        f.render_widget(Paragraph::new(bottom), rest);
    }
}
