//! A share written as a percentage: `40%`, `12.5%`. Kept in hundredths of a percent, so the
//! text people write reads back exactly and shares multiply without floating point.

use std::fmt;
use std::str::FromStr;

/// Hundredths of a percent in 100 %.
const WHOLE: u32 = 100 * 100;

/// A share of something, more than 0 % and at most 100 %, to a hundredth of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent {
    hundredths: u32,
}

impl Percent {
    /// This share of `whole`, rounded down.
    pub fn of(self, whole: u64) -> u64 {
        let part = u128::from(whole) * u128::from(self.hundredths) / u128::from(WHOLE);
        // At most `whole`, so it fits.
        u64::try_from(part).unwrap_or(whole)
    }
}

impl FromStr for Percent {
    type Err = String;

    /// "40%", "12.5%", "0.25 %": a number with at most two decimals, then `%`.
    fn from_str(value: &str) -> Result<Percent, String> {
        let bad = || {
            format!(
                "`{value}` is not a percentage: expected more than 0% and at most 100%, e.g. 40% or 12.5%"
            )
        };
        let number = value.trim().strip_suffix('%').ok_or_else(bad)?.trim_end();
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let fraction: u32 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
        let hundredths = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(bad)?;
        if hundredths == 0 || hundredths > WHOLE {
            return Err(bad());
        }
        Ok(Percent { hundredths })
    }
}

impl fmt::Display for Percent {
    /// "40%", "12.5%", "0.25%": what [`Percent::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.hundredths / 100, self.hundredths % 100);
        match fraction {
            0 => write!(f, "{whole}%"),
            f10 if f10 % 10 == 0 => write!(f, "{whole}.{}%", f10 / 10),
            _ => write!(f, "{whole}.{fraction:02}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Percent {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_prints_back() {
        for (text, shown) in [
            ("40%", "40%"),
            ("12.5%", "12.5%"),
            ("0.25%", "0.25%"),
            ("100%", "100%"),
            (" 40 % ", "40%"),
            ("40.0%", "40%"),
            ("7.05%", "7.05%"),
        ] {
            assert_eq!(p(text).to_string(), shown, "{text}");
            assert_eq!(p(shown), p(text));
        }
    }

    #[test]
    fn takes_its_share_exactly() {
        assert_eq!(p("40%").of(1 << 30), 429_496_729);
        assert_eq!(p("50%").of(1 << 30), 1 << 29);
        assert_eq!(p("100%").of(u64::MAX), u64::MAX);
        assert_eq!(p("12.5%").of(800), 100);
    }

    #[test]
    fn refuses_what_is_not_a_share() {
        for text in [
            "40",
            "0%",
            "0.00%",
            "101%",
            "100.01%",
            "-5%",
            "%",
            "4o%",
            "1.234%",
            ".5%",
            "99999999999%",
        ] {
            let err = text.parse::<Percent>().unwrap_err();
            assert_eq!(
                err,
                format!("`{text}` is not a percentage: expected more than 0% and at most 100%, e.g. 40% or 12.5%")
            );
        }
    }
}
