//! The foreground sink: the workers' lines on herd's own stdout and stderr, prefixed with
//! `app:slot | ` or as JSON objects, the format herd's own log takes too.

use std::io::Write;

use super::{LineRef, Sink, Stream};

/// Output format of herd's own log and of the workers' lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// herd's own stdout and stderr, for a foreground `herd run`.
pub(super) struct Terminal {
    pub(super) app: String,
    pub(super) format: LogFormat,
    pub(super) buf: Vec<u8>,
}

impl Sink for Terminal {
    fn line(&mut self, line: &LineRef<'_>) {
        self.buf.clear();
        format_line(&mut self.buf, &self.app, line, self.format);
        let _ = match line.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(&self.buf),
            Stream::Stderr => std::io::stderr().lock().write_all(&self.buf),
        };
    }

    fn dropped(&mut self, n: u64) {
        // Start mode waits instead of dropping; this is for completeness.
        tracing::warn!(
            "{n} lines of {} dropped: the output writer fell behind",
            self.app
        );
    }

    fn flush(&mut self) {
        let _ = std::io::stdout().flush();
    }
}

pub(super) fn format_line(buf: &mut Vec<u8>, app: &str, line: &LineRef<'_>, format: LogFormat) {
    let text = String::from_utf8_lossy(line.text);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    match format {
        LogFormat::Text => {
            let _ = writeln!(buf, "{app}:{} | {text}", line.slot);
        }
        LogFormat::Json => {
            let v = serde_json::json!({
                "timestamp": humantime::format_rfc3339_millis(line.time).to_string(),
                "app": app,
                "slot": line.slot,
                "pid": line.pid,
                "stream": line.stream.name(),
                "line": text,
            });
            let _ = serde_json::to_writer(&mut *buf, &v);
            buf.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let line = LineRef {
            slot: 2,
            pid: 9,
            stream: Stream::Stderr,
            text: b"hi\r",
            time: std::time::SystemTime::now(),
        };
        let mut buf = Vec::new();
        format_line(&mut buf, "api", &line, LogFormat::Text);
        assert_eq!(buf, b"api:2 | hi\n");
        buf.clear();
        format_line(&mut buf, "api", &line, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["line"], "hi");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["slot"], 2);
    }
}
