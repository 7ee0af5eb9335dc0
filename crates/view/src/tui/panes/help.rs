//! Keys: the help overlay (`?`) and the one-line hints at the bottom, from one table so
//! they cannot drift apart.

use super::{centered, Theme};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Every key the cockpit understands.
pub const KEYS: &[(&str, &str)] = &[
    ("a", "approve the gate that is waiting"),
    ("space", "pause / resume the release"),
    ("r", "roll back: all traffic to the live colour (asks)"),
    ("n", "next step now, skipping the rest of the bake (asks)"),
    ("tab, shift-tab", "move focus between panes"),
    ("enter, l", "enlarge the focused pane (esc: back)"),
    ("↑↓ j k PgUp PgDn g G", "scroll the focused pane"),
    ("/", "filter the event log (enter keeps, esc clears)"),
    ("?", "this help (esc closes)"),
    ("q", "quit (mid-release: asks; traffic stays, resume later)"),
    ("ctrl-c", "quit now; traffic stays where it is"),
];

pub fn render(production: bool, watch_only: bool, theme: Theme, f: &mut Frame, area: Rect) {
    let key_w = KEYS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<key_w$}"), theme.strong()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    if production {
        lines.push(Line::styled(
            "Production: a, r and n ask you to type the environment name.",
            theme.attention(),
        ));
    }
    if watch_only {
        lines.push(Line::styled(
            "Watching: this cockpit is read-only; keys only navigate.",
            theme.attention(),
        ));
    }
    lines.push(Line::styled(
        "Steps marked (m) wait for approval after their bake.",
        theme.label(),
    ));
    let h = lines.len() as u16 + 2;
    let popup = centered(area, 78, h);
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(" keys ")),
        popup,
    );
}

/// What the bottom line should say.
#[derive(Debug, Clone, Default)]
pub struct Footer<'a> {
    pub flash: Option<&'a str>,
    pub gate_waiting: bool,
    pub watch_only: bool,
    pub finished: bool,
    pub filter_editing: bool,
}

pub fn footer(s: &Footer, theme: Theme, f: &mut Frame, area: Rect) {
    let line = if let Some(msg) = s.flash {
        Line::styled(format!(" {msg}"), theme.attention())
    } else if s.filter_editing {
        Line::styled(" type to filter · enter keep · esc clear", theme.label())
    } else if s.finished {
        Line::from(vec![
            Span::styled(" release finished · ", theme.label()),
            Span::styled("q", theme.strong()),
            Span::styled(" quit · ? help", theme.label()),
        ])
    } else if s.watch_only {
        Line::styled(
            " watching (read-only) · tab focus · enter zoom · / filter · ? help · q quit",
            theme.label(),
        )
    } else {
        let mut spans = Vec::new();
        if s.gate_waiting {
            spans.push(Span::styled(" a: APPROVE GATE ", theme.call_to_action()));
        } else {
            spans.push(Span::styled(" a", theme.strong()));
            spans.push(Span::styled(" approve", theme.label()));
        }
        // Most important first; the rest while they fit (all of them are in `?`).
        let mut used: usize = spans.iter().map(|s| s.width()).sum();
        for (k, what) in [
            ("space", "pause"),
            ("r", "rollback"),
            ("n", "next"),
            ("?", "help"),
            ("q", "quit"),
            ("tab", "focus"),
            ("/", "filter"),
        ] {
            let w = 3 + k.chars().count() + 1 + what.len();
            if used + w > area.width as usize {
                break;
            }
            used += w;
            spans.push(Span::raw(" · "));
            spans.push(Span::styled(k, theme.strong()));
            spans.push(Span::styled(format!(" {what}"), theme.label()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}
