//! What a load thread counts, and the merged result. Each thread owns its [`Stats`] (no
//! lock, no atomic on the request path); latencies go into HdrHistograms in microseconds,
//! and per-second counts into a vector that grows by one entry a second, so memory stays
//! flat however long the run. [`Stats::merge`] adds them up at the end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::check::Metric;

/// Highest latency recorded: an hour, in µs (larger ones are clamped to it).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits of the histograms (0.1 % resolution, wrk2's choice).
const SIGFIGS: u8 = 3;

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be opened.
    Connect,
    /// The server reset or closed the connection before answering.
    Reset,
    /// No answer within --timeout.
    Timeout,
    /// Reading failed otherwise.
    Read,
    /// Writing failed otherwise.
    Write,
    /// The answer was not HTTP.
    Parse,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Parse,
    ];

    /// Its name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Parse => "parse",
        }
    }
}

/// Counts of one second of the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// Successful (2xx) answers.
    pub ok: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// One thread's counts (and, merged, the run's).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of 2xx answers from the intended send time (= the send time in closed loop).
    pub latency: Histogram<u64>,
    /// The same from the moment the request was written.
    pub uncorrected: Histogram<u64>,
    /// Answers by status code (index = code).
    pub status: Vec<u64>,
    /// Failed requests by kind, in [`ErrorKind::ALL`] order.
    pub errors: [u64; 6],
    /// Requests written in the measured window.
    pub sent: u64,
    /// Of them, written later than their schedule (rate mode).
    pub late: u64,
    /// Scheduled in the window but never written (rate mode, every connection busy).
    pub missed: u64,
    /// Connections opened again after the server closed one.
    pub reconnects: u64,
    /// Per second of the measured window.
    pub seconds: Vec<Second>,
    /// When measuring starts.
    pub from: Instant,
}

impl Stats {
    /// Empty counts for a window that starts at `from`.
    pub fn new(from: Instant) -> Stats {
        let h = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS)
                .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
        };
        Stats {
            latency: h(),
            uncorrected: h(),
            status: vec![0; 600],
            errors: [0; 6],
            sent: 0,
            late: 0,
            missed: 0,
            reconnects: 0,
            seconds: Vec::new(),
            from,
        }
    }

    /// Whether a request meant for `at` counts (it is in the measured window).
    #[inline]
    pub fn counts(&self, at: Instant) -> bool {
        at >= self.from
    }

    fn second(&mut self, now: Instant) -> &mut Second {
        let i = now.saturating_duration_since(self.from).as_secs() as usize;
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        &mut self.seconds[i]
    }

    /// An answer with `status` to a request meant for `intended` and written at `sent`.
    #[inline]
    pub fn answer(&mut self, status: u16, intended: Instant, sent: Instant, now: Instant) {
        if !self.counts(intended) {
            return;
        }
        if let Some(n) = self.status.get_mut(status as usize) {
            *n += 1;
        }
        if (200..300).contains(&status) {
            let us = |d: Duration| (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
            self.latency.saturating_record(us(now - intended));
            self.uncorrected
                .saturating_record(us(now.saturating_duration_since(sent)));
            self.second(now).ok += 1;
        }
    }

    /// Bytes read at `now`.
    #[inline]
    pub fn read(&mut self, bytes: usize, now: Instant) {
        if now >= self.from {
            self.second(now).bytes += bytes as u64;
        }
    }

    /// `n` requests meant for `intended` failed.
    pub fn error(&mut self, kind: ErrorKind, intended: Instant, n: u64) {
        if self.counts(intended) {
            self.errors[kind as usize] += n;
        }
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.uncorrected.add(&other.uncorrected);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.sent += other.sent;
        self.late += other.late;
        self.missed += other.missed;
        self.reconnects += other.reconnects;
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), Second::default());
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.ok += b.ok;
            a.bytes += b.bytes;
        }
    }

    /// Successful answers.
    pub fn ok(&self) -> u64 {
        self.status[200..300].iter().sum()
    }

    /// Answers that are not 2xx.
    pub fn non_2xx(&self) -> u64 {
        self.status.iter().sum::<u64>() - self.ok()
    }

    /// Failed requests, every kind.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Bytes read in the window.
    pub fn bytes(&self) -> u64 {
        self.seconds.iter().map(|s| s.bytes).sum()
    }
}

/// The merged result of one run, with its measured time and the generator's CPU.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The counts.
    pub stats: Stats,
    /// The measured window's length.
    pub elapsed: Duration,
    /// Threads that sent the load.
    pub threads: usize,
    /// CPU the generator used in the window, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// The busiest load thread's CPU, in percent of one core.
    pub busiest_thread: f64,
}

impl Summary {
    /// Successful answers per second over the window.
    pub fn rps(&self) -> f64 {
        per_second(self.stats.ok(), self.elapsed)
    }

    /// The value a condition reads.
    pub fn metric(&self, m: Metric) -> f64 {
        let h = &self.stats.latency;
        match m {
            Metric::Percentile(p) => h.value_at_quantile(p / 100.0) as f64,
            Metric::Mean => h.mean(),
            Metric::Max => h.max() as f64,
            Metric::Rps => self.rps(),
            Metric::Errors => self.stats.error_total() as f64,
            Metric::Non2xx => self.stats.non_2xx() as f64,
            Metric::Late => self.stats.late as f64,
            Metric::Requests => self.stats.ok() as f64,
        }
    }

    /// The generator's threads were busy nearly all the time: it, not the server, set the
    /// pace.
    pub fn generator_bound(&self) -> bool {
        self.busiest_thread >= GENERATOR_BOUND_PERCENT
    }

    /// Per-second counts of the whole seconds of the window (a last partial second would
    /// drag the low percentiles down).
    pub fn whole_seconds(&self) -> &[Second] {
        let whole = (self.elapsed.as_secs() as usize).max(1);
        &self.stats.seconds[..self.stats.seconds.len().min(whole)]
    }
}

/// A load thread busier than this (percent of a core) was the bottleneck: it had no time
/// left to send more.
pub const GENERATOR_BOUND_PERCENT: f64 = 90.0;

/// `n` per second over `d`.
pub fn per_second(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// Mean, standard deviation, and percentiles of a few samples (per-second counts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (population).
    pub stdev: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of `xs`.
    pub fn of(xs: &[f64]) -> Spread {
        if xs.is_empty() {
            return Spread::default();
        }
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Spread {
            mean,
            stdev: var.sqrt(),
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The `p`th percentile (0–100) of `xs` by nearest rank.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The median of `xs`.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_window_and_merges() {
        let t0 = Instant::now();
        let from = t0 + Duration::from_secs(1);
        let mut a = Stats::new(from);
        let mut b = Stats::new(from);
        a.answer(200, t0, t0, from); // warm-up request: not counted
        a.answer(200, from, from, from + Duration::from_millis(20));
        b.answer(500, from, from, from + Duration::from_millis(5));
        b.answer(204, from, from, from + Duration::from_millis(1500));
        b.error(ErrorKind::Reset, from, 2);
        a.merge(&b);
        assert_eq!(a.ok(), 2);
        assert_eq!(a.non_2xx(), 1);
        assert_eq!(a.error_total(), 2);
        assert_eq!(a.errors[ErrorKind::Reset as usize], 2);
        assert_eq!(a.seconds.iter().map(|s| s.ok).collect::<Vec<_>>(), [1, 1]);
        assert!((a.latency.value_at_quantile(0.5) as i64 - 20_000).abs() < 50);
    }

    #[test]
    fn percentiles_and_medians() {
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&xs), 3.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert_eq!(percentile(&xs, 50.0), 3.0);
        assert_eq!(percentile(&xs, 1.0), 1.0);
        assert_eq!(percentile(&xs, 100.0), 5.0);
        let s = Spread::of(&xs);
        assert_eq!((s.mean, s.min, s.max), (3.0, 1.0, 5.0));
    }
}
