//! Parsers for the human-readable values of flags (and, later, config keys).

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::supervisor::Readiness;

/// "10s", "500ms", "1m30s" (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}): expected e.g. 500ms, 10s, 1m"))
}

/// A duration in the form [`parse_duration`] reads back exactly: the largest unit that
/// divides it, so `1500ms` stays "1500ms" and 90 s is "90s". Never a bare number, whose unit
/// a reader could mistake.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_string()
    } else if nanos % 1_000_000_000 == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if nanos % 1_000 == 0 {
        format!("{}us", d.as_micros())
    } else {
        format!("{nanos}ns")
    }
}

/// "auto", "notify" or "delay:500ms".
pub fn parse_readiness(s: &str) -> Result<Readiness, String> {
    match s {
        "auto" => Ok(Readiness::Auto),
        "notify" => Ok(Readiness::Notify),
        "message" => Ok(Readiness::Message),
        _ => match s.strip_prefix("delay:") {
            Some(d) => parse_duration(d).map(Readiness::Delay),
            None => Err(format!(
                "`{s}` is not a readiness policy: expected auto, notify, message or delay:DURATION"
            )),
        },
    }
}

/// "SIGTERM", "TERM", "term" or a number such as "15".
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let bad =
        || format!("`{s}` is not a signal: expected a name such as SIGTERM, INT, QUIT or a number");
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").unwrap_err().contains("`ten`"));
    }

    #[test]
    fn formatted_durations_parse_back() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(2_000_001), "2000001us"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn readiness() {
        assert_eq!(parse_readiness("auto"), Ok(Readiness::Auto));
        assert_eq!(parse_readiness("notify"), Ok(Readiness::Notify));
        assert_eq!(
            parse_readiness("delay:250ms"),
            Ok(Readiness::Delay(Duration::from_millis(250)))
        );
        assert!(parse_readiness("soon")
            .unwrap_err()
            .contains("auto, notify, message or delay"));
        assert_eq!(parse_readiness("message"), Ok(Readiness::Message));
        assert!(parse_readiness("delay:x").is_err());
        for r in [
            Readiness::Auto,
            Readiness::Notify,
            Readiness::Message,
            Readiness::Delay(Duration::from_millis(2500)),
        ] {
            assert_eq!(parse_readiness(&r.to_string()), Ok(r));
        }
        assert_eq!(
            Readiness::Delay(Duration::from_secs(2)).to_string(),
            "delay:2s"
        );
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("int"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("3"), Ok(Signal::SIGQUIT));
        assert!(parse_signal("SIGNOPE").unwrap_err().contains("`SIGNOPE`"));
        assert!(parse_signal("99").is_err());
    }
}
