//! Machine-readable results: herd's own schema (`herd-bench/1`, documented in
//! docs/bench.md and docs/bench.schema.json; a field is never renamed or removed within a
//! version) and autocannon's JSON result, so autocannon-compare and dashboards built on
//! autocannon read herd bench's runs.

use serde_json::{json, Map, Value};

use hdrhistogram::Histogram;

use super::args::{Load, Pace};
use super::check::Check;
use super::stats::{percentile, ErrorKind, Spread, Summary};

/// The schema's name and version: `herd-bench/<major>`.
pub const SCHEMA: &str = "herd-bench/1";

/// Latency percentiles of a histogram, µs.
fn latency(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p);
    json!({
        "count": h.len(),
        "min": if h.is_empty() { 0 } else { h.min() },
        "mean": round2(h.mean()),
        "stdev": round2(h.stdev()),
        "p50": q(0.5),
        "p90": q(0.9),
        "p97_5": q(0.975),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "p99_99": q(0.9999),
        "max": h.max(),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn spread(xs: &[f64]) -> Value {
    let s = Spread::of(xs);
    json!({
        "mean": round2(s.mean),
        "stdev": round2(s.stdev),
        "min": s.min.max(0.0),
        "p1": percentile(xs, 1.0),
        "p2_5": percentile(xs, 2.5),
        "p50": percentile(xs, 50.0),
        "p97_5": percentile(xs, 97.5),
        "max": s.max.max(0.0),
    })
}

/// The status codes that were answered, `{"200": n}`.
fn statuses(s: &Summary) -> Value {
    let mut m = Map::new();
    for (code, n) in s.stats.status.iter().enumerate().filter(|(_, n)| **n > 0) {
        m.insert(code.to_string(), json!(n));
    }
    Value::Object(m)
}

/// The conditions of --assert with their values.
pub fn checks(s: &Summary, checks: &[Check]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| {
                let v = s.metric(c.metric);
                json!({"expr": c.text, "value": round2(v), "ok": c.holds(v)})
            })
            .collect(),
    )
}

/// One run in `herd-bench/1`, without the schema field (a sweep embeds runs).
pub fn run(load: &Load, s: &Summary) -> Value {
    let secs = s.whole_seconds();
    let oks: Vec<f64> = secs.iter().map(|x| x.ok as f64).collect();
    let bytes: Vec<f64> = secs.iter().map(|x| x.bytes as f64).collect();
    let mut errors = Map::new();
    for k in ErrorKind::ALL {
        errors.insert(k.name().into(), json!(s.stats.errors[k as usize]));
    }
    json!({
        "url": load.target.url,
        "connections": load.connections,
        "threads": s.threads,
        "pipelining": load.pipelining,
        "mode": match load.pace { Pace::Closed => "closed", Pace::Rate(_) => "rate" },
        "rate": match load.pace { Pace::Closed => Value::Null, Pace::Rate(r) => json!(r) },
        "duration_s": round2(s.elapsed.as_secs_f64()),
        "requests": {
            "sent": s.stats.sent,
            "ok": s.stats.ok(),
            "non_2xx": s.stats.non_2xx(),
            "errors": s.stats.error_total(),
            "late": s.stats.late,
            "missed": s.stats.missed,
            "reconnects": s.stats.reconnects,
        },
        "rps": round2(s.rps()),
        "rps_per_second": spread(&oks),
        "bytes": s.stats.bytes(),
        "bytes_per_second": spread(&bytes),
        "latency_us": latency(&s.stats.latency),
        "latency_uncorrected_us": latency(&s.stats.uncorrected),
        "status": statuses(s),
        "errors": errors,
        "generator": {
            "cpu_cores": round2(s.cpu_cores),
            "busiest_thread_percent": round2(s.busiest_thread),
            "bottleneck": s.generator_bound(),
        },
    })
}

/// One run's whole document.
pub fn document(load: &Load, s: &Summary, asserts: &[Check]) -> Value {
    let mut v = run(load, s);
    if let Value::Object(m) = &mut v {
        m.insert("schema".into(), json!(SCHEMA));
        if !asserts.is_empty() {
            m.insert("assert".into(), checks(s, asserts));
        }
    }
    v
}

/// autocannon's percentiles of a histogram, named as it names them (`p2_5`, `p99_9`).
fn autocannon_hist(values: Value, pcts: &[(&str, f64)], get: &dyn Fn(f64) -> f64) -> Value {
    let mut m = match values {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (name, p) in pcts {
        m.insert((*name).into(), json!(get(*p)));
    }
    Value::Object(m)
}

/// autocannon's percentiles (hdr-histogram-percentiles-obj).
const AUTOCANNON_PERCENTILES: [(&str, f64); 15] = [
    ("p0_001", 0.001),
    ("p0_01", 0.01),
    ("p0_1", 0.1),
    ("p1", 1.0),
    ("p2_5", 2.5),
    ("p10", 10.0),
    ("p25", 25.0),
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p97_5", 97.5),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
    ("p99_999", 99.999),
];

/// The run as autocannon's JSON result (its fields and units: latency in milliseconds,
/// requests and throughput as per-second samples).
pub fn autocannon(load: &Load, s: &Summary, started: std::time::SystemTime) -> Value {
    let secs = s.whole_seconds();
    let oks: Vec<f64> = secs.iter().map(|x| x.ok as f64).collect();
    let bytes: Vec<f64> = secs.iter().map(|x| x.bytes as f64).collect();
    let h = &s.stats.latency;
    let ms = |us: f64| round2(us / 1000.0);
    let stat = |mean: f64, stdev: f64, min: f64, max: f64| json!({"average": round2(mean), "mean": round2(mean), "stddev": round2(stdev), "min": min, "max": max});
    let latency = autocannon_hist(
        stat(
            ms(h.mean()),
            ms(h.stdev()),
            ms(if h.is_empty() { 0.0 } else { h.min() as f64 }),
            ms(h.max() as f64),
        ),
        &AUTOCANNON_PERCENTILES,
        &|p| ms(h.value_at_percentile(p) as f64),
    );
    let per_second = |xs: &[f64], total: u64| {
        let sp = Spread::of(xs);
        let mut v = autocannon_hist(
            stat(sp.mean, sp.stdev, sp.min.max(0.0), sp.max.max(0.0)),
            &AUTOCANNON_PERCENTILES,
            &|p| percentile(xs, p),
        );
        v["total"] = json!(total);
        v
    };
    let mut requests = per_second(&oks, s.stats.ok());
    requests["sent"] = json!(s.stats.sent);
    let class = |c: usize| -> u64 { s.stats.status[c * 100..c * 100 + 100].iter().sum() };
    let mut codes = Map::new();
    for (code, n) in s.stats.status.iter().enumerate().filter(|(_, n)| **n > 0) {
        codes.insert(code.to_string(), json!({"count": n}));
    }
    let finished = started + s.elapsed;
    let e = |k: ErrorKind| s.stats.errors[k as usize];
    json!({
        "title": Value::Null,
        "url": load.target.url,
        "socketPath": Value::Null,
        "connections": load.connections,
        "sampleInt": 1000,
        "pipelining": load.pipelining,
        "workers": s.threads,
        "duration": round2(s.elapsed.as_secs_f64()),
        "samples": secs.len(),
        "start": rfc3339(started),
        "finish": rfc3339(finished),
        "errors": s.stats.error_total(),
        "timeouts": e(ErrorKind::Timeout),
        "mismatches": 0,
        "non2xx": s.stats.non_2xx(),
        "resets": e(ErrorKind::Reset),
        "1xx": class(1),
        "2xx": class(2),
        "3xx": class(3),
        "4xx": class(4),
        "5xx": class(5),
        "statusCodeStats": codes,
        "latency": latency,
        "requests": requests,
        "throughput": per_second(&bytes, s.stats.bytes()),
    })
}

/// `2026-12-05T14:12:29.123Z`.
fn rfc3339(t: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}
