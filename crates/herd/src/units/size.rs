//! Byte sizes as people write them in config files: `512K`, `200M`, `1G`, or a plain number
//! of bytes.
//!
//! The units are binary (1K = 1024 bytes, 1G = 1024³), as in PM2's `max_memory_restart`:
//! users copy these values from ecosystem files, and the same text must mean the same limit.
//! `KB`/`KiB` and friends are accepted as spellings of the same binary units.

/// The multiplier of each unit letter, binary as documented in the module.
const UNITS: [(char, u64); 4] = [
    ('K', 1 << 10),
    ('M', 1 << 20),
    ('G', 1 << 30),
    ('T', 1 << 40),
];

/// What every error message says a size looks like.
const EXPECTED: &str =
    "expected bytes or a number with K, M, G or T (binary: 1K = 1024), e.g. 200M, 1G";

/// Parses "1G", "200M", "512k", "1GiB", "4096" (bytes) into a number of bytes.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("`{value}` is not a size: {EXPECTED}");
    let text = value.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let count: u64 = digits.parse().map_err(|_| bad())?;
    let unit = unit.trim_start().to_ascii_uppercase();
    let multiplier = match unit.as_str() {
        "" | "B" => 1,
        _ => {
            let mut chars = unit.chars();
            let letter = chars.next().ok_or_else(bad)?;
            let suffix = chars.as_str();
            if !matches!(suffix, "" | "B" | "IB") {
                return Err(bad());
            }
            UNITS
                .iter()
                .find(|(l, _)| *l == letter)
                .map(|(_, m)| *m)
                .ok_or_else(bad)?
        }
    };
    count
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{value}` is not a size: too large"))
}

/// A size in the form [`parse_size`] reads back exactly: the largest unit that divides it
/// ("1G", "1536K"), or plain bytes ("1000").
pub fn format_size(bytes: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, multiplier)| bytes != 0 && bytes % multiplier == 0)
        .map_or_else(
            || bytes.to_string(),
            |(letter, multiplier)| format!("{}{letter}", bytes / multiplier),
        )
}

/// A size for people to read, in the largest binary unit it reaches, with at most one
/// decimal: "300 MiB", "1.2 GiB", "1 GiB", "512 B". Not parsed back (see [`format_size`]).
pub fn human_size(bytes: u64) -> String {
    const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >= 1 << (10 * (unit + 1)) {
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", NAMES[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_sizes_parse_back() {
        let cases = [
            (0, "0"),
            (1000, "1000"),
            (1 << 30, "1G"),
            (1536 << 10, "1536K"),
            (3 << 40, "3T"),
            (u64::MAX, "18446744073709551615"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1 << 10), "1 KiB");
        assert_eq!(human_size(300 << 20), "300 MiB");
        assert_eq!(human_size(1200 << 20), "1.2 GiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size((2048 << 20) / 10), "204.8 MiB");
        assert_eq!(human_size(3 << 40), "3 TiB");
        assert_eq!(human_size(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn binary_units() {
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("200M"), Ok(200 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
    }

    #[test]
    fn spellings_of_the_same_unit() {
        for text in ["1g", "1G", "1GB", "1GiB", "1 G", " 1gib "] {
            assert_eq!(parse_size(text), Ok(1 << 30), "{text}");
        }
    }

    #[test]
    fn plain_bytes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for text in ["", "G", "1.5G", "1X", "1GG", "-1M", "ten"] {
            let err = parse_size(text).unwrap_err();
            assert!(
                err.contains("is not a size: expected bytes"),
                "{text}: {err}"
            );
        }
        assert_eq!(
            parse_size("99999999999T"),
            Err("`99999999999T` is not a size: too large".to_string())
        );
    }
}
