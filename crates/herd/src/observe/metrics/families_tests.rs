use serde_json::json;

use super::*;

/// What prom-client 15's `getMetricsAsJSON()` gives for a counter, a histogram and gauges
/// with each aggregator, as one worker's answer.
fn answer(requests: f64, temp: f64) -> Value {
    json!({
        "type": "prom-client:getMetricsRes",
        "requestId": 3,
        "metrics": [[
            {"help": "Requests", "name": "http_requests_total", "type": "counter", "aggregator": "sum",
             "values": [{"value": requests, "labels": {"route": "/", "code": 200}},
                        {"value": 1, "labels": {"route": "/x\"y", "code": 404}}]},
            {"help": "Latency", "name": "latency_seconds", "type": "histogram", "aggregator": "sum",
             "values": [{"value": 1, "labels": {"le": 0.1}, "metricName": "latency_seconds_bucket"},
                        {"value": 2, "labels": {"le": "+Inf"}, "metricName": "latency_seconds_bucket"},
                        {"value": 0.3, "labels": {}, "metricName": "latency_seconds_sum"},
                        {"value": 2, "labels": {}, "metricName": "latency_seconds_count"}]},
            {"help": "Temp", "name": "temp", "type": "gauge", "aggregator": "max", "values": [{"value": temp, "labels": {}}]},
            {"help": "Avg", "name": "avg", "type": "gauge", "aggregator": "average", "values": [{"value": temp, "labels": {}}]},
            {"help": "Start", "name": "start", "type": "gauge", "aggregator": "first", "values": [{"value": temp, "labels": {}}]},
            {"help": "Hidden", "name": "hidden", "type": "gauge", "aggregator": "omit", "values": [{"value": 1, "labels": {}}]}
        ]]
    })
}

fn value_of(families: &[Family], name: &str, sample: Option<&str>, labels: &[(&str, &str)]) -> f64 {
    let f = families.iter().find(|f| f.name == name).expect(name);
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    f.samples
        .iter()
        .find(|s| {
            let mut l = s.labels.clone();
            l.sort();
            s.name.as_deref() == sample && l == want
        })
        .unwrap_or_else(|| panic!("{name} {sample:?} {labels:?} in {f:?}"))
        .value
}

#[test]
fn prom_client_answers_are_aggregated_by_their_aggregators() {
    let (a, e1) = from_prom_client(&answer(5.0, 30.0)).unwrap();
    let (b, e2) = from_prom_client(&answer(7.0, 40.0)).unwrap();
    assert!(e1.is_empty() && e2.is_empty());
    let (all, errors) = aggregate(vec![a, b]);
    assert!(errors.is_empty(), "{errors:?}");
    let requests = value_of(
        &all,
        "http_requests_total",
        None,
        &[("route", "/"), ("code", "200")],
    );
    assert_eq!(requests, 12.0);
    let bucket = value_of(
        &all,
        "latency_seconds",
        Some("latency_seconds_bucket"),
        &[("le", "+Inf")],
    );
    assert_eq!(bucket, 4.0);
    assert_eq!(value_of(&all, "temp", None, &[]), 40.0);
    assert_eq!(value_of(&all, "avg", None, &[]), 35.0);
    assert_eq!(value_of(&all, "start", None, &[]), 30.0);
    assert!(
        !all.iter().any(|f| f.name == "hidden"),
        "omit leaves it out"
    );
    let text = encode(&all);
    assert!(
        text.contains("# TYPE http_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("http_requests_total{code=\"404\",route=\"/x\\\"y\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("latency_seconds_bucket{le=\"0.1\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("latency_seconds_sum 0.6\n"), "{text}");
}

#[test]
fn bad_names_and_aggregators_are_errors_not_panics() {
    let bad = json!({"metrics": [[
        {"name": "ok_metric", "help": "", "type": "gauge", "values": [{"value": 1, "labels": {}}]},
        {"name": "bad-name", "help": "", "type": "gauge", "values": []},
        {"name": "bad_label", "help": "", "type": "gauge", "values": [{"value": 1, "labels": {"a b": "x"}}]},
        {"name": "odd", "help": "", "type": "gauge", "aggregator": "median", "values": [{"value": 1, "labels": {}}]}
    ]]});
    let (families, errors) = from_prom_client(&bad).unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let (all, errors) = aggregate(vec![families]);
    assert_eq!(
        errors,
        vec!["metric odd: unknown aggregator \"median\"".to_string()]
    );
    assert_eq!(all.len(), 1);
    assert!(from_prom_client(&json!({"error": "boom"})).is_err());
    assert!(from_prom_client(&json!({"metrics": 3})).is_err());
}

/// What Python's prometheus_client serves (a counter with `_total` and `_created`, a
/// histogram, an escaped label), labelled with the worker's slot and merged.
#[test]
fn worker_expositions_are_read_labelled_and_merged() {
    let text = "# HELP requests_total Requests\n# TYPE requests_total counter\nrequests_total{path=\"/a\\\"b\"} 3.0\n\
# HELP requests_created Requests\n# TYPE requests_created gauge\nrequests_created{path=\"/\"} 1.7e9\n\
# HELP lat Latency\n# TYPE lat histogram\nlat_bucket{le=\"0.5\"} 1.0\nlat_bucket{le=\"+Inf\"} 2.0\nlat_count 2.0\nlat_sum 0.7\n";
    let mut zero = from_text(text).unwrap();
    let mut one = from_text(text).unwrap();
    label_all(&mut zero, &[("app", "py".into()), ("worker", "0".into())]);
    label_all(&mut one, &[("app", "py".into()), ("worker", "1".into())]);
    let (merged, errors) = merge(zero.into_iter().chain(one).collect());
    assert!(errors.is_empty());
    let out = encode(&merged);
    assert_eq!(
        out.matches("# TYPE requests_total counter").count(),
        1,
        "{out}"
    );
    assert!(
        out.contains("requests_total{app=\"py\",worker=\"1\",path=\"/a\\\"b\"} 3\n"),
        "{out}"
    );
    assert!(
        out.contains("lat_bucket{app=\"py\",worker=\"0\",le=\"+Inf\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("lat_sum{app=\"py\",worker=\"1\"} 0.7\n"),
        "{out}"
    );
    for garbage in ["hello world", "x{a=b} 1", "x{a=\"b} 1", "9x 1", "x"] {
        assert!(from_text(garbage).is_err(), "{garbage:?}");
    }
    let (_, errors) = merge(vec![
        Family {
            name: "m".into(),
            help: String::new(),
            kind: "gauge".into(),
            aggregator: "sum".into(),
            samples: vec![],
        },
        Family {
            name: "m".into(),
            help: String::new(),
            kind: "counter".into(),
            aggregator: "sum".into(),
            samples: vec![],
        },
    ]);
    assert_eq!(errors.len(), 1);
}
