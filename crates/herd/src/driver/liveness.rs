//! `--watchdog` for Node programs with no code change. A Node process started as a cluster
//! worker (herd sets `NODE_UNIQUE_ID`) answers Node's own `newconn` message from its event
//! loop: `{cmd: "NODE_CLUSTER", act: "newconn", key, seq}` with a handle attached gets
//! `{ack: seq, accepted}` back, and a handle for a `key` no server of the worker has is
//! refused and closed (Node's `lib/internal/cluster/child.js`, `onconnection`). So herd sends
//! one such message with a throwaway socket and a key no server can have; the answer is a
//! heartbeat, and its round trip is the worker's event-loop lag. A blocked loop (`while
//! (true) {}`, a long synchronous job) answers nothing, and the watchdog replaces it.
//!
//! Only workers that spoke Node's cluster protocol are asked (any other program would get
//! an fd it does not expect), one question at a time: a worker that has not answered gets
//! no second one.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Driver;
use crate::supervisor::{Event, NotifyMsg};

/// The `key` of the question: not the address of any server (Node's keys are
/// `address:port:addressType:fd` or a pipe path).
const KEY: &str = "\"herd:liveness\"";

/// The fewest questions per watchdog period: a blocked loop is seen within about a
/// quarter of the period after it blocks.
const PER_PERIOD: u32 = 4;

/// What herd asked a worker and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Question {
    seq: u64,
    sent: Instant,
}

/// How often to ask, with `--watchdog` `period`.
pub(super) fn interval(period: Duration) -> tokio::time::Interval {
    let every = (period / PER_PERIOD).max(Duration::from_millis(25));
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

impl Driver {
    /// Asks every Node cluster worker that has no question pending.
    pub(super) fn ask_liveness(&mut self) {
        let key: Arc<str> = KEY.into();
        for link in self.channels.values_mut() {
            if !link.cluster || link.closed || link.liveness.is_some() {
                continue;
            }
            let Ok((ours, theirs)) = std::os::unix::net::UnixStream::pair() else {
                continue;
            };
            drop(ours);
            let seq = link.next_seq();
            if link
                .channel
                .send_newconn(&key, seq, OwnedFd::from(theirs))
                .is_ok()
            {
                link.liveness = Some(Question {
                    seq,
                    sent: Instant::now(),
                });
            }
        }
    }

    /// A `newconn` answer: true if it answered herd's liveness question (a heartbeat).
    pub(super) fn liveness_answer(&mut self, pid: u32, ack: u64) -> bool {
        let Some(link) = self.channels.get_mut(&pid) else {
            return false;
        };
        match link.liveness {
            Some(q) if q.seq == ack => {
                link.liveness = None;
                let lag = q.sent.elapsed();
                link.loop_lag = Some(lag);
                debug!(app = %self.plan.name, pid, lag_us = lag.as_micros() as u64,
                    "Node worker (pid {pid}) answered the liveness question");
                self.queue.push_back(Event::Notify {
                    pid,
                    msg: NotifyMsg::Watchdog,
                });
                true
            }
            _ => false,
        }
    }
}
