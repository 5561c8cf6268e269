//! `herd monit` in a real terminal (tmux): the table shows the workers, a killed worker's
//! replacement appears within 2 s, the reload key reloads, `q` ends it and puts the
//! terminal back.

use std::process::Command;
use std::time::Duration;

use crate::common::daemon::{testworker_app, Daemon};
use crate::common::*;

const T: Duration = Duration::from_secs(20);

struct Tmux {
    session: String,
}

impl Tmux {
    /// A detached 100x30 session `name` running `command`.
    fn start(name: &str, command: &str) -> Tmux {
        let t = Tmux {
            session: format!("{name}-{}", std::process::id()),
        };
        t.run(&[
            "new-session",
            "-d",
            "-s",
            &t.session,
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        t
    }
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(tmux()).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.session])
    }
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.run(&args);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-session", "-t", &self.session]);
    }
}

#[test]
fn monit_shows_restarts_reloads_and_restores_the_terminal() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 2, ""));
    d.start_each(&file, &["api"]);
    let t = Tmux::start(
        "herd-monit",
        &format!("HERD_HOME={} {} monit", d.home().display(), herd_bin()),
    );
    let session = t.session.clone();
    t.run(&["set-option", "-t", &session, "remain-on-exit", "on"]);
    let pids = d.online_pids("api");
    let shows = |pid: u32| {
        let screen = t.screen();
        screen
            .lines()
            .any(|l| l.contains("api") && l.contains(&pid.to_string()) && l.contains("online"))
    };
    d.wait_until("monit shows both workers online", T, || {
        pids.iter().all(|p| shows(*p))
    });
    // A killed worker: its replacement on screen within 2 s of the kill.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = std::time::Instant::now();
    let mut new_pid = 0;
    d.wait_until("the replacement on screen", T, || {
        let now = d.online_pids("api");
        match now.iter().find(|p| !pids.contains(p)) {
            Some(p) if shows(*p) => {
                new_pid = *p;
                true
            }
            _ => false,
        }
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the restart took {took:?} to show"
    );
    // The reload key, confirmed.
    t.keys(&["r"]);
    d.wait_until("the question", T, || t.screen().contains("reload api? y/n"));
    t.keys(&["y"]);
    d.wait_until("the reload's new workers on screen", T, || {
        let now = d.online_pids("api");
        now.len() == 2 && !now.contains(&new_pid) && now.iter().all(|p| shows(*p))
    });
    // q: the program ends and the terminal leaves the alternate screen.
    t.keys(&["q"]);
    d.wait_until("monit ended", T, || {
        t.run(&[
            "display-message",
            "-p",
            "-t",
            &session,
            "#{pane_dead} #{alternate_on}",
        ])
        .trim()
            == "1 0"
    });
}

/// `herd monit --admin` watches one `herd run` through its admin listener's `/status`:
/// its workers with their CPU and memory; the keys that act say how to act on herd run.
#[test]
fn monit_watches_a_herd_run_through_its_admin_listener() {
    let admin = format!("127.0.0.1:{}", free_port());
    let herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--admin",
        &admin,
        "--listen",
        "127.0.0.1:0",
        "--name",
        "solo",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(2);
    let (code, json) = http_get(&format!("http://{admin}/status")).unwrap();
    assert_eq!(code, 200, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["name"], "solo");
    assert_eq!(v["status"]["workers"].as_array().map(Vec::len), Some(2));
    assert!(
        v["status"]["workers"][0]["memory"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );

    let t = Tmux::start(
        "herd-monit-admin",
        &format!("{} monit --admin {admin}", herd_bin()),
    );
    let pids = herd.worker_pids();
    herd.wait_until("monit shows both workers", T, || {
        let screen = t.screen();
        pids.iter().all(|p| {
            screen
                .lines()
                .any(|l| l.contains("solo") && l.contains(&p.to_string()) && l.contains("online"))
        })
    });
    t.keys(&["r"]);
    herd.wait_until("the question", T, || {
        t.screen().contains("reload solo? y/n")
    });
    t.keys(&["y"]);
    herd.wait_until("how to reload herd run", T, || {
        t.screen().contains("SIGHUP reloads")
    });
    t.keys(&["q"]);
}

/// The terminal goes away under monit (its window closed; here tmux kills the session):
/// monit ends, rather than spinning on a terminal that reads end-of-file forever (seen:
/// three such monits at 34 % of a core each, for hours).
#[test]
fn monit_ends_when_its_terminal_goes_away() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 1, ""));
    d.start_each(&file, &["api"]);
    let t = Tmux::start(
        "herd-monit-gone",
        &format!(
            "exec env HERD_HOME={} {} monit",
            d.home().display(),
            herd_bin()
        ),
    );
    let session = t.session.clone();
    d.wait_until("monit on screen", T, || t.screen().contains("api"));
    let pid: u32 = t
        .run(&["display-message", "-p", "-t", &session, "#{pane_pid}"])
        .trim()
        .parse()
        .expect("the pane's pid");
    t.run(&["kill-session", "-t", &session]);
    d.wait_until("monit ended with its terminal", T, || !pid_alive(pid));
}
