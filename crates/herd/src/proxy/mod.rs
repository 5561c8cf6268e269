//! The proxy transport: for worker programs that know nothing of inherited fds.
//!
//! Each worker listens on a private port of its own on 127.0.0.1 (herd tells it
//! `PORT=<port>`); herd accepts client connections on the public socket and relays the
//! bytes to the chosen worker. This module owns the building blocks of that path and
//! nothing else:
//!
//! - [`ports`]: picking a private port that is free now (outside the ephemeral range);
//! - [`probe`]: knowing when a worker has started listening on it;
//! - [`header`]: the PROXY protocol header (v1 text, v2 binary) that tells the worker who
//!   the real client was;
//! - [`relay`]: copying the bytes both ways for one connection, with half-close.
//!
//! It must not choose workers, spawn tasks or keep state across connections: the driver
//! does that. The per-connection path allocates nothing on the heap that it can avoid
//! (the header is built in a stack buffer).

pub mod header;
pub mod ports;
pub mod probe;
pub mod relay;
