//! `herd bench --scale 1,2,max -- COMMAND`: the article's experiment in one command. For
//! each worker count (and each of `--runs`), the COMMAND runs under `herd run -i N` on a
//! fresh port ([`server`]); once `/readyz` says ready, the load warms up and is measured;
//! herd's workers are read from `/status` and their CPU and connections from `/proc`
//! ([`balance`]). The report gives per count the medians, the speed-up over one worker, the
//! efficiency, the balance and the generator's CPU, says plainly when the generator (or a
//! machine too small for both) set the pace, fits the Universal Scalability Law ([`usl`])
//! and draws the chart ([`svg`]); [`report`] lays the results out.

mod balance;
mod report;
mod server;
mod svg;
mod usl;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sched::CpuSet;

use super::args::{Load, Plan, Sweep};
use super::stats::{median, Summary};
use super::{text, BenchError};
use server::Server;
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
    let report = report::Report {
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
