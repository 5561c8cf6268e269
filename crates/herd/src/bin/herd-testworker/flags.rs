//! The command line: flags from `HERD_TESTWORKER_OPTS` then from the arguments (so the
//! command line wins), `--flag value` or `--flag=value`. A usage error exits 2.

use std::path::PathBuf;
use std::process;

/// What the flags ask for; see the crate documentation for each.
#[derive(Default)]
pub(crate) struct Opts {
    pub(crate) port: Option<u16>,
    pub(crate) notify: bool,
    pub(crate) startup_ms: u64,
    pub(crate) never_ready: bool,
    pub(crate) exit_now: Option<i32>,
    pub(crate) ignore_term: bool,
    pub(crate) fail_if_file: Option<PathBuf>,
    pub(crate) print: u64,
    pub(crate) print_then_crash: Option<u64>,
    pub(crate) gen: Option<String>,
    pub(crate) watchdog: bool,
}

const USAGE: &str = "usage: herd-testworker [--port N] [--notify] [--startup-ms N] [--never-ready] \
[--exit-now [CODE]] [--ignore-term] [--fail-if-file PATH] [--print N] [--print-then-crash N] [--gen G] \
[--watchdog]
(flags are also read from env HERD_TESTWORKER_OPTS)";

fn usage_error(msg: &str) -> ! {
    eprintln!("herd-testworker: {msg}\n{USAGE}");
    process::exit(2);
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let Some(v) = v else {
        usage_error(&format!("{flag} needs a value"))
    };
    v.parse()
        .unwrap_or_else(|_| usage_error(&format!("{flag}: invalid number {v:?}")))
}

fn parse_opts(args: Vec<String>) -> Opts {
    let mut o = Opts::default();
    let mut it = args.into_iter().peekable();
    while let Some(arg) = it.next() {
        // Accept `--flag=value` as well as `--flag value`.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |it: &mut std::iter::Peekable<std::vec::IntoIter<String>>| {
            inline.take().or_else(|| it.next())
        };
        match flag.as_str() {
            "--port" => o.port = Some(parse_num(&flag, value(&mut it))),
            "--notify" => o.notify = true,
            "--startup-ms" => o.startup_ms = parse_num(&flag, value(&mut it)),
            "--never-ready" => o.never_ready = true,
            "--exit-now" => {
                // The code is optional: only take the next word if it is a number.
                let code = match inline.take() {
                    Some(v) => parse_num(&flag, Some(v)),
                    None => match it.peek().and_then(|v| v.parse::<i32>().ok()) {
                        Some(c) => {
                            it.next();
                            c
                        }
                        None => 1,
                    },
                };
                o.exit_now = Some(code);
            }
            "--ignore-term" => o.ignore_term = true,
            "--fail-if-file" => match value(&mut it) {
                Some(p) => o.fail_if_file = Some(PathBuf::from(p)),
                None => usage_error("--fail-if-file needs a path"),
            },
            "--print" => o.print = parse_num(&flag, value(&mut it)),
            "--print-then-crash" => o.print_then_crash = Some(parse_num(&flag, value(&mut it))),
            "--gen" => match value(&mut it) {
                Some(g) => o.gen = Some(g),
                None => usage_error("--gen needs a value"),
            },
            "--watchdog" => o.watchdog = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                process::exit(0);
            }
            other => usage_error(&format!("unknown argument {other:?}")),
        }
        if inline.is_some() {
            usage_error(&format!("{flag} takes no value"));
        }
    }
    o
}

/// The words of `opts` (the value of `HERD_TESTWORKER_OPTS`), then `args`.
fn env_then_args(opts: Option<&str>, args: impl Iterator<Item = String>) -> Vec<String> {
    let mut all: Vec<String> = opts
        .map(|v| v.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    all.extend(args);
    all
}

/// The flags of `HERD_TESTWORKER_OPTS`, then those of the command line.
pub(crate) fn from_env_and_args() -> Opts {
    let opts = std::env::var("HERD_TESTWORKER_OPTS").ok();
    parse_opts(env_then_args(opts.as_deref(), std::env::args().skip(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(String::from)
    }

    #[test]
    fn watchdog_is_a_flag_from_the_command_line_or_the_environment() {
        assert!(!parse_opts(env_then_args(None, words("--port 0"))).watchdog);
        let o = parse_opts(env_then_args(None, words("--port=0 --watchdog")));
        assert!(o.watchdog);
        assert_eq!(o.port, Some(0));
        let o = parse_opts(env_then_args(
            Some(" --watchdog  --notify "),
            words("--port 8"),
        ));
        assert!(o.watchdog && o.notify);
        assert_eq!(o.port, Some(8));
    }

    #[test]
    fn the_command_line_comes_after_the_environment() {
        let o = parse_opts(env_then_args(Some("--port 1 --gen a"), words("--port 2")));
        assert_eq!(o.port, Some(2));
        assert_eq!(o.gen.as_deref(), Some("a"));
    }
}
