//! Flow control of the handles (fds) sent to one worker, without I/O: how many may be in
//! flight ([`HANDLE_WINDOW`]), which one an ACK or NACK answers, when one is sent again
//! (a NACK, at most [`HANDLE_TRIES`] sends), when one is given up ([`HANDLE_ACK_TIMEOUT`])
//! and whether the worker ever acknowledged any (a "deaf" worker never did).
//!
//! [`HandleFlow`] holds the handles (generic `H`: herd's line and fd in
//! [`super::worker`], integers in the tests) and takes `now` from its caller. It must not
//! send, read or sleep: the writer task does, and carries out what it decides.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sends of one handle before giving up (Node's own limit).
pub const HANDLE_TRIES: u32 = 3;
/// Why 5 s: a live Node worker ACKs within its next event-loop turn; one that has not after
/// this long is stuck, and the handle must not wait forever in herd.
pub const HANDLE_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Handles sent before the first of them is answered. Node's own sender keeps one in
/// flight and so waits a round trip through the worker's event loop per connection; its
/// receiver takes any number, because the kernel never merges two SCM_RIGHTS messages into
/// one read (Node's channel code relies on it), so answers come back in order.
pub const HANDLE_WINDOW: usize = 16;

/// The worker's answer to a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `NODE_HANDLE_ACK`: it has the fd.
    Ack,
    /// `NODE_HANDLE_NACK`: send it again.
    Nack,
}

/// A handle to send again; give it back with [`HandleFlow::resent`] once it is.
#[derive(Debug)]
pub struct Retry<H> {
    handle: H,
    tries: u32,
}

impl<H> Retry<H> {
    /// The handle to send again.
    pub fn handle(&self) -> &H {
        &self.handle
    }
}

/// What to do after an answer.
#[derive(Debug)]
pub enum Answered<H> {
    /// Acknowledged: herd's copy can be closed.
    Done(H),
    /// Refused: send it again.
    Resend(Retry<H>),
    /// Refused [`HANDLE_TRIES`] times: close it.
    GaveUp(H),
    /// No handle was in flight.
    Nothing,
}

/// A handle not answered within [`HANDLE_ACK_TIMEOUT`]: close it.
#[derive(Debug)]
pub struct Expired<H> {
    /// The handle.
    pub handle: H,
    /// Whether the worker ever acknowledged a handle (if not, it does not read them).
    pub ever_acknowledged: bool,
}

#[derive(Debug)]
struct InFlight<H> {
    handle: H,
    tries: u32,
    sent: Instant,
}

/// The handles of one worker's channel sent and not yet answered.
#[derive(Debug)]
pub struct HandleFlow<H> {
    /// Answers come in the order the handles were sent: the front is the one answered.
    flight: VecDeque<InFlight<H>>,
    acknowledged_any: bool,
}

impl<H> Default for HandleFlow<H> {
    fn default() -> Self {
        HandleFlow {
            flight: VecDeque::with_capacity(HANDLE_WINDOW),
            acknowledged_any: false,
        }
    }
}

impl<H> HandleFlow<H> {
    /// Whether another handle may be sent now.
    pub fn can_send(&self) -> bool {
        self.flight.len() < HANDLE_WINDOW
    }

    /// Whether every handle sent is answered (or given up).
    pub fn is_idle(&self) -> bool {
        self.flight.is_empty()
    }

    /// `handle` was sent (the first time) at `now`.
    pub fn sent(&mut self, handle: H, now: Instant) {
        self.flight.push_back(InFlight {
            handle,
            tries: 1,
            sent: now,
        });
    }

    /// A handle of [`Answered::Resend`] was sent again at `now`.
    pub fn resent(&mut self, retry: Retry<H>, now: Instant) {
        self.flight.push_back(InFlight {
            handle: retry.handle,
            tries: retry.tries,
            sent: now,
        });
    }

    /// The worker answered the oldest handle in flight.
    pub fn answered(&mut self, reply: Reply) -> Answered<H> {
        let Some(f) = self.flight.pop_front() else {
            return Answered::Nothing;
        };
        match reply {
            Reply::Ack => {
                self.acknowledged_any = true;
                Answered::Done(f.handle)
            }
            Reply::Nack if f.tries >= HANDLE_TRIES => Answered::GaveUp(f.handle),
            Reply::Nack => Answered::Resend(Retry {
                handle: f.handle,
                tries: f.tries + 1,
            }),
        }
    }

    /// When the oldest handle in flight is given up if still unanswered.
    pub fn deadline(&self) -> Option<Instant> {
        self.flight.front().map(|f| f.sent + HANDLE_ACK_TIMEOUT)
    }

    /// The oldest handle, if its time ran out at `now`.
    pub fn expired(&mut self, now: Instant) -> Option<Expired<H>> {
        if self.deadline().is_some_and(|at| at <= now) {
            let f = self.flight.pop_front()?;
            return Some(Expired {
                handle: f.handle,
                ever_acknowledged: self.acknowledged_any,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn at_most_sixteen_in_flight_and_an_ack_frees_one() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        for h in 0..HANDLE_WINDOW as u32 {
            assert!(f.can_send());
            f.sent(h, t0);
        }
        assert!(!f.can_send());
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(0)));
        assert!(f.can_send());
    }

    #[test]
    fn answers_go_to_handles_in_the_order_sent() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        f.sent(1, t0);
        f.sent(2, t0);
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(1)));
        assert!(!f.is_idle());
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(2)));
        assert!(f.is_idle());
        assert!(matches!(f.answered(Reply::Ack), Answered::Nothing));
    }

    #[test]
    fn a_nack_sends_again_and_the_third_refusal_gives_up() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        f.sent(7, t0);
        for n in 1..HANDLE_TRIES {
            let Answered::Resend(retry) = f.answered(Reply::Nack) else {
                panic!("send {n} refused: send again");
            };
            assert_eq!(*retry.handle(), 7);
            f.resent(retry, t0 + ms(u64::from(n)));
        }
        assert!(matches!(f.answered(Reply::Nack), Answered::GaveUp(7)));
        assert!(f.is_idle());
    }

    #[test]
    fn a_resent_handle_goes_behind_those_sent_meanwhile() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        f.sent(1, t0);
        f.sent(2, t0);
        let Answered::Resend(retry) = f.answered(Reply::Nack) else {
            panic!("send again");
        };
        f.resent(retry, t0 + ms(1));
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(2)));
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(1)));
    }

    #[test]
    fn an_unanswered_handle_expires_after_five_seconds() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        assert_eq!(f.deadline(), None);
        f.sent(1, t0);
        f.sent(2, t0 + ms(100));
        assert_eq!(f.deadline(), Some(t0 + HANDLE_ACK_TIMEOUT));
        assert!(f.expired(t0 + HANDLE_ACK_TIMEOUT - ms(1)).is_none());
        let e = f.expired(t0 + HANDLE_ACK_TIMEOUT).expect("expired");
        assert_eq!(e.handle, 1);
        assert_eq!(f.deadline(), Some(t0 + ms(100) + HANDLE_ACK_TIMEOUT));
    }

    #[test]
    fn a_resend_restarts_the_timer() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        f.sent(1, t0);
        let Answered::Resend(retry) = f.answered(Reply::Nack) else {
            panic!("send again");
        };
        f.resent(retry, t0 + ms(4000));
        assert!(f.expired(t0 + HANDLE_ACK_TIMEOUT).is_none());
        assert_eq!(f.deadline(), Some(t0 + ms(4000) + HANDLE_ACK_TIMEOUT));
    }

    #[test]
    fn a_worker_that_never_acknowledged_is_deaf() {
        let t0 = Instant::now();
        let mut f = HandleFlow::default();
        f.sent(1, t0);
        let e = f.expired(t0 + HANDLE_ACK_TIMEOUT).expect("expired");
        assert!(!e.ever_acknowledged, "never acknowledged: deaf");
        f.sent(2, t0);
        assert!(matches!(f.answered(Reply::Ack), Answered::Done(2)));
        f.sent(3, t0);
        let e = f.expired(t0 + HANDLE_ACK_TIMEOUT).expect("expired");
        assert!(e.ever_acknowledged, "acknowledged one: slow, not deaf");
    }
}
