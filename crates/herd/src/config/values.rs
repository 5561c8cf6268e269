//! Parsers for the human-readable values of flags and config keys that name herd's own
//! policies (the plain units, durations, sizes and signals, are in [`crate::units`]).

use crate::supervisor::Readiness;
use crate::units::parse_duration;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
}
