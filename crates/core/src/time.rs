//! Instants and durations in event time.
//!
//! An instant is a count of nanoseconds since the Unix epoch in an `i64`,
//! which covers 1677-09-21 to 2262-04-11: every time an emitter can mean, with
//! the full precision RFC 3339 allows. Times outside that range are rejected
//! by the parser rather than silently clamped.

use std::fmt;

/// An instant in event time, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(i64);

/// A span of event time in nanoseconds. Deadlines and lateness are durations.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Duration(i64);

const NANOS_PER_SECOND: i64 = 1_000_000_000;

impl Timestamp {
    /// The latest representable instant; used as "open ended".
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The earliest representable instant.
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// The instant `seconds` seconds after the epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds.saturating_mul(NANOS_PER_SECOND))
    }

    /// This instant moved by `duration`, saturating at the ends of the range.
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration.0))
    }

    /// This instant moved back by `duration`, saturating at the ends of the range.
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration.0))
    }

    /// The time from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// Parses an RFC 3339 date-time with a mandatory offset (`Z` or `±hh:mm`),
    /// returning `None` for anything else or for instants outside the range.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        parse_rfc3339(text.as_bytes())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`; fractional seconds only when present, in
    /// groups of three digits (milliseconds, microseconds or nanoseconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(NANOS_PER_SECOND);
        let nanos = self.0.rem_euclid(NANOS_PER_SECOND);
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )?;
        if nanos != 0 {
            if nanos % 1_000_000 == 0 {
                write!(f, ".{:03}", nanos / 1_000_000)?;
            } else if nanos % 1_000 == 0 {
                write!(f, ".{:06}", nanos / 1_000)?;
            } else {
                write!(f, ".{nanos:09}")?;
            }
        }
        f.write_str("Z")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

/// In schemas, an instant is what lifewatch writes: RFC 3339 in UTC with `Z`.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$",
        })
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);

    /// A duration of `seconds` seconds.
    pub const fn from_seconds(seconds: i64) -> Duration {
        Duration(seconds.saturating_mul(NANOS_PER_SECOND))
    }

    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Duration {
        Duration(nanos)
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Parses a human duration: one or more `<integer><unit>` parts with units
    /// `ms`, `s`, `m`, `h`, `d` (for example `15m`, `5d`, `1h30m`).
    pub fn parse_human(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".to_string());
        }
        let bytes = text.as_bytes();
        let mut total: i64 = 0;
        let mut index = 0;
        while index < bytes.len() {
            let start = index;
            while index < bytes.len() && bytes[index].is_ascii_digit() {
                index += 1;
            }
            if start == index {
                return Err(format!("{text:?} is not a duration such as 30s, 15m, 1h or 5d"));
            }
            let number: i64 =
                text[start..index].parse().map_err(|_| format!("{text:?}: number too large"))?;
            let unit_start = index;
            while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
                index += 1;
            }
            let unit = match &text[unit_start..index] {
                "ms" => 1_000_000,
                "s" => NANOS_PER_SECOND,
                "m" => 60 * NANOS_PER_SECOND,
                "h" => 3600 * NANOS_PER_SECOND,
                "d" => 86_400 * NANOS_PER_SECOND,
                "" => return Err(format!("{text:?}: missing unit (ms, s, m, h or d)")),
                other => return Err(format!("{text:?}: unknown unit {other:?}")),
            };
            total = number
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| format!("{text:?}: duration too large"))?;
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// Human form in the largest units that fit: `15m`, `1h30m`, `5d`, `2d3h`,
    /// `45s`, `250ms`; negative durations get a leading `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let mut rest = self.0.unsigned_abs();
        if rest == 0 {
            return f.write_str("0s");
        }
        let units: [(u64, &str); 5] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
        ];
        let mut written = false;
        for (size, name) in units {
            let count = rest / size;
            if count > 0 {
                write!(f, "{count}{name}")?;
                rest -= count * size;
                written = true;
            }
        }
        if !written {
            write!(f, "{rest}ns")?;
        }
        Ok(())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        _ => 28,
    }
}

fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    let mut value = 0u32;
    for &byte in slice {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with `T`/`t` and `Z`/`z` as
/// RFC 3339 allows. A leap second (`:60`) is read as the following second.
fn parse_rfc3339(bytes: &[u8]) -> Option<Timestamp> {
    let year = i64::from(digits(bytes, 0, 4)?);
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    let hour = digits(bytes, 11, 2)?;
    let minute = digits(bytes, 14, 2)?;
    let second = digits(bytes, 17, 2)?;
    if bytes.get(4) != Some(&b'-')
        || bytes.get(7) != Some(&b'-')
        || !matches!(bytes.get(10), Some(b'T' | b't'))
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut index = 19;
    let mut nanos: i64 = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        let start = index;
        while index < bytes.len() && bytes[index].is_ascii_digit() {
            if index - start < 9 {
                nanos = nanos * 10 + i64::from(bytes[index] - b'0');
            }
            index += 1;
        }
        let fraction_digits = index - start;
        if fraction_digits == 0 {
            return None;
        }
        for _ in fraction_digits..9 {
            nanos *= 10;
        }
    }
    let offset_seconds: i64 = match bytes.get(index)? {
        b'Z' | b'z' => {
            index += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let offset_hour = digits(bytes, index + 1, 2)?;
            let offset_minute = digits(bytes, index + 4, 2)?;
            if bytes.get(index + 3) != Some(&b':') || offset_hour > 23 || offset_minute > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            index += 6;
            sign * i64::from(offset_hour * 3600 + offset_minute * 60)
        }
        _ => return None,
    };
    if index != bytes.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    seconds.checked_mul(NANOS_PER_SECOND).and_then(|value| value.checked_add(nanos)).map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_utc_and_offsets() {
        let utc = Timestamp::parse_rfc3339("2026-11-27T12:15:00Z").unwrap();
        assert_eq!(utc.to_string(), "2026-11-27T12:15:00Z");
        let offset = Timestamp::parse_rfc3339("2026-11-22T00:00:00+02:00").unwrap();
        assert_eq!(offset.to_string(), "2026-11-21T22:00:00Z");
        let fraction = Timestamp::parse_rfc3339("2026-11-27T12:00:00.5-01:30").unwrap();
        assert_eq!(fraction.to_string(), "2026-11-27T13:30:00.500Z");
        let nanos = Timestamp::parse_rfc3339("1970-01-01T00:00:00.000000001Z").unwrap();
        assert_eq!(nanos.unix_nanos(), 1);
        assert_eq!(nanos.to_string(), "1970-01-01T00:00:00.000000001Z");
        let before_epoch = Timestamp::parse_rfc3339("1969-12-31T23:59:59Z").unwrap();
        assert_eq!(before_epoch.unix_nanos(), -NANOS_PER_SECOND);
        assert_eq!(before_epoch.to_string(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").unwrap().to_string(),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for text in [
            "",
            "2026-11-27",
            "2026-11-27T12:00:00",
            "2026-11-27 12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T12:00:00.Z",
            "2026-11-27T12:00:00+0200",
            "2026-11-27T12:00:00Zjunk",
            "3000-01-01T00:00:00Z",
            "１２３４-11-27T12:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn durations_round_trip() {
        for (text, seconds) in [("15m", 900), ("5d", 432_000), ("1h30m", 5400), ("30s", 30)] {
            let duration = Duration::parse_human(text).unwrap();
            assert_eq!(duration, Duration::from_seconds(seconds));
            assert_eq!(duration.to_string(), text);
        }
        assert!(Duration::parse_human("15").is_err());
        assert!(Duration::parse_human("m").is_err());
        assert!(Duration::parse_human("15 minutes").is_err());
        assert!(Duration::parse_human("99999999999999999d").is_err());
    }
}
