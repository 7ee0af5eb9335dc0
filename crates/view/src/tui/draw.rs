//! The view: a pure function from [`Cockpit`] to a frame. Layout only; each pane draws
//! itself.

use super::app::{Cockpit, Focus, Overlay};
use super::panes::{confirm, header, health, help, log, migration, timeline, traffic};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::Frame;

pub fn draw(c: &Cockpit, f: &mut Frame) {
    let area = f.area();
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(&c.header, c.now, c.theme, f, head);

    if c.zoomed {
        pane(c, c.focus, true, f, body);
    } else {
        // Top: phases | traffic. Middle: blue | green health. Bottom: migration | events.
        let top_h = (c.timeline.height() + 2).max(7);
        let [top, mid, bottom] = Layout::vertical([
            Constraint::Length(top_h),
            Constraint::Length(health::height(&c.health)),
            Constraint::Min(3),
        ])
        .areas(body);
        // Wide terminals give the phases room for their details (snapshot id, task id).
        let phases_w = if area.width >= 120 { 48 } else { 36 };
        let [phases, traffic_area] =
            Layout::horizontal([Constraint::Length(phases_w), Constraint::Min(20)]).areas(top);
        pane(c, Focus::Timeline, false, f, phases);
        pane(c, Focus::Traffic, false, f, traffic_area);
        pane(c, Focus::Health, false, f, mid);
        if c.migration.visible() {
            let [mig, events] =
                Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                    .areas(bottom);
            pane(c, Focus::Migration, false, f, mig);
            pane(c, Focus::Log, false, f, events);
        } else {
            pane(c, Focus::Log, false, f, bottom);
        }
    }

    help::footer(
        &help::Footer {
            flash: c.flash.as_deref(),
            gate_waiting: c.traffic.gate_waiting(),
            watch_only: c.header.watch_only,
            finished: c.finished() || c.header.engine_gone,
            filter_editing: c.log.editing,
        },
        c.theme,
        f,
        foot,
    );

    match &c.overlay {
        Overlay::None => {}
        Overlay::Help => help::render(c.header.production, c.header.watch_only, c.theme, f, area),
        Overlay::Confirm(s) => confirm::render(s, c.theme, f, body),
    }
}

fn pane(c: &Cockpit, which: Focus, zoomed: bool, f: &mut Frame, area: Rect) {
    // A zoomed pane is the only one shown; it is drawn as focused.
    let focused = zoomed || c.focus == which;
    match which {
        Focus::Timeline => timeline::render(&c.timeline, c.now, focused, c.theme, f, area),
        Focus::Traffic => traffic::render(&c.traffic, focused, c.theme, f, area),
        Focus::Health => health::render(&c.health, focused, c.theme, f, area),
        Focus::Migration => migration::render(&c.migration, c.now, focused, c.theme, f, area),
        Focus::Log => log::render(&c.log, focused, c.theme, f, area),
    }
}
