//! herd's own log: tracing to stderr, human-readable lines or JSON objects.

use crate::config::LogFormat;

/// herd's own log on stderr: human-readable lines, or JSON objects with every field.
/// `HERD_LOG` filters (e.g. `HERD_LOG=debug`).
pub fn init(format: LogFormat) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_env("HERD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .with_target(false);
    // A program that embeds herd may have set up its own subscriber: that one stays.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init().map_err(drop),
        LogFormat::Text => builder
            // The message already names app, slot and pid; the fields are for JSON.
            .fmt_fields(fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    Ok(())
                }
            }))
            .try_init()
            .map_err(drop),
    };
}
