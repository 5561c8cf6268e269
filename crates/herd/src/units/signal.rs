//! Signals as people write them: "SIGTERM", "TERM", "term" or "15".

use nix::sys::signal::Signal;

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
    fn signals() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("int"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("3"), Ok(Signal::SIGQUIT));
        assert!(parse_signal("SIGNOPE").unwrap_err().contains("`SIGNOPE`"));
        assert!(parse_signal("99").is_err());
    }
}
