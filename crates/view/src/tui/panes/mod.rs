//! The cockpit's panes. Each pane owns its state (what it took from the events, its own
//! scroll and filter) and its render function; a pane never reads another pane's state.

pub mod confirm;
pub mod header;
pub mod health;
pub mod help;
pub mod log;
pub mod migration;
pub mod timeline;
pub mod traffic;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, BorderType, Borders};

/// Styles for the cockpit. Without colour (`NO_COLOR`) the same meaning is carried by
/// symbols and bold/reverse, so nothing depends on colour alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub colour: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }
    pub fn plain(self) -> Style {
        Style::new()
    }
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn attention(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    pub fn quiet(self) -> Style {
        if self.colour {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }
    pub fn label(self) -> Style {
        self.fg(Color::Gray)
    }
    pub fn strong(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn blue(self) -> Style {
        self.fg(Color::Blue)
    }
    pub fn green(self) -> Style {
        self.fg(Color::Green)
    }
    /// The production banner: impossible to miss, with or without colour.
    pub fn production(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.colour {
            s.bg(Color::Red).fg(Color::White)
        } else {
            s.add_modifier(Modifier::REVERSED)
        }
    }
    pub fn rehearsal(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.colour {
            s.bg(Color::Cyan).fg(Color::Black)
        } else {
            s
        }
    }
    /// Something waiting for the operator.
    pub fn call_to_action(self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD);
        if self.colour {
            s.bg(Color::Yellow).fg(Color::Black)
        } else {
            s.add_modifier(Modifier::REVERSED)
        }
    }
    pub fn severity(self, s: crate::lines::Severity) -> Style {
        use crate::lines::Severity;
        match s {
            Severity::Info => self.plain(),
            Severity::Good => self.good(),
            Severity::Attention => self.attention(),
            Severity::Bad => self.bad(),
            Severity::Quiet => self.quiet(),
        }
    }
}

/// A pane's frame; the focused one is double-bordered (and cyan with colour).
pub fn block(
    title: impl Into<ratatui::text::Line<'static>>,
    focused: bool,
    theme: Theme,
) -> Block<'static> {
    let b = Block::new().borders(Borders::ALL).title(title);
    if focused {
        let style = if theme.colour {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        b.border_type(BorderType::Double).border_style(style)
    } else {
        b.border_style(theme.quiet())
    }
}

/// A bar of `width` cells, `filled` of them solid.
pub fn bar(filled: usize, width: usize) -> String {
    let filled = filled.min(width);
    let mut s = "█".repeat(filled);
    s.push_str(&"░".repeat(width - filled));
    s
}

/// Cut `s` to `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Scroll position of a tail-following list: 0 follows the newest line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scroll {
    pub from_bottom: usize,
}

/// What a scroll key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrollKey {
    Up(usize),
    Down(usize),
    Top,
    Bottom,
}

impl Scroll {
    pub fn apply(&mut self, key: ScrollKey, len: usize) {
        let max = len.saturating_sub(1);
        self.from_bottom = match key {
            ScrollKey::Up(n) => (self.from_bottom + n).min(max),
            ScrollKey::Down(n) => self.from_bottom.saturating_sub(n),
            ScrollKey::Top => max,
            ScrollKey::Bottom => 0,
        };
    }

    /// A line was appended: keep a scrolled-up view where it is; a following view follows.
    pub fn appended(&mut self) {
        if self.from_bottom > 0 {
            self.from_bottom += 1;
        }
    }

    /// The slice of `len` lines shown in `height` rows.
    pub fn window(self, len: usize, height: usize) -> std::ops::Range<usize> {
        let from_bottom = self.from_bottom.min(len.saturating_sub(height));
        let end = len - from_bottom;
        end.saturating_sub(height)..end
    }
}

/// A `width`×`height` box centred in `area` (shrunk to fit).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
