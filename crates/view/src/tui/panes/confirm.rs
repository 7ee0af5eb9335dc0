//! Confirmation dialog for actions that move traffic (and for quitting mid-release).
//! In production the environment name must be typed; elsewhere `y` is enough.

use super::{centered, Theme};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Approve,
    Rollback,
    Advance,
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmState {
    pub action: Pending,
    pub title: String,
    pub body: Vec<String>,
    /// Some: the operator must type `expected` (production); None: y/n.
    pub typed: Option<String>,
    pub expected: String,
    pub error: Option<String>,
}

pub fn render(s: &ConfirmState, theme: Theme, f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = s.body.iter().map(|l| Line::raw(l.clone())).collect();
    lines.push(Line::raw(""));
    match &s.typed {
        Some(typed) => {
            lines.push(Line::from(vec![
                Span::raw("Type "),
                Span::styled(s.expected.clone(), theme.strong()),
                Span::raw(" and press enter (esc cancels):"),
            ]));
            lines.push(Line::styled(format!("> {typed}▏"), theme.strong()));
        }
        None => lines.push(Line::from(vec![
            Span::styled("y", theme.strong()),
            Span::raw(" yes · "),
            Span::styled("n", theme.strong()),
            Span::raw("/esc no"),
        ])),
    }
    if let Some(e) = &s.error {
        lines.push(Line::styled(e.clone(), theme.bad()));
    }
    let width = 64u16.min(area.width.saturating_sub(2));
    // Rough wrap estimate so the box is tall enough at 80 columns.
    let inner_w = width.saturating_sub(2).max(1) as usize;
    let rows: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_w))
        .sum();
    let popup = centered(area, width, rows as u16 + 2);
    let style = if s.typed.is_some() {
        theme.production()
    } else {
        theme.strong()
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(Span::styled(format!(" {} ", s.title), style)),
        ),
        popup,
    );
}
