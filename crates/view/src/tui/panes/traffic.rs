//! Traffic: blue vs green weights, the step list with the current step, the bake
//! countdown and the gate's state.

use super::{block, truncate, Theme};
use crate::engine::event::{ColourName, Envelope, Event, Phase, Unit};
use crate::gate::Signal;
use crate::plan::{GateMode, Step};
use crate::text;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub weight: u8,
    pub bake_s: f64,
    pub manual: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GateState {
    /// No step started yet.
    Idle,
    /// The current step is baking; `manual` steps will then wait for approval.
    Baking {
        manual: bool,
    },
    Waiting {
        reason: String,
    },
    /// The operator approved; waiting for the engine to move on.
    ApprovalSent,
    Passed,
    Failed {
        signal: Signal,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct TrafficState {
    pub steps: Vec<StepView>,
    pub current: Option<usize>,
    /// Highest step index whose gate passed.
    pub passed: Option<usize>,
    pub blue: u8,
    pub green: u8,
    pub live: ColourName,
    pub target: ColourName,
    pub bake_s: f64,
    pub baked_s: f64,
    pub gate: GateState,
    pub paused: Option<String>,
    pub blind: Option<(String, f64)>,
    pub shifting: bool,
    pub rolling_back: bool,
    /// `glidepath watch`: no key approves here; the reason says how to (`glidepath approve`).
    pub watch_only: bool,
}

impl TrafficState {
    pub fn new(steps: &[Step]) -> Self {
        TrafficState {
            steps: steps
                .iter()
                .map(|s| StepView {
                    weight: s.weight,
                    bake_s: s.bake.as_secs_f64(),
                    manual: s.gate == GateMode::Manual,
                })
                .collect(),
            current: None,
            passed: None,
            blue: 100,
            green: 0,
            live: ColourName::Blue,
            target: ColourName::Green,
            bake_s: 0.0,
            baked_s: 0.0,
            gate: GateState::Idle,
            paused: None,
            blind: None,
            shifting: false,
            rolling_back: false,
            watch_only: false,
        }
    }

    pub fn gate_waiting(&self) -> bool {
        matches!(self.gate, GateState::Waiting { .. })
    }

    pub fn weights_text(&self) -> String {
        format!("blue {}% / green {}%", self.blue, self.green)
    }

    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::ReleaseStarted { live, target, .. } => {
                self.live = *live;
                self.target = *target;
                (self.blue, self.green) = match live {
                    ColourName::Blue => (100, 0),
                    ColourName::Green => (0, 100),
                };
            }
            Event::PhaseStarted {
                phase: Phase::Shift,
            } => self.shifting = true,
            Event::PhaseFinished {
                phase: Phase::Shift,
                ..
            } => self.shifting = false,
            Event::PhaseStarted {
                phase: Phase::Rollback,
            } => {
                self.rolling_back = true;
                self.shifting = false;
            }
            Event::PhaseFinished {
                phase: Phase::Rollback,
                ..
            } => self.rolling_back = false,
            Event::StepStarted {
                index,
                steps,
                weight,
                bake_s,
                manual,
                ..
            } => {
                if self.steps.len() != *steps {
                    // The engine's schedule wins over the plan we were given.
                    self.steps.resize(
                        *steps,
                        StepView {
                            weight: 0,
                            bake_s: 0.0,
                            manual: false,
                        },
                    );
                }
                if let Some(s) = self.steps.get_mut(*index) {
                    *s = StepView {
                        weight: *weight,
                        bake_s: *bake_s,
                        manual: *manual,
                    };
                }
                self.current = Some(*index);
                self.bake_s = *bake_s;
                self.baked_s = 0.0;
                self.blind = None;
                self.gate = GateState::Baking { manual: *manual };
            }
            Event::WeightsChanged { blue, green } => {
                self.blue = *blue;
                self.green = *green;
            }
            Event::Health {
                baked_s, bake_s, ..
            } => {
                self.baked_s = *baked_s;
                self.bake_s = *bake_s;
                self.blind = None;
            }
            // `glidepath watch` reports the bake from the ledger this way (no health polls).
            Event::Progress {
                phase: Phase::Shift,
                done,
                total,
                unit,
                ..
            } if *unit == Unit::Seconds => {
                self.baked_s = *done as f64;
                self.bake_s = *total as f64;
            }
            Event::Blind { reason, blind_s } => self.blind = Some((reason.clone(), *blind_s)),
            Event::GateWaiting { reason, .. } => {
                self.gate = GateState::Waiting {
                    reason: reason.clone(),
                }
            }
            Event::GatePassed { index, .. } => {
                self.passed = Some(self.passed.map_or(*index, |p| p.max(*index)));
                self.gate = GateState::Passed;
            }
            Event::GateFailed { signal, reason, .. } => {
                self.gate = GateState::Failed {
                    signal: *signal,
                    reason: reason.clone(),
                }
            }
            Event::Paused { reason } => self.paused = Some(reason.clone()),
            Event::Resumed => self.paused = None,
            Event::ReleaseFinished { .. } => {
                self.shifting = false;
                self.rolling_back = false;
                self.paused = None;
            }
            _ => {}
        }
    }
}

pub fn render(s: &TrafficState, focused: bool, theme: Theme, f: &mut Frame, area: Rect) {
    let b = block(" traffic ", focused, theme);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let width = inner.width as usize;
    let mut lines = vec![weights_line(s, width, theme), steps_line(s, theme)];
    lines.push(bake_line(s, theme));
    lines.push(gate_line(s, width, theme));
    if let Some(l) = state_line(s, width, theme) {
        lines.push(l);
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn weights_line(s: &TrafficState, width: usize, theme: Theme) -> Line<'static> {
    // "blue 100% " … " 0% green"
    let bar_w = width.saturating_sub(22);
    let blue_w = (usize::from(s.blue.min(100)) * bar_w + 50) / 100;
    Line::from(vec![
        Span::styled(
            "blue ",
            theme.blue().add_modifier(ratatui::style::Modifier::BOLD),
        ),
        Span::styled(format!("{:>4}% ", s.blue), theme.strong()),
        Span::styled("█".repeat(blue_w), theme.blue()),
        Span::styled("▒".repeat(bar_w - blue_w), theme.green()),
        Span::styled(format!(" {:>3}%", s.green), theme.strong()),
        Span::styled(
            " green",
            theme.green().add_modifier(ratatui::style::Modifier::BOLD),
        ),
    ])
}

/// The step schedule, labelled with the colour it gives traffic to (each step is that
/// colour's share): "green ▶10% → 50% → 100%", or "blue  …" on a green → blue release.
fn steps_line(s: &TrafficState, theme: Theme) -> Line<'static> {
    let target = match s.target {
        ColourName::Blue => theme.blue(),
        ColourName::Green => theme.green(),
    };
    let mut spans = vec![Span::styled(
        format!("{:<6}", s.target.name()),
        target.add_modifier(ratatui::style::Modifier::BOLD),
    )];
    for (i, step) in s.steps.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" → ", theme.quiet()));
        }
        let manual = if step.manual { "(m)" } else { "" };
        let passed = s.passed.is_some_and(|p| i <= p);
        let (label, style) = if Some(i) == s.current && !passed {
            let style = match s.gate {
                GateState::Failed { .. } => theme.bad(),
                _ => theme
                    .attention()
                    .add_modifier(ratatui::style::Modifier::REVERSED),
            };
            (format!("▶{}%{manual}", step.weight), style)
        } else if passed {
            (format!("{}%{manual}✓", step.weight), theme.good())
        } else {
            (format!("{}%{manual}", step.weight), theme.quiet())
        };
        spans.push(Span::styled(label, style));
    }
    Line::from(spans)
}

fn bake_line(s: &TrafficState, theme: Theme) -> Line<'static> {
    let Some(i) = s.current else {
        let msg = if s.shifting {
            "starting the first step"
        } else {
            "traffic has not moved yet"
        };
        return Line::from(vec![
            Span::styled("bake  ", theme.label()),
            Span::styled(msg, theme.quiet()),
        ]);
    };
    let left = (s.bake_s - s.baked_s).max(0.0);
    let mut spans = vec![
        Span::styled("bake  ", theme.label()),
        Span::raw(format!(
            "step {}/{} · {} of {}",
            i + 1,
            s.steps.len(),
            text::duration_s(s.baked_s),
            text::duration_s(s.bake_s)
        )),
    ];
    if left > 0.0 && matches!(s.gate, GateState::Baking { .. }) {
        spans.push(Span::styled(
            format!(" · {} left", text::duration_s(left)),
            theme.strong(),
        ));
    }
    Line::from(spans)
}

fn gate_line(s: &TrafficState, width: usize, theme: Theme) -> Line<'static> {
    let label = Span::styled("gate  ", theme.label());
    let (msg, style) = match &s.gate {
        GateState::Idle => ("—".to_string(), theme.quiet()),
        GateState::Baking { manual: false } => (
            "auto (passes after the bake if healthy)".into(),
            theme.plain(),
        ),
        GateState::Baking { manual: true } => {
            ("manual (approval after the bake)".into(), theme.plain())
        }
        GateState::Waiting { reason } if s.watch_only => (
            format!("WAITING FOR APPROVAL · {reason}"),
            theme.attention(),
        ),
        GateState::Waiting { reason } => (
            format!("WAITING FOR APPROVAL — press a · {reason}"),
            theme.call_to_action(),
        ),
        GateState::ApprovalSent => ("approved, continuing…".into(), theme.good()),
        GateState::Passed => ("✓ passed".into(), theme.good()),
        GateState::Failed { signal, reason } => (
            format!("✗ FAILED {}", text::signal_reason(*signal, reason)),
            theme.bad(),
        ),
    };
    Line::from(vec![
        label,
        Span::styled(truncate(&msg, width.saturating_sub(6)), style),
    ])
}

fn state_line(s: &TrafficState, width: usize, theme: Theme) -> Option<Line<'static>> {
    let (msg, style) = if s.rolling_back {
        (
            format!("⟲ ROLLING BACK: traffic returns to {}", s.live.name()),
            theme.bad(),
        )
    } else if let Some(reason) = &s.paused {
        (
            format!("⏸ PAUSED: {reason} (space resumes)"),
            theme.attention(),
        )
    } else if let Some((reason, secs)) = &s.blind {
        (
            format!(
                "◌ BLIND {}: {reason} (bake clock stopped)",
                text::duration_s(*secs)
            ),
            theme.attention(),
        )
    } else {
        return None;
    };
    Some(Line::from(Span::styled(truncate(&msg, width), style)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    /// The steps are the target colour's share, in both directions.
    #[test]
    fn the_steps_line_names_the_colour_the_steps_give_traffic_to() {
        for (target, live) in [
            (ColourName::Green, ColourName::Blue),
            (ColourName::Blue, ColourName::Green),
        ] {
            let mut s = TrafficState::new(&[]);
            s.target = target;
            s.live = live;
            s.steps = vec![StepView {
                weight: 10,
                bake_s: 60.0,
                manual: false,
            }];
            s.current = Some(0);
            let line = text(&steps_line(&s, Theme { colour: false }));
            assert!(
                line.starts_with(&format!("{:<6}▶10%", target.name())),
                "{line}"
            );
        }
    }
}
