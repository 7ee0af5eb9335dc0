//! Event log: every event, timestamped, as the line printer writes it; scrollable and
//! filterable (`/`, case-insensitive substring).

use super::{block, truncate, Scroll, ScrollKey, Theme};
use crate::engine::event::{Envelope, Event, Phase};
use crate::lines::{self, Severity};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Entries kept; a chatty migration must not grow the cockpit without bound.
const KEEP: usize = 50_000;

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub text: String,
    pub severity: Severity,
    /// Set for progress lines: the next progress of the same phase replaces this one.
    progress_of: Option<Phase>,
}

#[derive(Debug, Clone, Default)]
pub struct LogState {
    pub entries: Vec<LogEntry>,
    /// Indices of entries matching the filter (all without one), kept up to date so a
    /// frame only touches the rows it shows.
    visible: Vec<usize>,
    pub filter: String,
    filter_lower: String,
    /// The filter is being typed.
    pub editing: bool,
    pub scroll: Scroll,
}

impl LogState {
    pub fn apply(&mut self, env: &Envelope) {
        let progress_of = match &env.event {
            Event::Progress { phase, .. } => Some(*phase),
            _ => None,
        };
        let text = lines::format(env);
        // Progress updates replace the previous line of the same phase instead of flooding.
        if progress_of.is_some() && self.entries.last().and_then(|e| e.progress_of) == progress_of {
            let last = self.entries.len() - 1;
            if self.visible.last() == Some(&last) {
                self.visible.pop();
            }
            self.entries.pop();
        } else if self.scroll.from_bottom > 0 && self.matches(&text) {
            self.scroll.appended();
        }
        let entry = LogEntry {
            text,
            severity: lines::severity(&env.event),
            progress_of,
        };
        if self.matches(&entry.text) {
            self.visible.push(self.entries.len());
        }
        self.entries.push(entry);
        if self.entries.len() > KEEP {
            // Drop the oldest tenth at once so trimming stays cheap per event.
            self.entries.drain(..KEEP / 10);
            let scroll = self.scroll;
            self.set_filter(&self.filter.clone());
            self.scroll = scroll;
        }
    }

    fn matches(&self, text: &str) -> bool {
        self.filter_lower.is_empty() || text.to_lowercase().contains(&self.filter_lower)
    }

    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_string();
        self.filter_lower = filter.to_lowercase();
        self.visible = (0..self.entries.len())
            .filter(|&i| self.matches(&self.entries[i].text))
            .collect();
        self.scroll = Scroll::default();
    }

    pub fn scroll(&mut self, key: ScrollKey) {
        self.scroll.apply(key, self.visible.len());
    }

    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }
}

pub fn render(s: &LogState, focused: bool, theme: Theme, f: &mut Frame, area: Rect) {
    let mut title = vec![Span::raw(" events ")];
    if s.editing || !s.filter.is_empty() {
        let cursor = if s.editing { "▏" } else { "" };
        title.push(Span::styled(
            format!("/{}{cursor} ", s.filter),
            theme.attention(),
        ));
        title.push(Span::styled(
            format!("{} of {} ", s.visible.len(), s.entries.len()),
            theme.label(),
        ));
    } else {
        title.push(Span::styled(
            format!("({}) ", s.entries.len()),
            theme.label(),
        ));
    }
    if s.scroll.from_bottom > 0 {
        title.push(Span::styled(
            format!("↑{} ", s.scroll.from_bottom),
            theme.attention(),
        ));
    }
    let b = block(Line::from(title), focused, theme);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let width = inner.width as usize;
    let range = s.scroll.window(s.visible.len(), inner.height as usize);
    let lines: Vec<Line> = s.visible[range]
        .iter()
        .map(|&i| {
            let e = &s.entries[i];
            Line::styled(truncate(&e.text, width), theme.severity(e.severity))
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
