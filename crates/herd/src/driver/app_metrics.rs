//! `/metrics/app`: the app's own metrics, gathered from its workers at scrape time, with no
//! change to the app. Three sources, each optional:
//!
//! - **prom-client's cluster protocol.** herd is the primary: it sends every Node cluster
//!   worker `{type: "prom-client:getMetricsReq", requestId}`, as prom-client's
//!   `AggregatorRegistry.clusterMetrics()` does, and merges the `getMetricsRes` answers
//!   with prom-client's own aggregation rules (`observe::metrics::aggregate`). A worker that
//!   does not answer within [`APP_SCRAPE`] (it has no `AggregatorRegistry`, or it is stuck)
//!   is left out of that scrape and not waited for again until it answers once.
//! - **`--worker-metrics PATH`.** herd fetches each ready worker's own endpoint over the
//!   path to that one worker (as health checks go: `driver/health.rs`) and labels its series
//!   with `worker="<slot>"`. A worker that fails is left out of that scrape and counted in
//!   herd's `herd_worker_scrape_errors_total`.
//! - **PM2's `axm:monitor` messages** (`@pm2/io`): their numeric values, kept per worker,
//!   as gauges `pm2_<name>{worker="<slot>"}`.
//!
//! Everything that parses or merges runs off the loop (`spawn_blocking`): the loop only
//! sends the questions and forwards the answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::warn;

use super::health::{connect, Route};
use super::Driver;
use crate::observe::metrics::{self as m, Family, Sample};

/// How long a scrape waits for the workers: prom-client's own primary waits 5 s; a worker
/// that needs more than 2 s to list its metrics is stuck for a scraper too.
pub(super) const APP_SCRAPE: Duration = Duration::from_secs(2);
/// The largest worker exposition read (`--worker-metrics`); the channel's line limit bounds
/// prom-client's answers (1 MiB).
const WORKER_METRICS_MAX: usize = 4 << 20;

const PROM_CLIENT_REQ: &str = "prom-client:getMetricsReq";
const PROM_CLIENT_RES: &str = "prom-client:getMetricsRes";
const AXM_MONITOR: &str = "axm:monitor";

/// What the driver keeps for `/metrics/app`.
#[derive(Debug, Default)]
pub(super) struct AppScrapes {
    next_id: u64,
    /// Scrapes waiting for prom-client answers, by `requestId`.
    open: HashMap<u64, mpsc::UnboundedSender<(u32, Value)>>,
    /// Workers that did not answer prom-client's question in time: asked, not waited for.
    silent: Arc<Mutex<HashSet<u32>>>,
    /// Workers that answered prom-client's question once: one that does not any more is
    /// a scrape error (one that never did just has no prom-client).
    answered: HashSet<u32>,
    /// The last `axm:monitor` values of each worker.
    axm: HashMap<u32, BTreeMap<String, f64>>,
    /// Failed `--worker-metrics` scrapes, by slot.
    pub(super) errors: Arc<Mutex<BTreeMap<usize, u64>>>,
}

impl Driver {
    /// A message that belongs to `/metrics/app` (prom-client's answer, PM2's monitor
    /// values): taken, true; otherwise false.
    pub(super) fn app_metrics_message(&mut self, pid: u32, value: &Value) -> bool {
        match value.get("type").and_then(Value::as_str) {
            Some(PROM_CLIENT_RES) => {
                self.app_scrapes.answered.insert(pid);
                self.app_scrapes
                    .silent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pid);
                let id = value.get("requestId").and_then(Value::as_u64);
                if let Some(tx) = id.and_then(|id| self.app_scrapes.open.get(&id)) {
                    let _ = tx.send((pid, value.clone()));
                }
                true
            }
            Some(AXM_MONITOR) => {
                let values = self.app_scrapes.axm.entry(pid).or_default();
                for (name, v) in value
                    .get("data")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let number = v.get("value").unwrap_or(v).as_f64();
                    if let Some(n) = number {
                        values.insert(name.clone(), n);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Starts gathering the app's metrics now; the future (run it as a task) gives them,
    /// every series labelled with the app.
    pub(super) fn gather_app_metrics(
        &mut self,
    ) -> impl Future<Output = Vec<Family>> + Send + 'static {
        let scrapes = &mut self.app_scrapes;
        scrapes.open.retain(|_, tx| !tx.is_closed());
        scrapes.axm.retain(|pid, _| self.channels.contains_key(pid));
        scrapes
            .answered
            .retain(|pid| self.channels.contains_key(pid));
        let id = scrapes.next_id;
        scrapes.next_id += 1;
        let (tx, answers) = mpsc::unbounded_channel();
        let silent = scrapes.silent.clone();
        let question = json!({"type": PROM_CLIENT_REQ, "requestId": id});
        let mut waited = HashMap::new();
        {
            let quiet = silent.lock().unwrap_or_else(|e| e.into_inner());
            for (pid, link) in &self.channels {
                if link.cluster && !link.closed {
                    link.channel.send(&question);
                    if let (false, Some((slot, _))) =
                        (quiet.contains(pid), self.sup.worker_of_pid(*pid))
                    {
                        waited.insert(*pid, (slot, scrapes.answered.contains(pid)));
                    }
                }
            }
        }
        if !waited.is_empty() {
            scrapes.open.insert(id, tx);
        }
        let serving = self.sup.serving();
        let mut fetches = Vec::new();
        if let Some(path) = self.plan.worker_metrics.clone() {
            let request = format!(
                "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: herd-metrics\r\nAccept: text/plain;version=0.0.4\r\n\r\n"
            );
            for &(slot, pid) in &serving {
                let route = self.route_to(pid);
                let request = request.clone();
                fetches.push((
                    slot,
                    tokio::spawn(async move { fetch(route?, request).await }),
                ));
            }
        }
        let axm: Vec<(usize, BTreeMap<String, f64>)> = serving
            .iter()
            .filter_map(|(slot, pid)| Some((*slot, self.app_scrapes.axm.get(pid)?.clone())))
            .collect();
        let app = self.plan.name.clone();
        let errors = self.app_scrapes.errors.clone();
        async move {
            let (answers, late) = prom_client_answers(answers, waited, silent).await;
            for slot in late {
                warn!(app = %app, slot, "worker {app}:{slot} did not answer prom-client's question within {} s", APP_SCRAPE.as_secs());
                *errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(slot)
                    .or_default() += 1;
            }
            let mut texts = Vec::new();
            for (slot, task) in fetches {
                match task.await {
                    Ok(Ok(text)) => texts.push((slot, text)),
                    Ok(Err(e)) => {
                        warn!(app = %app, slot, "--worker-metrics of worker {app}:{slot} failed: {e}");
                        *errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(slot)
                            .or_default() += 1;
                    }
                    Err(_) => {}
                }
            }
            let labelled = app.clone();
            let result = tokio::task::spawn_blocking(move || {
                assemble(&labelled, answers, texts, axm, &errors)
            })
            .await;
            result.unwrap_or_default()
        }
    }
}

/// prom-client's answers until every waited-for worker (pid → its slot, and whether it
/// answered before) answered or [`APP_SCRAPE`] passed; the workers that did not answer
/// become silent, and the slots of those that answered before are returned too.
async fn prom_client_answers(
    mut answers: mpsc::UnboundedReceiver<(u32, Value)>,
    mut waited: HashMap<u32, (usize, bool)>,
    silent: Arc<Mutex<HashSet<u32>>>,
) -> (Vec<Value>, Vec<usize>) {
    let mut got = Vec::new();
    if waited.is_empty() {
        return (got, Vec::new());
    }
    let deadline = tokio::time::sleep(APP_SCRAPE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            answer = answers.recv() => match answer {
                Some((pid, value)) => {
                    got.push(value);
                    waited.remove(&pid);
                    if waited.is_empty() {
                        break;
                    }
                }
                None => break,
            },
            _ = &mut deadline => {
                silent.lock().unwrap_or_else(|e| e.into_inner()).extend(waited.keys());
                let late = waited.into_values().filter(|(_, known)| *known).map(|(s, _)| s);
                return (got, late.collect());
            }
        }
    }
    (got, Vec::new())
}

/// One worker's exposition at `--worker-metrics`: `GET` over HTTP/1.0 (so no chunked
/// answer), a 200, at most [`WORKER_METRICS_MAX`] bytes, within [`APP_SCRAPE`].
async fn fetch(route: Route, request: String) -> Result<String, String> {
    let exchange = async {
        let mut stream = connect(route).await?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut body = Vec::new();
        let mut limited = (&mut stream).take(WORKER_METRICS_MAX as u64 + 1);
        limited
            .read_to_end(&mut body)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if body.len() > WORKER_METRICS_MAX {
            return Err(format!(
                "the answer is larger than {} MiB",
                WORKER_METRICS_MAX >> 20
            ));
        }
        let text = String::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
            .ok_or("no HTTP answer")?;
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if !head.starts_with("HTTP/1.") || status != "200" {
            let first = head.lines().next().unwrap_or("");
            return Err(format!("answered {:?}", &first[..first.len().min(60)]));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(APP_SCRAPE, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", APP_SCRAPE.as_secs())))
}

/// Every source as families labelled with the app (and the worker where per worker).
fn assemble(
    app: &str,
    answers: Vec<Value>,
    texts: Vec<(usize, String)>,
    axm: Vec<(usize, BTreeMap<String, f64>)>,
    errors: &Mutex<BTreeMap<usize, u64>>,
) -> Vec<Family> {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    let mut workers = Vec::new();
    for a in &answers {
        match m::from_prom_client(a) {
            Ok((families, errs)) => {
                workers.push(families);
                problems.extend(errs);
            }
            Err(e) => problems.push(e),
        }
    }
    let (mut aggregated, errs) = m::aggregate(workers);
    problems.extend(errs);
    m::label_all(&mut aggregated, &[("app", app.to_string())]);
    all.extend(aggregated);
    for (slot, text) in texts {
        match m::from_text(&text) {
            Ok(mut families) => {
                m::label_all(
                    &mut families,
                    &[("app", app.to_string()), ("worker", slot.to_string())],
                );
                all.extend(families);
            }
            Err(e) => {
                warn!(
                    app,
                    slot,
                    "--worker-metrics of worker {app}:{slot}: not a Prometheus exposition: {e}"
                );
                *errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(slot)
                    .or_default() += 1;
            }
        }
    }
    let mut pm2: BTreeMap<String, Family> = BTreeMap::new();
    for (slot, values) in axm {
        for (name, value) in values {
            let name = format!("pm2_{}", m::sanitize(&name));
            pm2.entry(name.clone())
                .or_insert_with(|| Family {
                    name,
                    help: "A PM2 (@pm2/io) metric of the worker".into(),
                    kind: "gauge".into(),
                    aggregator: "sum".into(),
                    samples: Vec::new(),
                })
                .samples
                .push(Sample {
                    name: None,
                    labels: vec![
                        ("app".into(), app.to_string()),
                        ("worker".into(), slot.to_string()),
                    ],
                    value,
                });
        }
    }
    all.extend(pm2.into_values());
    for p in problems {
        warn!(app, "app metrics: {p}");
    }
    let (merged, errs) = m::merge(all);
    for e in errs {
        warn!(app, "app metrics: {e}");
    }
    merged
}
