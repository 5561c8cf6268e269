//! Shared by the examples (not an example itself): `INSTANCES=N` overrides one worker per
//! CPU, so that the tests run a known number of workers on any machine.

/// `cluster` with `.instances(N)` when `INSTANCES=N` is set.
pub fn from_env(cluster: herd::Cluster) -> herd::Cluster {
    match std::env::var("INSTANCES").ok().and_then(|v| v.parse().ok()) {
        Some(n) => cluster.instances(n),
        None => cluster,
    }
}
