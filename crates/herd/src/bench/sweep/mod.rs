//! `herd bench --scale 1,2,max -- COMMAND`: the article's experiment in one command. For
//! each worker count (and each of `--runs`), the COMMAND runs under `herd run -i N` on a
//! fresh port ([`server`]); once `/readyz` says ready, the load warms up and is measured;
//! herd's workers are read from `/status` and their CPU and connections from `/proc`
//! ([`balance`]). The report gives per count the medians, the speed-up over one worker, the
//! efficiency, the balance and the generator's CPU, says plainly when the generator (or a
//! machine too small for both) set the pace, fits the Universal Scalability Law ([`usl`])
//! and draws the chart ([`svg`]).

mod balance;
mod server;
mod svg;
mod usl;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sched::CpuSet;
use serde_json::{json, Value};

use super::args::{Load, Plan, Sweep};
use super::stats::{median, Summary};
use super::{json as out_json, text, BenchError};
use server::Server;
use svg::{Panel, Series, PALETTE};
use usl::Usl;

/// Warm-up of each run when --warmup is not given: JIT compilers, caches and the kernel's
/// accept queues settle before measuring.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
/// The machine counts as saturated when server and generator together used this share of
/// its CPUs.
const SATURATED: f64 = 0.9;
/// CPU (cores) used by other processes above which their share is reported.
const OTHERS: f64 = 0.25;
/// Percentiles of the spectrum chart.
const SPECTRUM: [f64; 7] = [50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 99.999];

/// Where the server and the generator run.
struct Placement {
    /// CPUs this process may use.
    cpus: Vec<usize>,
    /// The server's, when they are disjoint from the generator's.
    server: Option<CpuSet>,
    /// The generator's CPUs, when disjoint.
    generator: Option<Vec<usize>>,
    /// What was done, in a sentence.
    note: String,
}

fn allowed_cpus() -> Vec<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap_or_default();
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Gives the server `largest` CPUs and the generator the rest, when at least one is left.
fn place(largest: usize) -> Placement {
    let cpus = allowed_cpus();
    if cpus.len() > largest {
        let mut server = CpuSet::new();
        for &c in &cpus[..largest] {
            let _ = server.set(c);
        }
        let gen: Vec<usize> = cpus[largest..].to_vec();
        let mut set = CpuSet::new();
        for &c in &gen {
            let _ = set.set(c);
        }
        let pinned = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok();
        if pinned {
            return Placement {
                note: format!(
                    "server on CPUs {:?}, generator on CPUs {:?} (sched_setaffinity): they do not compete",
                    &cpus[..largest],
                    gen
                ),
                server: Some(server),
                generator: Some(gen),
                cpus,
            };
        }
    }
    Placement {
        note: format!(
            "{} CPUs cannot give {largest} workers and the generator CPUs of their own: they share them, so the sweep measures the generator as much as the server",
            cpus.len()
        ),
        server: None,
        generator: None,
        cpus,
    }
}

/// One measured run.
struct Measured {
    summary: Summary,
    /// The server's port.
    port: u16,
    /// CPU the whole machine used over the window, in cores.
    machine_cores: f64,
    /// Per worker: pid, connections held, CPU in percent of a core.
    workers: Vec<(u32, u64, f64)>,
}

/// The runs of one worker count, and of which setup.
struct Point {
    workers: usize,
    runs: Vec<Measured>,
}

impl Point {
    fn rps(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.summary.rps()).collect()
    }

    /// The run whose req/s is the median one (for latencies, balance, the spectrum).
    fn median_run(&self) -> &Measured {
        let m = median(&self.rps());
        self.runs
            .iter()
            .min_by(|a, b| {
                (a.summary.rps() - m)
                    .abs()
                    .total_cmp(&(b.summary.rps() - m).abs())
            })
            .unwrap_or_else(|| unreachable!("a point has at least one run"))
    }

    fn quantile_us(&self, q: f64) -> f64 {
        median(
            &self
                .runs
                .iter()
                .map(|r| r.summary.stats.latency.value_at_quantile(q) as f64)
                .collect::<Vec<_>>(),
        )
    }

    fn server_cpu(&self) -> f64 {
        self.median_run().workers.iter().map(|w| w.2).sum::<f64>() / 100.0
    }
}

/// Measures one server: warm-up and load, with the workers' CPU sampled over the measured
/// window and their connections in its middle.
fn measure(load: &Load, server: &Server, threads: usize) -> Measured {
    let workers = server.workers();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let port = server.port;
    let groups = server.groups();
    let duration = load.duration.unwrap_or(super::args::DEFAULT_DURATION);
    let from = Instant::now() + super::run::START_DELAY + load.warmup;
    let sampler = {
        let workers = workers.clone();
        std::thread::spawn(move || {
            let sleep_until =
                |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
            sleep_until(from);
            let cpu0 = balance::cpu(&workers, groups);
            let m0 = balance::machine();
            sleep_until(from + duration / 2);
            let conns = balance::connections(port, &workers);
            sleep_until(from + duration);
            let cpu1 = balance::cpu(&workers, groups);
            let m1 = balance::machine();
            let busy =
                (m1.0.saturating_sub(m0.0)) as f64 / (m1.1.saturating_sub(m0.1)).max(1) as f64;
            (cpu0, conns, cpu1, busy)
        })
    };
    let summary = super::run::run(load, addr, threads, false);
    let (cpu0, conns, cpu1, busy) = sampler.join().unwrap_or_default();
    let machine_cores = busy * allowed_cpus().len() as f64;
    let secs = duration.as_secs_f64();
    let workers = workers
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let cpu = match (cpu0.get(i), cpu1.get(i)) {
                (Some(a), Some(b)) => b.saturating_sub(*a).as_secs_f64() / secs * 100.0,
                _ => 0.0,
            };
            (*pid, conns.get(i).copied().unwrap_or(0), cpu)
        })
        .collect();
    Measured {
        summary,
        port,
        machine_cores,
        workers,
    }
}

/// Runs every count of one setup (herd with the COMMAND, or the compare command).
fn sweep_setup(
    plan: &Plan,
    sweep: &Sweep,
    counts: &[usize],
    place: &Placement,
    compare: Option<&[String]>,
) -> Result<Vec<Point>, BenchError> {
    let mut load = plan.load.clone();
    if load.warmup.is_zero() && !plan.warmup_given {
        load.warmup = DEFAULT_WARMUP;
    }
    let tty = std::io::stderr().is_terminal();
    let mut points = Vec::new();
    for &n in counts {
        let threads = super::threads_for(
            &load,
            match &place.generator {
                Some(g) => g.len(),
                None => place.cpus.len().saturating_sub(n).max(1),
            },
        );
        let mut runs = Vec::new();
        for run in 0..sweep.runs {
            let (what, started) = match compare {
                None => (
                    sweep.command.join(" "),
                    Server::herd(n, &sweep.run_flags, &sweep.command, place.server),
                ),
                Some(c) => (c.join(" "), Server::plain(n, c, place.server)),
            };
            let mut server = started.map_err(BenchError::Sweep)?;
            if let Err(e) = server.wait_ready(&load.target.path, sweep.ready_timeout) {
                server.stop();
                return Err(BenchError::Sweep(format!(
                    "`{what}` with {n} workers never became ready: {e}"
                )));
            }
            load.target = plan.load.target.with_port(server.port);
            let m = measure(&load, &server, threads);
            server.stop();
            if tty {
                eprintln!(
                    "{} workers, run {}/{}: {} req/s, p99 {}",
                    n,
                    run + 1,
                    sweep.runs,
                    text::count(m.summary.rps()),
                    text::ms(m.summary.stats.latency.value_at_quantile(0.99) as f64)
                );
            }
            runs.push(m);
        }
        points.push(Point { workers: n, runs });
    }
    Ok(points)
}

/// Runs the sweep, prints the report, writes the chart.
pub fn run(plan: &Plan, sweep: &Sweep) -> Result<ExitCode, BenchError> {
    let max = crate::observe::cpus::cpu_budget().count;
    let counts: Vec<usize> = sweep
        .counts
        .iter()
        .map(|&n| if n == usize::MAX { max } else { n })
        .collect();
    let mut seen = Vec::new();
    for &n in &counts {
        if seen.contains(&n) {
            return Err(BenchError::Sweep(format!(
                "--scale: max is {max} here, which the list has already"
            )));
        }
        seen.push(n);
    }
    let largest = counts.iter().copied().max().unwrap_or(1);
    let place = place(largest);
    let points = sweep_setup(plan, sweep, &counts, &place, None)?;
    let compared = match &sweep.compare {
        Some(c) => Some(sweep_setup(plan, sweep, &counts, &place, Some(c))?),
        None => None,
    };
    let fit = fit(&points);
    let report = Report {
        plan,
        sweep,
        place: &place,
        points: &points,
        compared: compared.as_deref(),
        fit,
    };
    let out = if plan.format == super::args::Format::Text {
        report.text()
    } else {
        format!("{:#}\n", report.json())
    };
    super::emit(&out);
    if let Some(path) = &sweep.report {
        let svg = report.svg();
        let body = if path.extension().is_some_and(|e| e == "html") {
            svg::html(
                &svg,
                &format!("herd bench --scale: {}", sweep.command.join(" ")),
            )
        } else {
            svg
        };
        std::fs::write(path, body).map_err(|why| BenchError::Report {
            path: path.display().to_string(),
            why,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fit(points: &[Point]) -> Option<Usl> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.workers as f64, median(&p.rps())))
        .collect();
    Usl::fit(&pts)
}

struct Report<'a> {
    plan: &'a Plan,
    sweep: &'a Sweep,
    place: &'a Placement,
    points: &'a [Point],
    compared: Option<&'a [Point]>,
    fit: Option<Usl>,
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

    fn text(&self) -> String {
        let load = &self.plan.load;
        let mut out = format!(
            "herd bench --scale: `{}` under herd, {} on path {}, {} connections, {} s measured × {} runs (medians)\nCPUs: {}; {}.\n\n",
            self.sweep.command.join(" "),
            if self.sweep.run_flags.is_empty() { "default flags".to_string() } else { self.sweep.run_flags.join(" ") },
            load.target.path,
            load.connections,
            load.duration.unwrap_or(super::args::DEFAULT_DURATION).as_secs_f64(),
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

    fn json(&self) -> Value {
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

    fn svg(&self) -> String {
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
