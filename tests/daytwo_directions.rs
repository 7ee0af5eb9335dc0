//! Day-two promises on the stage in the direction the first tests did not take, and both
//! directions where neither was covered:
//! - weights changed by hand between steps stop the shift, naming both weight pairs, and
//!   are not overwritten; a target colour whose targets turn unhealthy gets no more traffic;
//! - a finalized release is not rolled back onto a standby colour someone redeployed;
//! - Ctrl-C stops `glidepath rollback` between two of its writes, and the next `rollback`
//!   finishes it;
//! - every view names the colour that gets the traffic: each step line and `step_started`
//!   event against the weights line and the listener read back (and the cockpit fed the
//!   same JSON events: its weights bar and event log), and the manual rollback's header
//!   against where traffic goes.

use crate::daytwo_stage::{all_on, live_colour, quiet, request, resume_request, story, Day};
use crate::operator_stage::{glidepath, kill, lines_of, text, wait_line};

use glidepath::engine::event::{ColourName, Envelope, Event, Outcome};
use glidepath::engine::ledger;
use glidepath::engine::ports::Weights;
use glidepath::engine::run;
use glidepath::exit;
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;

const PLAN: &str = "examples/rehearsal.toml";

fn weights_for(target: ColourName, weight: u8) -> Weights {
    glidepath::engine::phases::shift::weights_for(target, weight)
}

fn pair(w: Weights) -> String {
    format!("blue {}% / green {}%", w.blue, w.green)
}

// --- traffic safety around a weight change --------------------------------------------------

/// Someone sets the listener by hand while step 1 bakes: step 2 is not applied, the
/// release stops (exit 1, lock kept) naming what it found and what it had set, and the
/// hand-made weights stay. Put back, `resume` finishes on the target colour.
async fn weights_changed_by_hand_stop_the_shift(first: usize) {
    let day = Day::after(first).await;
    let (plan, ports, live) = (&day.plan, &day.ports, day.live);
    let target = live.other();
    let probe = day.new_ports().await;
    let hand = Weights {
        blue: 70,
        green: 30,
    };
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request("2.0.0", "bob@ops-2"), tx, crx);
    let operator = async {
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            let first_change = matches!(e.event, Event::WeightsChanged { .. })
                && !events
                    .iter()
                    .any(|e: &Envelope| matches!(e.event, Event::WeightsChanged { .. }));
            if first_change {
                probe.traffic.set_weights(hand).await.expect("set by hand");
            }
            events.push(e);
        }
        events
    };
    let (f, events) = tokio::join!(engine, operator);
    let step1 = weights_for(target, 10);
    let context = format!("{}\n{}", f.message, story(&events));
    assert_eq!(f.outcome, Outcome::Interrupted, "{context}");
    assert_eq!(f.exit_code, exit::UNEXPECTED, "{context}");
    for part in [pair(hand), pair(step1), "by hand".into(), "step 2".into()] {
        assert!(f.message.contains(&part), "{part:?} in {context}");
    }
    assert_eq!(
        probe.traffic.weights().await.expect("weights"),
        hand,
        "not overwritten"
    );
    let st = run::status(plan, ports).await.expect("status");
    assert!(st.lock.is_some(), "the operator decides: {st:?}");

    probe.traffic.set_weights(step1).await.expect("put back");
    let (tx, crx) = quiet();
    let done = run::resume(plan, ports, resume_request("bob@ops-2"), tx, crx).await;
    assert_eq!(done.exit_code, exit::OK, "{}", done.message);
    assert_eq!(
        probe.traffic.weights().await.expect("weights"),
        all_on(target)
    );
    assert_eq!(live_colour(plan, ports).await, target);
}

#[tokio::test]
async fn weights_changed_by_hand_stop_the_shift_blue_to_green() {
    weights_changed_by_hand_stop_the_shift(0).await;
}

#[tokio::test]
async fn weights_changed_by_hand_stop_the_shift_green_to_blue() {
    weights_changed_by_hand_stop_the_shift(1).await;
}

/// The target colour's targets fail their checks once step 1 holds: the release rolls
/// back (exit 3) naming that colour's unhealthy targets, and the target never gets more
/// than step 1's share (the listener sampled throughout).
async fn unhealthy_target_gets_no_more_traffic(first: usize) {
    let day = Day::after(first).await;
    let (plan, ports, live) = (&day.plan, &day.ports, day.live);
    let target = live.other();
    let probe = day.new_ports().await;
    let (tx, mut rx) = unbounded_channel::<Envelope>();
    let (_commands, crx) = unbounded_channel();
    let engine = run::release(plan, ports, request("2.0.0", "bob@ops-2"), tx, crx);
    let fault = serde_json::json!({"kind": "unhealthy", "colour": target.name()});
    let operator = async {
        let (mut events, mut most) = (vec![], 0u8);
        let mut faulted = false;
        loop {
            let got = tokio::time::timeout(Duration::from_millis(250), rx.recv()).await;
            let w = probe.traffic.weights().await.expect("weights");
            most = most.max(match target {
                ColourName::Blue => w.blue,
                ColourName::Green => w.green,
            });
            match got {
                Ok(Some(e)) => {
                    if !faulted && matches!(e.event, Event::WeightsChanged { .. }) {
                        faulted = true;
                        day.seeded
                            .stage
                            .control_post("fault", &fault)
                            .await
                            .expect("POST /_stage/fault");
                    }
                    events.push(e);
                }
                Ok(None) => return (events, most),
                Err(_) => {}
            }
        }
    };
    let (f, (events, most)) = tokio::join!(engine, operator);
    let context = format!("{}\n{}", f.message, story(&events));
    assert_eq!(f.outcome, Outcome::RolledBack, "{context}");
    assert_eq!(f.exit_code, exit::ROLLED_BACK, "{context}");
    assert!(
        f.message.contains(&format!("{} has", target.name())) && f.message.contains("unhealthy"),
        "names the target colour's unhealthy targets: {context}"
    );
    assert_eq!(
        most,
        10,
        "{} got more than step 1's 10%: {context}",
        target.name()
    );
    assert_eq!(
        probe.traffic.weights().await.expect("weights"),
        all_on(live)
    );
    assert_eq!(live_colour(plan, ports).await, live);
}

#[tokio::test]
async fn unhealthy_target_gets_no_more_traffic_blue_to_green() {
    unhealthy_target_gets_no_more_traffic(0).await;
}

#[tokio::test]
async fn unhealthy_target_gets_no_more_traffic_green_to_blue() {
    unhealthy_target_gets_no_more_traffic(1).await;
}

// --- rollback onto a redeployed standby -------------------------------------------------------

/// What someone redeploying `colour` outside glidepath leaves: its service on a new task
/// definition whose app image is `version`'s.
async fn redeploy_by_hand(day: &Day, colour: ColourName, version: &str) {
    let service = match colour {
        ColourName::Blue => &day.plan.blue.service,
        ColourName::Green => &day.plan.green.service,
    };
    let fleet = day.ports.fleet.as_ref();
    let now = fleet.service(service).await.expect("service");
    let image = day.plan.deploy.image.replace("{version}", version);
    let td = fleet
        .task_definition_with_image(&now.task_definition, &day.plan.deploy.container, &image)
        .await
        .expect("register a task definition");
    fleet
        .deploy(service, &td, now.desired)
        .await
        .expect("UpdateService");
}

/// The latest release finalized; someone redeployed the standby colour since: `rollback`
/// refuses (exit 2) naming the colour, what it runs and the version it no longer runs,
/// and moves nothing.
async fn rollback_refuses_a_redeployed_standby(first: usize) {
    let day = Day::after(first).await;
    let (plan, ports, live) = (&day.plan, &day.ports, day.live);
    let before = run::status(plan, ports).await.expect("status");
    let standby = before.standby.clone().expect("a standby slot");
    assert_eq!(standby.colour, live.other());
    redeploy_by_hand(&day, standby.colour, "9.9.9").await;

    let (tx, _rx) = unbounded_channel();
    let f = run::rollback(plan, ports, "dave@ops-4", tx).await;
    assert_eq!(f.exit_code, exit::USAGE, "{}", f.message);
    let service = match standby.colour {
        ColourName::Blue => &plan.blue.service,
        ColourName::Green => &plan.green.service,
    };
    for part in [
        standby.colour.name(),
        service.as_str(),
        standby.version.as_str(),
        "would not bring",
    ] {
        assert!(f.message.contains(part), "{part:?} in {}", f.message);
    }
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live),
        "nothing moved"
    );
    let after = run::status(plan, ports).await.expect("status");
    assert_eq!(after.live, before.live);
    assert!(after.lock.is_none() && after.current.is_none(), "{after:?}");
    let latest = before.live.and_then(|s| s.release).expect("latest release");
    let r = ledger::load_record(ports.state.as_ref(), &latest)
        .await
        .expect("record")
        .expect("the latest record");
    assert_eq!(r.value.outcome, Some(Outcome::Finalized));
}

/// 1.3.0 live on green; blue runs the version found live before glidepath's first release
/// (no task definition on record: told by its image). The rollback would go green → blue.
#[tokio::test]
async fn rollback_refuses_a_redeployed_standby_green_to_blue() {
    rollback_refuses_a_redeployed_standby(1).await;
}

/// 1.4.0 live on blue; green runs 1.3.0 as released. The rollback would go blue → green.
#[tokio::test]
async fn rollback_refuses_a_redeployed_standby_blue_to_green() {
    rollback_refuses_a_redeployed_standby(2).await;
}

// --- Ctrl-C during `glidepath rollback` ---------------------------------------------------------

/// SIGINT as soon as `glidepath rollback` prints its header: it stops between two writes
/// (exit 1, saying so), traffic on one colour, the lock kept; the next `rollback` finishes
/// it (exit 0, traffic on the colour live before the release, lock free).
#[tokio::test]
async fn ctrl_c_stops_a_rollback_cleanly_and_the_next_one_finishes_it() {
    let day = Day::after(1).await;
    let (plan, ports, live) = (&day.plan, &day.ports, day.live);
    let endpoint = day.seeded.stage.endpoint();
    let latest = run::history(plan, ports).await.expect("history")[0]
        .id
        .clone();
    let mut rb = glidepath(&endpoint, &["rollback", PLAN, "--holder", "dave@ops-4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rollback");
    let out = lines_of(rb.stdout.take().unwrap());
    let mut seen = vec![];
    if wait_line(&out, &mut seen, Duration::from_secs(30), |_| true).is_none() {
        kill(&mut rb);
        panic!("the rollback printed nothing");
    }
    let pid = libc::pid_t::try_from(rb.id()).expect("a pid");
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = tokio::task::spawn_blocking(move || rb.wait_with_output().expect("rollback"))
        .await
        .unwrap();
    seen.extend(out.try_iter());
    let context = format!(
        "exit {:?}\n{}\n{}",
        output.status,
        seen.join("\n"),
        text(&output.stderr)
    );
    assert_eq!(
        output.status.code(),
        Some(exit::UNEXPECTED),
        "stopped, not killed by the signal: {context}"
    );
    assert!(context.contains("stopped on request"), "{context}");
    let w = ports.traffic.weights().await.expect("weights");
    assert!(w == all_on(live) || w == all_on(live.other()), "{w:?}");
    let st = run::status(plan, ports).await.expect("status");
    let held = st.lock.as_ref().map(|l| l.body.holder.clone());
    assert_eq!(held.as_deref(), Some("dave@ops-4"), "{st:?}");
    let r = ledger::load_record(ports.state.as_ref(), &latest)
        .await
        .expect("record")
        .expect("the latest record");
    assert!(r.value.undoing_finalize(), "{:?}", r.value);

    let again = glidepath(&endpoint, &["rollback", PLAN, "--holder", "erin@ops-5"])
        .output()
        .expect("rollback again");
    assert_eq!(
        again.status.code(),
        Some(exit::OK),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    assert_eq!(
        ports.traffic.weights().await.expect("weights"),
        all_on(live.other())
    );
    let st = run::status(plan, ports).await.expect("status");
    assert!(st.lock.is_none() && st.current.is_none(), "{st:?}");
    assert_eq!(live_colour(plan, ports).await, live.other());
    let r = ledger::load_record(ports.state.as_ref(), &latest)
        .await
        .expect("record")
        .expect("the latest record");
    assert_eq!(r.value.outcome, Some(Outcome::RolledBack));
}

// --- colour words in every view -----------------------------------------------------------------

/// One shift step as a view told it: the colour and percent of its step line, then the
/// weights of the weights line that followed and the listener read back right then.
#[derive(Debug)]
struct Told {
    colour: String,
    weight: u8,
    said: Weights,
    listener: Weights,
    /// The cockpit fed the same events (JSON only), drawn right then.
    cockpit: Option<String>,
}

/// The cockpit's screen after `events`, drawn on a test terminal.
fn cockpit_screen(plan: &glidepath::plan::Plan, events: &[Envelope]) -> String {
    use glidepath::view::tui::app::Cockpit;
    let first = events.first().expect("events");
    let mut c = Cockpit::new(&crate::view_support::context(plan, false), false, first.ts);
    for e in events {
        c.apply(e);
    }
    let mut t =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).expect("test terminal");
    t.draw(|f| glidepath::view::tui::draw::draw(&c, f))
        .expect("draw");
    t.backend().to_string()
}

fn percent_of(w: Weights, colour: &str) -> u8 {
    if colour == "blue" {
        w.blue
    } else {
        w.green
    }
}

/// Run `glidepath release` (or `rollback`) with `--output FORMAT`, reading the listener
/// back each time a weights line (event) appears. Returns the exit code, every line, and
/// the steps as told.
async fn run_reading_back(
    day: &Day,
    args: &[&str],
    json: bool,
) -> (Option<i32>, Vec<String>, Vec<Told>) {
    let endpoint = day.seeded.stage.endpoint();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", if json { "json" } else { "text" }]);
    let mut child = glidepath(&endpoint, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start glidepath");
    let out = lines_of(child.stdout.take().unwrap());
    let (mut lines, mut told) = (vec![], vec![]);
    let mut envelopes: Vec<Envelope> = vec![];
    let mut step: Option<(String, u8)> = None;
    loop {
        let mut got = vec![];
        let Some(line) = wait_line(&out, &mut got, Duration::from_secs(240), |_| true) else {
            break;
        };
        lines.push(line.clone());
        if json {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
            envelopes.push(serde_json::from_str(&line).expect("an event envelope"));
            match v["type"].as_str() {
                Some("step_started") => {
                    step = Some((
                        v["colour"].as_str().unwrap_or_default().to_string(),
                        u8::try_from(v["weight"].as_u64().unwrap_or(0)).unwrap(),
                    ));
                }
                Some("weights_changed") => {
                    let said = Weights {
                        blue: u8::try_from(v["blue"].as_u64().unwrap()).unwrap(),
                        green: u8::try_from(v["green"].as_u64().unwrap()).unwrap(),
                    };
                    let listener = day.ports.traffic.weights().await.expect("weights");
                    if let Some((colour, weight)) = step.take() {
                        told.push(Told {
                            colour,
                            weight,
                            said,
                            listener,
                            cockpit: Some(cockpit_screen(&day.plan, &envelopes)),
                        });
                    }
                }
                _ => {}
            }
        } else if let Some(rest) = line
            .split("step ")
            .nth(1)
            .filter(|_| line.contains(" shift "))
        {
            // `step 2/3: blue 50% for 3s`
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [_, colour, percent, ..] = words[..] {
                let weight = percent.trim_end_matches('%').parse().expect("a percent");
                step = Some((colour.to_string(), weight));
            }
        } else if let Some(rest) = line.split("weights blue ").nth(1) {
            // `weights blue 90% / green 10%`
            let nums: Vec<u8> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            let said = Weights {
                blue: nums[0],
                green: nums[1],
            };
            let listener = day.ports.traffic.weights().await.expect("weights");
            if let Some((colour, weight)) = step.take() {
                told.push(Told {
                    colour,
                    weight,
                    said,
                    listener,
                    cockpit: None,
                });
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait().expect("glidepath"))
        .await
        .unwrap();
    (status.code(), lines, told)
}

/// The asset bucket of examples/rehearsal.toml, which the binary publishes to (the
/// stage was seeded with a plan without assets).
async fn asset_bucket(day: &Day) {
    let s3 = glidepath::aws::client::s3(&day.seeded.config);
    s3.create_bucket()
        .bucket("shop-assets")
        .send()
        .await
        .expect("CreateBucket");
}

/// The steps of a release to `target` as every view told them (lines, JSON, and the
/// cockpit fed the JSON events) match the listener.
fn steps_name_the_colour_with_the_traffic(target: ColourName, told: &[Told], lines: &[String]) {
    let context = lines.join("\n");
    assert_eq!(told.len(), 3, "three steps told: {told:?}\n{context}");
    for (i, (t, weight)) in told.iter().zip([10, 50, 100]).enumerate() {
        assert_eq!(t.colour, target.name(), "{t:?}\n{context}");
        assert_eq!(t.weight, weight, "{t:?}");
        assert_eq!(
            t.said, t.listener,
            "the weights told are the listener's: {t:?}"
        );
        assert_eq!(
            percent_of(t.listener, &t.colour),
            t.weight,
            "the step's colour has the step's share on the listener: {t:?}\n{context}"
        );
        if let Some(screen) = &t.cockpit {
            // The traffic pane's bar: `blue  10% ███▒▒▒  90% green`.
            let (blue, green) = (
                format!("blue {:>4}% ", t.listener.blue),
                format!(" {:>3}% green", t.listener.green),
            );
            assert!(
                screen.contains(&blue) && screen.contains(&green),
                "the cockpit shows {blue:?} … {green:?}:\n{screen}"
            );
            let step = format!("step {}/3: {} {}%", i + 1, t.colour, t.weight);
            assert!(
                screen.contains(&step),
                "{step:?} in the cockpit's log:\n{screen}"
            );
        }
    }
}

/// The manual rollback's header names its direction: from the colour that has the
/// traffic now to the colour that has it after (read back).
fn header_names_the_rollback(lines: &[String], json: bool, from: ColourName, to: ColourName) {
    let first = lines.first().expect("a header");
    if json {
        let v: serde_json::Value = serde_json::from_str(first).expect("JSON");
        assert_eq!(v["type"], "release_started", "{first}");
        assert_eq!(v["rollback"], true, "{first}");
        assert_eq!(v["target"], from.name(), "{first}");
        assert_eq!(v["live"], to.name(), "{first}");
    } else {
        let arrow = format!("traffic {} → {}", from.name(), to.name());
        assert!(
            first.contains("rolling back") && first.contains(&arrow),
            "{arrow:?} in {first}"
        );
    }
}

/// A release told as lines, its manual rollback as JSON, the same release again as JSON,
/// its rollback as lines: every step names the colour whose share the listener shows, every
/// rollback header names the direction the listener then moved.
async fn views_name_the_colour_with_the_traffic(first: usize) {
    let day = Day::after(first).await;
    asset_bucket(&day).await;
    let live = day.live;
    let target = live.other();
    for (version, json) in [("2.0.0", false), ("2.1.0", true)] {
        let args = [
            "release",
            PLAN,
            "--version",
            version,
            "--non-interactive",
            "--auto-approve",
        ];
        let (code, lines, told) = run_reading_back(&day, &args, json).await;
        assert_eq!(code, Some(exit::OK), "{}", lines.join("\n"));
        steps_name_the_colour_with_the_traffic(target, &told, &lines);
        assert_eq!(
            day.ports.traffic.weights().await.expect("weights"),
            all_on(target)
        );

        let (code, lines, _) = run_reading_back(&day, &["rollback", PLAN], !json).await;
        assert_eq!(code, Some(exit::OK), "{}", lines.join("\n"));
        header_names_the_rollback(&lines, !json, target, live);
        assert_eq!(
            day.ports.traffic.weights().await.expect("weights"),
            all_on(live),
            "the rollback went where its header said"
        );
    }
}

#[tokio::test]
async fn views_name_the_colour_with_the_traffic_blue_to_green() {
    views_name_the_colour_with_the_traffic(0).await;
}

#[tokio::test]
async fn views_name_the_colour_with_the_traffic_green_to_blue() {
    views_name_the_colour_with_the_traffic(1).await;
}
