//! The gate lab: thousands of simulated releases per cell, judged by the sequential gate
//! (NEW), the sequential gate with its previous weighting of evidence (PREV: the relative
//! 5xx mixture uniform over its grid, without the "+2 points over the live rate" component) and the threshold gate `verdict::judge` (OLD) on the same
//! simulated polls (same seed per release; the streams only part once the gates' step
//! timings differ). For 5xx faults, ORACLE is a bound no gate can beat: a sequential
//! probability ratio test that knows the live rate and the fault's size and spends the
//! whole `alpha` on it, run on the same periods as NEW.
//! A benchmark, not a test: `scripts/bench-gates [healthy] [faulty] [min rps] [--cell
//! alb:50:0.01] [--only +2pt]`.
//!
//! Timings: "stage" = examples/rehearsal.toml (its steps, its metric period, its threshold
//! settings for OLD); "alb" = examples/production.toml (60 s periods). Traffic model:
//! `glidepath::gate::sim`.

use glidepath::gate::sequential::Tuning;
use glidepath::gate::sim::{self, Fault, Outcome, Rng, SimStep, World};
use glidepath::gate::{verdict, HealthSample, SequentialGate, Verdict};
use glidepath::plan::{self, Plan};
use std::path::Path;
use std::time::Instant;

const RPS: [f64; 4] = [5.0, 50.0, 500.0, 5000.0];
const BASE: [f64; 3] = [0.0001, 0.001, 0.01];
const SIGMA: [f64; 2] = [0.2, 0.6];
const MEDIAN_MS: f64 = 80.0;

struct Scenario {
    name: &'static str,
    fault: Option<Fault>,
}

fn scenarios() -> Vec<Scenario> {
    let f = |error_increase: f64, latency_factor: f64| Fault {
        error_increase,
        latency_factor,
        ..Fault::default()
    };
    vec![
        Scenario {
            name: "healthy",
            fault: None,
        },
        Scenario {
            name: "+0.5pt",
            fault: Some(f(0.005, 1.0)),
        },
        Scenario {
            name: "+2pt",
            fault: Some(f(0.02, 1.0)),
        },
        Scenario {
            name: "lat×1.2",
            fault: Some(f(0.0, 1.2)),
        },
        Scenario {
            name: "lat×2",
            fault: Some(f(0.0, 2.0)),
        },
        Scenario {
            name: "unhealthy",
            fault: Some(Fault {
                unhealthy: true,
                ..f(0.0, 1.0)
            }),
        },
        // Starts halfway through the second step's bake.
        Scenario {
            name: "+2pt mid",
            fault: None,
        },
    ]
}

#[derive(Default, Clone)]
struct Tally {
    runs: u32,
    rolled_back: u32,
    waited_out: u32,
    ttr: Vec<u32>,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        match o {
            Outcome::Finished { waited_out, .. } => {
                self.waited_out += u32::from(*waited_out > 0);
            }
            Outcome::RolledBack { faulty_periods, .. } => {
                self.rolled_back += 1;
                self.ttr.push(*faulty_periods);
            }
        }
    }
    fn rate(&self) -> f64 {
        f64::from(self.rolled_back) / f64::from(self.runs.max(1))
    }
    fn median_ttr(&mut self) -> Option<u32> {
        self.ttr.sort_unstable();
        self.ttr.get(self.ttr.len() / 2).copied()
    }
}

struct Timing {
    name: &'static str,
    plan: Plan,
    period_s: f64,
    steps: Vec<SimStep>,
    max_wait_periods: u32,
}

fn timing(name: &'static str, file: &str) -> Timing {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = match plan::load(&root.join(file)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let period_s = plan.gates.metric_period.as_secs_f64().max(1.0);
    let steps = plan
        .steps
        .iter()
        .map(|s| SimStep {
            weight: s.weight,
            bake_periods: ((s.bake.as_secs_f64() / period_s).ceil() as u32).max(1),
        })
        .collect();
    let max_wait_periods = (plan.gates.sequential.max_wait.as_secs_f64() / period_s).ceil() as u32;
    Timing {
        name,
        plan,
        period_s,
        steps,
        max_wait_periods,
    }
}

fn seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, p| {
        (h ^ p).wrapping_mul(0x100_0000_01b3)
    })
}

/// The oracle's log likelihood ratio for one period: the new colour's 5xx at the fault's
/// rate against the most the tolerances allow (`max(error_tolerance · live, abs)`).
fn oracle_llr(t: &Timing, w: &World, fault: &Fault, h: &HealthSample) -> f64 {
    let seq = &t.plan.gates.sequential;
    let p0 = (seq.error_tolerance * w.base_rate).max(seq.error_tolerance_abs);
    let p1 = w.base_rate + fault.error_increase;
    if p1 <= p0 || p0 <= 0.0 {
        return 0.0;
    }
    let (x, n) = (h.green.errors_5xx, h.green.requests);
    x * (p1 / p0).ln() + (n - x) * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// The paired oracle's log likelihood ratio for one period: given the period's 5xx of both
/// colours, the new colour's share at the fault's ratio against the most the tolerances
/// allow. It knows the fault but not the live rate, as no same-time comparison can; when
/// the live colour is idle it falls back to [`oracle_llr`].
fn paired_oracle_llr(t: &Timing, w: &World, fault: &Fault, h: &HealthSample) -> f64 {
    let seq = &t.plan.gates.sequential;
    let (ng, nl) = (h.green.requests, h.blue.requests);
    if nl <= 0.0 || w.base_rate <= 0.0 {
        return oracle_llr(t, w, fault, h);
    }
    let null = seq
        .error_tolerance
        .max(seq.error_tolerance_abs / w.base_rate);
    let alt = (w.base_rate + fault.error_increase) / w.base_rate;
    let m = h.green.errors_5xx + h.blue.errors_5xx;
    if alt <= null || ng <= 0.0 || m <= 0.0 {
        return 0.0;
    }
    let q = ng / (ng + nl);
    let share = |r: f64| r * q / (r * q + 1.0 - q);
    let (t1, t0) = (share(alt), share(null));
    let x = h.green.errors_5xx;
    x * (t1 / t0).ln() + (m - x) * ((1.0 - t1) / (1.0 - t0)).ln()
}

struct Cell {
    new: Tally,
    prev: Tally,
    old: Tally,
    /// Faulty periods until the oracle crossed (at most NEW's, when NEW was first).
    oracle: Tally,
    /// The same for the paired oracle (does not know the live rate).
    paired: Tally,
}

fn run(t: &Timing, w: &World, fault: Option<&Fault>, runs: u32, key: &[u64]) -> Cell {
    let mut c = Cell {
        new: Tally::default(),
        prev: Tally::default(),
        old: Tally::default(),
        oracle: Tally::default(),
        paired: Tally::default(),
    };
    let alpha = t.plan.gates.sequential.alpha;
    for i in 0..runs {
        let s = seed(&[key, &[u64::from(i)]].concat());
        let mut gate = SequentialGate::new(&t.plan.gates, t.steps.len());
        let (mut llr, mut faulty, mut crossed) = (0.0f64, 0u32, None::<u32>);
        let (mut pllr, mut pcrossed) = (0.0f64, None::<u32>);
        let (mut cur, mut p) = (0usize, 0u32);
        let o = sim::release(
            &mut Rng::new(s),
            w,
            &t.steps,
            fault,
            t.max_wait_periods,
            &mut |step, h| {
                if step != cur {
                    (cur, p) = (step, 0);
                }
                // The oracle also knows when the fault starts: it adds evidence from then.
                if let Some(f) = fault.filter(|f| f.error_increase > 0.0 && f.active(step, p)) {
                    faulty += 1;
                    llr += oracle_llr(t, w, f, h);
                    if crossed.is_none() && llr >= (1.0 / alpha).ln() {
                        crossed = Some(faulty);
                    }
                    pllr += paired_oracle_llr(t, w, f, h);
                    if pcrossed.is_none() && pllr >= (1.0 / alpha).ln() {
                        pcrossed = Some(faulty);
                    }
                }
                p += 1;
                gate.observe(step, h).verdict
            },
        );
        c.new.add(&o);
        if fault.is_some_and(|f| f.error_increase > 0.0) {
            // When NEW rolled back before an oracle crossed, NEW's time counts for the oracle:
            // a bound is never slower than a gate that exists.
            for (tally, crossed) in [(&mut c.oracle, crossed), (&mut c.paired, pcrossed)] {
                let at = match (&o, crossed) {
                    (_, Some(_)) | (Outcome::Finished { .. }, None) => crossed,
                    (Outcome::RolledBack { faulty_periods, .. }, None) => Some(*faulty_periods),
                };
                tally.runs += 1;
                if let Some(p) = at {
                    tally.rolled_back += 1;
                    tally.ttr.push(p);
                }
            }
        }
        let mut gate = SequentialGate::tuned(&t.plan.gates, t.steps.len(), Tuning::PREVIOUS);
        let o = sim::release(
            &mut Rng::new(s),
            w,
            &t.steps,
            fault,
            t.max_wait_periods,
            &mut |step, h| gate.observe(step, h).verdict,
        );
        c.prev.add(&o);
        let mut samples: Vec<HealthSample> = Vec::new();
        let mut current = 0usize;
        let o = sim::release(
            &mut Rng::new(s),
            w,
            &t.steps,
            fault,
            t.max_wait_periods,
            &mut |step, h| -> Verdict {
                if step != current {
                    samples.clear();
                    current = step;
                }
                samples.push(h.clone());
                verdict::judge(&samples, &t.plan.gates)
            },
        );
        c.old.add(&o);
    }
    c
}

/// Why the tests restart at each step: the same ALB cells with one e-process for the whole
/// release (a fault that appears late meets evidence that drifted down over healthy steps).
fn restart_ablation(t: &Timing, healthy_runs: u32, fault_runs: u32) {
    println!();
    println!("== restarts at each step, half the weight on the release-long copy (R), vs one e-process per release (1), alb timing, base 0.1%, sigma 0.6 ==");
    println!("  rps | false-rb R/1  | +2pt at 100% mid-step: det R/1, median R/1 | lat×2 from start: det R/1, median R/1");
    let last = t.steps.len() - 1;
    for rps in [50.0, 500.0] {
        let w = World {
            rps,
            base_rate: 0.001,
            sigma: 0.6,
            median_ms: MEDIAN_MS,
            period_s: t.period_s,
        };
        let late = Fault {
            error_increase: 0.02,
            from_step: last,
            after_periods: t.steps[last].bake_periods / 2,
            ..Fault::default()
        };
        let slow = Fault {
            latency_factor: 2.0,
            ..Fault::default()
        };
        let mut cols: Vec<String> = Vec::new();
        for (fault, runs) in [
            (None, healthy_runs),
            (Some(&late), fault_runs),
            (Some(&slow), fault_runs),
        ] {
            let mut tallies = [Tally::default(), Tally::default()];
            for (k, tally) in tallies.iter_mut().enumerate() {
                for i in 0..runs {
                    let s = seed(&[9, rps as u64, u64::from(fault.is_some()), u64::from(i)]);
                    let g = SequentialGate::new(&t.plan.gates, t.steps.len());
                    let mut g = if k == 0 { g } else { g.without_restarts() };
                    let o = sim::release(
                        &mut Rng::new(s),
                        &w,
                        &t.steps,
                        fault,
                        t.max_wait_periods,
                        &mut |step, h| g.observe(step, h).verdict,
                    );
                    tally.add(&o);
                }
            }
            let [mut r, mut one] = tallies;
            let med = |m: Option<u32>| m.map_or("-".into(), |v| v.to_string());
            cols.push(if fault.is_none() {
                format!("{:.2}/{:.2}%", r.rate() * 100.0, one.rate() * 100.0)
            } else {
                format!(
                    "{:.0}/{:.0}% {}/{}",
                    r.rate() * 100.0,
                    one.rate() * 100.0,
                    med(r.median_ttr()),
                    med(one.median_ttr())
                )
            });
        }
        println!(
            "{rps:>5} | {:>12} | {:>42} | {:>35}",
            cols[0], cols[1], cols[2]
        );
    }
}

/// `--cell TIMING[:RPS:BASE]` (e.g. `alb:50:0.01`): only that timing, or only that row
/// (both spreads), and no ablation, for quick iteration; `--only NAME`: only that fault
/// column (and healthy).
struct Filter {
    cell: Option<(String, Option<(f64, f64)>)>,
    only: Option<String>,
}

fn parse_filter(args: &[String]) -> Filter {
    let usage = |what: &str| -> ! {
        eprintln!("{what}; usage: bench-gates [healthy] [faulty] [min rps] [--cell alb[:50:0.01]] [--only +2pt]");
        std::process::exit(2);
    };
    let mut f = Filter {
        cell: None,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cell" => {
                let v = it.next().unwrap_or_else(|| usage("--cell needs a value"));
                let parts: Vec<&str> = v.split(':').collect();
                let parsed = match parts.as_slice() {
                    [t] => Some((t.to_string(), None)),
                    [t, r, b] => r
                        .parse()
                        .ok()
                        .zip(b.parse().ok())
                        .map(|rb| (t.to_string(), Some(rb))),
                    _ => None,
                };
                f.cell = Some(parsed.unwrap_or_else(|| usage(&format!("bad --cell `{v}`"))));
            }
            "--only" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| usage("--only needs a fault name"));
                if !scenarios().iter().any(|s| s.name == v) {
                    usage(&format!("no fault named `{v}`"));
                }
                f.only = Some(v.clone());
            }
            _ => {}
        }
    }
    f
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let filter = parse_filter(&raw);
    let args: Vec<u32> = raw
        .iter()
        .take_while(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let healthy_runs = args.first().copied().unwrap_or(2000);
    let fault_runs = args.get(1).copied().unwrap_or(300);
    // Optional: only cells with at least this much traffic (a quicker look).
    let min_rps = f64::from(args.get(2).copied().unwrap_or(0));
    let started = Instant::now();
    let timings = [
        timing("stage", "examples/rehearsal.toml"),
        timing("alb", "examples/production.toml"),
    ];
    let scen = scenarios();
    println!(
        "gate lab: {healthy_runs} healthy and {fault_runs} faulty releases per cell; alpha {}",
        timings[1].plan.gates.sequential.alpha
    );
    println!("NEW = sequential gate, PREV = its previous weighting (relative 5xx mixture uniform over its grid), OLD = threshold judge");
    println!("each fault column: detected % NEW/PREV/OLD, median faulty periods to rollback NEW/PREV/OLD (1 = on the first faulty period),");
    println!("and for 5xx faults `oA/B` = the ORACLES' medians on the same periods, each knowing the fault and spending all of alpha:");
    println!("A knows the live rate too, B (paired) compares the colours within each period as the gate does (the bound that applies)");
    let mut misses: Vec<String> = Vec::new();
    let mut bounds: Vec<String> = Vec::new();
    for t in &timings {
        if filter.cell.as_ref().is_some_and(|c| c.0 != t.name) {
            continue;
        }
        let alpha = t.plan.gates.sequential.alpha;
        println!();
        println!(
            "== {} timing: {} s periods, steps {} (bake periods {}), max wait {} periods ==",
            t.name,
            t.period_s,
            t.steps
                .iter()
                .map(|s| format!("{}%", s.weight))
                .collect::<Vec<_>>()
                .join("/"),
            t.steps
                .iter()
                .map(|s| s.bake_periods.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            t.max_wait_periods
        );
        print!(
            "{:>5} {:>6} {:>4} | {:>18} {:>4} |",
            "rps", "base", "sig", "false-rb N/P/O", "wait"
        );
        for s in scen.iter().skip(1) {
            print!(" {:>29} |", s.name);
        }
        println!();
        for (ri, &rps) in RPS.iter().enumerate() {
            if rps < min_rps {
                continue;
            }
            for (bi, &base) in BASE.iter().enumerate() {
                if filter
                    .cell
                    .as_ref()
                    .and_then(|c| c.1)
                    .is_some_and(|(r, b)| r != rps || b != base)
                {
                    continue;
                }
                for (si, &sigma) in SIGMA.iter().enumerate() {
                    let w = World {
                        rps,
                        base_rate: base,
                        sigma,
                        median_ms: MEDIAN_MS,
                        period_s: t.period_s,
                    };
                    let cell = format!(
                        "{} {rps} rps, base {}%, sigma {sigma}",
                        t.name,
                        base * 100.0
                    );
                    let key = |sc: usize| {
                        vec![
                            t.period_s as u64,
                            ri as u64,
                            bi as u64,
                            si as u64,
                            sc as u64,
                        ]
                    };
                    let c = run(t, &w, None, healthy_runs, &key(0));
                    let se = (alpha * (1.0 - alpha) / f64::from(healthy_runs)).sqrt();
                    if c.new.rate() > alpha + 3.0 * se {
                        misses.push(format!(
                            "{cell}: healthy false rollbacks {:.2}% > alpha",
                            c.new.rate() * 100.0
                        ));
                    }
                    print!(
                        "{rps:>5} {:>5}% {sigma:>4} | {:>4.2}/{:>4.2}/{:>5.1}% {:>3.0}% |",
                        base * 100.0,
                        c.new.rate() * 100.0,
                        c.prev.rate() * 100.0,
                        c.old.rate() * 100.0,
                        f64::from(c.new.waited_out) * 100.0 / f64::from(c.new.runs.max(1))
                    );
                    for (sc, s) in scen.iter().enumerate().skip(1) {
                        if filter.only.as_ref().is_some_and(|o| o != s.name) {
                            print!(" {:>29} |", "");
                            continue;
                        }
                        let fault = s.fault.unwrap_or(Fault {
                            error_increase: 0.02,
                            latency_factor: 1.0,
                            from_step: 1,
                            after_periods: t.steps.get(1).map_or(0, |st| st.bake_periods / 2),
                            ..Fault::default()
                        });
                        let mut c = run(t, &w, Some(&fault), fault_runs, &key(sc));
                        let med = |m: Option<u32>| m.map_or("-".into(), |v| v.to_string());
                        let (mn, mp, mo) =
                            (c.new.median_ttr(), c.prev.median_ttr(), c.old.median_ttr());
                        let oracle = (c.oracle.runs > 0).then(|| c.oracle.median_ttr());
                        let paired = (c.paired.runs > 0).then(|| c.paired.median_ttr());
                        let oracles = match (oracle, paired) {
                            (Some(o), Some(p)) => format!("o{}/{}", med(o), med(p)),
                            _ => String::new(),
                        };
                        print!(
                            " {:>3.0}/{:>3.0}/{:>3.0} {:>3}/{:>3}/{:<3} {:>6} |",
                            c.new.rate() * 100.0,
                            c.prev.rate() * 100.0,
                            c.old.rate() * 100.0,
                            med(mn),
                            med(mp),
                            med(mo),
                            oracles
                        );
                        let must = matches!(s.name, "+2pt" | "lat×2") && rps >= 50.0;
                        let oracle_rate = c.oracle.rate();
                        if must && c.new.rate() < 0.99 {
                            let m = format!(
                                "{cell}: {} detected in {:.1}% (< 99%)",
                                s.name,
                                c.new.rate() * 100.0
                            );
                            if oracle.is_some() && oracle_rate < 0.99 {
                                bounds.push(format!(
                                    "{m}; out of reach: the oracle catches {:.1}% on the same periods",
                                    oracle_rate * 100.0
                                ));
                            } else {
                                misses.push(m);
                            }
                        }
                        if must && t.name == "alb" && mn.is_some_and(|m| m > 2) {
                            let m = format!(
                                "{cell}: {} median {} periods to rollback (> 2)",
                                s.name,
                                med(mn)
                            );
                            // The gate compares the colours within a period, so the paired
                            // oracle (no live rate given) is the bound that applies.
                            match (oracle.flatten(), paired.flatten()) {
                                (Some(o), Some(p)) if p > 2 => bounds.push(format!(
                                    "{m}; out of reach of a same-period comparison: the paired oracle's median is {p} (the live-rate oracle's {o}), each with all of alpha"
                                )),
                                _ => misses.push(m),
                            }
                        }
                    }
                    println!();
                }
            }
        }
    }
    if filter.cell.is_none() && filter.only.is_none() {
        restart_ablation(&timings[1], healthy_runs, fault_runs);
    }
    println!();
    for b in &bounds {
        println!("  bound: {b}");
    }
    if misses.is_empty() {
        println!("acceptance bar: every cell meets it or is out of reach (bounds above)");
    } else {
        println!("acceptance bar: {} miss(es)", misses.len());
        for m in &misses {
            println!("  miss: {m}");
        }
    }
    println!("ran in {:.1}s", started.elapsed().as_secs_f64());
}
