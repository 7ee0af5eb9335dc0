//! Phase timeline: each phase's state and duration; long phases show a gauge.

use super::{bar, block, truncate, Theme};
use crate::engine::event::{CompanionState, Envelope, Event, Phase, PhaseStatus, ShardState, Unit};
use crate::text;
use chrono::{DateTime, Utc};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseState {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub unit: Unit,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PhaseRow {
    pub phase: Phase,
    pub state: PhaseState,
    pub started: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub detail: Option<String>,
    pub progress: Option<Progress>,
    /// A sharded migration's shard in progress, e.g. `shard 2/5: b`.
    pub shard: Option<String>,
}

/// A companion service (`[[companions]]`): one row under the phases once it appears.
#[derive(Debug, Clone)]
pub struct CompanionRow {
    pub name: String,
    pub service: String,
    pub state: CompanionState,
}

#[derive(Debug, Clone)]
pub struct TimelineState {
    pub rows: Vec<PhaseRow>,
    /// Empty for a plan without companions, so the single-service view stays as it was.
    pub companions: Vec<CompanionRow>,
}

impl Default for TimelineState {
    fn default() -> Self {
        TimelineState {
            rows: Phase::ORDER.iter().map(|p| PhaseRow::new(*p)).collect(),
            companions: Vec::new(),
        }
    }
}

impl PhaseRow {
    fn new(phase: Phase) -> Self {
        PhaseRow {
            phase,
            state: PhaseState::Pending,
            started: None,
            duration_ms: None,
            detail: None,
            progress: None,
            shard: None,
        }
    }
}

impl TimelineState {
    fn row(&mut self, phase: Phase) -> &mut PhaseRow {
        // Rollback (or any phase outside the usual order) gets a row when it first appears.
        let i = match self.rows.iter().position(|r| r.phase == phase) {
            Some(i) => i,
            None => {
                self.rows.push(PhaseRow::new(phase));
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    pub fn state(&self, phase: Phase) -> PhaseState {
        self.rows
            .iter()
            .find(|r| r.phase == phase)
            .map_or(PhaseState::Pending, |r| r.state)
    }

    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::PhaseStarted { phase } => {
                let r = self.row(*phase);
                r.state = PhaseState::Running;
                r.started = Some(env.ts);
                r.duration_ms = None;
                r.progress = None;
                r.shard = None;
            }
            Event::PhaseFinished {
                phase,
                status,
                detail,
                duration_ms,
            } => {
                let r = self.row(*phase);
                r.state = match status {
                    PhaseStatus::Done => PhaseState::Done,
                    PhaseStatus::Failed => PhaseState::Failed,
                    PhaseStatus::Skipped => PhaseState::Skipped,
                };
                r.duration_ms = Some(*duration_ms);
                r.detail = detail.clone();
            }
            Event::Shard {
                index,
                shards,
                name,
                state,
                ..
            } => {
                let n = index + 1;
                self.row(Phase::Migrate).shard = Some(match state {
                    ShardState::Started => format!("shard {n}/{shards}: {name}"),
                    ShardState::Done => format!("shard {n}/{shards}: {name} done"),
                    ShardState::Failed => format!("shard {n}/{shards}: {name} FAILED"),
                });
            }
            Event::Companion {
                name,
                service,
                state,
                ..
            } => match self.companions.iter_mut().find(|c| c.name == *name) {
                Some(c) => c.state = *state,
                None => self.companions.push(CompanionRow {
                    name: name.clone(),
                    service: service.clone(),
                    state: *state,
                }),
            },
            Event::Progress {
                phase,
                done,
                total,
                unit,
                message,
            } => {
                // A companion's rollout reports on the phase it moves in (the shift, by
                // default); its own row tells it, and its task counts must not stand in the
                // phase's gauge as if they were the traffic.
                let companion = *unit == Unit::Tasks
                    && message.as_deref().is_some_and(|m| {
                        self.companions
                            .iter()
                            .any(|c| m.starts_with(&format!("{}:", c.service)))
                    });
                if !companion {
                    self.row(*phase).progress = Some(Progress {
                        done: *done,
                        total: *total,
                        unit: *unit,
                        message: message.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Rows the pane needs (borders excluded).
    pub fn height(&self) -> u16 {
        (self.rows.len() + self.companions.len()) as u16
    }
}

pub fn render(
    s: &TimelineState,
    now: DateTime<Utc>,
    focused: bool,
    theme: Theme,
    f: &mut Frame,
    area: Rect,
) {
    let b = block(" phases ", focused, theme);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let width = inner.width as usize;
    let lines: Vec<Line> = s
        .rows
        .iter()
        .map(|r| row_line(r, now, width, theme))
        .chain(s.companions.iter().map(|c| companion_line(c, width, theme)))
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn companion_line(c: &CompanionRow, width: usize, theme: Theme) -> Line<'static> {
    let (sym, word, style) = match c.state {
        CompanionState::Started => ("▶", "rolling out", theme.attention()),
        CompanionState::Done => ("✓", "on the new version", theme.good()),
        CompanionState::Failed => ("✗", "rollout FAILED", theme.bad()),
        CompanionState::RollingBack => ("▶", "going back", theme.attention()),
        CompanionState::RolledBack => ("↺", "back on its previous version", theme.quiet()),
    };
    let rest_w = width.saturating_sub(2 + 12);
    let name = truncate(&format!("↳ {}", c.name), 12);
    Line::from(vec![
        Span::styled(format!("{sym} "), style),
        Span::styled(format!("{name:<12}"), theme.strong()),
        Span::styled(truncate(&format!("{word} ({})", c.service), rest_w), style),
    ])
}

fn row_line(r: &PhaseRow, now: DateTime<Utc>, width: usize, theme: Theme) -> Line<'static> {
    let (sym, word, style) = match r.state {
        PhaseState::Pending => ("○", "pending", theme.quiet()),
        PhaseState::Running => ("▶", "running", theme.attention()),
        PhaseState::Done => ("✓", "done", theme.good()),
        PhaseState::Failed => ("✗", "FAILED", theme.bad()),
        PhaseState::Skipped => ("–", "skipped", theme.quiet()),
    };
    let duration = match (r.state, r.duration_ms, r.started) {
        (PhaseState::Running, _, Some(start)) => {
            text::duration_ms((now - start).num_milliseconds().max(0) as u64)
        }
        (_, Some(ms), _) if r.state != PhaseState::Skipped => text::duration_ms(ms),
        _ => String::new(),
    };
    // Fixed columns: "▶ snapshot  " (12) … duration right-aligned (7).
    let middle_w = width.saturating_sub(12 + 7);
    let pct = r
        .progress
        .as_ref()
        .and_then(|p| text::progress_percent(p.done, p.total, p.unit));
    let middle = match (r.state, pct) {
        (PhaseState::Running, _) if r.shard.is_some() => {
            truncate(r.shard.as_deref().unwrap_or_default(), middle_w)
        }
        (PhaseState::Running, Some(pct)) if middle_w >= 8 => {
            let w = middle_w - 5;
            format!("{} {pct:>3}%", bar((pct as usize * w) / 100, w))
        }
        (PhaseState::Running, None) => match &r.progress {
            Some(p) => truncate(&text::progress(p.done, p.total, p.unit, None), middle_w),
            None => truncate(word, middle_w),
        },
        _ => {
            let mut m = word.to_string();
            if let Some(d) = &r.detail {
                m.push_str("  ");
                m.push_str(d);
            }
            truncate(&m, middle_w)
        }
    };
    Line::from(vec![
        Span::styled(format!("{sym} "), style),
        Span::styled(format!("{:<10}", r.phase.name()), theme.strong()),
        Span::styled(format!("{middle:<middle_w$}"), style),
        Span::styled(format!("{duration:>7}"), theme.label()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(event: Event) -> Envelope {
        Envelope {
            ts: Utc::now(),
            release: "1.4.0-20261103T021500Z".into(),
            event,
        }
    }

    fn shard(index: usize, name: &str, state: ShardState) -> Event {
        Event::Shard {
            index,
            shards: 3,
            name: name.into(),
            state,
            attempt: 0,
            exit_code: None,
        }
    }

    #[test]
    fn the_migrate_row_names_the_shard_in_progress() {
        let mut s = TimelineState::default();
        s.apply(&env(Event::PhaseStarted {
            phase: Phase::Migrate,
        }));
        s.apply(&env(shard(0, "a", ShardState::Started)));
        s.apply(&env(shard(0, "a", ShardState::Done)));
        s.apply(&env(shard(1, "b", ShardState::Started)));
        let row = s.rows.iter().find(|r| r.phase == Phase::Migrate).unwrap();
        assert_eq!(row.shard.as_deref(), Some("shard 2/3: b"));
        let theme = Theme { colour: false };
        let line = row_line(row, Utc::now(), 60, theme);
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(
            text.contains("migrate") && text.contains("shard 2/3: b"),
            "{text}"
        );
    }

    fn companion(index: usize, name: &str, state: CompanionState) -> Event {
        Event::Companion {
            index,
            companions: 2,
            name: name.into(),
            service: format!("shop-{name}"),
            state,
            task_definition: None,
            reason: None,
        }
    }

    #[test]
    fn each_companion_gets_a_row_with_its_latest_state_and_none_without_them() {
        let mut s = TimelineState::default();
        let plain = s.height();
        s.apply(&env(companion(0, "worker", CompanionState::Started)));
        s.apply(&env(companion(0, "worker", CompanionState::Done)));
        s.apply(&env(companion(1, "scheduler", CompanionState::Started)));
        s.apply(&env(companion(1, "scheduler", CompanionState::Failed)));
        s.apply(&env(companion(1, "scheduler", CompanionState::RollingBack)));
        assert_eq!(s.height(), plain + 2);
        let theme = Theme { colour: false };
        let text = |c: &CompanionRow| -> String {
            let line = companion_line(c, 60, theme);
            line.spans.iter().map(|s| s.content.as_ref()).collect()
        };
        let worker = text(&s.companions[0]);
        assert!(
            worker.contains("worker") && worker.contains("on the new version"),
            "{worker}"
        );
        let scheduler = text(&s.companions[1]);
        assert!(
            scheduler.contains("going back (shop-scheduler)"),
            "{scheduler}"
        );
    }
}
