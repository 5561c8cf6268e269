//! herd's log as lifecycle events: each JSON line of herd's stderr with an `event` field
//! is an [`Event`], and [`Herd`]'s waits find them by their stable name and fields
//! (`src/observe/lifecycle.rs` lists them), never by the English sentence. The workers'
//! output lines are JSON objects too; [`worker_text`] gives their text.

use std::time::{Instant, SystemTime};

use super::{Herd, Out, T};

impl Herd {
    /// Waits for the first event `name` at stderr index >= `from` that satisfies `pred`;
    /// returns its index and the event.
    pub fn wait_event_from(
        &self,
        from: usize,
        name: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> (usize, Event) {
        self.wait_for(
            T,
            || format!("the event {name:?} (from line {from})"),
            |st| {
                st.events.iter().enumerate().skip(from).find_map(|(i, e)| {
                    e.as_ref()
                        .filter(|e| e.name() == name && pred(e))
                        .map(|e| (i, e.clone()))
                })
            },
        )
    }

    /// Waits for the first event `name` that satisfies `pred`.
    pub fn wait_event_where(&self, name: &str, pred: impl Fn(&Event) -> bool) -> Event {
        self.wait_event_from(0, name, pred).1
    }

    /// Waits for the first event `name`.
    pub fn wait_event(&self, name: &str) -> Event {
        self.wait_event_from(0, name, |_| true).1
    }

    /// Waits for the `n`th (1-based, over the whole run) event `name` satisfying `pred`.
    pub fn wait_nth_event(&self, n: usize, name: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let mut from = 0;
        let mut last = None;
        for _ in 1..=n {
            let (i, e) = self.wait_event_from(from, name, &pred);
            from = i + 1;
            last = Some(e);
        }
        last.unwrap_or_else(|| self.fail("wait_nth_event with n = 0"))
    }

    /// The events `name` at stderr index >= `from` so far.
    pub fn events_from(&self, from: usize, name: &str) -> Vec<Event> {
        let st = self.shared.state.lock().unwrap();
        st.events
            .iter()
            .skip(from)
            .flatten()
            .filter(|e| e.name() == name)
            .cloned()
            .collect()
    }

    /// The events `name` so far, with their stderr index.
    pub fn indexed_events(&self, name: &str) -> Vec<(usize, Event)> {
        let st = self.shared.state.lock().unwrap();
        st.events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.clone().filter(|e| e.name() == name)?)))
            .collect()
    }

    /// The events `name` so far.
    pub fn events(&self, name: &str) -> Vec<Event> {
        self.events_from(0, name)
    }

    /// Number of events `name` so far that satisfy `pred`.
    pub fn count_event(&self, name: &str, pred: impl Fn(&Event) -> bool) -> usize {
        self.events(name).iter().filter(|e| pred(e)).count()
    }

    /// The text of the workers' output lines on `out` (herd's JSON objects decoded; a line
    /// that is not one, e.g. in text mode, as it is).
    pub fn output(&self, out: Out) -> Vec<String> {
        self.lines(out).iter().map(|l| worker_text(l)).collect()
    }
}

/// The text of a workers' output line: the `line` of herd's JSON object, or the line as
/// it is if it is not one (text mode).
pub fn worker_text(line: &str) -> String {
    json(line)
        .and_then(|v| Some(v.get("line")?.as_str()?.to_string()))
        .unwrap_or_else(|| line.to_string())
}

/// A line of herd's JSON log as an object (None for a line that is not JSON).
pub fn json(line: &str) -> Option<serde_json::Value> {
    line.starts_with('{')
        .then(|| serde_json::from_str(line).ok())
        .flatten()
}

/// A lifecycle record of herd's JSON log: the line's object, with its `event` name.
#[derive(Clone)]
pub struct Event(pub serde_json::Value);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Event {
    /// The event of a log line: a JSON object with an `event` field.
    pub fn parse(line: &str) -> Option<Event> {
        if !line.starts_with('{') {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v.get("event")?.as_str()?;
        Some(Event(v))
    }

    pub fn name(&self) -> &str {
        self.0["event"].as_str().unwrap_or_default()
    }

    /// A number field; panics (naming the event) if there is none.
    pub fn u64(&self, key: &str) -> u64 {
        self.0[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no number {key:?} in the event {self:?}"))
    }

    /// A text field; panics (naming the event) if there is none.
    pub fn str(&self, key: &str) -> &str {
        self.0[key]
            .as_str()
            .unwrap_or_else(|| panic!("no text {key:?} in the event {self:?}"))
    }

    /// A boolean field; panics (naming the event) if there is none.
    pub fn bool(&self, key: &str) -> bool {
        self.0[key]
            .as_bool()
            .unwrap_or_else(|| panic!("no boolean {key:?} in the event {self:?}"))
    }

    pub fn slot(&self) -> usize {
        self.u64("slot") as usize
    }

    pub fn pid(&self) -> u32 {
        self.u64("pid") as u32
    }

    pub fn app(&self) -> &str {
        self.str("app")
    }

    /// When herd wrote the record (its `timestamp`, RFC 3339 in UTC), on the test's
    /// monotonic clock: comparable with the `Instant`s a test takes around what it does.
    pub fn at(&self) -> Instant {
        let ts = self.str("timestamp");
        let t = humantime::parse_rfc3339(ts)
            .unwrap_or_else(|e| panic!("bad timestamp {ts:?} in the event {self:?}: {e}"));
        instant_of(t)
    }
}

/// The `Instant` of a wall-clock time (both clocks read now; a clock step between the
/// two readings is far below what any test measures).
pub fn instant_of(t: SystemTime) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match wall.duration_since(t) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(ahead) => now + ahead.duration(),
    }
}
