//! Periods as written in the configuration: a whole number and a unit, e.g. `500ms`, `30s`,
//! `1m`, `1h`, `1d`.

use sluice_core::Nanos;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};

const MINUTE: Nanos = 60 * NANOS_PER_SEC;
const HOUR: Nanos = 60 * MINUTE;
const DAY: Nanos = 24 * HOUR;

/// The longest period accepted: a (leap) year. Longer windows are almost certainly a mistake
/// (a typo'd unit) and would keep counters for longer than any proxy runs.
pub(crate) const MAX_PERIOD: Nanos = 366 * DAY;

/// Why a period was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not `<digits><unit>`.
    Malformed,
    /// Zero.
    Zero,
    /// Above [`MAX_PERIOD`].
    TooLong,
}

/// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d` into nanoseconds.
pub(crate) fn parse_period(text: &str) -> Result<Nanos, DurationError> {
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::Malformed);
    }
    let scale = match unit {
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SEC,
        "m" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        _ => return Err(DurationError::Malformed),
    };
    // Only ASCII digits, so the only possible failure is overflow: far too long anyway.
    let count: u64 = digits.parse().map_err(|_| DurationError::TooLong)?;
    let nanos = count.checked_mul(scale).ok_or(DurationError::TooLong)?;
    if nanos == 0 {
        return Err(DurationError::Zero);
    }
    if nanos > MAX_PERIOD {
        return Err(DurationError::TooLong);
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_scales_to_nanoseconds() {
        assert_eq!(parse_period("250ms"), Ok(250 * NANOS_PER_MILLI));
        assert_eq!(parse_period("30s"), Ok(30 * NANOS_PER_SEC));
        assert_eq!(parse_period("1m"), Ok(60 * NANOS_PER_SEC));
        assert_eq!(parse_period("2h"), Ok(7200 * NANOS_PER_SEC));
        assert_eq!(parse_period("1d"), Ok(86_400 * NANOS_PER_SEC));
        assert_eq!(parse_period("366d"), Ok(MAX_PERIOD));
    }

    #[test]
    fn malformed_zero_and_too_long_periods_are_told_apart() {
        for text in [
            "", "s", "5", "5x", "5 s", " 5s", "1.5s", "-1s", "5S", "1m30s",
        ] {
            assert_eq!(parse_period(text), Err(DurationError::Malformed), "{text}");
        }
        assert_eq!(parse_period("0s"), Err(DurationError::Zero));
        assert_eq!(parse_period("367d"), Err(DurationError::TooLong));
        assert_eq!(
            parse_period("99999999999999999999999ms"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse_period("18446744073709551615d"),
            Err(DurationError::TooLong)
        );
    }
}
