//! What workers say on their channel: readiness, Node cluster requests, and herd's own
//! app messages (counters, stats, messages between workers). See `channel::node_cluster` and
//! `channel::messages` for the formats.

use tracing::{debug, info, warn};

use super::hooks::{self, WorkerRef};
use super::Driver;
use crate::channel::framing::Frame;
use crate::channel::{messages, node_cluster};
use crate::supervisor::{Event, NotifyMsg};

impl Driver {
    /// The worker said something (on its channel or NOTIFY_SOCKET): the first time, an
    /// embedding program hears that it is online.
    ///
    /// Not before the supervisor knows the worker: a datagram kept from before the spawn
    /// result is placed while the `Spawned` event still waits in the queue, and marking the
    /// worker as heard from then would lose its `online` for good (its `listening` came
    /// without one).
    pub(super) fn spoke(&mut self, pid: u32) {
        let Some(observer) = &self.hooks else {
            return;
        };
        let Some((slot, _)) = self.sup.worker_of_pid(pid) else {
            return;
        };
        let Some(link) = self.channels.get_mut(&pid).filter(|l| !l.spoke) else {
            return;
        };
        link.spoke = true;
        observer.event(&hooks::Event::Online(WorkerRef { slot, pid }));
    }

    pub(super) fn on_frame(&mut self, pid: u32, frame: Frame) {
        if !matches!(frame, Frame::Closed | Frame::Unacknowledged { .. }) {
            self.spoke(pid);
        }
        if let Frame::App(value) = &frame {
            if self.app_metrics_message(pid, value) {
                return;
            }
        }
        // A worker that exited is no longer the supervisor's; its last messages still
        // belong to its slot.
        let slot = self
            .sup
            .worker_of_pid(pid)
            .map(|(s, _)| s)
            .or_else(|| self.exited_slots.get(&pid).copied());
        let app = &self.plan.name;
        match frame {
            Frame::Ready => self.queue.push_back(Event::Notify {
                pid,
                msg: NotifyMsg::ReadyMessage,
            }),
            Frame::Accepted { ack, accepted } => self.on_accepted(pid, ack, accepted),
            Frame::Unacknowledged {
                ever_acknowledged: true,
            } => {}
            Frame::Unacknowledged {
                ever_acknowledged: false,
            } => {
                if let Some(link) = self.channels.get_mut(&pid).filter(|l| !l.deaf) {
                    link.deaf = true;
                    warn!(pid, slot, "worker {app} (pid {pid}) does not read connections from its channel: it gets no more. In --balance {} a worker must be a Node cluster worker that listens on herd's port, read connections from NODE_CHANNEL_FD (README \"Handoff\"), or run with --proxy and listen on PORT",
                        self.plan.balance);
                    if let Some(h) = self.handoff.as_mut() {
                        h.invalidate();
                    }
                }
            }
            // Taken by the channel itself.
            Frame::HandleAck => {}
            Frame::Closed => {
                self.open_channels = self.open_channels.saturating_sub(1);
                self.exited_slots.remove(&pid);
                if let Some(link) = self.channels.get_mut(&pid) {
                    link.closed = true;
                    if link.disconnecting {
                        self.signal(pid, self.stop_with(pid).signal);
                    }
                }
                if let Some(h) = self.handoff.as_mut() {
                    h.invalidate();
                }
            }
            Frame::Garbage(why) => {
                warn!(
                    pid,
                    slot,
                    "garbage on the channel of worker {app}:{} (pid {pid}): {why}",
                    slot.map_or("?".to_string(), |s| s.to_string())
                )
            }
            Frame::Internal(value) => {
                if let Some(count) = node_cluster::socket_count(&value) {
                    debug!(
                        pid,
                        count, "worker {app} (pid {pid}) has {count} handed-over connections open"
                    );
                    if let Some(h) = self.handoff.as_mut() {
                        h.on_count(pid, count);
                    }
                    return;
                }
                if node_cluster::sockets_all_closed(&value) {
                    // All closed: nothing left to wait for on the next stop step.
                    let draining = self.channels.get_mut(&pid).is_some_and(|l| {
                        l.sockets_handed = 0;
                        std::mem::take(&mut l.draining_sockets)
                    });
                    if draining {
                        debug!(
                            pid,
                            slot,
                            "worker {app} (pid {pid}): its handed-over connections are closed"
                        );
                        self.stop(pid);
                    }
                    return;
                }
                match node_cluster::parse(&value) {
                    Some(request) => self.on_cluster(pid, slot.unwrap_or(0), request),
                    None if value.get("cmd").and_then(serde_json::Value::as_str)
                        == Some("NODE_HANDLE") =>
                    {
                        // herd reads its channels without taking fds (the kernel closes any that
                        // come), so a worker's handle never arrives: NACK, or Node would hold
                        // back every later message waiting for an answer. It gives up after 3.
                        warn!(pid, slot, "worker {app} (pid {pid}) sent a handle to herd, which takes none: refused");
                        if let Some(link) = self.channels.get(&pid) {
                            link.channel
                                .send(&serde_json::json!({"cmd": "NODE_HANDLE_NACK"}));
                        }
                    }
                    None => {
                        debug!(pid, slot, message = %value, "control message from worker {app} (pid {pid})")
                    }
                }
            }
            Frame::App(value) => match messages::parse(&value) {
                Some(request) => self.on_herd_request(pid, slot.unwrap_or(0), request),
                None if self.hooks.is_some() => {
                    let from = WorkerRef {
                        slot: slot.unwrap_or(0),
                        pid,
                    };
                    let reply = self.hooks.as_ref().and_then(|h| h.message(from, &value));
                    if let (Some(reply), Some(link)) = (reply, self.channels.get(&pid)) {
                        link.channel.send(&reply);
                    }
                }
                None => {
                    debug!(pid, slot, message = %value, "message from worker {app} (pid {pid})")
                }
            },
        }
    }

    /// A Node cluster worker's request (see `channel::node_cluster`).
    fn on_cluster(&mut self, pid: u32, slot: usize, request: node_cluster::Request) {
        let app = self.plan.name.clone();
        let Some(link) = self.channels.get_mut(&pid) else {
            return;
        };
        link.cluster = true;
        let next = link.next_seq();
        let channel = &link.channel;
        match request {
            node_cluster::Request::Online => {
                debug!(pid, slot, "Node cluster worker {app}:{slot} online")
            }
            node_cluster::Request::Accepted { ack, accepted } => {
                self.on_accepted(pid, ack, accepted);
            }
            node_cluster::Request::QueryServer { seq: ask, target } => {
                // Round-robin: the worker gets no socket, herd sends it connections.
                let handed = match (&target, self.handoff.as_ref()) {
                    (node_cluster::Target::Addr(crate::listen::ListenAddr::Tcp(a)), Some(h)) => {
                        self.listeners
                            .index_of_port(a.port())
                            .and_then(|i| h.server(i).map(|s| (i, s.key.clone(), s.local)))
                    }
                    (node_cluster::Target::Addr(crate::listen::ListenAddr::Unix(p)), Some(h)) => {
                        self.listeners
                            .index_of_path(p)
                            .and_then(|i| h.server(i).map(|s| (i, s.key.clone(), s.local)))
                    }
                    _ => None,
                };
                if let Some((index, key, local)) = handed {
                    link.serves.insert(index);
                    link.channel.send(&node_cluster::round_robin_reply(
                        ask,
                        &key,
                        next,
                        local.as_ref(),
                    ));
                    if let Some(h) = self.handoff.as_mut() {
                        h.invalidate();
                    }
                    self.retry_waiting();
                    return;
                }
                let key = node_cluster::key(&target);
                let found = match &target {
                    node_cluster::Target::Addr(addr) => {
                        self.listeners.for_request(slot, addr).map(|(fd, new)| {
                            if new {
                                // The address bound (the port the kernel chose for port 0).
                                let bound = socket2::SockRef::from(&fd)
                                    .local_addr()
                                    .ok()
                                    .and_then(|a| a.as_socket())
                                    .map_or_else(|| addr.to_string(), |a| a.to_string());
                                info!(app = %app, event = "herd.listening_on_demand", addr = %bound, slot,
                                    "listening on {bound} (shared), asked by Node cluster worker {app}:{slot}");
                            }
                            Some(fd)
                        })
                    }
                    node_cluster::Target::Fd(n) => self.listeners.for_fd(slot, *n),
                };
                match found {
                    Ok(Some(fd)) => {
                        link.own_server = true;
                        if let Some(h) = self.handoff.as_mut() {
                            h.invalidate();
                        }
                        link.channel.send_handle(
                            "net.Native",
                            node_cluster::server_reply(ask, &key, next),
                            fd,
                        );
                    }
                    Ok(None) => {
                        warn!(pid, slot, "Node cluster worker {app}:{slot} (pid {pid}) asked to listen on {key}, which herd did not pass it");
                        channel.send(&node_cluster::error_reply(ask, "EBADF", next));
                    }
                    Err(e) => {
                        warn!(
                            pid,
                            slot,
                            "Node cluster worker {app}:{slot} (pid {pid}) asked to listen: {e}"
                        );
                        let errno = match &e {
                            crate::listen::ListenError::InUse { .. } => "EADDRINUSE",
                            crate::listen::ListenError::PermissionDenied { .. } => "EACCES",
                            _ => "EINVAL",
                        };
                        channel.send(&node_cluster::error_reply(ask, errno, next));
                    }
                }
                // A new slot socket (scale up) must be steered around until it is ready.
                self.steered = None;
            }
            node_cluster::Request::Listening => self.queue.push_back(Event::Notify {
                pid,
                msg: NotifyMsg::Listening,
            }),
            node_cluster::Request::Close => debug!(
                pid,
                slot, "Node cluster worker {app}:{slot} closed a server"
            ),
            node_cluster::Request::ExitedAfterDisconnect { seq: ask } => {
                channel.send(&node_cluster::ack(ask, next));
            }
            node_cluster::Request::Other(what) => {
                warn!(
                    pid,
                    slot, "Node cluster worker {app}:{slot} (pid {pid}): {what}"
                )
            }
        }
    }

    /// A herd request from the worker `pid` of `slot`.
    fn on_herd_request(&mut self, pid: u32, slot: usize, request: messages::Request) {
        let app = &self.plan.name;
        match request {
            messages::Request::Count { key, n } => {
                if !self.counters.add(&key, slot, n) {
                    warn!(pid, slot, "worker {app}:{slot} (pid {pid}): counter `{key}` ignored, already {} counters", messages::MAX_COUNTERS);
                }
            }
            messages::Request::Watchdog { trigger } => self.queue.push_back(Event::Notify {
                pid,
                msg: if trigger {
                    NotifyMsg::WatchdogTrigger
                } else {
                    NotifyMsg::Watchdog
                },
            }),
            messages::Request::Stats => {
                if let Some(link) = self.channels.get(&pid) {
                    link.channel.send(&self.counters.stats_reply());
                }
            }
            messages::Request::Send { to, msg } => {
                let targets: Vec<u32> = self
                    .channels
                    .keys()
                    .copied()
                    .filter(|p| match &to {
                        messages::To::All => *p != pid,
                        messages::To::Slot(s) => {
                            self.sup.worker_of_pid(*p).map(|(ws, _)| ws) == Some(*s)
                        }
                    })
                    .collect();
                if targets.is_empty() {
                    debug!(
                        pid,
                        slot, "message from worker {app}:{slot} for {to:?}: no worker there"
                    );
                }
                for p in targets {
                    if let Some(link) = self.channels.get(&p) {
                        link.channel.send(&msg);
                    }
                }
            }
            messages::Request::Invalid(why) => {
                warn!(pid, slot, "worker {app}:{slot} (pid {pid}): {why}")
            }
        }
    }

    /// The counters, in the log, when they changed since the last time.
    pub(super) fn log_counters(&mut self) {
        if self.counters.take_changed() {
            info!(app = %self.plan.name, counters = %self.counters.to_json(), "counters of {}: {}", self.plan.name, self.counters.to_json());
        }
    }
}
