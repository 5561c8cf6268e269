//! The timestamp at the start of every log line: RFC 3339 in UTC with milliseconds by
//! default, or PM2's `log_date_format`, which is a moment.js pattern, in local time (as
//! PM2 prints it). Owns the parsing of the pattern and the calendar arithmetic; it must
//! not read the clock: the time comes with the line.

use std::time::{SystemTime, UNIX_EPOCH};

/// The pattern used when none is configured: `2024-05-01T12:03:04.567Z`, sortable and
/// unambiguous across machines in different time zones.
const RFC3339_MILLIS: &str = "YYYY-MM-DD[T]HH:mm:ss.SSS[Z]";

/// Which clock a pattern is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// Coordinated universal time; `Z` prints `+00:00`.
    Utc,
    /// The machine's local time, from `localtime_r` (so `TZ` and /etc/localtime).
    Local,
}

/// One piece of a moment.js pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `YYYY`
    Year,
    /// `YY`
    Year2,
    /// `MM` and `M`
    Month {
        pad: bool,
    },
    /// `DD` and `D`
    Day {
        pad: bool,
    },
    /// `HH` and `H`
    Hour {
        pad: bool,
    },
    /// `mm` and `m`
    Minute {
        pad: bool,
    },
    /// `ss` and `s`
    Second {
        pad: bool,
    },
    /// `SSS`
    Millis,
    /// `Z` (`+02:00`) and `ZZ` (`+0200`)
    Offset {
        colon: bool,
    },
}

/// The fields of one second, computed once per second (consecutive lines mostly share it).
#[derive(Debug, Clone, Copy, Default)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Seconds east of UTC.
    offset: i64,
}

/// A parsed date pattern with a one-second cache.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    tokens: Vec<Token>,
    zone: Zone,
    cached: Option<(i64, Civil)>,
}

impl Stamp {
    /// The default: RFC 3339, UTC, milliseconds.
    pub(crate) fn rfc3339() -> Stamp {
        Stamp::new(RFC3339_MILLIS, Zone::Utc)
    }

    /// A moment.js pattern: `YYYY YY MM M DD D HH H mm m ss s SSS Z ZZ`, and `[text]` for
    /// literal text. Any other character is printed as it is, as moment does; an
    /// unclosed `[` makes the rest of the pattern literal.
    pub(crate) fn new(pattern: &str, zone: Zone) -> Stamp {
        Stamp {
            tokens: parse(pattern),
            zone,
            cached: None,
        }
    }

    /// Appends the timestamp of `time` to `out`. Times before 1970 print as 1970.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        use std::io::Write;
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
        let millis = since.subsec_millis();
        let civil = match self.cached {
            Some((s, civil)) if s == secs => civil,
            _ => {
                let civil = match self.zone {
                    Zone::Utc => utc(secs),
                    Zone::Local => local(secs).unwrap_or_else(|| utc(secs)),
                };
                self.cached = Some((secs, civil));
                civil
            }
        };
        let two = |out: &mut Vec<u8>, v: u32, pad: bool| {
            let _ = if pad {
                write!(out, "{v:02}")
            } else {
                write!(out, "{v}")
            };
        };
        for token in &self.tokens {
            match token {
                Token::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Token::Year => {
                    let _ = write!(out, "{:04}", civil.year);
                }
                Token::Year2 => {
                    let _ = write!(out, "{:02}", civil.year.rem_euclid(100));
                }
                Token::Month { pad } => two(out, civil.month, *pad),
                Token::Day { pad } => two(out, civil.day, *pad),
                Token::Hour { pad } => two(out, civil.hour, *pad),
                Token::Minute { pad } => two(out, civil.minute, *pad),
                Token::Second { pad } => two(out, civil.second, *pad),
                Token::Millis => {
                    let _ = write!(out, "{millis:03}");
                }
                Token::Offset { colon } => {
                    let sign = if civil.offset < 0 { '-' } else { '+' };
                    let abs = civil.offset.unsigned_abs();
                    let (h, m) = (abs / 3600, abs % 3600 / 60);
                    let _ = if *colon {
                        write!(out, "{sign}{h:02}:{m:02}")
                    } else {
                        write!(out, "{sign}{h:02}{m:02}")
                    };
                }
            }
        }
    }
}

fn parse(pattern: &str) -> Vec<Token> {
    // Longest first, so `YYYY` is not read as two `YY`.
    const TOKENS: &[(&str, Token)] = &[
        ("YYYY", Token::Year),
        ("SSS", Token::Millis),
        ("YY", Token::Year2),
        ("MM", Token::Month { pad: true }),
        ("DD", Token::Day { pad: true }),
        ("HH", Token::Hour { pad: true }),
        ("mm", Token::Minute { pad: true }),
        ("ss", Token::Second { pad: true }),
        ("ZZ", Token::Offset { colon: false }),
        ("M", Token::Month { pad: false }),
        ("D", Token::Day { pad: false }),
        ("H", Token::Hour { pad: false }),
        ("m", Token::Minute { pad: false }),
        ("s", Token::Second { pad: false }),
        ("Z", Token::Offset { colon: true }),
    ];
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut rest = pattern;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '[' {
            let (text, after) = match rest[1..].find(']') {
                Some(end) => (&rest[1..1 + end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            };
            literal.push_str(text);
            rest = after;
            continue;
        }
        for (name, token) in TOKENS {
            if let Some(after) = rest.strip_prefix(name) {
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(token.clone());
                rest = after;
                continue 'outer;
            }
        }
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    tokens
}

/// Calendar fields of a Unix time in UTC (Howard Hinnant's `civil_from_days`).
fn utc(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month: month as u32,
        day: day as u32,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        offset: 0,
    }
}

/// Calendar fields in local time. `None` if the C library cannot say.
fn local(secs: i64) -> Option<Civil> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: localtime_r only writes the `tm` we own; an all-zero tm is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the reentrant variant.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return None;
    }
    Some(Civil {
        year: i64::from(tm.tm_year) + 1900,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        second: u32::try_from(tm.tm_sec).ok()?,
        offset: tm.tm_gmtoff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn show(stamp: &mut Stamp, t: SystemTime) -> String {
        let mut out = Vec::new();
        stamp.write(&mut out, t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_default_is_rfc3339_utc_with_millis_like_humantime() {
        let mut s = Stamp::rfc3339();
        for (secs, ms) in [
            (0, 0),
            (951_782_400, 7),
            (1_700_000_000, 123),
            (4_102_444_799, 999),
        ] {
            let t = at(secs, ms);
            assert_eq!(
                show(&mut s, t),
                humantime::format_rfc3339_millis(t).to_string()
            );
        }
    }

    #[test]
    fn moment_tokens() {
        // 2024-02-29 13:05:09.042 UTC, a leap day.
        let t = at(1_709_211_909, 42);
        let mut s = Stamp::new("YYYY-MM-DD HH:mm:ss.SSS Z", Zone::Utc);
        assert_eq!(show(&mut s, t), "2024-02-29 13:05:09.042 +00:00");
        let mut s = Stamp::new("YY/M/D H:m:s ZZ", Zone::Utc);
        assert_eq!(show(&mut s, t), "24/2/29 13:5:9 +0000");
        let mut s = Stamp::new("[at] HH[h] [unclosed", Zone::Utc);
        assert_eq!(show(&mut s, t), "at 13h unclosed");
        let mut s = Stamp::new("DD.MM.YYYY, é", Zone::Utc);
        assert_eq!(show(&mut s, t), "29.02.2024, é");
    }

    #[test]
    fn local_time_prints_its_offset() {
        let t = at(1_709_211_909, 0);
        let mut s = Stamp::new("Z", Zone::Local);
        let z = show(&mut s, t);
        assert!(
            z.len() == 6 && (z.starts_with('+') || z.starts_with('-')),
            "{z}"
        );
    }
}
