//! The worker contract's environment, parsed by pure functions over a lookup closure, so
//! every malformed value is a unit test and nothing here reads the real environment
//! except [`real`].

use crate::Error;

/// Port bound when the program runs outside herd and `PORT` is unset: the port of the
/// README's examples and of most Node/Express tutorials.
pub const DEFAULT_PORT: u16 = 3000;

/// The most fds a `LISTEN_FDS` may announce: far more than herd ever passes, and small
/// enough that a garbage value cannot make us adopt the whole fd table.
pub const MAX_LISTEN_FDS: usize = 1024;

/// A lookup into the real process environment (values that are not UTF-8 count as unset,
/// which makes the caller report them as missing rather than guess).
pub fn real(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenEnv {
    /// How many fds, from 3.
    pub count: usize,
    /// One name per fd (`"unknown"` where `LISTEN_FDNAMES` is unset, as systemd does).
    pub names: Vec<String>,
}

/// Parses the socket-activation variables. `Ok(None)`: not run under herd (no
/// `LISTEN_FDS`, or `LISTEN_FDS=0`).
pub fn listen_env(
    get: impl Fn(&str) -> Option<String>,
    own_pid: u32,
) -> Result<Option<ListenEnv>, Error> {
    let Some(fds) = get("LISTEN_FDS") else {
        return Ok(None);
    };
    let count: usize = fds.trim().parse().map_err(|_| Error::BadEnv {
        var: "LISTEN_FDS",
        value: fds.clone(),
        why: "not a number",
    })?;
    if count > MAX_LISTEN_FDS {
        return Err(Error::BadEnv {
            var: "LISTEN_FDS",
            value: fds,
            why: "more fds than any launcher passes",
        });
    }
    if count == 0 {
        return Ok(None);
    }
    let pid = get("LISTEN_PID").ok_or(Error::BadEnv {
        var: "LISTEN_PID",
        value: String::new(),
        why: "unset while LISTEN_FDS is set: cannot tell whether the fds are ours",
    })?;
    let listen_pid: u32 = pid.trim().parse().map_err(|_| Error::BadEnv {
        var: "LISTEN_PID",
        value: pid.clone(),
        why: "not a pid",
    })?;
    if listen_pid != own_pid {
        return Err(Error::StaleListenPid {
            listen_pid,
            pid: own_pid,
        });
    }
    let names = match get("LISTEN_FDNAMES") {
        None => vec!["unknown".to_string(); count],
        Some(all) => {
            let names: Vec<String> = all.split(':').map(str::to_string).collect();
            if names.len() != count {
                return Err(Error::BadEnv {
                    var: "LISTEN_FDNAMES",
                    value: all,
                    why: "not one name per fd of LISTEN_FDS",
                });
            }
            names
        }
    };
    Ok(Some(ListenEnv { count, names }))
}

/// The port to bind standalone: `PORT`, else [`DEFAULT_PORT`].
pub fn port(get: impl Fn(&str) -> Option<String>) -> Result<u16, Error> {
    match get("PORT") {
        None => Ok(DEFAULT_PORT),
        Some(p) => p.trim().parse().map_err(|_| Error::BadEnv {
            var: "PORT",
            value: p,
            why: "not a port number (0-65535)",
        }),
    }
}

/// A non-negative integer variable (`HERD_WORKER_ID`, `HERD_GENERATION`,
/// `NODE_CHANNEL_FD`); `None` when unset or malformed.
pub fn number(get: impl Fn(&str) -> Option<String>, var: &str) -> Option<usize> {
    get(var)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn herds_variables_give_the_fds_and_names() {
        let e = env(&[
            ("LISTEN_FDS", "2"),
            ("LISTEN_PID", "42"),
            ("LISTEN_FDNAMES", "tcp-3000:unix-app.sock"),
        ]);
        assert_eq!(
            listen_env(e, 42).unwrap(),
            Some(ListenEnv {
                count: 2,
                names: vec!["tcp-3000".into(), "unix-app.sock".into()]
            })
        );
    }

    #[test]
    fn no_listen_fds_or_zero_is_standalone() {
        assert_eq!(listen_env(env(&[]), 1).unwrap(), None);
        assert_eq!(
            listen_env(env(&[("LISTEN_FDS", "0"), ("LISTEN_PID", "9")]), 1).unwrap(),
            None
        );
    }

    #[test]
    fn names_default_to_unknown() {
        let e = env(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "7")]);
        assert_eq!(listen_env(e, 7).unwrap().unwrap().names, vec!["unknown"]);
    }

    #[test]
    fn a_stale_pid_is_refused() {
        let e = env(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "7")]);
        assert!(matches!(
            listen_env(e, 8),
            Err(Error::StaleListenPid {
                listen_pid: 7,
                pid: 8
            })
        ));
    }

    #[test]
    fn malformed_values_are_typed_errors() {
        for (pairs, var) in [
            (vec![("LISTEN_FDS", "two")], "LISTEN_FDS"),
            (vec![("LISTEN_FDS", "-1")], "LISTEN_FDS"),
            (vec![("LISTEN_FDS", "99999999")], "LISTEN_FDS"),
            (vec![("LISTEN_FDS", "1")], "LISTEN_PID"),
            (
                vec![("LISTEN_FDS", "1"), ("LISTEN_PID", "me")],
                "LISTEN_PID",
            ),
            (
                vec![
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_PID", "1"),
                    ("LISTEN_FDNAMES", "a"),
                ],
                "LISTEN_FDNAMES",
            ),
        ] {
            match listen_env(env(&pairs), 1) {
                Err(Error::BadEnv { var: v, .. }) => assert_eq!(v, var, "{pairs:?}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn port_defaults_to_3000_and_rejects_garbage() {
        assert_eq!(port(env(&[])).unwrap(), 3000);
        assert_eq!(port(env(&[("PORT", "8080")])).unwrap(), 8080);
        assert!(matches!(
            port(env(&[("PORT", "70000")])),
            Err(Error::BadEnv { var: "PORT", .. })
        ));
    }

    #[test]
    fn numbers() {
        assert_eq!(
            number(env(&[("HERD_WORKER_ID", "3")]), "HERD_WORKER_ID"),
            Some(3)
        );
        assert_eq!(
            number(env(&[("HERD_WORKER_ID", "x")]), "HERD_WORKER_ID"),
            None
        );
        assert_eq!(number(env(&[]), "HERD_WORKER_ID"), None);
    }
}
