//! Migration: the one-off task's id, status and exit code, and its log tail (scrollable).

use super::{block, truncate, Scroll, ScrollKey, Theme};
use crate::engine::event::{Envelope, Event};
use crate::text;
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

pub fn render(s: &MigrationState, focused: bool, theme: Theme, f: &mut Frame, area: Rect) {
    let height = (area.height as usize).saturating_sub(3);
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
