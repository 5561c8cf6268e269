//! The sweep's report: the table per worker count (and of a compared setup), the warnings
//! about what limited the curve, the `herd-bench-scale/1` JSON and the chart's series.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::svg::{self, Panel, Series, PALETTE};
use super::usl::{self, Usl};
use super::{Placement, Point, OTHERS, SATURATED, SPECTRUM};
use crate::bench::args::{Plan, Sweep};
use crate::bench::stats::median;
use crate::bench::{json as out_json, text};

pub(super) struct Report<'a> {
    pub(super) plan: &'a Plan,
    pub(super) sweep: &'a Sweep,
    pub(super) place: &'a Placement,
    pub(super) points: &'a [Point],
    pub(super) compared: Option<&'a [Point]>,
    pub(super) fit: Option<Usl>,
}

/// req/s of one worker: the 1-worker point, or the smallest count's per worker.
fn base(points: &[Point]) -> f64 {
    points
        .iter()
        .min_by_key(|p| p.workers)
        .map_or(0.0, |p| median(&p.rps()) / p.workers as f64)
}

impl Report<'_> {
    /// Sentences on what limits the curve.
    fn warnings(&self, points: &[Point]) -> Vec<String> {
        let mut w = Vec::new();
        let cpus = self.place.cpus.len() as f64;
        for p in points {
            let (errors, non2xx): (u64, u64) = p.runs.iter().fold((0, 0), |(e, n), r| {
                (
                    e + r.summary.stats.error_total(),
                    n + r.summary.stats.non_2xx(),
                )
            });
            if errors + non2xx > 0 {
                w.push(format!(
                    "at {} workers {errors} requests failed and {non2xx} answers were not 2xx over the runs (req/s counts 2xx answers only)",
                    p.workers
                ));
            }
            let m = p.median_run();
            let ours = m.summary.cpu_cores + p.server_cpu();
            let others = m.machine_cores - ours;
            if m.machine_cores >= SATURATED * cpus && others > OTHERS {
                w.push(format!(
                    "at {} workers the machine's CPUs were busy ({:.2} of {} cores) and other processes used {:.2} cores of that: the server and the generator got what was left, so these numbers are not the app's",
                    p.workers, m.machine_cores, cpus, others
                ));
            }
            if m.summary.generator_bound() {
                w.push(format!(
                    "at {} workers the generator was the bottleneck (its busiest thread {:.0} % of a core): that req/s is the generator's limit, not the server's",
                    p.workers, m.summary.busiest_thread
                ));
            } else if self.place.generator.is_none()
                && m.summary.cpu_cores + p.server_cpu() >= SATURATED * cpus
            {
                w.push(format!(
                    "at {} workers the machine was saturated (server {:.2} + generator {:.2} cores of {}): server and generator compete, the curve is generator-bound",
                    p.workers,
                    p.server_cpu(),
                    m.summary.cpu_cores,
                    cpus
                ));
            }
        }
        w
    }

    fn table(&self, points: &[Point]) -> String {
        let one = base(points);
        let rows: Vec<Vec<String>> = points
            .iter()
            .map(|p| {
                let rps = p.rps();
                let m = median(&rps);
                let spread = if rps.len() > 1 {
                    let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    format!("±{:.1} %", (hi - lo) / 2.0 / m.max(1e-9) * 100.0)
                } else {
                    "-".into()
                };
                let speedup = m / one.max(1e-9);
                let run = p.median_run();
                let total_conns: u64 = run.workers.iter().map(|w| w.1).sum();
                let total_cpu: f64 = run.workers.iter().map(|w| w.2).sum();
                let shares = |f: &dyn Fn(&(u32, u64, f64)) -> f64, total: f64| {
                    run.workers
                        .iter()
                        .map(|w| format!("{:.0}", f(w) / total.max(1e-9) * 100.0))
                        .collect::<Vec<_>>()
                        .join("/")
                };
                vec![
                    p.workers.to_string(),
                    format!("{:.0}", m),
                    spread,
                    format!("{speedup:.2}×"),
                    format!("{:.0} %", speedup / p.workers as f64 * 100.0),
                    text::ms(p.quantile_us(0.5)),
                    text::ms(p.quantile_us(0.99)),
                    format!("{} %", shares(&|w| w.1 as f64, total_conns as f64)),
                    format!(
                        "{} % ({:.2} cores)",
                        shares(&|w| w.2, total_cpu),
                        total_cpu / 100.0
                    ),
                    format!(
                        "{:.2} cores{}",
                        run.summary.cpu_cores,
                        if run.summary.generator_bound() {
                            " (bound)"
                        } else {
                            ""
                        }
                    ),
                ]
            })
            .collect();
        text::table(
            &[
                "workers",
                "req/s",
                "spread",
                "speed-up",
                "efficiency",
                "p50",
                "p99",
                "connections per worker",
                "CPU per worker",
                "generator CPU",
            ],
            &rows,
        )
    }

    pub(super) fn text(&self) -> String {
        let load = &self.plan.load;
        let mut out = format!(
            "herd bench --scale: `{}` under herd, {} on path {}, {} connections, {} s measured × {} runs (medians)\nCPUs: {}; {}.\n\n",
            self.sweep.command.join(" "),
            if self.sweep.run_flags.is_empty() { "default flags".to_string() } else { self.sweep.run_flags.join(" ") },
            load.target.path,
            load.connections,
            load.duration.unwrap_or(crate::bench::args::DEFAULT_DURATION).as_secs_f64(),
            self.sweep.runs,
            self.place.cpus.len(),
            self.place.note
        );
        out += &self.table(self.points);
        for w in self.warnings(self.points) {
            let _ = writeln!(out, "warning: {w}.");
        }
        if let Some(c) = self.compared {
            let cmd = self.sweep.compare.as_deref().unwrap_or_default().join(" ");
            let _ = writeln!(
                out,
                "\nCompared: `{cmd}` (PORT and WEB_CONCURRENCY=N in its environment):"
            );
            out += &self.table(c);
            for w in self.warnings(c) {
                let _ = writeln!(out, "warning: {w}.");
            }
        }
        match self.fit {
            Some(f) => {
                let _ = write!(
                    out,
                    "\nUniversal Scalability Law: λ = {:.0} req/s, contention α = {:.3}, coherency β = {:.4}; ",
                    f.lambda, f.alpha, f.beta
                );
                match f.peak() {
                    Some(peak) => {
                        let _ = writeln!(
                            out,
                            "throughput is predicted to stop growing at about {peak:.1} workers ({:.0} req/s).",
                            f.predict(peak)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "no coherency cost measured: no peak is predicted within reach."
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "\n(The Universal Scalability Law needs {} worker counts including 1; this sweep has {}.)",
                    usl::MIN_POINTS,
                    self.points.len()
                );
            }
        }
        if let Some(p) = &self.sweep.report {
            let _ = writeln!(out, "Chart: {}", p.display());
        }
        out
    }

    fn points_json(&self, points: &[Point]) -> Value {
        let one = base(points);
        Value::Array(
            points
                .iter()
                .map(|p| {
                    let rps = p.rps();
                    let m = median(&rps);
                    let run = p.median_run();
                    json!({
                        "workers": p.workers,
                        "rps_median": m,
                        "rps_runs": rps,
                        "speedup": m / one.max(1e-9),
                        "efficiency": m / one.max(1e-9) / p.workers as f64,
                        "p50_us": p.quantile_us(0.5),
                        "p99_us": p.quantile_us(0.99),
                        "generator_cpu_cores": run.summary.cpu_cores,
                        "generator_bound": run.summary.generator_bound(),
                        "server_cpu_cores": p.server_cpu(),
                        "machine_cpu_cores": run.machine_cores,
                        "per_worker": run.workers.iter().map(|w| json!({"pid": w.0, "connections": w.1, "cpu_percent": w.2})).collect::<Vec<_>>(),
                        "runs": p.runs.iter().map(|r| {
                            let mut load = self.plan.load.clone();
                            load.target = load.target.with_port(r.port);
                            out_json::run(&load, &r.summary)
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    pub(super) fn json(&self) -> Value {
        let mut warnings = self.warnings(self.points);
        if let Some(c) = self.compared {
            warnings.extend(self.warnings(c));
        }
        json!({
            "schema": "herd-bench-scale/1",
            "command": self.sweep.command,
            "run_flags": self.sweep.run_flags,
            "cpus": self.place.cpus.len(),
            "placement": self.place.note,
            "disjoint_cpus": self.place.generator.is_some(),
            "points": self.points_json(self.points),
            "compare": self.compared.map(|c| json!({
                "command": self.sweep.compare,
                "points": self.points_json(c),
            })),
            "usl": self.fit.map(|f| json!({
                "lambda": f.lambda, "alpha": f.alpha, "beta": f.beta, "peak_workers": f.peak(),
            })),
            "warnings": warnings,
        })
    }

    pub(super) fn svg(&self) -> String {
        let ticks: Vec<(f64, String)> = self
            .points
            .iter()
            .map(|p| (p.workers as f64, p.workers.to_string()))
            .collect();
        let measured = |points: &[Point]| -> Vec<(f64, f64)> {
            points
                .iter()
                .map(|p| (p.workers as f64, median(&p.rps())))
                .collect()
        };
        let one = base(self.points);
        let mut throughput = vec![
            Series {
                id: "series-throughput".into(),
                name: "herd (measured)".into(),
                color: PALETTE[0],
                dashed: false,
                points: measured(self.points),
            },
            Series {
                id: "series-ideal".into(),
                name: "ideal linear".into(),
                color: "#888",
                dashed: true,
                points: self
                    .points
                    .iter()
                    .map(|p| (p.workers as f64, one * p.workers as f64))
                    .collect(),
            },
        ];
        if let Some(f) = self.fit {
            let top = self.points.iter().map(|p| p.workers).max().unwrap_or(1) as f64;
            throughput.push(Series {
                id: "series-usl".into(),
                name: "USL fit".into(),
                color: PALETTE[2],
                dashed: true,
                points: (0..=20)
                    .map(|i| 1.0 + (top - 1.0) * i as f64 / 20.0)
                    .map(|n| (n, f.predict(n)))
                    .collect(),
            });
        }
        let mut latency = vec![
            Series {
                id: "series-p50".into(),
                name: "p50".into(),
                color: PALETTE[0],
                dashed: false,
                points: self
                    .points
                    .iter()
                    .map(|p| (p.workers as f64, p.quantile_us(0.5) / 1000.0))
                    .collect(),
            },
            Series {
                id: "series-p99".into(),
                name: "p99".into(),
                color: PALETTE[1],
                dashed: false,
                points: self
                    .points
                    .iter()
                    .map(|p| (p.workers as f64, p.quantile_us(0.99) / 1000.0))
                    .collect(),
            },
        ];
        if let Some(c) = self.compared {
            throughput.push(Series {
                id: "series-compare".into(),
                name: "compared".into(),
                color: PALETTE[3],
                dashed: false,
                points: measured(c),
            });
            latency.push(Series {
                id: "series-compare-p99".into(),
                name: "compared p99".into(),
                color: PALETTE[3],
                dashed: false,
                points: c
                    .iter()
                    .map(|p| (p.workers as f64, p.quantile_us(0.99) / 1000.0))
                    .collect(),
            });
        }
        let spectrum_x = |p: f64| -(1.0 - p / 100.0).log10();
        let spectrum: Vec<Series> = self
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let h = &p.median_run().summary.stats.latency;
                Series {
                    id: format!("spectrum-{}", p.workers),
                    name: format!("{} workers", p.workers),
                    color: PALETTE[i % PALETTE.len()],
                    dashed: false,
                    points: SPECTRUM
                        .iter()
                        .map(|&q| (spectrum_x(q), h.value_at_percentile(q) as f64 / 1000.0))
                        .collect(),
                }
            })
            .collect();
        let panels = [
            Panel {
                title: "Throughput".into(),
                x_label: "workers".into(),
                y_label: "req/s (2xx)".into(),
                x_ticks: ticks.clone(),
                series: throughput,
            },
            Panel {
                title: "Latency".into(),
                x_label: "workers".into(),
                y_label: "ms".into(),
                x_ticks: ticks,
                series: latency,
            },
            Panel {
                title: "Latency percentile spectrum".into(),
                x_label: "percentile".into(),
                y_label: "ms".into(),
                x_ticks: SPECTRUM
                    .iter()
                    .map(|&q| (spectrum_x(q), format!("{q}")))
                    .collect(),
                series: spectrum,
            },
        ];
        let bound = !self.warnings(self.points).is_empty();
        let caption = format!(
            "{} on {} CPUs; {}{}",
            self.sweep.command.join(" "),
            self.place.cpus.len(),
            self.place.note,
            if bound {
                "; WARNING: generator-bound, see the text report"
            } else {
                ""
            }
        );
        svg::render(&panels, &caption)
    }
}
