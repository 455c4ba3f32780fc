//! Link and queue rates as people write them ("20mbit", "500kbit", "1.5gbit"), in bits per second.
//!
//! Units are tc's bit units with decimal prefixes: `bit`, `kbit` (10^3), `mbit` (10^6), `gbit`
//! (10^9), `tbit` (10^12), case-insensitive, with an optional `/s` (`20Mbit/s`). A number
//! without a unit is refused: tc reads it as bytes per second, people read it as bits, so
//! either reading would surprise someone. Byte units (`kbps`, `mbps`) are refused for the same
//! reason (tc's `kbps` is kilobytes). Pure text: no I/O.

use std::fmt;

/// Why a rate did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateError(pub String);

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RateError {}

const UNITS: [(&str, u64); 5] = [
    ("tbit", 1_000_000_000_000),
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bit", 1),
];

/// Parses a rate into bits per second. `"0mbit"` parses to 0: whether zero is allowed is
/// the caller's rule.
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("/s").unwrap_or(&lower);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(RateError(format!(
            "{t:?} is not a rate: expected a number and a unit, like \"20mbit\""
        )));
    }
    if unit.is_empty() {
        return Err(RateError(format!(
            "{t:?} has no unit: write bit, kbit, mbit or gbit (e.g. \"{num}mbit\")"
        )));
    }
    let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = if unit.ends_with("bps") || unit.ends_with("b/s") && !unit.ends_with("bit/s") {
            " (byte units are ambiguous; use kbit, mbit, gbit)"
        } else {
            ""
        };
        return Err(RateError(format!(
            "{t:?}: unknown unit {unit:?}{hint}; expected bit, kbit, mbit, gbit or tbit"
        )));
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(RateError(format!("{t:?}: {num:?} is not a number")));
    }
    let too_big = || RateError(format!("{t:?} is too large"));
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse::<u64>().map_err(|_| too_big())?
    };
    let mut value = whole.checked_mul(scale).ok_or_else(too_big)?;
    // Fractional part: digit by digit, exact; digits below one bit/s are refused.
    let mut place = scale;
    for (i, d) in frac.bytes().enumerate() {
        place /= 10;
        let digit = u64::from(d - b'0');
        if place == 0 {
            if frac.bytes().skip(i).any(|d| d != b'0') {
                return Err(RateError(format!(
                    "{t:?}: more decimals than one bit per second"
                )));
            }
            break;
        }
        value = value.checked_add(digit * place).ok_or_else(too_big)?;
    }
    Ok(value)
}

/// Formats bits per second with the largest unit that keeps it short and exact
/// (`20000000` → `"20mbit"`, `1500000` → `"1500kbit"`, `999` → `"999bit"`).
pub fn format_rate(bps: u64) -> String {
    for (unit, scale) in UNITS {
        if bps >= scale && bps % scale == 0 {
            return format!("{}{unit}", bps / scale);
        }
    }
    if bps == 0 {
        return "0bit".to_string();
    }
    format!("{bps}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tc_units() {
        assert_eq!(parse_rate("20mbit"), Ok(20_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("1.5Mbit/s"), Ok(1_500_000));
        assert_eq!(parse_rate(" 64bit "), Ok(64));
        assert_eq!(parse_rate(".5kbit"), Ok(500));
        assert_eq!(parse_rate("0mbit"), Ok(0));
        assert_eq!(parse_rate("1.000kbit"), Ok(1000));
    }

    #[test]
    fn refuses_with_reasons() {
        for (bad, needle) in [
            ("20", "no unit"),
            ("mbit", "not a rate"),
            ("20mbps", "byte units"),
            ("20 furlongs", "unknown unit"),
            ("1.2.3mbit", "not a number"),
            ("1.5bit", "more decimals"),
            ("99999999999tbit", "too large"),
            ("", "not a rate"),
            ("-5mbit", "not a rate"),
        ] {
            let e = parse_rate(bad).expect_err(bad);
            assert!(e.0.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn format_round_trips() {
        for bps in [
            0,
            1,
            999,
            1000,
            1_500_000,
            20_000_000,
            1_000_000_000,
            123_456_789,
        ] {
            assert_eq!(parse_rate(&format_rate(bps)), Ok(bps), "{bps}");
        }
        assert_eq!(format_rate(20_000_000), "20mbit");
        assert_eq!(format_rate(1_500_000), "1500kbit");
    }
}
