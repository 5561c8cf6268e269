//! Watching workers from the outside: the CPU budget behind `-i max`, the lifecycle
//! log, and the workers' output in rotated log files (later: /proc sampling, metrics,
//! health endpoints, status tables). Reads the system and reports; decides nothing.

pub mod app_events;
pub mod cpus;
pub mod lifecycle;
pub mod logfiles;
pub mod logging;
pub mod procstat;
