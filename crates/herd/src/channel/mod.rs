//! How workers talk to the primary: the sd_notify datagram socket ([`notify`]) and the
//! Node-compatible message channel ([`framing`], [`worker`]).
//!
//! This module parses and attributes messages; it never decides what they mean for the
//! lifecycle (the supervisor does).

pub mod flow;
pub mod framing;
pub mod messages;
pub mod node_cluster;
pub mod notify;
mod scm;
pub mod worker;
