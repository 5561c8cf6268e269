//! The app's own metrics, as herd gathers them from its workers: metric families with
//! their samples ([`Family`]), read from prom-client's cluster answer ([`from_prom_client`])
//! or from a worker's own `/metrics` text ([`from_text`]), merged across workers with
//! prom-client's aggregation rules ([`aggregate`]) or by labelling each worker's series
//! ([`label_all`]), and written in the Prometheus text format ([`encode`]). Pure: no I/O.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value;

/// One metric family: its name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family's name (`http_requests_total` as prom-client names it).
    pub name: String,
    /// Its help text.
    pub help: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// prom-client's `aggregator`: `sum` (the default), `first`, `min`, `max`, `average`,
    /// `omit`.
    pub aggregator: String,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// One sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name when it is not the family's (`x_bucket`, `x_sum`, `x_count`).
    pub name: Option<String>,
    /// Its labels, in the order they came.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (no `:` for labels).
pub fn valid_name(name: &str, label: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (!label && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// The families of one worker's `prom-client:getMetricsRes` answer (`metrics`: one array
/// per registry of `getMetricsAsJSON()` objects). A family with an invalid name or label
/// is left out, and said in the errors.
pub fn from_prom_client(answer: &Value) -> Result<(Vec<Family>, Vec<String>), String> {
    if let Some(e) = answer.get("error").and_then(Value::as_str) {
        return Err(format!("prom-client answered an error: {e}"));
    }
    let registries = answer
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or("no `metrics` array in the answer")?;
    let mut families = Vec::new();
    let mut errors = Vec::new();
    for metric in registries.iter().filter_map(Value::as_array).flatten() {
        match family_of(metric) {
            Ok(f) => families.push(f),
            Err(e) => errors.push(e),
        }
    }
    Ok((families, errors))
}

fn family_of(m: &Value) -> Result<Family, String> {
    let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
    if !valid_name(name, false) {
        return Err(format!("metric name {name:?} is not a Prometheus name"));
    }
    let mut samples = Vec::new();
    for v in m
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = match v.get("value") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            // JSON has no infinities: prom-client's come as null or strings.
            Some(Value::String(s)) => parse_value(s).unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        let mut labels = Vec::new();
        if let Some(obj) = v.get("labels").and_then(Value::as_object) {
            for (k, lv) in obj {
                if !valid_name(k, true) {
                    return Err(format!(
                        "metric {name}: label {k:?} is not a Prometheus name"
                    ));
                }
                let text = match lv {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                labels.push((k.clone(), text));
            }
        }
        let sample_name = v
            .get("metricName")
            .and_then(Value::as_str)
            .filter(|n| *n != name)
            .map(str::to_string);
        if let Some(n) = &sample_name {
            if !valid_name(n, false) {
                return Err(format!(
                    "metric {name}: sample name {n:?} is not a Prometheus name"
                ));
            }
        }
        samples.push(Sample {
            name: sample_name,
            labels,
            value,
        });
    }
    Ok(Family {
        name: name.to_string(),
        help: m
            .get("help")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind: m
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("untyped")
            .to_string(),
        aggregator: m
            .get("aggregator")
            .and_then(Value::as_str)
            .unwrap_or("sum")
            .to_string(),
        samples,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "Infinity" => Some(f64::INFINITY),
        "-Inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        "NaN" | "Nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A sample's own name and its labels, sorted: what makes two samples one series.
type SeriesKey = (Option<String>, Vec<(String, String)>);

/// A metric's labels, in order.
type Labels = Vec<(String, String)>;

/// The workers' families merged as prom-client's `AggregatorRegistry.aggregate` does: by
/// family name (the first worker's help, type and aggregator), then by sample name and
/// label set, each group reduced by the family's aggregator. An unknown aggregator leaves
/// the family out, with an error.
pub fn aggregate(workers: Vec<Vec<Family>>) -> (Vec<Family>, Vec<String>) {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: HashMap<String, Vec<Family>> = HashMap::new();
    for f in workers.into_iter().flatten() {
        if !by_name.contains_key(&f.name) {
            order.push(f.name.clone());
        }
        by_name.entry(f.name.clone()).or_default().push(f);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in order {
        let families = by_name.remove(&name).unwrap_or_default();
        let first = &families[0];
        let reduce: fn(&[f64]) -> f64 = match first.aggregator.as_str() {
            "sum" => |v| v.iter().sum(),
            "first" => |v| v[0],
            "min" => |v| v.iter().copied().fold(f64::INFINITY, f64::min),
            "max" => |v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "average" => |v| v.iter().sum::<f64>() / v.len() as f64,
            "omit" => continue,
            other => {
                errors.push(format!("metric {name}: unknown aggregator {other:?}"));
                continue;
            }
        };
        // Groups in the order they first appear, as prom-client's Grouper keeps them.
        let mut keys: Vec<SeriesKey> = Vec::new();
        let mut values: HashMap<SeriesKey, Vec<f64>> = HashMap::new();
        for s in families.iter().flat_map(|f| &f.samples) {
            let mut sorted = s.labels.clone();
            sorted.sort();
            let key = (s.name.clone(), sorted);
            let entry = values.entry(key.clone()).or_default();
            if entry.is_empty() {
                keys.push(key);
            }
            entry.push(s.value);
        }
        let samples = keys
            .into_iter()
            .map(|key| {
                let v = reduce(&values[&key]);
                let (sample_name, labels) = key;
                Sample {
                    name: sample_name,
                    labels,
                    value: v,
                }
            })
            .collect();
        out.push(Family {
            samples,
            ..first.clone()
        });
    }
    (out, errors)
}

/// Puts `labels` in front of every sample's own (a label the sample has already keeps the
/// sample's value, which herd's would shadow).
pub fn label_all(families: &mut [Family], labels: &[(&str, String)]) {
    for s in families.iter_mut().flat_map(|f| f.samples.iter_mut()) {
        let own = std::mem::take(&mut s.labels);
        let mut merged: Vec<(String, String)> = labels
            .iter()
            .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        merged.extend(own);
        s.labels = merged;
    }
}

/// Families of the same name (from several apps or workers) as one: the first one's help
/// and type, every sample. A family whose type differs from the first's is left out, with
/// an error.
pub fn merge(families: Vec<Family>) -> (Vec<Family>, Vec<String>) {
    let mut out: Vec<Family> = Vec::new();
    let mut errors = Vec::new();
    for f in families {
        match out.iter_mut().find(|o| o.name == f.name) {
            Some(o) if o.kind == f.kind => o.samples.extend(f.samples),
            Some(o) => errors.push(format!(
                "metric {} is a {} in one place and a {} in another: the {} left out",
                f.name, o.kind, f.kind, f.kind
            )),
            None => out.push(f),
        }
    }
    (out, errors)
}

/// The Prometheus text format (0.0.4) of `families`.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape(&f.help, false));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for s in &f.samples {
            out.push_str(s.name.as_deref().unwrap_or(&f.name));
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v, true));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", value_text(s.value));
        }
    }
    out
}

fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A worker's own exposition in the Prometheus text format (what prometheus_client and
/// most libraries serve, and the samples of OpenMetrics text), read into families: `# HELP`
/// and `# TYPE` lines, samples `name{labels} value [timestamp]`. Timestamps, exemplars and
/// other comments are dropped; a line that is not a sample is an error (the whole answer
/// is refused: half an exposition would be a wrong one).
pub fn from_text(text: &str) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), help) => {
                    family_named(&mut families, name).help = help
                        .unwrap_or("")
                        .replace("\\n", "\n")
                        .replace("\\\\", "\\");
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    family_named(&mut families, name).kind = kind.trim().to_string();
                }
                _ => {}
            }
            continue;
        }
        let (name, labels, rest) = sample_parts(line).map_err(at)?;
        let value = rest
            .split_whitespace()
            .next()
            .and_then(parse_value)
            .ok_or_else(|| at(format!("no value in {line:?}")))?;
        let family = owner(&families, &name);
        let f = family_named(&mut families, &family);
        f.samples.push(Sample {
            name: (name != family).then_some(name),
            labels,
            value,
        });
    }
    for f in &mut families {
        if f.kind.is_empty() {
            f.kind = "untyped".into();
        }
    }
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

/// The family a sample belongs to: the one named like it, or one it is a `_bucket`,
/// `_sum`, `_count`, `_total` or `_created` of.
fn owner(families: &[Family], sample: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families.iter().any(|f| f.name == base) {
                return base.to_string();
            }
        }
    }
    sample.to_string()
}

fn family_named<'a>(families: &'a mut Vec<Family>, name: &str) -> &'a mut Family {
    if let Some(i) = families.iter().position(|f| f.name == name) {
        return &mut families[i];
    }
    families.push(Family {
        name: name.to_string(),
        help: String::new(),
        kind: String::new(),
        aggregator: "sum".into(),
        samples: Vec::new(),
    });
    families.last_mut().expect("just pushed")
}

/// `name{a="x",b="y"} rest` → (name, labels, rest).
fn sample_parts(line: &str) -> Result<(String, Labels, &str), String> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| format!("not a sample: {line:?}"))?;
    let name = &line[..end];
    if !valid_name(name, false) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(mut l) = rest.strip_prefix('{') {
        loop {
            l = l.trim_start_matches([' ', ',']);
            if let Some(after) = l.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = l
                .find('=')
                .ok_or_else(|| format!("a label without `=` in {line:?}"))?;
            let key = l[..eq].trim();
            if !valid_name(key, true) {
                return Err(format!("{key:?} is not a label name"));
            }
            let after = l[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("an unquoted label value in {line:?}"))?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("an unfinished label value in {line:?}")),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("an unfinished label value in {line:?}")),
                }
            };
            labels.push((key.to_string(), value));
            l = &after[close + 1..];
        }
    }
    Ok((name.to_string(), labels, rest))
}

#[cfg(test)]
#[path = "families_tests.rs"]
mod tests;
