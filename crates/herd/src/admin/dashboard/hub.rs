//! The dashboards' one source of news: while at least one page listens, a sampler asks the
//! loop for its view once a second, keeps a short history of every worker's numbers, and
//! hands each frame to every listening page. 50 pages cost one question a second, not 50.
//!
//! Each page has a small bounded queue: a page that does not read (a stalled tab, a client
//! that never reads) fills it and is dropped, so a slow reader costs a few frames of memory
//! at most and never holds the sampler. With no page listening the sampler stops: an idle
//! herd pays nothing for the dashboard.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::super::{Probe, LOOP_ANSWER};

/// How often a frame is taken.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Frames of history kept: five minutes at one a second.
pub const HISTORY: usize = 300;
/// Frames queued for one page before it counts as not reading. Why 16: a page that has
/// not read for 16 s is gone or stalled; a busy one reads within a frame or two.
const QUEUE: usize = 16;
/// Pages listening at once, over every stream of the listener (events and log tails).
pub const MAX_STREAMS: usize = 128;

/// One page's stream: its first bytes, then every frame as it comes.
pub struct Subscription {
    /// What the stream carries.
    pub rx: mpsc::Receiver<Bytes>,
}

/// The sampler's shared state.
pub struct Hub {
    probes: mpsc::UnboundedSender<Probe>,
    inner: Mutex<Inner>,
    read_only: Option<String>,
}

#[derive(Default)]
struct Inner {
    pages: Vec<mpsc::Sender<Bytes>>,
    sampling: bool,
    history: VecDeque<Sample>,
    last: Option<Bytes>,
    /// App names, shared by every sample that names them.
    names: HashMap<String, Arc<str>>,
}

/// One frame's numbers, for the charts of a page that opens later.
struct Sample {
    t_ms: u64,
    points: Vec<Point>,
}

struct Point {
    app: Arc<str>,
    slot: u32,
    pid: u32,
    generation: u32,
    cpu: f32,
    memory: u64,
    handed: u64,
    restarts: u32,
}

/// The parts of the loop's view the history keeps (the view has more; serde skips it).
#[derive(Deserialize)]
struct ViewApp {
    name: String,
    #[serde(default)]
    status: Option<ViewStatus>,
}

#[derive(Deserialize)]
struct ViewStatus {
    #[serde(default)]
    workers: Vec<ViewWorker>,
}

#[derive(Deserialize)]
struct ViewWorker {
    slot: u32,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    generation: u32,
    #[serde(default)]
    cpu_percent: f32,
    #[serde(default)]
    memory: u64,
    #[serde(default)]
    handed_over: u64,
    #[serde(default)]
    restarts: u32,
}

impl Hub {
    /// A hub asking `probes` for its view. `read_only` says why actions are refused on this
    /// listener, if they are (no token); pages show it.
    pub fn new(probes: mpsc::UnboundedSender<Probe>, read_only: Option<String>) -> Arc<Hub> {
        Arc::new(Hub {
            probes,
            inner: Mutex::new(Inner::default()),
            read_only,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new page: it gets `hello` (what this listener is), the history, the last frame,
    /// then every frame. Starts the sampler if it was idle.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE + 3);
        let mut inner = self.lock();
        inner.pages.retain(|p| !p.is_closed());
        let hello = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "period_ms": PERIOD.as_millis() as u64,
            "history": HISTORY,
            "read_only": self.read_only,
            "pages": inner.pages.len() + 1,
        });
        let _ = tx.try_send(event("hello", &hello.to_string()));
        let _ = tx.try_send(event("history", &history_json(&inner.history)));
        if let Some(last) = &inner.last {
            let _ = tx.try_send(last.clone());
        }
        inner.pages.push(tx);
        if !inner.sampling {
            inner.sampling = true;
            tokio::spawn(sample(self.clone()));
        }
        Subscription { rx }
    }

    /// Tells every page something that happened (an action's outcome).
    pub fn notice(&self, ok: bool, message: &str) {
        let json = serde_json::json!({ "ok": ok, "message": message });
        self.broadcast(&mut self.lock(), event("notice", &json.to_string()));
    }

    /// Sends `frame` to every page; a page whose queue is full is not reading: dropped,
    /// which ends its stream.
    fn broadcast(&self, inner: &mut Inner, frame: Bytes) {
        inner.pages.retain(|p| p.try_send(frame.clone()).is_ok());
    }

    /// Takes one frame: the view from the loop, kept and sent. `false` when the loop is
    /// gone.
    async fn take(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.probes.send(Probe::View(reply)).is_err() {
            return false;
        }
        let Ok(Ok(view)) = tokio::time::timeout(LOOP_ANSWER, rx).await else {
            // A loop that did not answer this time: the next tick asks again.
            return true;
        };
        let t_ms = unix_ms();
        let apps: Vec<ViewApp> = serde_json::from_str(&view).unwrap_or_default();
        let frame = event("status", &format!("{{\"t\":{t_ms},\"apps\":{view}}}"));
        let mut inner = self.lock();
        let points = apps
            .into_iter()
            .flat_map(|app| {
                let name = inner
                    .names
                    .entry(app.name.clone())
                    .or_insert_with(|| Arc::from(app.name.as_str()))
                    .clone();
                let workers = app.status.map(|s| s.workers).unwrap_or_default();
                workers.into_iter().filter_map(move |w| {
                    Some(Point {
                        app: name.clone(),
                        slot: w.slot,
                        pid: w.pid?,
                        generation: w.generation,
                        cpu: w.cpu_percent,
                        memory: w.memory,
                        handed: w.handed_over,
                        restarts: w.restarts,
                    })
                })
            })
            .collect();
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(Sample { t_ms, points });
        // Names no sample holds any more (an app deleted minutes ago) are forgotten.
        inner.names.retain(|_, n| Arc::strong_count(n) > 1);
        inner.last = Some(frame.clone());
        self.broadcast(&mut inner, frame);
        true
    }
}

/// The sampler: a frame every [`PERIOD`] while a page listens.
async fn sample(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut inner = hub.lock();
            inner.pages.retain(|p| !p.is_closed());
            if inner.pages.is_empty() {
                inner.sampling = false;
                return;
            }
        }
        if !hub.take().await {
            // The app ended: the pages' streams end with it.
            let mut inner = hub.lock();
            inner.pages.clear();
            inner.sampling = false;
            return;
        }
    }
}

/// The history as one JSON object: per sample its time and one array per worker,
/// `[app, slot, pid, generation, cpu %, memory bytes, connections handed, restarts]`.
fn history_json(history: &VecDeque<Sample>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64 + history.len() * 64);
    out.push_str("{\"fields\":[\"app\",\"slot\",\"pid\",\"generation\",\"cpu\",\"memory\",\"handed\",\"restarts\"],\"samples\":[");
    for (i, s) in history.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"t\":{},\"w\":[", s.t_ms);
        for (j, p) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let app = serde_json::to_string(&*p.app).unwrap_or_default();
            let cpu = if p.cpu.is_finite() { p.cpu } else { 0.0 };
            let _ = write!(
                out,
                "[{app},{},{},{},{cpu:.1},{},{},{}]",
                p.slot, p.pid, p.generation, p.memory, p.handed, p.restarts
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

/// One server-sent event: its name and its data (one line of JSON, or lines of text,
/// each its own `data:` line).
pub fn event(name: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + name.len() + 16);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_puts_every_line_in_its_own_data_field() {
        assert_eq!(
            &event("line", "a\nb\r\nc")[..],
            b"event: line\ndata: a\ndata: b\ndata: c\n\n"
        );
    }

    #[test]
    fn history_is_compact_json() {
        let mut h = VecDeque::new();
        h.push_back(Sample {
            t_ms: 5,
            points: vec![Point {
                app: Arc::from("a\"pi"),
                slot: 1,
                pid: 42,
                generation: 2,
                cpu: 12.34,
                memory: 1000,
                handed: 7,
                restarts: 1,
            }],
        });
        let v: serde_json::Value = serde_json::from_str(&history_json(&h)).unwrap();
        assert_eq!(
            v["samples"][0]["w"][0],
            serde_json::json!(["a\"pi", 1, 42, 2, 12.3, 1000, 7, 1])
        );
        assert_eq!(v["samples"][0]["t"], 5);
    }
}
