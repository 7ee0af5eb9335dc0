//! Health: one pane per colour, side by side, on the same scale (green is judged against
//! blue), with sparklines over the release; below them the gate's verdict and alarms.

use super::{block, truncate, Theme};
use crate::engine::event::{ColourName, Envelope, Event, Outcome};
use crate::gate::{AlarmState, ColourSample, Evidence, Verdict};
use crate::plan::LatencyStat;
use crate::text;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;
use std::collections::VecDeque;

/// Points kept per series: more than any terminal is wide.
const HISTORY: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct ColourHistory {
    pub last: Option<ColourSample>,
    pub rps: VecDeque<f64>,
    pub error_rate: VecDeque<Option<f64>>,
    pub latency: VecDeque<Option<f64>>,
}

impl ColourHistory {
    fn push(&mut self, s: &ColourSample, poll_s: f64, stat: LatencyStat) {
        fn bounded<T>(q: &mut VecDeque<T>, v: T) {
            if q.len() == HISTORY {
                q.pop_front();
            }
            q.push_back(v);
        }
        bounded(&mut self.rps, s.requests / poll_s);
        bounded(&mut self.error_rate, s.error_rate());
        bounded(&mut self.latency, latency(s, stat));
        self.last = Some(s.clone());
    }
}

/// The configured latency statistic, falling back to the other when it has no data.
fn latency(s: &ColourSample, stat: LatencyStat) -> Option<f64> {
    match stat {
        LatencyStat::P95 => s.latency_p95_ms.or(s.latency_avg_ms),
        LatencyStat::Average => s.latency_avg_ms.or(s.latency_p95_ms),
    }
}

#[derive(Debug, Clone)]
pub struct HealthState {
    pub blue: ColourHistory,
    pub green: ColourHistory,
    pub alarms: Vec<AlarmState>,
    pub verdict: Option<Verdict>,
    /// The sequential gate's latest evidence per signal (empty for the threshold gate).
    pub evidence: Vec<Evidence>,
    pub live: ColourName,
    finalized: bool,
    poll_s: f64,
    stat: LatencyStat,
    /// `glidepath watch`: no health polls arrive, say why.
    pub watch_only: bool,
}

impl HealthState {
    pub fn new(poll_s: f64, stat: LatencyStat) -> Self {
        HealthState {
            blue: ColourHistory::default(),
            green: ColourHistory::default(),
            alarms: Vec::new(),
            verdict: None,
            evidence: Vec::new(),
            live: ColourName::Blue,
            finalized: false,
            poll_s: if poll_s > 0.0 { poll_s } else { 1.0 },
            stat,
            watch_only: false,
        }
    }

    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::ReleaseStarted { live, .. } => self.live = *live,
            // After a finalize the released colour is the live one.
            Event::ReleaseFinished {
                outcome: Outcome::Finalized,
                ..
            } => {
                self.live = self.live.other();
                self.finalized = true;
            }
            Event::Health {
                sample, verdict, ..
            } => {
                self.blue.push(&sample.blue, self.poll_s, self.stat);
                self.green.push(&sample.green, self.poll_s, self.stat);
                self.alarms = sample.alarms.clone();
                self.verdict = Some(verdict.clone());
            }
            Event::GateEvidence { evidence } => self.evidence = evidence.clone(),
            _ => {}
        }
    }
}

/// One series' shared maximum over what both panes show, so equal heights mean equal values.
fn shared_max<'a>(series: impl Iterator<Item = &'a f64>) -> f64 {
    series.fold(0.0_f64, |m, v| m.max(*v))
}

fn tail<T: Clone>(q: &VecDeque<T>, n: usize) -> impl Iterator<Item = T> + '_ {
    q.iter().skip(q.len().saturating_sub(n)).cloned()
}

struct Scale {
    rps: f64,
    err: f64,
    lat: f64,
}

/// Rows the pane needs: the colour panes, the verdict, and the evidence when there is some.
pub fn height(s: &HealthState) -> u16 {
    if s.evidence.is_empty() {
        7
    } else {
        8
    }
}

pub fn render(s: &HealthState, focused: bool, theme: Theme, f: &mut Frame, area: Rect) {
    let evidence_h = u16::from(!s.evidence.is_empty() && area.height >= 8);
    let [panes, verdict, evidence] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(evidence_h),
    ])
    .areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(panes);
    // Sparkline width: the inner width minus borders and the label/value columns.
    let spark_w = (left.width as usize).saturating_sub(2 + 15);
    let visible = |h: &ColourHistory| {
        (
            tail(&h.rps, spark_w).collect::<Vec<_>>(),
            tail(&h.error_rate, spark_w).flatten().collect::<Vec<_>>(),
            tail(&h.latency, spark_w).flatten().collect::<Vec<_>>(),
        )
    };
    let (b_rps, b_err, b_lat) = visible(&s.blue);
    let (g_rps, g_err, g_lat) = visible(&s.green);
    let scale = Scale {
        rps: shared_max(b_rps.iter().chain(&g_rps)),
        err: shared_max(b_err.iter().chain(&g_err)),
        lat: shared_max(b_lat.iter().chain(&g_lat)),
    };
    let role = |c: ColourName| match (c == s.live, s.finalized) {
        (true, _) => "live",
        (false, false) => "new",
        (false, true) => "previous",
    };
    colour_pane(
        ColourName::Blue,
        role(ColourName::Blue),
        &s.blue,
        &scale,
        s.stat,
        spark_w,
        focused,
        theme,
        f,
        left,
    );
    colour_pane(
        ColourName::Green,
        role(ColourName::Green),
        &s.green,
        &scale,
        s.stat,
        spark_w,
        focused,
        theme,
        f,
        right,
    );
    f.render_widget(
        Paragraph::new(verdict_line(s, verdict.width as usize, theme)),
        verdict,
    );
    if evidence_h > 0 {
        f.render_widget(
            Paragraph::new(evidence_line(s, evidence.width as usize, theme)),
            evidence,
        );
    }
}

/// Each signal's statistic next to the threshold where it fails the gate, so an operator
/// sees how close a release is to a rollback, not only pass or fail.
fn evidence_line(s: &HealthState, width: usize, theme: Theme) -> Line<'static> {
    let latency = match s.stat {
        LatencyStat::P95 => "p95",
        LatencyStat::Average => "avg",
    };
    let mut spans = vec![Span::styled(" evidence ", theme.label())];
    for (i, e) in s.evidence.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.quiet()));
        }
        let style = if e.statistic >= e.threshold {
            theme.bad()
        } else if e.statistic >= e.threshold.sqrt() {
            // Half way there on the log scale the e-value lives on.
            theme.attention()
        } else {
            theme.plain()
        };
        spans.push(Span::styled(text::evidence(e, latency), style));
    }
    spans.push(Span::styled(
        format!(
            "  ({} periods)",
            s.evidence.iter().map(|e| e.periods).max().unwrap_or(0)
        ),
        theme.quiet(),
    ));
    clip(spans, width)
}

/// Keep a line within `width`; ratatui clips, but say it was cut.
fn clip(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let total: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    if total > width && width > 1 {
        let mut out = Vec::new();
        let mut used = 0;
        for sp in spans {
            let n = sp.content.chars().count();
            if used + n >= width {
                out.push(Span::styled(truncate(&sp.content, width - used), sp.style));
                break;
            }
            used += n;
            out.push(sp);
        }
        return Line::from(out);
    }
    Line::from(spans)
}

#[allow(clippy::too_many_arguments)]
fn colour_pane(
    colour: ColourName,
    role: &str,
    h: &ColourHistory,
    scale: &Scale,
    stat: LatencyStat,
    spark_w: usize,
    focused: bool,
    theme: Theme,
    f: &mut Frame,
    area: Rect,
) {
    let colour_style = match colour {
        ColourName::Blue => theme.blue(),
        ColourName::Green => theme.green(),
    };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled(
            colour.name(),
            colour_style.add_modifier(ratatui::style::Modifier::BOLD),
        ),
        Span::raw(format!(" · {role} ")),
    ]);
    let b = block(title, focused, theme);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let Some(last) = &h.last else {
        f.render_widget(
            Paragraph::new(Span::styled("no health poll yet", theme.quiet())),
            inner,
        );
        return;
    };
    let targets = Line::from(vec![
        Span::styled("healthy ", theme.label()),
        Span::styled(last.healthy.to_string(), theme.good()),
        Span::styled(" · unhealthy ", theme.label()),
        Span::styled(
            last.unhealthy.to_string(),
            if last.unhealthy > 0 {
                theme.bad()
            } else {
                theme.plain()
            },
        ),
        Span::styled(" · other ", theme.label()),
        Span::raw(last.other.to_string()),
    ]);
    let lat_label = match stat {
        LatencyStat::P95 => "p95",
        LatencyStat::Average => "avg",
    };
    let err_value = last.error_rate().map_or("—".into(), text::rate);
    let rows: [(&str, String, Style); 3] = [
        (
            "req/s",
            format!("{:.1}", h.rps.back().copied().unwrap_or(0.0)),
            theme.plain(),
        ),
        ("5xx", err_value, theme.plain()),
        (
            lat_label,
            latency(last, stat).map_or("—".into(), text::millis),
            theme.plain(),
        ),
    ];
    let mut lines = vec![targets];
    for (label, value, style) in &rows {
        lines.push(Line::from(vec![
            Span::styled(format!("{label:<7}"), theme.label()),
            Span::styled(format!("{value:>7} "), *style),
        ]));
    }
    f.render_widget(Paragraph::new(lines), inner);

    // Sparklines to the right of the values, one row each, on the shared scale.
    let x = inner.x + 15;
    if inner.width <= 15 || spark_w == 0 {
        return;
    }
    let w = inner.width - 15;
    let series: [(Vec<u64>, f64, f64); 3] = [
        (
            tail(&h.rps, spark_w).map(|v| (v * 10.0) as u64).collect(),
            scale.rps,
            10.0,
        ),
        (
            tail(&h.error_rate, spark_w)
                .map(|v| (v.unwrap_or(0.0) * 10_000.0) as u64)
                .collect(),
            scale.err,
            10_000.0,
        ),
        (
            tail(&h.latency, spark_w)
                .map(|v| v.unwrap_or(0.0) as u64)
                .collect(),
            scale.lat,
            1.0,
        ),
    ];
    for (i, (data, max, factor)) in series.iter().enumerate() {
        let y = inner.y + 1 + i as u16;
        if y >= inner.y + inner.height {
            break;
        }
        let max = ((max * factor) as u64).max(1);
        f.render_widget(
            Sparkline::default().data(data).max(max).style(colour_style),
            Rect {
                x,
                y,
                width: w,
                height: 1,
            },
        );
    }
}

fn verdict_line(s: &HealthState, width: usize, theme: Theme) -> Line<'static> {
    let (v, style) = match &s.verdict {
        None if s.watch_only => (
            "watching: health polls are shown in the releasing terminal only".to_string(),
            theme.quiet(),
        ),
        None => ("no verdict yet".to_string(), theme.quiet()),
        Some(Verdict::Pass) => ("✓ PASS".to_string(), theme.good()),
        Some(v @ Verdict::NotEnoughData { .. }) => {
            (format!("… {}", text::verdict(v)), theme.attention())
        }
        Some(v @ Verdict::Fail { .. }) => (format!("✗ {}", text::verdict(v)), theme.bad()),
    };
    let mut spans = vec![
        Span::styled(" verdict ", theme.label()),
        Span::styled(v, style),
    ];
    if !s.alarms.is_empty() {
        spans.push(Span::styled("  alarms ", theme.label()));
        for (i, a) in s.alarms.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(", "));
            }
            let style = match a.state.as_str() {
                "OK" => theme.good(),
                "ALARM" => theme.bad(),
                _ => theme.attention(),
            };
            spans.push(Span::styled(format!("{} {}", a.name, a.state), style));
        }
    }
    clip(spans, width)
}
