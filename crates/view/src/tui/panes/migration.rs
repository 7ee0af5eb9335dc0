//! Migration: the one-off task's id, status and exit code, the read-only window (with a
//! running clock while it is open), and the task's log tail (scrollable).

use super::{block, truncate, Scroll, ScrollKey, Theme};
use crate::engine::event::{Envelope, Event};
use crate::text;
use chrono::{DateTime, Utc};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Log lines kept; older ones are dropped (the full log stays in CloudWatch).
const KEEP: usize = 20_000;

#[derive(Debug, Clone, Default)]
pub struct MigrationState {
    /// The plan has a migration at all.
    pub planned: bool,
    pub task_arn: Option<String>,
    pub status: Option<String>,
    pub exit_code: Option<i32>,
    /// (source, line)
    pub lines: std::collections::VecDeque<(String, String)>,
    pub scroll: Scroll,
    /// The latest read-only window, if one opened.
    pub read_only: Option<ReadOnlyWindow>,
}

/// The read-only window as the events told it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOnlyWindow {
    pub opened_at: DateTime<Utc>,
    pub max_s: f64,
    pub closed_after_ms: Option<u64>,
    pub exit_failed: bool,
}

impl MigrationState {
    pub fn new(planned: bool) -> Self {
        MigrationState {
            planned,
            ..Default::default()
        }
    }

    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::Task {
                task_arn,
                status,
                exit_code,
            } => {
                self.task_arn = Some(task_arn.clone());
                self.status = Some(status.clone());
                self.exit_code = *exit_code;
            }
            Event::Log { source, line } => {
                if self.lines.len() == KEEP {
                    self.lines.pop_front();
                }
                self.lines.push_back((source.clone(), line.clone()));
                self.scroll.appended();
            }
            Event::ReadOnlyOpened { opened_at, max_s } => {
                self.read_only = Some(ReadOnlyWindow {
                    opened_at: *opened_at,
                    max_s: *max_s,
                    closed_after_ms: None,
                    exit_failed: false,
                });
            }
            Event::ReadOnlyClosed { duration_ms, .. } => {
                if let Some(w) = self.read_only.as_mut() {
                    w.closed_after_ms = Some(*duration_ms);
                    w.exit_failed = false;
                }
            }
            Event::ReadOnlyExitFailed { .. } => {
                if let Some(w) = self.read_only.as_mut() {
                    w.exit_failed = true;
                }
            }
            _ => {}
        }
    }

    pub fn scroll(&mut self, key: ScrollKey) {
        self.scroll.apply(key, self.lines.len());
    }

    /// Worth a pane of its own: planned, or a task/log already seen.
    pub fn visible(&self) -> bool {
        self.planned || self.task_arn.is_some() || !self.lines.is_empty()
    }
}

/// The window's line: open with its clock against `max`, closed, or stuck open.
fn window_line(w: &ReadOnlyWindow, now: DateTime<Utc>, theme: Theme) -> Line<'static> {
    let open_s = (now - w.opened_at).num_milliseconds().max(0) as f64 / 1000.0;
    let (text, style) = match (w.closed_after_ms, w.exit_failed) {
        (Some(ms), _) => (
            format!("read-only window closed after {}", text::duration_ms(ms)),
            theme.good(),
        ),
        (None, true) => (
            format!(
                "READ-ONLY EXIT FAILED: app may still be read-only ({})",
                text::duration_s(open_s)
            ),
            theme.bad(),
        ),
        (None, false) => (
            format!(
                "READ-ONLY {} of max {}",
                text::duration_s(open_s),
                text::duration_s(w.max_s)
            ),
            theme.attention(),
        ),
    };
    Line::from(Span::styled(text, style))
}

pub fn render(
    s: &MigrationState,
    now: DateTime<Utc>,
    focused: bool,
    theme: Theme,
    f: &mut Frame,
    area: Rect,
) {
    let extra = usize::from(s.read_only.is_some());
    let height = (area.height as usize).saturating_sub(3 + extra);
    let range = s.scroll.window(s.lines.len(), height);
    let up = s.lines.len() - range.end;
    let title = if up > 0 {
        format!(" migration · ↑{up} ")
    } else {
        " migration ".to_string()
    };
    let b = block(title, focused, theme);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let width = inner.width as usize;

    let status_style = match (s.status.as_deref(), s.exit_code) {
        (_, Some(0)) => theme.good(),
        (_, Some(_)) => theme.bad(),
        (Some(_), None) => theme.attention(),
        (None, _) => theme.quiet(),
    };
    let head = match &s.task_arn {
        Some(arn) => Line::from(vec![
            Span::styled("task ", theme.label()),
            Span::styled(truncate(text::short_arn(arn), 20), theme.strong()),
            Span::styled("  status ", theme.label()),
            Span::styled(s.status.clone().unwrap_or_default(), status_style),
            Span::styled("  exit ", theme.label()),
            Span::styled(
                s.exit_code.map_or("—".into(), |c| c.to_string()),
                status_style,
            ),
        ]),
        None if s.planned => Line::from(Span::styled("no migration task yet", theme.quiet())),
        None => Line::from(Span::styled("no migration in this plan", theme.quiet())),
    };
    // Several sources (e.g. a sidecar) are told apart; one source needs no prefix.
    let first_source = s.lines.front().map(|(src, _)| src.as_str());
    let mut lines = vec![head];
    if let Some(w) = &s.read_only {
        lines.push(window_line(w, now, theme));
    }
    for (src, line) in s.lines.range(range) {
        let text = if Some(src.as_str()) == first_source {
            line.clone()
        } else {
            format!("[{src}] {line}")
        };
        lines.push(Line::raw(truncate(&text, width)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}
