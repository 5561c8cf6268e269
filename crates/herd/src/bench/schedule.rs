//! The open-loop schedule of `-R`: when each request of a connection is meant to be sent.
//! The rate is spread evenly over the connections, each with its own offset, so that the
//! requests of all of them together are evenly spaced: request `i` of connection `k` (of
//! `c`) is due at `start + (k + i·c) / rate`. Computed from the start every time, so it
//! never drifts. Pure: the connection asks, the clock is its own.

use std::time::{Duration, Instant};

/// One connection's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    conn: u64,
    conns: u64,
    next: u64,
}

impl Schedule {
    /// Connection `conn` of `conns`, at `rate` requests per second in all, from `start`.
    pub fn new(start: Instant, rate: f64, conn: usize, conns: usize) -> Schedule {
        Schedule {
            start,
            rate,
            conn: conn as u64,
            conns: conns.max(1) as u64,
            next: 0,
        }
    }

    fn at(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64((self.conn + i * self.conns) as f64 / self.rate)
    }

    /// When the next request is due.
    pub fn due(&self) -> Instant {
        self.at(self.next)
    }

    /// The next request was sent (or given up).
    pub fn advance(&mut self) {
        self.next += 1;
    }

    /// The first index due at or after `t`.
    fn index_at(&self, t: Instant) -> u64 {
        let x = t.saturating_duration_since(self.start).as_secs_f64() * self.rate;
        // Less a nanosecond's worth: 0.07 s × 100/s is 7.000000000000001, still index 7.
        let i = ((x - self.conn as f64) / self.conns as f64 - 1e-9).ceil();
        if i <= 0.0 {
            0
        } else {
            i as u64
        }
    }

    /// Requests due in `[from, until)` that were not sent: the run ended first.
    pub fn unsent(&self, from: Instant, until: Instant) -> u64 {
        let first = self.next.max(self.index_at(from));
        self.index_at(until).saturating_sub(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        let t0 = Instant::now();
        // 1000/s over 4 connections: every 1 ms in all, every 4 ms per connection.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|k| {
                let mut s = Schedule::new(t0, 1000.0, k, 4);
                (0..3)
                    .map(|_| {
                        let d = s.due() - t0;
                        s.advance();
                        d
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        let ms: Vec<u128> = all.iter().map(|d| d.as_micros()).collect();
        assert_eq!(ms, (0..12).map(|i| i * 1000).collect::<Vec<_>>());
    }

    #[test]
    fn counts_what_was_never_sent() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0, 0, 1); // every 10 ms
        for _ in 0..5 {
            s.advance();
        }
        // Due in [0, 100ms): 10; sent 5.
        assert_eq!(s.unsent(t0, t0 + Duration::from_millis(100)), 5);
        // A warm-up of 70 ms: due in [70, 100): 3, none of them sent.
        assert_eq!(
            s.unsent(
                t0 + Duration::from_millis(70),
                t0 + Duration::from_millis(100)
            ),
            3
        );
    }
}
