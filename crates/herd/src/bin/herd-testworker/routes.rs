//! What each URL does: the identity line, the environment herd built, a slow answer, a
//! crash, memory growth, and who the process runs as. The behaviours that tests select
//! per request; those selected per process are flags (`flags.rs`, acted on in `main.rs`).

use std::fmt::Write as _;
use std::process;
use std::thread;
use std::time::Duration;

use crate::serve::Ctx;

/// The variables `/env` shows: herd's worker contract.
const ENV_KEYS: [&str; 10] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "PORT",
    "HERD_WORKER_ID",
    "NODE_APP_INSTANCE",
    "NOTIFY_SOCKET",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
    "HERD_TRANSPORT",
];

/// The body of `/env` without its `PPID` line (the parent can change: it is read per
/// request).
pub(crate) fn env_body(pid: u32) -> String {
    let mut body = String::new();
    for key in ENV_KEYS {
        if let Some(v) = std::env::var_os(key) {
            body.push_str(&format!("{key}={}\n", v.to_string_lossy()));
        }
    }
    body.push_str(&format!("PID={pid}\n"));
    body
}

/// Routes one request; returns status and body.
pub(crate) fn route<'a>(ctx: &'a Ctx, target: &str, scratch: &'a mut String) -> (u16, &'a str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => (200, &ctx.ident),
        "/slow" => {
            let ms = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok());
            match ms {
                Some(ms) => {
                    thread::sleep(Duration::from_millis(ms));
                    (200, &ctx.ident)
                }
                None => (400, "slow needs ?ms=N\n"),
            }
        }
        "/crash" => {
            eprintln!("crashing");
            process::exit(70);
        }
        "/var" => {
            // Any variable, for tests of the environment herd builds.
            let name = query.split('&').find_map(|kv| kv.strip_prefix("name="));
            scratch.clear();
            match name.map(std::env::var) {
                Some(Ok(v)) => scratch.push_str(&v),
                Some(Err(_)) => scratch.push_str("<unset>"),
                None => return (400, "var needs ?name=KEY\n"),
            }
            scratch.push('\n');
            (200, scratch)
        }
        "/whoami" => {
            scratch.clear();
            let cwd = std::env::current_dir().unwrap_or_default();
            let groups: Vec<String> = nix::unistd::getgroups()
                .unwrap_or_default()
                .iter()
                .map(|g| g.to_string())
                .collect();
            let _ = writeln!(
                scratch,
                "uid={} gid={} groups={} cwd={}",
                nix::unistd::getuid(),
                nix::unistd::getgid(),
                groups.join(","),
                cwd.display()
            );
            (200, scratch)
        }
        "/grow" => {
            // Holds N more MiB for the rest of its life (memory-limit tests).
            let mb = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mb="))
                .and_then(|v| v.parse::<usize>().ok());
            let Some(mb) = mb else {
                return (400, "grow needs ?mb=N\n");
            };
            let block = vec![1u8; mb << 20];
            std::mem::forget(block);
            println!("grew by {mb} MiB");
            (200, &ctx.ident)
        }
        "/env" => {
            scratch.clear();
            scratch.push_str(&ctx.env_body);
            let _ = writeln!(scratch, "PPID={}", nix::unistd::getppid());
            (200, scratch)
        }
        _ => (404, "not found\n"),
    }
}
