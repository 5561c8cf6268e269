//! Steps many tests share, built on [`Herd`]: the live workers by slot, starting herd on a
//! port chosen before it starts, and a rolling reload under load.

use std::process::Command;

use nix::sys::signal::Signal;

use super::*;

/// The pid of the newest worker of each slot that is alive, by slot. (A worker that
/// failed at start-up and was replaced is not among them.)
pub fn live_workers(herd: &Herd) -> std::collections::BTreeMap<usize, u32> {
    let mut out = std::collections::BTreeMap::new();
    for (slot, pid) in herd.spawned() {
        out.insert(slot, pid);
    }
    out.retain(|_, pid| pid_alive(*pid));
    out
}

/// Starts herd on a port picked with `free_port` by `make(port)`, for programs that must
/// know the port before herd starts (a Node cluster worker's `listen(port)`); picks another
/// port if someone took that one before herd could bind it (herd exits 1 saying "address
/// already in use"). Waits for `ready` workers. Returns herd and the port.
pub fn start_on_free_port(ready: usize, make: impl Fn(u16) -> Command) -> (Herd, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut herd = Herd::spawn(make(port), false, true);
        let deadline = Instant::now() + T;
        loop {
            if herd.events("worker.ready").len() >= ready {
                return (herd, port);
            }
            if let Some(st) = herd.try_exit() {
                herd.wait_eof(Duration::from_secs(5));
                if st.code() == Some(1) && herd.count_log("address already in use") > 0 {
                    break; // taken meanwhile: another port
                }
                herd.fail(&format!(
                    "herd exited with {st:?} before {ready} workers were ready"
                ));
            }
            if Instant::now() >= deadline {
                herd.fail(&format!("{ready} workers not ready within {T:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("five free ports in a row were taken before herd could bind them");
}

/// `herd run --ready notify -p PORT -i N <flags> -- node <file>` on a free PORT (also in
/// the workers' `APP_PORT`, and `env` added to theirs), once N workers are ready.
pub fn node_app_on_free_port(
    n: usize,
    flags: &[&str],
    file: &std::path::Path,
    env: &[(&str, String)],
) -> (Herd, u16) {
    start_on_free_port(n, |port| {
        let mut cmd = Command::new(herd_bin());
        cmd.args(["run", "--ready", "notify"])
            .args(["-p", &port.to_string(), "-i", &n.to_string()])
            .args(flags)
            .arg("--")
            .arg(node())
            .arg(file)
            .env("APP_PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    })
}

/// A rolling reload under `load`, which must overlap it: 20 answers of the old workers
/// before the SIGHUP, the event `reload.done` (after the SIGHUP), the old workers gone, then 50
/// answers of the new workers after the reload is done. Fails the test with the failed
/// requests (ms after the SIGHUP). Returns the old workers' pids.
pub fn reload_under(herd: &Herd, load: Load) -> Vec<u32> {
    reload_under_by(herd, load, || herd.signal(Signal::SIGHUP))
}

/// Rolling reloads of the workers on `port` under load from clients on new and on kept-alive
/// connections (see [`reload_under`]): no request may fail in any of them. `reloads` > 1
/// gives a worker that loses the connection in hand at its stop more chances to show it.
pub fn reloads_under_load(herd: &Herd, port: u16, reloads: usize) {
    use super::load::Client::{KeepAlive, NewConnection};
    for _ in 0..reloads {
        let load = Load::with(
            port,
            &[
                NewConnection,
                NewConnection,
                NewConnection,
                KeepAlive,
                KeepAlive,
            ],
        );
        herd.wait_until("the load to get answers", T, || load.ok() >= 20);
        reload_under(herd, load);
    }
}

/// [`reload_under`], with the reload started by `trigger` (a SIGHUP, a changed file).
pub fn reload_under_by(herd: &Herd, load: Load, trigger: impl FnOnce()) -> Vec<u32> {
    let old = herd.worker_pids();
    let answered_by = |load: &Load, pids: &dyn Fn(u32) -> bool| -> usize {
        load.by_pid()
            .iter()
            .filter(|(p, _)| pids(**p))
            .map(|(_, n)| n)
            .sum()
    };
    herd.wait_until("20 answers of the old workers before the reload", T, || {
        answered_by(&load, &|p| old.contains(&p)) >= 20
    });
    let mark = herd.mark(Out::Stderr);
    let hup = Instant::now();
    let before = load.ok();
    trigger();
    herd.wait_event_from(mark, "reload.done", |_| true);
    let at_done = load.ok();
    herd.wait_gone(&old, T);
    let new_before = answered_by(&load, &|p| !old.contains(&p));
    herd.wait_until(
        &format!(
            "50 answers of the new workers after the reload (answers by pid: {:?})",
            load.by_pid()
        ),
        T,
        || answered_by(&load, &|p| !old.contains(&p)) >= new_before + 50,
    );
    eprintln!(
        "answers: {before} before the reload began, {} while it ran, {} after it",
        at_done - before,
        load.ok() - at_done
    );
    if let Err(e) = load.finish_clean(hup) {
        herd.fail(&format!("across the reload (begun at {hup:?}): {e}"));
    }
    old
}
