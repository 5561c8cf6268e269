//! herd's own log: tracing to stderr, human-readable lines or JSON objects.

use crate::output::LogFormat;

/// The daemon's log: as [`init`], and each app's lifecycle records also in its own file
/// in `logs` ([`super::app_events`]).
pub fn init_daemon(format: LogFormat, logs: std::path::PathBuf) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("HERD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let layer = match format {
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
        LogFormat::Text => layer.fmt_fields(message_only()).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .with(super::app_events::AppEvents::new(logs))
        .try_init();
}

/// Text lines carry the message only: it names app, slot and pid already; the fields are
/// for JSON.
fn message_only() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{value:?}")
        } else {
            Ok(())
        }
    })
}

/// Fills in `HERD_LOG_FORMAT` as the log format of a foreground herd (`herd run`, a
/// program that embeds herd) that neither a flag nor a file gave one; an error for a value
/// that is neither `text` nor `json`.
pub fn format_from_env(format: &mut Option<LogFormat>) -> Result<(), String> {
    if format.is_some() {
        return Ok(());
    }
    if let Ok(v) = std::env::var("HERD_LOG_FORMAT") {
        match <LogFormat as clap::ValueEnum>::from_str(&v, true) {
            Ok(f) => *format = Some(f),
            Err(_) => return Err(format!("HERD_LOG_FORMAT={v:?}: expected text or json")),
        }
    }
    Ok(())
}

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
        LogFormat::Text => builder.fmt_fields(message_only()).try_init().map_err(drop),
    };
}
