//! herd's own app messages, sent by any worker on its channel as JSON objects with a
//! `"herd"` field (Node: `process.send({herd: "count", key: "requests"})`):
//!
//! | message | effect |
//! |---|---|
//! | `{"herd":"count","key":K,"n":N}` | adds N (default 1, may be negative) to counter K of the sender's slot |
//! | `{"herd":"stats"}` | herd answers `{"herd":"stats","counters":{K:{"total":T,"slots":{"0":…}}}}` |
//! | `{"herd":"send","to":S,"msg":M}` | delivers M to the worker of slot S (a number), or to every other worker with `"to":"all"` |
//! | `{"herd":"watchdog"}` | a heartbeat, as `WATCHDOG=1` on NOTIFY_SOCKET (`--watchdog`; for runtimes without datagram sockets) |
//! | `{"herd":"watchdog","trigger":true}` | the worker says it is hung, as `WATCHDOG=trigger` |
//!
//! Pure parsing and bookkeeping; the driver does the sending.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Who a forwarded message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// The worker of this slot.
    Slot(usize),
    /// Every worker but the sender.
    All,
}

/// A request to herd from a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `{"herd":"count"}`: add `n` to a counter of the sender's slot.
    Count {
        /// Name of the counter.
        key: String,
        /// Amount to add (1 when not given; may be negative).
        n: i64,
    },
    /// `{"herd":"stats"}`: answer with every counter, total and per slot.
    Stats,
    /// `{"herd":"send"}`: forward a message to other workers.
    Send {
        /// Who gets it.
        to: To,
        /// The message, delivered as is.
        msg: Value,
    },
    /// `{"herd":"watchdog"}`: a heartbeat; with `"trigger":true`, the worker says it is hung.
    Watchdog {
        /// `"trigger": true`.
        trigger: bool,
    },
    /// A `herd` message that is malformed or unknown, and why.
    Invalid(String),
}

/// Reads a herd request; `None` for an ordinary app message (no `"herd"` field).
pub fn parse(v: &Value) -> Option<Request> {
    let verb = v.get("herd")?;
    Some(match verb.as_str() {
        Some("count") => match v.get("key").and_then(Value::as_str) {
            Some(key) if !key.is_empty() => match v.get("n") {
                None => Request::Count {
                    key: key.to_string(),
                    n: 1,
                },
                Some(n) => match n.as_i64() {
                    Some(n) => Request::Count {
                        key: key.to_string(),
                        n,
                    },
                    None => Request::Invalid(format!("count: `n` must be an integer, got {n}")),
                },
            },
            _ => Request::Invalid("count: `key` must be a non-empty string".into()),
        },
        Some("stats") => Request::Stats,
        Some("watchdog") => Request::Watchdog {
            trigger: v.get("trigger").and_then(Value::as_bool) == Some(true),
        },
        Some("send") => {
            let to = match v.get("to") {
                Some(Value::String(s)) if s == "all" => Some(To::All),
                Some(n) => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(To::Slot),
                None => None,
            };
            match (to, v.get("msg")) {
                (Some(to), Some(msg)) => Request::Send {
                    to,
                    msg: msg.clone(),
                },
                (None, _) => Request::Invalid("send: `to` must be a slot number or \"all\"".into()),
                (_, None) => Request::Invalid("send: `msg` is missing".into()),
            }
        }
        _ => Request::Invalid(format!("unknown herd message {verb}")),
    })
}

/// Named counters, per slot, kept across worker restarts (a slot's count goes on).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    by_key: BTreeMap<String, BTreeMap<usize, i64>>,
    /// Changed since the last [`Counters::take_changed`].
    changed: bool,
}

/// Most distinct counter names kept: a worker inventing a new key per request must not
/// grow herd's memory without bound.
pub const MAX_COUNTERS: usize = 1024;

impl Counters {
    /// Adds `n` to `key` of `slot`; false (nothing counted) past [`MAX_COUNTERS`] keys.
    pub fn add(&mut self, key: &str, slot: usize, n: i64) -> bool {
        if !self.by_key.contains_key(key) && self.by_key.len() >= MAX_COUNTERS {
            return false;
        }
        let v = self
            .by_key
            .entry(key.to_string())
            .or_default()
            .entry(slot)
            .or_default();
        *v = v.saturating_add(n);
        self.changed = true;
        true
    }

    /// `{K: {"total": T, "slots": {"0": …}}}`.
    /// Every counter: its name, then each slot's value.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<usize, i64>)> {
        self.by_key.iter()
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (key, slots) in &self.by_key {
            let total: i64 = slots.values().fold(0, |a, b| a.saturating_add(*b));
            let per: Map<String, Value> = slots
                .iter()
                .map(|(s, v)| (s.to_string(), json!(v)))
                .collect();
            out.insert(key.clone(), json!({"total": total, "slots": per}));
        }
        Value::Object(out)
    }

    /// The answer to `{"herd":"stats"}`.
    pub fn stats_reply(&self) -> Value {
        json!({"herd": "stats", "counters": self.to_json()})
    }

    /// True once after any change (for the periodic log line).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse(&json!({"type": "request"})), None);
        assert_eq!(
            parse(&json!({"herd": "watchdog"})),
            Some(Request::Watchdog { trigger: false })
        );
        assert_eq!(
            parse(&json!({"herd": "watchdog", "trigger": true})),
            Some(Request::Watchdog { trigger: true })
        );
        assert_eq!(
            parse(&json!({"herd": "count", "key": "requests"})),
            Some(Request::Count {
                key: "requests".into(),
                n: 1
            })
        );
        assert_eq!(
            parse(&json!({"herd": "count", "key": "bytes", "n": -5})),
            Some(Request::Count {
                key: "bytes".into(),
                n: -5
            })
        );
        assert_eq!(parse(&json!({"herd": "stats"})), Some(Request::Stats));
        assert_eq!(
            parse(&json!({"herd": "send", "to": 1, "msg": "hi"})),
            Some(Request::Send {
                to: To::Slot(1),
                msg: json!("hi")
            })
        );
        assert_eq!(
            parse(&json!({"herd": "send", "to": "all", "msg": {"a": 1}})),
            Some(Request::Send {
                to: To::All,
                msg: json!({"a": 1})
            })
        );
        for bad in [
            json!({"herd": "count"}),
            json!({"herd": "count", "key": "k", "n": 1.5}),
            json!({"herd": "send", "to": "everyone", "msg": 1}),
            json!({"herd": "send", "to": 0}),
            json!({"herd": "dance"}),
        ] {
            assert!(matches!(parse(&bad), Some(Request::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn counts_per_slot_with_totals() {
        let mut c = Counters::default();
        assert!(!c.take_changed());
        c.add("requests", 0, 1);
        c.add("requests", 1, 2);
        c.add("requests", 0, 1);
        assert!(c.take_changed());
        assert!(!c.take_changed());
        assert_eq!(
            c.stats_reply(),
            json!({"herd": "stats", "counters": {"requests": {"total": 4, "slots": {"0": 2, "1": 2}}}})
        );
    }

    #[test]
    fn the_number_of_counters_is_bounded() {
        let mut c = Counters::default();
        for i in 0..MAX_COUNTERS {
            assert!(c.add(&format!("k{i}"), 0, 1));
        }
        assert!(!c.add("one-too-many", 0, 1));
        assert!(
            c.add("k0", 0, i64::MAX),
            "existing keys still count, saturating"
        );
    }
}
