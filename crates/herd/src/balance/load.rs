//! `--balance least-conn`: how many handed-over connections a worker still has open, as far
//! as herd can know.
//!
//! herd gives a connection's fd away, so it cannot see it close. A worker that keeps count
//! tells it: Node does for every socket received with a `key` (its `NODE_SOCKET_GET_COUNT`
//! → `NODE_SOCKET_COUNT` exchange, which any language can answer). The answer is as old as
//! the question, so connections handed over after the question was sent are added to it.

/// The open-connection estimate of one worker.
#[derive(Debug, Default, Clone)]
pub struct OpenEstimate {
    /// Connections handed over, ever.
    handed: u64,
    /// The worker's last answer…
    reported: u64,
    /// …which counted the connections handed over before this many.
    counted_up_to: u64,
    /// `handed` when the question now in flight was sent.
    asked_at: Option<u64>,
}

impl OpenEstimate {
    /// A connection was handed over.
    pub fn handed(&mut self) {
        self.handed += 1;
    }

    /// Whether to ask now: true, and the question counts as sent, when none is in flight
    /// and the worker has had a connection (Node only answers once it has been sent a
    /// socket: the question would stay unanswered and block every later one).
    pub fn ask(&mut self) -> bool {
        if self.asked_at.is_some() || self.handed == 0 {
            return false;
        }
        self.asked_at = Some(self.handed);
        true
    }

    /// The worker answered `count` open connections.
    pub fn answered(&mut self, count: u64) {
        if let Some(at) = self.asked_at.take() {
            self.reported = count;
            self.counted_up_to = at;
        }
    }

    /// Open connections now, as far as herd knows.
    pub fn open(&self) -> u64 {
        self.reported + (self.handed - self.counted_up_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_connections_count_until_the_worker_answers() {
        let mut e = OpenEstimate::default();
        assert!(!e.ask(), "nothing handed over yet: Node would not answer");
        e.handed();
        e.handed();
        assert_eq!(e.open(), 2);
        assert!(e.ask());
        assert!(!e.ask(), "one question at a time");
        e.handed(); // after the question: not in the answer
        e.answered(1); // one of the first two closed
        assert_eq!(e.open(), 2);
        assert!(e.ask());
        e.answered(0);
        assert_eq!(e.open(), 0);
    }

    #[test]
    fn an_answer_nobody_asked_for_is_ignored() {
        let mut e = OpenEstimate::default();
        e.handed();
        e.answered(7);
        assert_eq!(e.open(), 1);
    }
}
