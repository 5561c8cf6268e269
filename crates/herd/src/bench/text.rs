//! The result for people, laid out as autocannon's (a latency table, a req/s and bytes/s
//! table, a closing line), plus what autocannon leaves out: p99.9, p99.99, the status
//! codes, errors by kind, the schedule's late and missed requests, and the generator's own
//! CPU with a plain sentence when it was the bottleneck.

use std::fmt::Write as _;

use super::args::{Load, Pace};
use super::stats::{percentile, ErrorKind, Spread, Summary};

/// `12345.6` → `12.3k`, `1234567` → `1.23M`.
pub fn count(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Bytes with their unit.
pub fn bytes(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} GB", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} kB", x / 1e3)
    } else {
        format!("{x:.0} B")
    }
}

/// Microseconds as milliseconds with two decimals (autocannon's unit).
pub fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

/// A box-drawn table.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = width.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let row = |cells: &[String]| {
        let parts: Vec<String> = width
            .iter()
            .zip(cells)
            .map(|(w, c)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("│{}│\n", parts.join("│"))
    };
    let mut out = line("┌", "┬", "┐");
    out += &row(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out += &line("├", "┼", "┤");
    for r in rows {
        out += &row(r);
    }
    out += &line("└", "┴", "┘");
    out
}

/// The first lines: what is loaded, and how.
pub fn header(load: &Load, threads: usize) -> String {
    let what = match (load.duration, load.amount) {
        (Some(d), _) => format!("{}s test", d.as_secs_f64()),
        (None, Some(a)) => format!("{a} requests"),
        (None, None) => "test".into(),
    };
    let pace = match load.pace {
        Pace::Closed => format!("closed loop, pipelining {}", load.pipelining),
        Pace::Rate(r) => format!("fixed rate {} req/s", count(r)),
    };
    format!(
        "Running {what} @ {}\n{} connections, {threads} threads, {pace}\n",
        load.target.url, load.connections
    )
}

/// The whole report of one run.
pub fn report(load: &Load, s: &Summary) -> String {
    let mut out = header(load, s.threads);
    out.push('\n');
    let h = &s.stats.latency;
    let q = |p: f64| ms(h.value_at_quantile(p) as f64);
    out += &table(
        &[
            "Stat", "2.5%", "50%", "97.5%", "99%", "99.9%", "99.99%", "Avg", "Stdev", "Max",
        ],
        &[vec![
            "Latency".into(),
            q(0.025),
            q(0.5),
            q(0.975),
            q(0.99),
            q(0.999),
            q(0.9999),
            ms(h.mean()),
            ms(h.stdev()),
            ms(h.max() as f64),
        ]],
    );
    let secs = s.whole_seconds();
    let oks: Vec<f64> = secs.iter().map(|x| x.ok as f64).collect();
    let bs: Vec<f64> = secs.iter().map(|x| x.bytes as f64).collect();
    let spread_row = |name: &str, xs: &[f64], f: &dyn Fn(f64) -> String| {
        let sp = Spread::of(xs);
        vec![
            name.to_string(),
            f(percentile(xs, 1.0)),
            f(percentile(xs, 2.5)),
            f(percentile(xs, 50.0)),
            f(percentile(xs, 97.5)),
            f(sp.mean),
            f(sp.stdev),
            f(sp.min),
        ]
    };
    out += &table(
        &["Stat", "1%", "2.5%", "50%", "97.5%", "Avg", "Stdev", "Min"],
        &[
            spread_row("Req/Sec", &oks, &|x| format!("{x:.0}")),
            spread_row("Bytes/Sec", &bs, &|x| bytes(x)),
        ],
    );
    let _ = writeln!(
        out,
        "\nReq/Bytes counts sampled once per second; latency and req/s are of 2xx answers only.\n# of samples: {}\n",
        secs.len()
    );
    if let Pace::Rate(r) = load.pace {
        let u = &s.stats.uncorrected;
        let _ = writeln!(
            out,
            "Latency counts from each request's intended send time (corrected for coordinated omission); from the actual send: p50 {}, p99 {}, max {}.",
            ms(u.value_at_quantile(0.5) as f64),
            ms(u.value_at_quantile(0.99) as f64),
            ms(u.max() as f64)
        );
        let _ = writeln!(
            out,
            "Schedule: {} req/s asked, {} sent; {} sent late (their connection was busy when they were due), {} never sent (still due at the end).",
            count(r),
            s.stats.sent,
            s.stats.late,
            s.stats.missed
        );
    }
    let codes: Vec<String> = s
        .stats
        .status
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    let _ = writeln!(
        out,
        "Status codes: {}",
        if codes.is_empty() {
            "none".into()
        } else {
            codes.join(", ")
        }
    );
    let _ = writeln!(out, "Errors: {}", errors_line(s));
    let non = s.stats.non_2xx();
    let _ = writeln!(
        out,
        "{} requests in {:.2}s, {} read{}",
        count(s.stats.ok() as f64),
        s.elapsed.as_secs_f64(),
        bytes(s.stats.bytes() as f64),
        if non > 0 {
            format!(", {non} non-2xx answers (not counted in req/s)")
        } else {
            String::new()
        }
    );
    out += &generator_line(s);
    out
}

/// `none`, or `reset 3, timeout 1`.
pub fn errors_line(s: &Summary) -> String {
    let parts: Vec<String> = ErrorKind::ALL
        .iter()
        .filter(|k| s.stats.errors[**k as usize] > 0)
        .map(|k| format!("{} {}", k.name(), s.stats.errors[*k as usize]))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The generator's CPU, and whether it was the bottleneck.
pub fn generator_line(s: &Summary) -> String {
    let mut out = format!(
        "Generator: {:.2} cores over {} threads, busiest thread {:.0} % of a core.\n",
        s.cpu_cores, s.threads, s.busiest_thread
    );
    if s.generator_bound() {
        out += "The generator, not the server, was the bottleneck: its busiest thread had no time left. Give it more threads (-t) or CPUs, or pipeline (-p), before reading this as the server's limit.\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(
            t,
            "┌─────┬────┐\n│ a   │ bb │\n├─────┼────┤\n│ xxx │ y  │\n└─────┴────┘\n"
        );
        assert_eq!(count(123456.0), "123.5k");
        assert_eq!(count(1234567.0), "1.23M");
        assert_eq!(ms(20_150.0), "20.15 ms");
    }
}
