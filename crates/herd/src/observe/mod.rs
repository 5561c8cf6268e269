//! Watching workers from the outside: /proc sampling, the CPU budget behind `-i max`,
//! metrics, health endpoints, status tables and logs. Reads the system; decides nothing.

pub mod cpus;
