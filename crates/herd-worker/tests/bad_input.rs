//! The `hello` example given a wrong environment: each mistake is a typed error that names
//! what is wrong (printed by the example, exit 1), never a panic.

mod common;

use std::process::Command;

use common::*;

/// Runs `hello` through `sh -c script` (so `$$`, the shell's pid, is hello's pid after
/// `exec`); checks that it exits 1 with a line that contains `expect`, and no panic.
fn hello_via_sh(script: &str, env: &[(&str, &str)], expect: &str) {
    let (_, hello) = bins();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]).arg(hello);
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "NODE_CHANNEL_FD",
        "HERD_WORKER_ID",
    ] {
        cmd.env_remove(var);
    }
    // Standalone binds this port when it gets that far: a free one.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cmd.env("PORT", port.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn(cmd);
    let code = p.wait_exit().code();
    // The reader threads may still be collecting the last line after the exit.
    p.wait_line(expect, |l| l.starts_with("hello: ") && l.contains(expect));
    let all = p.output();
    assert_eq!(code, Some(1), "{all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn a_stale_listen_pid_is_refused() {
    hello_via_sh(
        "exec \"$0\"",
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
        "LISTEN_PID=1 is not this process",
    );
}

#[test]
fn an_inherited_fd_that_is_not_a_socket_is_named() {
    hello_via_sh(
        "exec 3</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\"",
        &[],
        "fd 3 is not a listening socket: not a socket",
    );
}

#[test]
fn an_inherited_fd_that_is_not_open_is_named() {
    hello_via_sh(
        "exec 3<&-; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\"",
        &[],
        "fd 3 is not a listening socket: not open",
    );
}

#[test]
fn malformed_listen_fds_is_named() {
    hello_via_sh(
        "LISTEN_PID=$$ exec \"$0\"",
        &[("LISTEN_FDS", "lots")],
        "LISTEN_FDS=\"lots\": not a number",
    );
}

#[test]
fn a_missing_notify_socket_path_is_named() {
    hello_via_sh(
        "exec \"$0\"",
        &[("NOTIFY_SOCKET", "/nonexistent/herd-notify.sock")],
        "NOTIFY_SOCKET /nonexistent/herd-notify.sock does not exist",
    );
}

#[test]
fn a_channel_fd_that_is_not_a_socket_is_named() {
    hello_via_sh(
        "exec 5</dev/null; exec \"$0\"",
        &[("NODE_CHANNEL_FD", "5")],
        "NODE_CHANNEL_FD=5 is not herd's channel: not a socket",
    );
}
