//! Shared by the examples (not an example itself): `INSTANCES=N` overrides one worker per
//! CPU, so that the tests run a known number of workers on any machine, and
//! `LOG_FORMAT=json` passes `--log-format json` the way a program sets any `herd run` flag.

/// `cluster` with `.instances(N)` when `INSTANCES=N` is set, and `--log-format` when
/// `LOG_FORMAT` is.
pub fn from_env(cluster: herd::Cluster) -> herd::Cluster {
    let cluster = match std::env::var("LOG_FORMAT") {
        Ok(format) => cluster.flag("--log-format", &format),
        Err(_) => cluster,
    };
    match std::env::var("INSTANCES").ok().and_then(|v| v.parse().ok()) {
        Some(n) => cluster.instances(n),
        None => cluster,
    }
}
