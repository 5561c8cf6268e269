//! What each URL does: the identity line, the environment herd built, a slow answer, a
//! crash, memory growth, and who the process runs as. The behaviours that tests select
//! per request; those selected per process are flags (`flags.rs`, acted on in `main.rs`),
//! or routes that switch this process's state: `/hang` (`hang.rs`), `/health` (what
//! `/healthz` answers, `health.rs`) and `/watchdog` (`watchdog.rs`).

use std::fmt::Write as _;
use std::process;
use std::thread;
use std::time::Duration;

use crate::hang::How;
use crate::health::Mode;
use crate::notify;
use crate::serve::Ctx;
use crate::watchdog::Do;

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer<'a> {
    /// A response with this status and body.
    Text(u16, &'a str),
    /// These bytes, which are not HTTP, then the connection is closed.
    Raw(&'static [u8]),
    /// 200 with a body of this many bytes, written as fast as the client reads.
    Big(usize),
    /// No answer: the connection is held open (see [`crate::hang::hold`]).
    Hold,
}

/// The value of `name=` in a query string.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

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

/// Routes one request.
pub(crate) fn route<'a>(ctx: &'a Ctx, target: &str, scratch: &'a mut String) -> Answer<'a> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (code, body): (u16, &str) = match path {
        "/" => (200, &ctx.ident),
        "/slow" => {
            let ms = param(query, "ms").and_then(|v| v.parse::<u64>().ok());
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
            let name = param(query, "name");
            scratch.clear();
            match name.map(std::env::var) {
                Some(Ok(v)) => scratch.push_str(&v),
                Some(Err(_)) => scratch.push_str("<unset>"),
                None => return Answer::Text(400, "var needs ?name=KEY\n"),
            }
            scratch.push('\n');
            (200, scratch)
        }
        "/environ" => {
            // The whole environment (the worker never changes it), for tests of filter_env
            // and `herd env`.
            let mut vars: Vec<(String, String)> = std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            vars.sort();
            scratch.clear();
            for (k, v) in vars {
                let _ = writeln!(scratch, "{k}={v}");
            }
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
        "/open" => {
            // Whether this process may read a file (privilege tests): `readable` or the error.
            let Some(path) = param(query, "path") else {
                return Answer::Text(400, "open needs ?path=P\n");
            };
            scratch.clear();
            let _ = match std::fs::File::open(path) {
                Ok(_) => writeln!(scratch, "readable"),
                Err(e) => writeln!(scratch, "{:?}", e.kind()),
            };
            (200, scratch)
        }
        "/grow" => {
            // Holds N more MiB for the rest of its life (memory-limit tests).
            let mb = param(query, "mb").and_then(|v| v.parse::<usize>().ok());
            let Some(mb) = mb else {
                return Answer::Text(400, "grow needs ?mb=N\n");
            };
            let block = vec![1u8; mb << 20];
            std::mem::forget(block);
            println!("grew by {mb} MiB");
            (200, &ctx.ident)
        }
        "/big" => {
            // A body larger than socket buffers: a client that does not read it keeps
            // bytes waiting in whatever is between (the proxy's memory tests).
            match param(query, "bytes").and_then(|v| v.parse::<usize>().ok()) {
                Some(len) if len <= 1 << 30 => return Answer::Big(len),
                _ => (400, "big needs ?bytes=N (at most 1 GiB)\n"),
            }
        }
        "/env" => {
            scratch.clear();
            scratch.push_str(&ctx.env_body);
            let _ = writeln!(scratch, "PPID={}", nix::unistd::getppid());
            (200, scratch)
        }
        "/healthz" => return ctx.health.healthz(),
        "/health" => match Mode::parse(param(query, "mode"), param(query, "ms")) {
            Ok(mode) => {
                ctx.health.set(mode);
                (200, mode.answer())
            }
            Err(usage) => (400, usage),
        },
        "/hang" => match param(query, "how").and_then(How::parse) {
            Some(how) => {
                // Set before the answer is written, so that whatever the client does
                // once it has the answer meets the hang.
                ctx.hangs.set(how);
                if how == How::Busy {
                    ctx.hangs.spin();
                }
                (200, how.answer())
            }
            None => (400, "hang needs ?how=busy|accept|silent\n"),
        },
        "/watchdog" => match param(query, "do").and_then(Do::parse) {
            Some(what) => {
                match what {
                    Do::Stop => ctx.watchdog.stop(),
                    Do::Start => ctx.watchdog.start(),
                    Do::Trigger => notify::sd_notify("WATCHDOG=trigger\n"),
                }
                (200, what.answer())
            }
            None => (400, "watchdog needs ?do=stop|start|trigger\n"),
        },
        _ => (404, "not found\n"),
    };
    Answer::Text(code, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new("pid=1 slot=- gen=-\n".into(), "PID=1\n".into())
    }

    fn get<'a>(ctx: &'a Ctx, target: &str, scratch: &'a mut String) -> Answer<'a> {
        route(ctx, target, scratch)
    }

    #[test]
    fn finds_query_parameters_by_their_whole_name() {
        assert_eq!(param("ms=5", "ms"), Some("5"));
        assert_eq!(param("mode=slow&ms=20", "ms"), Some("20"));
        assert_eq!(param("xms=1&ms=2", "ms"), Some("2"));
        assert_eq!(param("msx=1", "ms"), None);
        assert_eq!(param("ms", "ms"), None);
        assert_eq!(param("ms=", "ms"), Some(""));
        assert_eq!(param("", "ms"), None);
    }

    #[test]
    fn health_switches_what_healthz_answers() {
        let ctx = ctx();
        let s = &mut String::new();
        assert_eq!(get(&ctx, "/healthz", s), Answer::Text(200, "ok\n"));
        assert_eq!(
            get(&ctx, "/health?mode=fail", s),
            Answer::Text(200, "health fail\n")
        );
        assert_eq!(get(&ctx, "/healthz", s), Answer::Text(503, "unhealthy\n"));
        // The other routes still work.
        assert_eq!(get(&ctx, "/", s), Answer::Text(200, "pid=1 slot=- gen=-\n"));
        assert_eq!(
            get(&ctx, "/health?mode=garbage", s),
            Answer::Text(200, "health garbage\n")
        );
        assert_eq!(get(&ctx, "/healthz", s), Answer::Raw(b"garbage garbage\n"));
        get(&ctx, "/health?mode=huge", s);
        assert_eq!(get(&ctx, "/healthz", s), Answer::Big(10 << 20));
        assert_eq!(get(&ctx, "/big?bytes=5", s), Answer::Big(5));
        assert_eq!(
            get(&ctx, "/big?bytes=x", s),
            Answer::Text(400, "big needs ?bytes=N (at most 1 GiB)\n")
        );
        get(&ctx, "/health?mode=hold", s);
        assert_eq!(get(&ctx, "/healthz", s), Answer::Hold);
        assert_eq!(
            get(&ctx, "/health?ms=1&mode=slow", s),
            Answer::Text(200, "health slow\n")
        );
        assert_eq!(ctx.health.get(), Mode::Slow(1));
        assert_eq!(get(&ctx, "/healthz", s), Answer::Text(200, "ok\n"));
        assert_eq!(
            get(&ctx, "/health?mode=ok", s),
            Answer::Text(200, "health ok\n")
        );
        assert_eq!(get(&ctx, "/healthz", s), Answer::Text(200, "ok\n"));
    }

    #[test]
    fn unknown_modes_are_refused_and_change_nothing() {
        let ctx = ctx();
        let s = &mut String::new();
        get(&ctx, "/health?mode=fail", s);
        for target in [
            "/health",
            "/health?mode=",
            "/health?mode=dead",
            "/health?mode=slow",
            "/health?mode=slow&ms=x",
            "/hang",
            "/hang?how=",
            "/hang?how=forever",
            "/watchdog",
            "/watchdog?do=pause",
        ] {
            assert!(
                matches!(get(&ctx, target, s), Answer::Text(400, _)),
                "{target}"
            );
        }
        assert_eq!(ctx.health.get(), Mode::Fail);
        assert!(!ctx.hangs.busy() && !ctx.hangs.accept() && !ctx.hangs.silent());
        assert!(!ctx.watchdog.stopped());
    }

    #[test]
    fn hang_switches_the_process_state() {
        // (`busy` is left out: it starts a thread that spins for the rest of the process.)
        let ctx = ctx();
        let s = &mut String::new();
        assert_eq!(
            get(&ctx, "/hang?how=accept", s),
            Answer::Text(200, "hanging accept\n")
        );
        assert!(ctx.hangs.accept() && !ctx.hangs.silent() && !ctx.hangs.busy());
        assert_eq!(
            get(&ctx, "/hang?how=silent", s),
            Answer::Text(200, "hanging silent\n")
        );
        assert!(ctx.hangs.accept() && ctx.hangs.silent() && !ctx.hangs.busy());
        // The connection that asked is still served.
        assert_eq!(get(&ctx, "/healthz", s), Answer::Text(200, "ok\n"));
    }

    #[test]
    fn watchdog_stops_and_starts_the_pings() {
        // (`trigger` is left out: it would notify a NOTIFY_SOCKET the tests may run under.)
        let ctx = ctx();
        let s = &mut String::new();
        assert_eq!(
            get(&ctx, "/watchdog?do=stop", s),
            Answer::Text(200, "watchdog stop\n")
        );
        assert!(ctx.watchdog.stopped());
        assert_eq!(
            get(&ctx, "/watchdog?do=start", s),
            Answer::Text(200, "watchdog start\n")
        );
        assert!(!ctx.watchdog.stopped());
    }
}
