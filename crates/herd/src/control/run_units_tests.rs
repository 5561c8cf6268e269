//! The units' text, and the command line of `herd startup run` as clap parses it.

use clap::Parser;

use super::*;
use crate::control::args::{StartupApp, Verb};

#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

fn ctx(root: bool) -> Context {
    Context {
        exe: "/usr/local/bin/herd".into(),
        user: if root { "root" } else { "ann" }.into(),
        root,
        cwd: "/srv/my app".into(),
        path: "/usr/local/bin:/usr/bin:/bin".into(),
    }
}

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn ok(line: &str, socket: bool, watchdog: Option<Duration>) -> Units {
    units(&args(line), socket, watchdog, &ctx(false)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn err(line: &str, socket: bool) -> Refused {
    units(&args(line), socket, None, &ctx(false)).unwrap_err()
}

#[test]
fn startup_run_takes_everything_after_run_as_herd_runs_arguments() {
    let cli = Cli::try_parse_from(args(
        "startup --socket --watchdog 10s run -i max -p 3000 --name api -- node server.js --port 1",
    ))
    .unwrap();
    let Verb::Startup(s) = cli.verb else {
        panic!("{cli:?}")
    };
    assert!(s.socket && !s.install);
    assert_eq!(s.watchdog, Some(Duration::from_secs(10)));
    let Some(StartupApp::Run(run)) = s.app else {
        panic!("no run")
    };
    assert_eq!(
        run.args,
        args("-i max -p 3000 --name api -- node server.js --port 1")
    );
    // Without `run`: the daemon's unit, as before.
    let cli = Cli::try_parse_from(args("startup --install")).unwrap();
    assert!(matches!(cli.verb, Verb::Startup(s) if s.install && s.app.is_none()));
}

#[test]
fn the_service_is_type_notify_and_runs_herd_run_with_the_arguments_given() {
    let u = ok(
        "-i 2 -p 3000 --name api --kill-timeout 7s --shutdown-delay 2500ms -- sh -c $HOME;echo",
        false,
        Some(Duration::from_secs(10)),
    );
    assert!(u.socket.is_none());
    let (name, text) = &u.service;
    assert_eq!(name, "herd-api.service");
    for line in [
        "Type=notify\n",
        "NotifyAccess=main\n",
        "ExecStart=/usr/local/bin/herd run -i 2 -p 3000 --name api --kill-timeout 7s --shutdown-delay 2500ms -- sh -c $$HOME;echo\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        "KillMode=mixed\n",
        // 2.5 s + 7 s + 5 s, rounded up.
        "TimeoutStopSec=15s\n",
        "WatchdogSec=10s\n",
        "WorkingDirectory=/srv/my app\n",
        "Environment=PATH=/usr/local/bin:/usr/bin:/bin\n",
        "Restart=on-failure\n",
        "WantedBy=default.target\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("User="), "a user unit has no User=:\n{text}");
    assert!(!text.contains(".socket"), "{text}");
    let root = units(&args("-p 3000 -- sh"), false, None, &ctx(true)).unwrap();
    assert!(root.service.1.contains("User=root\n"));
    assert!(root.service.1.contains("WantedBy=multi-user.target\n"));
    // Default timeouts: 0 s + 10 s + 5 s.
    assert!(root.service.1.contains("TimeoutStopSec=15s\n"));
    assert!(!root.service.1.contains("WatchdogSec"));
}

#[test]
fn with_socket_a_socket_unit_listens_on_every_address_in_order() {
    let u = ok(
        "--name api -p 3000 --listen [::1]:8080 --listen unix:run/api.sock -- sh",
        true,
        None,
    );
    let (name, socket) = u.socket.expect("a socket unit");
    assert_eq!(name, "herd-api.socket");
    let listens: Vec<&str> = socket
        .lines()
        .filter(|l| l.starts_with("ListenStream="))
        .collect();
    assert_eq!(
        listens,
        [
            "ListenStream=0.0.0.0:3000",
            "ListenStream=[::1]:8080",
            "ListenStream=/srv/my app/run/api.sock",
        ]
    );
    // reuseport, the default: herd adds its slot sockets to the group of systemd's.
    assert!(socket.contains("ReusePort=yes\n"), "{socket}");
    assert!(socket.contains("Backlog=1024\n"));
    assert!(socket.contains("WantedBy=sockets.target\n"));
    let service = &u.service.1;
    for line in [
        "Requires=herd-api.socket\n",
        "After=herd-api.socket\n",
        "Also=herd-api.socket\n",
    ] {
        assert!(service.contains(line), "no {line:?} in\n{service}");
    }
    // Shared and the handoff modes need no SO_REUSEPORT.
    for balance in ["shared", "round-robin"] {
        let u = ok(&format!("-p 3000 --balance {balance} -- sh"), true, None);
        assert!(!u.socket.unwrap().1.contains("ReusePort"));
    }
}

#[test]
fn bad_command_lines_are_refused_with_run_s_exit_codes() {
    let e = err("-p 3000 --bogus -- sh", false);
    assert_eq!(e.code, 2);
    assert!(e.message.contains("--bogus"), "{}", e.message);
    let e = err("-p 3000 --socket -- sh", false);
    assert_eq!(e.code, 2);
    assert!(e.message.contains("put it before `run`"), "{}", e.message);
    let e = err("-p 3000 -- herd-no-such-program-xyz", false);
    assert_eq!(e.code, 1);
    assert!(
        e.message.contains("herd-no-such-program-xyz"),
        "{}",
        e.message
    );
    let e = err("-- sh", true);
    assert_eq!(e.code, 2);
    assert!(
        e.message.contains("--socket needs the addresses"),
        "{}",
        e.message
    );
    let e = err("--listen 127.0.0.1:0 -- sh", true);
    assert!(e.message.contains("127.0.0.1:0"), "{}", e.message);
    let e = units(&args("--name root -p 1 -- sh"), false, None, &ctx(true)).unwrap_err();
    assert!(e.message.contains("herd-root.service"), "{}", e.message);
}
