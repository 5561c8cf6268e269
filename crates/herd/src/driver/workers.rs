//! A worker's life as the driver carries it out: spawning it with its contract, asking it
//! to stop (signal, `"shutdown"`, or Node's disconnect), and its exit.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use super::link::{Pending, StopWith};
use super::spawn::SpawnRequest;
use super::{contract, Driver, OUTPUT_TAIL};
use crate::channel;
use crate::channel::node_cluster;
use crate::supervisor::{Event, ExitStatus, WorkerId};

impl Driver {
    pub(super) fn worker_exited(&mut self, pid: u32, status: ExitStatus) {
        self.forget_handoffs(pid);
        self.groups.remove(&pid);
        if let Some(link) = self.channels.remove(&pid) {
            if let (false, Some((slot, _))) = (link.closed, self.sup.worker_of_pid(pid)) {
                self.exited_slots.insert(pid, slot);
            }
        }
        self.stop_with.remove(&pid);
        self.envs.remove(&pid);
        // Whatever the worker left running in its group goes with it.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        if let Some(g) = &self.guardian {
            g.unregister(pid);
        }
        // The exit is reported once the worker's last lines are written, so that its
        // output never appears after the report of its death.
        let readers = self.readers.remove(&pid);
        let output = self.output.clone();
        let done = self.exits_tx.clone();
        tokio::spawn(async move {
            if let Some(readers) = readers {
                let _ = tokio::time::timeout(OUTPUT_TAIL, async {
                    for r in readers {
                        let _ = r.await;
                    }
                })
                .await;
            }
            output.flush().await;
            let _ = done.send((pid, status));
        });
    }

    pub(super) fn spawn(&mut self, worker: WorkerId, slot: usize, generation: u64) {
        let fds = match self.listeners.for_slot(slot) {
            // The slot's socket may be new (scale up): it must be left out of the
            // steering program until its worker is ready.
            Ok(fds) => {
                self.steered = None;
                fds
            }
            Err(e) => {
                self.queue.push_back(Event::SpawnFailed {
                    worker,
                    error: e.to_string(),
                });
                return;
            }
        };
        let (ours, theirs) = match channel::worker::pair() {
            Ok(pair) => pair,
            Err(e) => {
                self.queue.push_back(Event::SpawnFailed {
                    worker,
                    error: format!("cannot create the worker's channel: {e}"),
                });
                return;
            }
        };
        let notify_socket = self.notify.path().display().to_string();
        // --proxy: a private port per worker process (old and new workers of a slot run
        // side by side during a reload).
        let private = match self.relays.is_some() {
            true => match crate::proxy::ports::free_port() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.queue.push_back(Event::SpawnFailed {
                        worker,
                        error: format!("cannot find a free port on 127.0.0.1 for the worker: {e}"),
                    });
                    return;
                }
            },
            false => None,
        };
        let c = contract::contract(&contract::Identity {
            app: &self.plan.name,
            slot,
            generation,
            notify_socket: &notify_socket,
            port: private.or(self.listeners.port()),
            // In the handoff modes workers inherit no listening socket: herd accepts.
            listeners: if self.plan.balance.is_handoff() {
                &[]
            } else {
                &fds
            },
            channel: &theirs,
            node_cluster: self.plan.node_cluster,
            transport: match self.plan.transport {
                crate::config::Transport::Inherit => "sockets",
                crate::config::Transport::Handoff => "handoff",
                crate::config::Transport::Proxy(_) => "proxy",
            },
        });
        let mut env = self
            .plan
            .launch
            .worker_env(slot, c.env, &self.plan.extra_env);
        if let Some(preload) = &self.node_drain {
            let user = env
                .iter()
                .rev()
                .find(|(k, _)| k == "NODE_OPTIONS")
                .map(|(_, v)| v.clone())
                .or_else(|| self.plan.launch.base_value("NODE_OPTIONS"));
            let options = super::node_drain::node_options(user.as_deref(), preload);
            env.push(("NODE_OPTIONS".to_string(), options));
        }
        if let Some(period) = self.plan.policy.watchdog {
            // No WATCHDOG_PID: the worker's pid is not known before the fork, and without it
            // libsystemd's sd_watchdog_enabled accepts any process that sees the variable.
            env.push(("WATCHDOG_USEC".to_string(), period.as_micros().to_string()));
        }
        let started_env = super::spawn::StartedEnv {
            base_env: self.plan.launch.base_env.clone(),
            env: env.clone(),
            listen_fds: c.listen_fds,
        };
        let req = SpawnRequest {
            worker,
            app: self.app_key,
            reply: self.spawned_tx.clone(),
            program: self.plan.program.clone(),
            args: self.plan.args.clone(),
            base_env: self.plan.launch.base_env.clone(),
            env,
            cwd: self.plan.launch.cwd.clone(),
            credentials: self.plan.launch.credentials.clone(),
            fds: c.fds,
            listen_fds: c.listen_fds,
            keep: vec![theirs],
        };
        self.spawning.insert(
            worker,
            Pending {
                slot,
                stop: StopWith::of(&self.plan),
                channel: ours,
                port: private,
                env: started_env,
            },
        );
        if !self.spawner.spawn(req) {
            self.spawning.remove(&worker);
            self.queue.push_back(Event::SpawnFailed {
                worker,
                error: "the spawner thread is gone".into(),
            });
        }
    }

    /// Asks a worker to stop: the `"shutdown"` message when `--stop-message` is set and
    /// the worker has a channel, the stop signal otherwise.
    ///
    /// A Node cluster worker is stopped the way Node's own `worker.kill()` does it: told to
    /// disconnect (it closes its servers, lets its open requests finish, then closes its
    /// channel), and given the stop signal once its channel is closed. The kill timeout
    /// runs from the start either way.
    pub(super) fn stop(&mut self, pid: u32) {
        let how = self.stop_with(pid);
        let app = &self.plan.name;
        if let Some(link) = self.channels.get_mut(&pid).filter(|l| !l.closed) {
            if !how.message
                && link.cluster
                && link.sockets_handed > 0
                && !link.draining_sockets
                && link.channel.send_line(node_cluster::SOCKET_NOTIFY_CLOSE)
            {
                // The sockets it got as messages are not its servers' connections: a
                // disconnect would not wait for them. Node says when they are all closed.
                link.draining_sockets = true;
                info!(pid, "stopping worker {app} (pid {pid}): waiting for the connections it was handed to close");
                return;
            }
            if how.message {
                if link.channel.send(&serde_json::Value::from("shutdown")) {
                    return;
                }
            } else if link.cluster {
                let seq = link.next_seq();
                if link.channel.send(&node_cluster::disconnect(seq)) {
                    link.disconnecting = true;
                    info!(app = %app, event = "worker.disconnecting", pid,
                        "disconnecting Node cluster worker {app} (pid {pid}): its servers close, then {}",
                        how.signal.as_str());
                    return;
                }
            }
        }
        if how.message {
            warn!(pid, "worker (pid {pid}) has no open channel: sending {} instead of the shutdown message",
                how.signal.as_str());
        }
        // A worker that takes connections as messages may still have some in the channel
        // (queued in herd, or unread): signalled now, it could stop reading before they
        // arrive, and their clients would see a reset. The signal waits until the worker
        // has answered every handle (bounded by the answer timeout).
        if let Some(link) = self
            .channels
            .get(&pid)
            .filter(|l| !l.closed && !l.cluster && l.sockets_handed > 0)
        {
            let delivered = link.channel.delivered();
            let sig = how.signal;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(crate::channel::worker::HANDLE_ACK_TIMEOUT, delivered)
                    .await;
                if let Err(e) = killpg(Pid::from_raw(pid as i32), sig) {
                    debug!(pid, "{} to process group {pid} failed: {e}", sig.as_str());
                }
            });
            return;
        }
        self.signal(pid, how.signal);
    }

    /// How worker `pid` is to be stopped (the plan's way for one not spawned by it).
    pub(super) fn stop_with(&self, pid: u32) -> StopWith {
        self.stop_with
            .get(&pid)
            .copied()
            .unwrap_or_else(|| StopWith::of(&self.plan))
    }

    pub(super) fn signal(&self, pid: u32, sig: Signal) {
        // The worker's process group: the worker and everything it started.
        if let Err(e) = killpg(Pid::from_raw(pid as i32), sig) {
            debug!(pid, "{} to process group {pid} failed: {e}", sig.as_str());
        }
    }
}
