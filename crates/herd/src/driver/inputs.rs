//! The main loop's inputs, one by one: spawn results, reaped exits, frames and datagrams
//! of workers, ticks and timers, each turned into supervisor events or handed to the part
//! of the driver that owns it.

use tracing::{debug, warn};

use super::link::Link;
use super::spawn::SpawnResult;
use super::{Driver, Input, UNPLACED_MAX};
use crate::channel::notify::Datagram;
use crate::channel::worker::Channel;
use crate::output::Stream;
use crate::supervisor::{Event, NotifyMsg};
use nix::unistd::Pid;

impl Driver {
    pub(super) fn handle(&mut self, input: Input) {
        match input {
            Input::AppRequest(c) => self.control(c),
            Input::Spawned(SpawnResult { worker, result }) => {
                let pending = self.spawning.remove(&worker);
                let slot = pending.as_ref().map_or(0, |p| p.slot);
                match result {
                    Ok(child) => {
                        if let Some(p) = pending {
                            self.stop_with.insert(child.pid, p.stop);
                            self.envs.insert(child.pid, p.env);
                            if let (Some(port), Some(r)) = (p.port, self.relays.as_mut()) {
                                r.watch(child.pid, port, self.listening_tx.clone());
                            }
                            match Channel::start(p.channel, child.pid, self.frames_tx.clone()) {
                                Ok(ch) => {
                                    self.open_channels += 1;
                                    self.channels.insert(child.pid, Link::new(ch));
                                }
                                Err(e) => warn!(
                                    pid = child.pid,
                                    slot,
                                    "no channel for worker {}:{slot} (pid {}): {e}",
                                    self.plan.name,
                                    child.pid
                                ),
                            }
                        }
                        let out = self
                            .output
                            .follow(child.stdout, slot, child.pid, Stream::Stdout);
                        let err = self
                            .output
                            .follow(child.stderr, slot, child.pid, Stream::Stderr);
                        self.readers.insert(child.pid, [out, err]);
                        self.groups.insert(child.pid);
                        if let Some(g) = &self.guardian {
                            g.register(child.pid);
                        }
                        self.queue.push_back(Event::Spawned {
                            worker,
                            pid: child.pid,
                        });
                        for msg in self.early_notify.remove(&child.pid).unwrap_or_default() {
                            self.queue.push_back(Event::Notify {
                                pid: child.pid,
                                msg,
                            });
                        }
                        // Its messages from before its pid was recorded, if any.
                        for d in std::mem::take(&mut self.unplaced) {
                            self.on_datagram(d);
                        }
                        if let Some(status) = self.early_exits.remove(&child.pid) {
                            self.worker_exited(child.pid, status);
                        }
                    }
                    Err(e) => self.queue.push_back(Event::SpawnFailed {
                        worker,
                        error: e.to_string(),
                    }),
                }
            }
            Input::Reaped(reaped) => {
                for r in reaped {
                    if r.app.is_none() {
                        debug!(pid = r.pid, "reaped an orphan process");
                    } else if self.groups.contains(&r.pid) {
                        self.worker_exited(r.pid, r.status);
                    } else {
                        // Its spawn result is still in the channel: handled with it.
                        self.early_exits.insert(r.pid, r.status);
                    }
                }
            }
            Input::Exited(pid, status) => self.queue.push_back(Event::Exited { pid, status }),
            Input::Frame(pid, frame) => self.on_frame(pid, frame),
            Input::CountersTick => self.log_counters(),
            Input::Connection(conn) => self.dispatch(conn),
            Input::HandoffWake => self.retry_waiting(),
            Input::LoadTick => self.ask_open_counts(),
            Input::MemoryTick => {
                // One /proc scan for every worker's process group.
                let pids: Vec<u32> = self.groups.iter().copied().collect();
                if let Ok(samples) = crate::observe::procstat::sample_groups(&pids) {
                    for (pid, sample) in pids.into_iter().zip(samples) {
                        if let Some(sample) = sample {
                            self.queue.push_back(Event::Memory {
                                pid,
                                rss: sample.rss,
                            });
                        }
                    }
                }
            }
            Input::Listening(pid) => {
                if let Some(r) = self.relays.as_mut() {
                    r.listening(pid);
                }
                self.queue.push_back(Event::Notify {
                    pid,
                    msg: NotifyMsg::PortOpen,
                });
            }
            Input::Notify(Ok(d)) => self.on_datagram(d),
            Input::Probe(probe) => self.answer_probe(probe),
            Input::Checked(c) => self.on_checked(c),
            Input::LivenessTick => self.ask_liveness(),
            Input::Changed(batch) => self.on_changes(batch),
            // Sent from the loop: a loop that is stuck sends none, and systemd acts.
            Input::Watchdog => super::service::send("WATCHDOG=1"),
            Input::Notify(Err(e)) => warn!("reading the notify socket failed: {e}"),
            Input::ScheduledReload => self.scheduled_reload(),
            Input::Timer => {
                self.wake = None;
                self.queue.push_back(Event::Timer);
            }
        }
    }

    fn on_datagram(&mut self, d: Datagram) {
        let Some(sender) = d.pid else {
            warn!("notify datagram without sender credentials: ignored");
            return;
        };
        // Workers whose spawn result is still in the channel are in `children` already;
        // a worker whose spawn has not returned yet is not (see `reap::Children`). Read
        // before the record: the sender existed before this read, and a spawn that ends
        // in between has recorded its pid by the time it stops counting.
        let in_flight = self.children.spawns_in_flight();
        let spawned = {
            let children = self.children.lock();
            let known = |pid: u32| self.groups.contains(&pid) || children.contains_key(&pid);
            // A worker's child (a shell wrapper's program, say) speaks for the worker.
            if known(sender) {
                Some(sender)
            } else {
                nix::unistd::getpgid(Some(Pid::from_raw(sender as i32)))
                    .ok()
                    .map(|pg| pg.as_raw() as u32)
                    .filter(|pg| known(*pg))
            }
        };
        if spawned.is_none() && in_flight {
            // Maybe a worker that spoke before its spawn returned: placed once it has.
            if self.unplaced.len() >= UNPLACED_MAX {
                self.unplaced.remove(0);
            }
            self.unplaced.push(d);
            return;
        }
        let pid = spawned.unwrap_or(sender);
        for g in &d.garbage {
            let slot = self.sup.worker_of_pid(pid).map(|(s, _)| s);
            warn!(
                pid = sender,
                slot, "garbage on NOTIFY_SOCKET from pid {sender}: {g}"
            );
        }
        if spawned.is_some() && !self.groups.contains(&pid) {
            // READY=1 sent before herd handled the spawn result: replayed with it.
            self.early_notify.entry(pid).or_default().extend(d.messages);
            return;
        }
        self.spoke(pid);
        for msg in d.messages {
            self.queue.push_back(Event::Notify { pid, msg });
        }
    }
}
