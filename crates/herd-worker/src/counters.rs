//! Counters with local batching: [`count`] adds to a map in this process (a lock and a
//! map lookup, no allocation once the key is known, no I/O); a flusher thread sends the
//! sums to herd as `{"herd":"count","key":K,"n":N}` at most every [`FLUSH_EVERY`], so a
//! count per request costs nothing measurable. herd keeps the totals per slot and answers
//! [`stats()`](crate::stats).
//!
//! ```
//! herd_worker::count("requests", 1); // a no-op outside herd
//! herd_worker::flush()?;              // before exiting, so the last counts reach herd
//! # Ok::<(), herd_worker::Error>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, Once};
use std::time::Duration;

use serde_json::json;

use crate::framing::encode;
use crate::Error;

/// Longest time a count waits in this process before it is sent: herd's stats are at most
/// this stale, and a busy worker sends one line per key per interval, not per request.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

struct Pending {
    sums: Mutex<BTreeMap<String, i64>>,
    /// Signalled by the first count after a flush: the flusher's interval starts.
    dirty: Condvar,
}

static PENDING: Pending = Pending {
    sums: Mutex::new(BTreeMap::new()),
    dirty: Condvar::new(),
};

/// Adds `n` (may be negative) to this worker's counter `key` in herd. Batched: sent within
/// [`FLUSH_EVERY`], or at [`flush()`]. A no-op outside herd.
pub fn count(key: &str, n: i64) {
    if !crate::channel::has_channel() {
        return;
    }
    start_flusher();
    let mut sums = PENDING.sums.lock().unwrap_or_else(|p| p.into_inner());
    let was_empty = sums.is_empty();
    match sums.get_mut(key) {
        Some(sum) => *sum = sum.saturating_add(n),
        None => {
            sums.insert(key.to_string(), n);
        }
    }
    drop(sums);
    if was_empty {
        PENDING.dirty.notify_one();
    }
}

/// Sends the batched counts now (call it before exiting). A no-op outside herd.
pub fn flush() -> Result<(), Error> {
    let Some(ch) = crate::channel::get()? else {
        return Ok(());
    };
    let sums = std::mem::take(&mut *PENDING.sums.lock().unwrap_or_else(|p| p.into_inner()));
    let lines = lines(&sums);
    if lines.is_empty() {
        return Ok(());
    }
    ch.write_raw(&lines)
}

/// The messages for `sums`, one line per key with a nonzero sum.
fn lines(sums: &BTreeMap<String, i64>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, n) in sums {
        if *n != 0 {
            out.extend(encode(&json!({"herd": "count", "key": key, "n": n})));
        }
    }
    out
}

fn start_flusher() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        // Without the thread, counts are still sent by flush() and stats().
        let _ = std::thread::Builder::new()
            .name("herd-counters".into())
            .spawn(flusher);
    });
}

fn flusher() {
    loop {
        let sums = PENDING.sums.lock().unwrap_or_else(|p| p.into_inner());
        let sums = PENDING
            .dirty
            .wait_while(sums, |s| s.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        drop(sums);
        // Gather what the next interval brings, then send it all at once.
        std::thread::sleep(FLUSH_EVERY);
        if let Err(Error::ChannelClosed) = flush() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{Decoder, Incoming};

    #[test]
    fn sums_become_herds_count_messages() {
        let mut sums = BTreeMap::new();
        sums.insert("requests".to_string(), 41);
        sums.insert("zero".to_string(), 0);
        let bytes = lines(&sums);
        let mut got = Vec::new();
        Decoder::default().feed(&bytes, |m| got.push(m));
        assert_eq!(
            got,
            vec![Incoming::App(
                json!({"herd": "count", "key": "requests", "n": 41})
            )]
        );
    }
}
