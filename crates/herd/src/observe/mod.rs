//! Watching workers from the outside: the CPU budget behind `-i max` and the lifecycle
//! log (later: /proc sampling, metrics, health endpoints, status tables). Reads the
//! system and reports; decides nothing.

pub mod cpus;
pub mod lifecycle;
pub mod logging;
pub mod procstat;
