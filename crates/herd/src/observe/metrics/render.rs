//! The exposition: every family from the snapshots, through `prometheus-client`'s
//! encoders. Families with no series are left out; each per-worker family has one series
//! per slot (the slot's current worker, or the empty slot), so restarts do not create
//! series and a replacement starting next to a worker does not duplicate one.

use std::collections::HashSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{procs, AppSnapshot, Procs, WorkerSnapshot};
use crate::observe::procstat;

/// Every state a worker or empty slot can be in (`herd_worker_state` lists each).
const WORKER_STATES: [&str; 8] = [
    "spawning",
    "starting",
    "online",
    "stopping",
    "hung",
    "waiting-restart",
    "stopped",
    "errored",
];
/// Every state of an app (`herd_app_state` lists each).
const APP_STATES: [&str; 5] = ["running", "reloading", "errored", "stopping", "stopped"];

type Labels = Vec<(&'static str, String)>;

/// The exposition of `apps`, with `/proc` read once for all their workers: OpenMetrics text
/// when `openmetrics`, else the Prometheus text format.
pub fn render(apps: Vec<AppSnapshot>, openmetrics: bool) -> String {
    let pids: Vec<u32> = apps
        .iter()
        .flat_map(|a| a.workers.iter().filter_map(|w| w.pid))
        .collect();
    let procs = procs::sample(&pids);
    render_with(apps, procs, openmetrics)
}

/// [`render`] with the `/proc` pass given (tests).
pub(super) fn render_with(apps: Vec<AppSnapshot>, procs: Procs, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition { apps, procs }));
    let mut out = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    // Writing into a String fails only on a name the encoder refuses: herd's are fixed.
    if let Err(e) = encoded {
        out.push_str(&format!("# herd could not encode its metrics: {e}\n"));
    }
    out
}

#[derive(Debug)]
struct Exposition {
    apps: Vec<AppSnapshot>,
    procs: Procs,
}

fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, V)>,
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in &series {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn counter<V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, V)>,
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in &series {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, V, f64>(v, None)?;
    }
    Ok(())
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn app_labels(a: &AppSnapshot) -> Labels {
    let mut l = vec![("app", a.app.clone())];
    if let Some(ns) = &a.namespace {
        l.push(("namespace", ns.clone()));
    }
    l
}

fn with(mut base: Labels, more: &[(&'static str, String)]) -> Labels {
    base.extend(more.iter().cloned());
    base
}

impl Exposition {
    /// Each app's per-slot workers (the series of the slot), with the app's labels.
    fn slots(&self) -> impl Iterator<Item = (&AppSnapshot, &WorkerSnapshot, Labels)> {
        self.apps.iter().flat_map(|a| {
            a.workers.iter().filter(|w| !w.extra).map(move |w| {
                let labels = with(app_labels(a), &[("worker", w.slot.to_string())]);
                (a, w, labels)
            })
        })
    }

    fn per_app<V>(&self, f: impl Fn(&AppSnapshot) -> V) -> Vec<(Labels, V)> {
        self.apps.iter().map(|a| (app_labels(a), f(a))).collect()
    }

    fn per_slot<V>(&self, f: impl Fn(&WorkerSnapshot) -> Option<V>) -> Vec<(Labels, V)> {
        self.slots()
            .filter_map(|(_, w, l)| f(w).map(|v| (l, v)))
            .collect()
    }

    fn encode_apps(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "herd_app_workers_desired",
            "Worker slots the app wants now",
            self.per_app(|a| a.desired as u64),
        )?;
        let mut by_state = Vec::new();
        for a in &self.apps {
            for state in WORKER_STATES {
                let n = a
                    .workers
                    .iter()
                    .filter(|w| w.pid.is_some() && w.state == state)
                    .count();
                if n > 0 || matches!(state, "online" | "starting" | "stopping") {
                    by_state.push((
                        with(app_labels(a), &[("state", state.to_string())]),
                        n as u64,
                    ));
                }
            }
        }
        gauge(
            enc,
            "herd_app_workers",
            "Worker processes of the app by state (replacements and stopping ones included)",
            by_state,
        )?;
        gauge(
            enc,
            "herd_app_generation",
            "Program generation new workers get: one more per reload",
            self.per_app(|a| a.generation),
        )?;
        let mut reloads = Vec::new();
        for a in &self.apps {
            reloads.push((
                with(app_labels(a), &[("result", "ok".into())]),
                a.reloads_ok,
            ));
            reloads.push((
                with(app_labels(a), &[("result", "failed".into())]),
                a.reloads_failed,
            ));
        }
        counter(enc, "herd_app_reloads", "Rolling reloads by result: ok (every slot replaced) or failed (a new worker failed; the old ones kept serving)", reloads)?;
        let mut states = Vec::new();
        for a in &self.apps {
            for state in APP_STATES {
                states.push((
                    with(app_labels(a), &[("state", state.to_string())]),
                    u64::from(a.state == state),
                ));
            }
        }
        gauge(
            enc,
            "herd_app_state",
            "1 for the state the app is in, 0 for the others",
            states,
        )?;
        let mut restarts = Vec::new();
        for a in &self.apps {
            for (reason, n) in &a.restarts {
                restarts.push((
                    with(app_labels(a), &[("reason", reason.to_string())]),
                    u64::from(*n),
                ));
            }
        }
        counter(
            enc,
            "herd_app_restarts",
            "Worker restarts by reason: crash, memory, health, watchdog",
            restarts,
        )?;
        let mut queued = Vec::new();
        let mut backlog = Vec::new();
        for a in &self.apps {
            for l in &a.listeners {
                let labels = with(app_labels(a), &[("listener", l.addr.clone())]);
                queued.push((labels.clone(), l.queued));
                backlog.push((labels, l.backlog));
            }
        }
        gauge(enc, "herd_listener_queued_connections", "Connections in the accept queue of the app's listening sockets (TCP_INFO), over its sockets", queued)?;
        gauge(
            enc,
            "herd_listener_backlog",
            "Limit of those accept queues, over the address' sockets",
            backlog,
        )?;
        counter(
            enc,
            "herd_app_connections_handed_over",
            "Connections herd accepted and handed to a worker (round-robin, least-conn, sticky)",
            self.per_app(|a| a.handed_over),
        )?;
        counter(
            enc,
            "herd_app_connections_relayed",
            "Connections herd relayed to a worker's private port (--proxy)",
            self.per_app(|a| a.relayed),
        )?;
        gauge(
            enc,
            "herd_app_connections_waiting",
            "Accepted connections waiting for a worker to take them",
            self.per_app(|a| a.waiting as u64),
        )
    }

    fn encode_workers(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut states = Vec::new();
        for (_, w, l) in self.slots() {
            for state in WORKER_STATES {
                states.push((
                    with(l.clone(), &[("state", state.to_string())]),
                    u64::from(w.state == state),
                ));
            }
        }
        gauge(
            enc,
            "herd_worker_state",
            "1 for the state of the slot's worker (or of the empty slot), 0 for the others",
            states,
        )?;
        gauge(
            enc,
            "herd_worker_ready",
            "1 when the slot's worker gets new connections",
            self.per_slot(|w| Some(u64::from(w.ready))),
        )?;
        gauge(
            enc,
            "herd_worker_start_time_seconds",
            "When the slot's worker started, Unix time",
            self.per_slot(|w| w.started.map(unix)),
        )?;
        let proc = |w: &WorkerSnapshot| w.pid.and_then(|p| self.procs.get(&p)).copied();
        counter(
            enc,
            "herd_worker_cpu_seconds",
            "CPU time of the worker's process group, user and system",
            self.per_slot(|w| proc(w).map(|p| p.cpu)),
        )?;
        gauge(
            enc,
            "herd_worker_resident_memory_bytes",
            "Resident memory of the worker's process group",
            self.per_slot(|w| proc(w).map(|p| p.rss)),
        )?;
        gauge(
            enc,
            "herd_worker_open_fds",
            "Open file descriptors of the worker's main process",
            self.per_slot(|w| proc(w).and_then(|p| p.fds)),
        )?;
        gauge(
            enc,
            "herd_worker_threads",
            "Threads of the worker's process group",
            self.per_slot(|w| proc(w).map(|p| u64::from(p.threads))),
        )?;
        counter(
            enc,
            "herd_worker_restarts",
            "Restarts of the slot",
            self.per_slot(|w| Some(u64::from(w.restarts))),
        )?;
        gauge(
            enc,
            "herd_worker_last_exit_code",
            "How the slot's last worker ended: its exit code, or 128 + the signal",
            self.per_slot(|w| w.last_exit.map(i64::from)),
        )?;
        let health = |w: &WorkerSnapshot| w.health.clone();
        gauge(
            enc,
            "herd_worker_health_check_ok",
            "1 when the slot's worker passed its last health check, 0 when it failed it",
            self.per_slot(|w| health(w)?.ok.map(u64::from)),
        )?;
        gauge(
            enc,
            "herd_worker_health_check_failures",
            "Failed health checks in a row",
            self.per_slot(|w| health(w).map(|h| u64::from(h.failures))),
        )?;
        gauge(
            enc,
            "herd_worker_health_check_latency_seconds",
            "Latency of the last passed health check",
            self.per_slot(|w| health(w)?.latency),
        )?;
        gauge(
            enc,
            "herd_worker_heartbeat_age_seconds",
            "Time since the worker's last heartbeat (--watchdog)",
            self.per_slot(|w| health(w)?.heartbeat_age),
        )?;
        counter(
            enc,
            "herd_worker_connections_handed_over",
            "Connections handed or relayed to the slot's worker",
            self.per_slot(|w| w.pid.map(|_| w.handed_over)),
        )?;
        let mut scrape_errors = Vec::new();
        for a in &self.apps {
            for (slot, n) in &a.scrape_errors {
                scrape_errors.push((with(app_labels(a), &[("worker", slot.to_string())]), *n));
            }
        }
        counter(enc, "herd_worker_scrape_errors", "Scrapes of the worker's own metrics (--worker-metrics) that failed: no answer in time, not a 200, not an exposition", scrape_errors)?;
        let mut info = Vec::new();
        for (_, w, l) in self.slots() {
            if let Some(pid) = w.pid {
                info.push((
                    with(
                        l,
                        &[
                            ("pid", pid.to_string()),
                            ("generation", w.generation.to_string()),
                        ],
                    ),
                    1u64,
                ));
            }
        }
        gauge(
            enc,
            "herd_worker_info",
            "The process serving each slot: its pid and program generation",
            info,
        )
    }

    /// The workers' `{"herd":"count"}` counters: `herd_count_<name>` per slot and
    /// `herd_count_<name>_all` for the app. Names that clash once sanitised keep the first.
    fn encode_counters(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let mut names: Vec<String> = self
            .apps
            .iter()
            .flat_map(|a| a.counters.iter().map(|(n, _)| super::sanitize(n)))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let mut per_slot = Vec::new();
            let mut total = Vec::new();
            for a in &self.apps {
                let mut seen = HashSet::new();
                let Some((_, slots)) = a
                    .counters
                    .iter()
                    .find(|(n, _)| super::sanitize(n) == name && seen.insert(n.clone()))
                else {
                    continue;
                };
                for (slot, v) in slots {
                    per_slot.push((with(app_labels(a), &[("worker", slot.to_string())]), *v));
                }
                total.push((app_labels(a), slots.iter().map(|(_, v)| *v).sum::<i64>()));
            }
            let help = "A counter the workers send with {\"herd\":\"count\"}";
            gauge(enc, &format!("herd_count_{name}"), help, per_slot)?;
            gauge(
                enc,
                &format!("herd_count_{name}_all"),
                "The same, over every slot",
                total,
            )?;
        }
        Ok(())
    }

    /// herd's own process, as every Prometheus client exports it, and its version.
    fn encode_herd(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let me = std::process::id();
        let none = Vec::new;
        if let Ok(s) = procstat::sample(me) {
            counter(
                enc,
                "process_cpu_seconds",
                "herd's CPU time, user and system",
                vec![(none(), s.cpu.as_secs_f64())],
            )?;
            gauge(
                enc,
                "process_resident_memory_bytes",
                "herd's resident memory",
                vec![(none(), s.rss)],
            )?;
            gauge(
                enc,
                "process_threads",
                "herd's threads",
                vec![(none(), u64::from(s.threads))],
            )?;
        }
        if let Some(t) = procstat::start_time(me) {
            gauge(
                enc,
                "process_start_time_seconds",
                "When herd started, Unix time",
                vec![(none(), t)],
            )?;
        }
        if let Some(n) = procs::open_fds("self") {
            gauge(
                enc,
                "process_open_fds",
                "herd's open file descriptors",
                vec![(none(), n)],
            )?;
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            gauge(
                enc,
                "process_max_fds",
                "herd's limit of open file descriptors",
                vec![(none(), soft)],
            )?;
        }
        gauge(
            enc,
            "herd_build_info",
            "herd's version",
            vec![(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                1u64,
            )],
        )
    }
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.encode_apps(&mut enc)?;
        self.encode_workers(&mut enc)?;
        self.encode_counters(&mut enc)?;
        self.encode_herd(&mut enc)
    }
}
