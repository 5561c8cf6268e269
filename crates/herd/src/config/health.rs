//! `--health-check`: what herd asks each worker to find out whether it still serves. The
//! timing (interval, timeout, failures, start period) is the supervisor's
//! [`HealthPolicy`](crate::supervisor::HealthPolicy); this is the request itself.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::plan::{PlanError, Transport};
use super::settings::AppConfig;
use crate::listen::{Balance, ListenAddr};
use crate::supervisor::HealthPolicy;

/// An HTTP health check: `GET path` with an optional `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The request target, starting with `/` (a query string is allowed).
    pub path: String,
    /// The `Host` header; `localhost` when not given.
    pub host: Option<String>,
}

/// Longest path or host herd sends: a health check is a short, fixed request.
const MAX_PART: usize = 1024;

impl FromStr for HealthCheck {
    type Err = String;

    /// `http:/healthz`, or `http://HOST/healthz` to send that `Host`.
    fn from_str(s: &str) -> Result<HealthCheck, String> {
        let usage = "expected http:/PATH or http://HOST/PATH, e.g. http:/healthz";
        let Some(rest) = s.strip_prefix("http:") else {
            return Err(format!("`{s}` is not a health check: {usage}"));
        };
        let (host, path) = match rest.strip_prefix("//") {
            Some(hp) => match hp.find('/') {
                Some(i) => (Some(&hp[..i]), &hp[i..]),
                None => (Some(hp), ""),
            },
            None => (None, rest),
        };
        if !path.starts_with('/') {
            return Err(format!(
                "`{s}`: the health check's path must start with `/`: {usage}"
            ));
        }
        let printable = |v: &str| v.bytes().all(|b| b.is_ascii_graphic());
        if !printable(path) || path.len() > MAX_PART {
            return Err(format!(
                "`{s}`: the health check's path must be printable ASCII without spaces (at most {MAX_PART} bytes)"
            ));
        }
        if let Some(h) = host {
            if h.is_empty() || !printable(h) || h.contains('@') || h.len() > MAX_PART {
                return Err(format!("`{s}`: `{h}` is not a host: {usage}"));
            }
        }
        Ok(HealthCheck {
            path: path.to_string(),
            host: host.map(str::to_string),
        })
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "http://{h}{}", self.path),
            None => write!(f, "http:{}", self.path),
        }
    }
}

impl HealthCheck {
    /// The request bytes: `GET`, no keep-alive (as Kubernetes' prober).
    pub fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: herd-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.host.as_deref().unwrap_or("localhost")
        )
        .into_bytes()
    }
}

/// A `--worker-metrics` path: starts with `/`, printable ASCII without spaces.
pub fn metrics_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || !s.bytes().all(|b| b.is_ascii_graphic()) || s.len() > MAX_PART {
        return Err(format!(
            "`{s}` is not a path: expected one starting with /, printable ASCII without spaces, e.g. /metrics"
        ));
    }
    Ok(s.to_string())
}

/// The shortest `--watchdog`: a worker pings every half period, and below this the
/// pings would cost more than the work.
pub const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// The health settings of an app, validated.
#[derive(Debug, Default)]
pub(super) struct Planned {
    pub(super) check: Option<HealthCheck>,
    pub(super) policy: Option<HealthPolicy>,
    pub(super) watchdog: Option<Duration>,
    pub(super) worker_metrics: Option<String>,
}

/// Validates the health settings of `app` for its transport and listeners.
pub(super) fn plan(
    app: &AppConfig,
    balance: Balance,
    transport: Transport,
    listen: &[ListenAddr],
) -> Result<Planned, PlanError> {
    let fmt = crate::units::format_duration;
    let watchdog = match app.watchdog {
        Some(d) if d < MIN_WATCHDOG => return Err(PlanError::WatchdogTooShort(fmt(d))),
        w => w,
    };
    let worker_metrics = match &app.worker_metrics {
        Some(path) => {
            let path = metrics_path(path).map_err(PlanError::WorkerMetrics)?;
            if let Some(why) = untargetable(balance, transport, listen) {
                return Err(PlanError::WorkerMetrics(format!(
                    "--worker-metrics cannot reach one specific worker {why}"
                )));
            }
            Some(path)
        }
        None => None,
    };
    let Some(check) = app.health_check.clone() else {
        let knobs = [
            ("--health-interval", app.health_interval.is_some()),
            ("--health-timeout", app.health_timeout.is_some()),
            ("--health-failures", app.health_failures.is_some()),
            ("--health-start-period", app.health_start_period.is_some()),
        ];
        if let Some((flag, _)) = knobs.iter().find(|(_, set)| *set) {
            return Err(PlanError::HealthNeedsCheck(flag));
        }
        return Ok(Planned {
            watchdog,
            worker_metrics,
            ..Planned::default()
        });
    };
    let d = HealthPolicy::default();
    let policy = HealthPolicy {
        interval: app.health_interval.unwrap_or(d.interval),
        timeout: app.health_timeout.unwrap_or(d.timeout),
        failures: app.health_failures.unwrap_or(d.failures),
        start_period: app.health_start_period.unwrap_or(d.start_period),
    };
    if policy.failures == 0 {
        return Err(PlanError::HealthFailures);
    }
    if policy.timeout > policy.interval || policy.timeout.is_zero() {
        return Err(PlanError::HealthTimeout {
            timeout: fmt(policy.timeout),
            interval: fmt(policy.interval),
        });
    }
    untargetable(balance, transport, listen)
        .map_or(Ok(()), |why| Err(PlanError::HealthUntargetable(why)))?;
    Ok(Planned {
        check: Some(check),
        policy: Some(policy),
        watchdog,
        worker_metrics,
    })
}

/// Why herd could not land a check on one chosen worker, if it cannot.
fn untargetable(balance: Balance, transport: Transport, listen: &[ListenAddr]) -> Option<String> {
    let tcp: Vec<SocketAddr> = listen
        .iter()
        .filter_map(|a| match a {
            ListenAddr::Tcp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        })
        .collect();
    match (transport, balance) {
        (Transport::Proxy(_), _) => None,
        (_, Balance::Shared) => Some(
            "with --balance shared: every worker accepts from the one socket, so a check would test whichever worker the kernel picks; use --balance reuseport (the default), a handoff mode (round-robin, least-conn, sticky) or --proxy".into(),
        ),
        _ if tcp.is_empty() => Some(format!(
            "without a TCP listener: herd checks a worker through one (give --port or --listen HOST:PORT; --balance {balance} has none)"
        )),
        (Transport::Handoff, _) => None,
        _ => match tcp.iter().find(|a| a.is_ipv4() || a.ip().is_unspecified()) {
            Some(_) => None,
            None => Some(format!(
                "through {}: with --balance reuseport herd steers a check to its worker by an IPv4 loopback source address, so it needs an IPv4 or wildcard ([::]) listener",
                tcp[0]
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_an_optional_host() {
        let c: HealthCheck = "http:/healthz".parse().unwrap();
        assert_eq!(c.path, "/healthz");
        assert_eq!(c.host, None);
        assert_eq!(c.to_string(), "http:/healthz");
        let c: HealthCheck = "http://api.local:8080/status?deep=1".parse().unwrap();
        assert_eq!(c.path, "/status?deep=1");
        assert_eq!(c.host.as_deref(), Some("api.local:8080"));
        assert_eq!(c.to_string(), "http://api.local:8080/status?deep=1");
        let req = String::from_utf8(c.request()).unwrap();
        assert!(req.starts_with("GET /status?deep=1 HTTP/1.1\r\nHost: api.local:8080\r\n"));
        assert!(req.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn what_is_not_a_health_check_is_named() {
        for (bad, says) in [
            ("/healthz", "is not a health check"),
            ("tcp:/x", "is not a health check"),
            ("http:healthz", "must start with `/`"),
            ("http://host", "must start with `/`"),
            ("http:/a b", "printable ASCII"),
            ("http:/a\nb", "printable ASCII"),
            ("http:///x", "is not a host"),
        ] {
            let err = bad.parse::<HealthCheck>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
