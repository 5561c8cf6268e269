//! `--find-max --slo 'p99<10ms'`: the highest fixed rate whose run meets the objective.
//! A closed-loop run first finds the most the server answers; then fixed-rate runs bisect
//! between nothing and that. A rate meets the objective when every condition holds on the
//! corrected latencies and the server kept up (it answered at least [`KEPT_UP`] of the
//! rate). Every step is reported: the curve of latency against offered rate.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use serde_json::json;

use super::args::{Format, Pace, Plan};
use super::check::Check;
use super::stats::Summary;
use super::{json as out_json, text, BenchError, EXIT_ASSERT};

/// The first rates tried, as shares of the closed-loop maximum, up to the first that misses.
const LADDER: [f64; 4] = [0.25, 0.5, 0.75, 1.0];
/// Bisection steps between the rung that met the objective and the one that missed: the
/// answer is within 25 % / 2⁴ ≈ 1.6 % of the maximum.
const STEPS: usize = 4;
/// Share of the offered rate that must be answered (2xx) for a rate to count as held.
const KEPT_UP: f64 = 0.95;

/// One step of the search.
struct Step {
    rate: f64,
    summary: Summary,
    meets: bool,
}

fn meets(slo: &[Check], s: &Summary, rate: f64) -> bool {
    s.rps() >= KEPT_UP * rate && slo.iter().all(|c| c.holds(s.metric(c.metric)))
}

/// Runs the search and prints the curve.
pub fn run(
    plan: &Plan,
    slo: &[Check],
    addr: SocketAddr,
    threads: usize,
) -> Result<ExitCode, BenchError> {
    let tty = std::io::stderr().is_terminal();
    let mut load = plan.load.clone();
    load.pace = Pace::Closed;
    let probe = super::run::run(&load, addr, threads, false);
    let top = probe.rps();
    if top <= 0.0 {
        return Err(BenchError::Sweep(format!(
            "--find-max: the closed-loop run got no 2xx answer from {} (errors: {})",
            load.target.url,
            text::errors_line(&probe)
        )));
    }
    if tty {
        eprintln!(
            "closed loop: {} req/s; searching fixed rates up to it",
            text::count(top)
        );
    }
    let mut steps: Vec<Step> = Vec::new();
    let try_rate = |rate: f64, steps: &mut Vec<Step>| {
        let mut l = plan.load.clone();
        l.pace = Pace::Rate(rate);
        l.pipelining = plan.load.pipelining;
        let s = super::run::run(&l, addr, threads, false);
        let ok = meets(slo, &s, rate);
        if tty {
            eprintln!(
                "{} req/s: p99 {}, {} → {}",
                text::count(rate),
                text::ms(s.stats.latency.value_at_quantile(0.99) as f64),
                text::count(s.rps()),
                if ok { "meets" } else { "misses" }
            );
        }
        steps.push(Step {
            rate,
            summary: s,
            meets: ok,
        });
        ok
    };
    // A ladder up to the maximum draws the curve; bisection between the last rung that
    // met the objective and the first that missed finds the edge.
    let (mut lo, mut hi) = (0.0, None);
    for rung in LADDER {
        let rate = top * rung;
        if try_rate(rate, &mut steps) {
            lo = rate;
        } else {
            hi = Some(rate);
            break;
        }
    }
    if let Some(mut hi) = hi {
        for _ in 0..STEPS {
            let mid = (lo + hi) / 2.0;
            if try_rate(mid, &mut steps) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.meets)
        .map(|s| s.rate)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    let slo_text: Vec<String> = slo.iter().map(|c| c.text.clone()).collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let out = match plan.format {
        Format::Text => {
            let rows: Vec<Vec<String>> = steps
                .iter()
                .map(|s| {
                    let h = &s.summary.stats.latency;
                    vec![
                        format!("{:.0}", s.rate),
                        format!("{:.0}", s.summary.rps()),
                        text::ms(h.value_at_quantile(0.5) as f64),
                        text::ms(h.value_at_quantile(0.99) as f64),
                        text::ms(h.value_at_quantile(0.999) as f64),
                        s.summary.stats.error_total().to_string(),
                        if s.meets { "yes".into() } else { "no".into() },
                    ]
                })
                .collect();
            let mut out = format!(
                "Highest rate meeting {} on {} ({} connections):\n\nclosed loop: {:.0} req/s, p99 {}\n",
                slo_text.join(", "),
                load.target.url,
                load.connections,
                top,
                text::ms(probe.stats.latency.value_at_quantile(0.99) as f64)
            );
            out += &text::table(
                &[
                    "rate",
                    "answered/s",
                    "p50",
                    "p99",
                    "p99.9",
                    "errors",
                    "meets",
                ],
                &rows,
            );
            out += &match best {
                Some(r) => format!("max rate: {r:.0} req/s\n"),
                None => format!("no rate tried meets {}\n", slo_text.join(", ")),
            };
            out += &text::generator_line(&probe);
            out
        }
        _ => format!(
            "{:#}\n",
            json!({
                "schema": "herd-bench-find-max/1",
                "slo": slo_text,
                "max_rate": best,
                "closed_loop": out_json::run(&load, &probe),
                "curve": steps.iter().map(|s| {
                    let mut l = plan.load.clone();
                    l.pace = Pace::Rate(s.rate);
                    json!({"rate": s.rate, "meets": s.meets, "run": out_json::run(&l, &s.summary)})
                }).collect::<Vec<_>>(),
            })
        ),
    };
    super::emit(&out);
    Ok(if best.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ASSERT)
    })
}
