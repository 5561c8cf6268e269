//! The handoff decisions with simulated time: connections are integers, workers are
//! candidates the test lists, and no socket is opened.

use super::*;
use std::net::Ipv4Addr;

/// A connection as the tests see it: a number, and what the dispatcher asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct T {
    id: u32,
    listener: usize,
    client: Option<IpAddr>,
    since: Instant,
    tries: u8,
}

impl Incoming for T {
    fn listener(&self) -> usize {
        self.listener
    }
    fn client(&self) -> Option<IpAddr> {
        self.client
    }
    fn since(&self) -> Instant {
        self.since
    }
    fn tries(&self) -> u8 {
        self.tries
    }
}

const WAIT: Duration = Duration::from_secs(2);

fn at(t0: Instant, id: u32) -> T {
    T {
        id,
        listener: 0,
        client: None,
        since: t0,
        tries: 0,
    }
}

fn from(t0: Instant, id: u32, ip: u32) -> T {
    T {
        client: Some(IpAddr::V4(Ipv4Addr::from(ip))),
        ..at(t0, id)
    }
}

fn worker(slot: usize, via: Via) -> Candidate {
    Candidate {
        slot,
        pid: 100 + slot as u32,
        via,
    }
}

fn dispatcher(mode: Mode, workers: &[Candidate]) -> Dispatcher<T> {
    let mut d = Dispatcher::new(mode, WAIT);
    d.set_candidates(vec![workers.to_vec()]);
    d
}

/// The pid a connection went to, or a panic naming what happened instead.
fn pid_of(d: Decision<T>) -> u32 {
    match d {
        Decision::HandTo { to, .. } => to.pid,
        other => panic!("not handed to a worker: {other:?}"),
    }
}

fn no_relays(_: u32) -> u64 {
    0
}

#[test]
fn round_robin_takes_turns_among_the_candidates_only() {
    let t0 = Instant::now();
    let ws = [worker(0, Via::Socket), worker(2, Via::Socket)];
    let mut d = dispatcher(Mode::RoundRobin, &ws);
    let pids: Vec<u32> = (0..4)
        .map(|i| pid_of(d.connection(at(t0, i), t0, 3, no_relays)))
        .collect();
    // Slot 1 is stopping or not ready: the driver did not list it, it never gets one.
    assert_eq!(pids, [100, 102, 100, 102]);
}

#[test]
fn round_robin_skips_a_worker_that_has_not_answered_its_newconn() {
    let t0 = Instant::now();
    let ws = [worker(0, Via::NewConn), worker(1, Via::NewConn)];
    let mut d = dispatcher(Mode::RoundRobin, &ws);
    d.sent_newconn(100, 1, at(t0, 9));
    for i in 0..3 {
        assert_eq!(pid_of(d.connection(at(t0, i), t0, 2, no_relays)), 101);
    }
    assert_eq!(d.answered(100, 1, true), Answer::Accepted(at(t0, 9)));
    assert_eq!(d.answered(100, 1, true), Answer::Unknown, "answered once");
}

#[test]
fn no_worker_ready_waits_and_says_so_once() {
    let t0 = Instant::now();
    let mut d = dispatcher(Mode::RoundRobin, &[]);
    assert_eq!(
        d.connection(at(t0, 1), t0, 2, no_relays),
        Decision::WaitNobodyTakes
    );
    assert!(d.has_waiting());
    assert!(
        !d.warn_nobody_takes(false),
        "no worker is ready: nothing to say"
    );
    assert!(d.warn_nobody_takes(true));
    assert!(!d.warn_nobody_takes(true), "said once");
    // A worker becomes ready: the waiting connection goes to it, and the warning is reset.
    d.set_candidates(vec![vec![worker(0, Via::Socket)]]);
    let waiting = d.take_waiting();
    assert_eq!(waiting, [at(t0, 1)]);
    assert!(!d.has_waiting());
    assert_eq!(pid_of(d.connection(waiting[0], t0, 2, no_relays)), 100);
    assert!(d.warn_nobody_takes(true));
}

#[test]
fn the_waiting_line_caps_at_4096() {
    let t0 = Instant::now();
    let mut d = dispatcher(Mode::RoundRobin, &[]);
    for i in 0..WAITING_MAX as u32 {
        assert!(matches!(
            d.connection(at(t0, i), t0, 1, no_relays),
            Decision::WaitNobodyTakes
        ));
    }
    assert_eq!(
        d.connection(at(t0, 9999), t0, 1, no_relays),
        Decision::Drop {
            conn: at(t0, 9999),
            reason: DropReason::QueueFull
        }
    );
    assert_eq!(d.take_waiting().len(), WAITING_MAX);
}

#[test]
fn least_conn_picks_the_fewest_and_ties_take_turns() {
    let t0 = Instant::now();
    let ws = [
        worker(0, Via::Socket),
        worker(1, Via::Socket),
        worker(2, Via::Socket),
    ];
    let mut d = dispatcher(Mode::LeastConn, &ws);
    // Equal: in turn, one each.
    let mut pids: Vec<u32> = (0..3)
        .map(|i| pid_of(d.connection(at(t0, i), t0, 3, no_relays)))
        .collect();
    for &pid in &pids {
        d.sent_socket(pid);
    }
    pids.sort_unstable();
    assert_eq!(pids, [100, 101, 102]);
    // Workers 100 and 102 closed theirs (answers to the questions due).
    assert!(
        d.due_questions().is_empty(),
        "asked already with the first connection"
    );
    d.open_count(100, 0);
    d.open_count(102, 0);
    // 101 still has one open: the next two go to the others, one each.
    let mut next: Vec<u32> = (0..2)
        .map(|i| {
            let pid = pid_of(d.connection(at(t0, 10 + i), t0, 3, no_relays));
            d.sent_socket(pid);
            pid
        })
        .collect();
    next.sort_unstable();
    assert_eq!(next, [100, 102]);
}

#[test]
fn least_conn_counts_relayed_connections_through_the_relays() {
    let t0 = Instant::now();
    let ws = [worker(0, Via::Proxy(7000)), worker(1, Via::Proxy(7001))];
    let mut d = dispatcher(Mode::LeastConn, &ws);
    for i in 0..3 {
        let d = d.connection(at(t0, i), t0, 2, |pid| u64::from(pid == 100) * 5);
        assert_eq!(pid_of(d), 101);
    }
}

#[test]
fn a_relayed_connection_is_closed_after_three_tries() {
    let t0 = Instant::now();
    let mut d = dispatcher(Mode::RoundRobin, &[worker(0, Via::Proxy(7000))]);
    let mut c = at(t0, 1);
    c.tries = RELAY_TRIES - 1;
    assert_eq!(pid_of(d.connection(c, t0, 1, no_relays)), 100);
    c.tries = RELAY_TRIES;
    assert_eq!(
        d.connection(c, t0, 1, no_relays),
        Decision::Drop {
            conn: c,
            reason: DropReason::TooManyTries
        }
    );
}

#[test]
fn sticky_sends_a_client_to_its_slot_every_time() {
    let t0 = Instant::now();
    let ws: Vec<Candidate> = (0..4).map(|s| worker(s, Via::Socket)).collect();
    let mut d = dispatcher(Mode::Sticky, &ws);
    for ip in 1..50 {
        let first = pid_of(d.connection(from(t0, 1, ip), t0, 4, no_relays));
        let key = sticky::client_key(IpAddr::V4(Ipv4Addr::from(ip)));
        assert_eq!(Some((first - 100) as usize), sticky::best(key, 4, |_| true));
        for i in 0..3 {
            assert_eq!(
                pid_of(d.connection(from(t0, i, ip), t0, 4, no_relays)),
                first
            );
        }
    }
}

#[test]
fn sticky_waits_for_a_restarting_slot_then_takes_the_next_choice() {
    let t0 = Instant::now();
    let ip = 0x0a00_0001;
    let key = sticky::client_key(IpAddr::V4(Ipv4Addr::from(ip)));
    let own = sticky::best(key, 3, |_| true).unwrap();
    let next = sticky::best(key, 3, |s| s != own).unwrap();
    // The client's own slot is restarting: not a candidate.
    let ws: Vec<Candidate> = (0..3)
        .filter(|s| *s != own)
        .map(|s| worker(s, Via::Socket))
        .collect();
    let mut d = dispatcher(Mode::Sticky, &ws);
    assert_eq!(
        d.connection(from(t0, 1, ip), t0, 3, no_relays),
        Decision::Wait
    );
    assert_eq!(
        d.wake(),
        Some(t0 + WAIT),
        "the timer is the end of the wait"
    );
    // A later connection waits too, but the wake stays the earliest.
    let t1 = t0 + Duration::from_millis(500);
    assert_eq!(
        d.connection(from(t1, 2, ip), t1, 3, no_relays),
        Decision::Wait
    );
    assert_eq!(d.wake(), Some(t0 + WAIT));
    // Still within the wait: it waits again.
    let waiting = d.take_waiting();
    assert_eq!(d.wake(), None);
    let almost = t0 + WAIT - Duration::from_micros(1);
    assert_eq!(
        d.connection(waiting[0], almost, 3, no_relays),
        Decision::Wait
    );
    // The wait is over: its next choice among the ready slots, not any slot.
    let over = t0 + WAIT;
    assert_eq!(
        pid_of(d.connection(waiting[0], over, 3, no_relays)),
        100 + next as u32
    );
}

#[test]
fn sticky_takes_its_own_worker_back_as_soon_as_it_is_ready() {
    let t0 = Instant::now();
    let ip = 0x0a00_0002;
    let key = sticky::client_key(IpAddr::V4(Ipv4Addr::from(ip)));
    let own = sticky::best(key, 2, |_| true).unwrap();
    let mut d = dispatcher(Mode::Sticky, &[worker(1 - own, Via::Socket)]);
    assert_eq!(
        d.connection(from(t0, 1, ip), t0, 2, no_relays),
        Decision::Wait
    );
    d.set_candidates(vec![vec![worker(0, Via::Socket), worker(1, Via::Socket)]]);
    let waiting = d.take_waiting();
    let later = t0 + Duration::from_millis(10);
    assert_eq!(
        pid_of(d.connection(waiting[0], later, 2, no_relays)),
        100 + own as u32
    );
}

#[test]
fn unix_socket_clients_take_turns_in_sticky() {
    let t0 = Instant::now();
    let ws = [worker(0, Via::Socket), worker(1, Via::Socket)];
    let mut d = dispatcher(Mode::Sticky, &ws);
    let pids: Vec<u32> = (0..4)
        .map(|i| pid_of(d.connection(at(t0, i), t0, 2, no_relays)))
        .collect();
    assert_eq!(pids, [100, 101, 100, 101]);
}

#[test]
fn a_refused_newconn_comes_back_and_a_gone_worker_gives_back_its_pending() {
    let t0 = Instant::now();
    let ws = [worker(0, Via::NewConn), worker(1, Via::NewConn)];
    let mut d = dispatcher(Mode::RoundRobin, &ws);
    d.sent_newconn(100, 1, at(t0, 1));
    d.sent_newconn(100, 2, at(t0, 2));
    assert!(!d.is_stale());
    assert_eq!(d.answered(100, 1, false), Answer::Refused(at(t0, 1)));
    assert!(d.is_stale(), "who serves the listener changed");
    let gone = d.worker_gone(100).expect("one still pending");
    assert_eq!(gone.into_values().collect::<Vec<_>>(), [at(t0, 2)]);
    assert_eq!(d.answered(100, 2, true), Answer::Unknown);
}

#[test]
fn a_connection_of_a_listener_without_handoff_is_closed() {
    let t0 = Instant::now();
    let mut d = dispatcher(Mode::RoundRobin, &[worker(0, Via::Socket)]);
    let c = T {
        listener: 3,
        ..at(t0, 1)
    };
    assert_eq!(
        d.connection(c, t0, 1, no_relays),
        Decision::Drop {
            conn: c,
            reason: DropReason::UnknownListener
        }
    );
}

/// One step of a random life of the dispatcher.
#[derive(Debug, Clone)]
enum Step {
    /// These workers (bits of a 4-slot mask) take connections now, each by this way; the
    /// others stop (a reload, a crash).
    Serving(u8, bool),
    /// A connection, from this client (sticky) or none.
    Conn(Option<u32>),
    /// Time passes (sticky waits end).
    Later(u64),
    /// The waiting line is given out again (the driver does it when workers change).
    Redispatch,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..16, any::<bool>()).prop_map(|(m, s)| Step::Serving(m, s)),
        proptest::option::of(0u32..64).prop_map(Step::Conn),
        (0u64..3000).prop_map(Step::Later),
        Just(Step::Redispatch),
    ]
}

proptest::proptest! {
    /// In every mode, whatever the sequence of workers starting and stopping, connections
    /// and time: a connection is handed only to a worker that takes connections at that
    /// moment, never to one that stopped (is stopping, crashed, or was replaced).
    #[test]
    fn a_connection_goes_only_to_a_serving_worker(
        mode in proptest::prop_oneof![
            proptest::strategy::Just(Mode::RoundRobin),
            proptest::strategy::Just(Mode::LeastConn),
            proptest::strategy::Just(Mode::Sticky),
        ],
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut d: Dispatcher<T> = Dispatcher::new(mode, WAIT);
        let mut serving: Vec<Candidate> = Vec::new();
        d.set_candidates(vec![serving.clone()]);
        let mut id = 0;
        let check = |decision: Decision<T>, serving: &[Candidate]| -> Result<(), proptest::test_runner::TestCaseError> {
            if let Decision::HandTo { to, .. } = decision {
                proptest::prop_assert!(serving.contains(&to), "handed to {to:?}; serving {serving:?}");
            }
            Ok(())
        };
        for s in steps {
            match s {
                Step::Serving(mask, sockets) => {
                    let via = if sockets { Via::Socket } else { Via::NewConn };
                    serving = (0..4).filter(|b| mask & (1 << b) != 0).map(|slot| worker(slot, via)).collect();
                    d.invalidate();
                    d.set_candidates(vec![serving.clone()]);
                }
                Step::Conn(client) => {
                    id += 1;
                    let conn = match client {
                        Some(ip) => from(now, id, ip),
                        None => at(now, id),
                    };
                    check(d.connection(conn, now, 4, no_relays), &serving)?;
                }
                Step::Later(ms) => now += Duration::from_millis(ms),
                Step::Redispatch => {
                    for conn in d.take_waiting() {
                        check(d.connection(conn, now, 4, no_relays), &serving)?;
                    }
                }
            }
        }
    }
}
