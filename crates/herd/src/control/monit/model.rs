//! What `herd monit` shows and where the cursor is: the apps of the last refresh, a short
//! history of each worker's CPU and memory (for the sparklines), the selected row, and the
//! mode (a question awaiting `y`, the filter being typed, the help). Pure: the screen is
//! drawn from it (`view.rs`) and the keys change it (`mod.rs`).

use std::collections::{HashMap, VecDeque};

use crate::control::protocol::AppInfo;
use crate::driver::status::WorkerStatus;

/// A worker: its app, slot and pid.
pub type WorkerKey = (String, usize, u32);

/// A worker's connections handed over at a refresh, when, and the rate since the refresh
/// before (per second).
pub type ConnCount = (u64, std::time::Instant, Option<f64>);

/// Samples kept per worker: two minutes at one refresh a second.
pub const HISTORY: usize = 120;

/// An action on the selected app, asked for with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rolling reload.
    Reload,
    /// Stop, then start.
    Restart,
    /// Stop its workers.
    Stop,
    /// One worker more.
    ScaleUp,
    /// One worker fewer.
    ScaleDown,
}

impl Action {
    /// The verb, for the question and the status line.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Reload => "reload",
            Action::Restart => "restart",
            Action::Stop => "stop",
            Action::ScaleUp => "scale up (+1)",
            Action::ScaleDown => "scale down (-1)",
        }
    }
}

/// What the keys do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Moving around.
    Normal,
    /// `action` on `app`, once the user says `y`.
    Confirm(Action, String),
    /// Typing the filter.
    Filter,
    /// The help screen.
    Help,
}

/// One line of the table: a worker (or empty slot) of an app, or an app with no worker.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// Its app.
    pub app: &'a AppInfo,
    /// The worker, if the app runs.
    pub worker: Option<&'a WorkerStatus>,
}

/// The monitor's state.
#[derive(Debug)]
pub struct Model {
    /// The apps, as the daemon last listed them.
    pub apps: Vec<AppInfo>,
    /// `(app, slot, pid)` → recent (CPU %, memory bytes), oldest first.
    pub history: HashMap<WorkerKey, VecDeque<(f64, u64)>>,
    /// `(app, slot, pid)` → connections handed over at the last refresh, and the rate
    /// since the one before (per second).
    pub conns: HashMap<WorkerKey, ConnCount>,
    /// The selected row, counted in the filtered rows.
    pub selected: usize,
    /// Rows whose app name contains this are shown.
    pub filter: String,
    /// What the keys do.
    pub mode: Mode,
    /// The last thing that happened, for the status line.
    pub message: String,
    /// The daemon did not answer the last refresh: why.
    pub unreachable: Option<String>,
    /// The selected worker's last output lines.
    pub log: Vec<String>,
}

impl Model {
    /// An empty monitor.
    pub fn new() -> Model {
        Model {
            apps: Vec::new(),
            history: HashMap::new(),
            conns: HashMap::new(),
            selected: 0,
            filter: String::new(),
            mode: Mode::Normal,
            message: String::new(),
            unreachable: None,
            log: Vec::new(),
        }
    }

    /// Takes a fresh list of apps: the samples go into the history (gone workers' are
    /// forgotten), the selection stays in range.
    pub fn refresh(&mut self, apps: Vec<AppInfo>) {
        let mut alive = std::collections::HashSet::new();
        for a in &apps {
            for w in a.status.iter().flat_map(|s| &s.workers) {
                let Some(pid) = w.pid else { continue };
                let key = (a.name.clone(), w.slot, pid);
                let h = self.history.entry(key.clone()).or_default();
                h.push_back((w.cpu_percent, w.memory));
                while h.len() > HISTORY {
                    h.pop_front();
                }
                let now = std::time::Instant::now();
                let rate = self.conns.get(&key).and_then(|(n, at, _)| {
                    let secs = now.saturating_duration_since(*at).as_secs_f64();
                    (secs > 0.0).then(|| w.handed_over.saturating_sub(*n) as f64 / secs)
                });
                self.conns.insert(key.clone(), (w.handed_over, now, rate));
                alive.insert(key);
            }
        }
        self.history.retain(|k, _| alive.contains(k));
        self.conns.retain(|k, _| alive.contains(k));
        self.apps = apps;
        self.unreachable = None;
        let n = self.rows().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }

    /// The table's rows, filtered.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        for app in self.apps.iter().filter(|a| a.name.contains(&self.filter)) {
            match app.status.as_ref().filter(|s| !s.workers.is_empty()) {
                Some(s) => rows.extend(s.workers.iter().map(|w| Row {
                    app,
                    worker: Some(w),
                })),
                None => rows.push(Row { app, worker: None }),
            }
        }
        rows
    }

    /// The selected row's app.
    pub fn selected_app(&self) -> Option<String> {
        self.rows().get(self.selected).map(|r| r.app.name.clone())
    }

    /// The selected row's worker: (app, slot, pid).
    pub fn selected_worker(&self) -> Option<(String, usize, Option<u32>)> {
        let rows = self.rows();
        let r = rows.get(self.selected)?;
        let w = r.worker?;
        Some((r.app.name.clone(), w.slot, w.pid))
    }

    /// Moves the selection by `by` rows, within the table.
    pub fn move_by(&mut self, by: isize) {
        let n = self.rows().len();
        if n == 0 {
            self.selected = 0;
            return;
        }
        let to = (self.selected as isize + by).clamp(0, n as isize - 1);
        self.selected = to as usize;
    }

    /// Asks for `action` on the selected app.
    pub fn ask(&mut self, action: Action) {
        if let Some(app) = self.selected_app() {
            self.mode = Mode::Confirm(action, app);
        }
    }
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

/// Eight levels of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a sparkline, scaled to their own maximum.
pub fn sparkline(values: impl Iterator<Item = f64> + Clone, width: usize) -> String {
    let all: Vec<f64> = values.collect();
    let tail = &all[all.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(0.0, f64::max);
    tail.iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}
