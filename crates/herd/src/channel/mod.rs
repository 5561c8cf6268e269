//! How workers talk to the primary. For now the sd_notify datagram socket
//! ([`notify`]); the Node-compatible message channel joins it here.
//!
//! This module parses and attributes messages; it never decides what they mean for the
//! lifecycle (the supervisor does).

pub mod notify;
