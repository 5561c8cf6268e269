//! The leaf of the crate: values as people write them (durations, byte sizes, percentages,
//! signals, app names), parsed and printed back. Everything may use this module; it uses nothing of herd.

mod duration;
mod name;
mod percent;
mod signal;
mod size;

pub use duration::{format_duration, parse_duration};
pub use name::{app_name_from, is_app_name};
pub use percent::Percent;
pub use signal::parse_signal;
pub use size::{format_size, human_size, parse_size};
