//! `--assert 'p99<20ms,errors=0,rps>5000'` and `--slo 'p99<10ms'`: conditions on a run's
//! result. Parsing is here (every error names the token at fault); the values they compare
//! come from [`super::stats::Summary::metric`].

use std::fmt;

/// What a condition reads of the result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (0–100), microseconds, from the intended send time.
    Percentile(f64),
    /// Mean latency, µs.
    Mean,
    /// Largest latency, µs.
    Max,
    /// Successful answers per second.
    Rps,
    /// Failed requests, every kind.
    Errors,
    /// Answers whose status is not 2xx.
    Non2xx,
    /// Requests sent later than their schedule said (rate mode).
    Late,
    /// Successful answers in all.
    Requests,
}

impl Metric {
    /// A latency, compared with a duration.
    pub fn is_latency(self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Mean | Metric::Max)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=` or `==`
    Eq,
}

/// One condition, e.g. `p99<20ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// As written.
    pub text: String,
    /// What it reads.
    pub metric: Metric,
    /// How it compares.
    pub op: Op,
    /// With what (latencies in µs).
    pub value: f64,
}

impl Check {
    /// Whether `actual` meets it.
    pub fn holds(&self, actual: f64) -> bool {
        match self.op {
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
            Op::Eq => (actual - self.value).abs() < 1e-9,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A condition that does not parse: the token and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No comparison in it.
    #[error("`{0}` has no comparison: expected e.g. p99<20ms, errors=0, rps>5000")]
    NoOp(String),
    /// The left side.
    #[error("unknown metric `{metric}` in `{text}`: expected p50, p90, p99, p99.9 (any pN), mean, max, rps, errors, non2xx, late or requests")]
    Metric {
        /// The metric as written.
        metric: String,
        /// The whole condition.
        text: String,
    },
    /// The right side.
    #[error("`{value}` in `{text}` is not {expected}")]
    Value {
        /// The value as written.
        value: String,
        /// The whole condition.
        text: String,
        /// What would fit.
        expected: &'static str,
    },
    /// --slo takes latencies and errors only.
    #[error("`{0}` cannot be an objective of --find-max: use latencies (p99<10ms) or errors")]
    NotAnObjective(String),
    /// Nothing at all.
    #[error("empty expression")]
    Empty,
}

fn metric(name: &str) -> Option<Metric> {
    Some(match name {
        "mean" | "avg" => Metric::Mean,
        "max" => Metric::Max,
        "rps" => Metric::Rps,
        "errors" => Metric::Errors,
        "non2xx" => Metric::Non2xx,
        "late" => Metric::Late,
        "requests" => Metric::Requests,
        _ => {
            let p: f64 = name.strip_prefix('p')?.parse().ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            Metric::Percentile(p)
        }
    })
}

/// `20ms`, `1.5s`, `800us`; a bare number is milliseconds (as autocannon prints them).
fn latency_us(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        (v, 1e3)
    };
    let x: f64 = num.parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x * scale)
}

/// `5000`, `5k`, `1.2M`.
fn count(v: &str) -> Option<f64> {
    let (num, scale) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1e3),
        b'M' => (&v[..v.len() - 1], 1e6),
        _ => (v, 1.0),
    };
    let x: f64 = num.parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x * scale)
}

fn one(text: &str) -> Result<Check, CheckError> {
    let at = text
        .find(['<', '>', '='])
        .ok_or_else(|| CheckError::NoOp(text.into()))?;
    let (name, rest) = text.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix("==") {
        (Op::Eq, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else {
        (Op::Eq, &rest[1..])
    };
    let (name, value) = (name.trim(), value.trim());
    let metric = metric(name).ok_or_else(|| CheckError::Metric {
        metric: name.into(),
        text: text.into(),
    })?;
    let (parsed, expected) = if metric.is_latency() {
        (latency_us(value), "a latency (20ms, 1.5s, 800us)")
    } else {
        (count(value), "a number (5000, 5k)")
    };
    let value_err = || CheckError::Value {
        value: value.into(),
        text: text.into(),
        expected,
    };
    Ok(Check {
        text: text.into(),
        metric,
        op,
        value: parsed.ok_or_else(value_err)?,
    })
}

/// Comma-separated conditions.
pub fn parse(expr: &str) -> Result<Vec<Check>, CheckError> {
    let checks = expr
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(one)
        .collect::<Result<Vec<_>, _>>()?;
    if checks.is_empty() {
        return Err(CheckError::Empty);
    }
    Ok(checks)
}

/// An objective for --find-max: latencies and error counts only (a rate is what it finds).
pub fn parse_slo(expr: &str) -> Result<Vec<Check>, CheckError> {
    let checks = parse(expr)?;
    if let Some(c) = checks
        .iter()
        .find(|c| !(c.metric.is_latency() || matches!(c.metric, Metric::Errors | Metric::Non2xx)))
    {
        return Err(CheckError::NotAnObjective(c.text.clone()));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_conditions() {
        let c = parse("p99<20ms, errors=0,rps>=5k,p99.9<=1.5s,max<800us,mean<3").unwrap();
        assert_eq!(c[0].metric, Metric::Percentile(99.0));
        assert_eq!((c[0].op, c[0].value), (Op::Lt, 20_000.0));
        assert_eq!(
            (c[1].metric, c[1].op, c[1].value),
            (Metric::Errors, Op::Eq, 0.0)
        );
        assert_eq!(
            (c[2].metric, c[2].op, c[2].value),
            (Metric::Rps, Op::Ge, 5000.0)
        );
        assert_eq!((c[3].metric, c[3].value), (Metric::Percentile(99.9), 1.5e6));
        assert_eq!(c[4].value, 800.0);
        assert_eq!(c[5].value, 3000.0);
        assert!(c[0].holds(19_999.0) && !c[0].holds(20_000.0));
        assert!(c[1].holds(0.0) && !c[1].holds(1.0));
    }

    #[test]
    fn errors_name_the_token() {
        let e = parse("p99<20ms,p98x<3ms").unwrap_err().to_string();
        assert!(e.contains("`p98x`"), "{e}");
        let e = parse("p99<fast").unwrap_err().to_string();
        assert!(e.contains("`fast` in `p99<fast`"), "{e}");
        let e = parse("rps 5000").unwrap_err().to_string();
        assert!(e.contains("`rps 5000` has no comparison"), "{e}");
        let e = parse("rps>5x").unwrap_err().to_string();
        assert!(e.contains("`5x`"), "{e}");
        assert_eq!(parse(" , "), Err(CheckError::Empty));
        assert!(matches!(
            parse_slo("rps>3"),
            Err(CheckError::NotAnObjective(_))
        ));
        assert!(parse_slo("p99<10ms,errors=0").is_ok());
    }
}
