//! Instants and durations in event time.
//!
//! An instant is a count of nanoseconds since the Unix epoch in an `i64`,
//! which covers 1677-09-21 to 2262-04-11: every time an emitter can mean, with
//! the full precision RFC 3339 allows. Times outside that range are rejected
//! by the parser rather than silently clamped.
//!
//! The calendar arithmetic is chrono's, and so is RFC 3339 parsing except
//! for one fast path: the form emitters write (`2026-11-27T12:00:00Z`,
//! with a fraction or a `±hh:mm` offset) is read by hand, anything else goes
//! to chrono. Why, with the figures, is next to `parse_canonical`;
//! `benches/time.rs` measures it against chrono and jiff, and the proptests
//! below hold both paths to chrono's answers.
//!
//! chrono accepts three forms that lifewatch's contract refuses, so
//! [`Timestamp::parse_rfc3339`] checks for them: a space instead of `T`
//! (RFC 3339's grammar has `T` or `t`, the space is only a note, and
//! lifewatch has always refused it), a U+2212 minus
//! sign in the offset, and second `60`. lifewatch keeps no leap-second table,
//! so it cannot tell a real leap second from a typo, and reading `23:59:60`
//! as the next second would order events wrongly around it: a leap second is
//! refused with a reason of its own.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};

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
    /// returning `None` for anything else, for a leap second (`:60`) or for
    /// instants outside the range.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        Timestamp::parse_rfc3339_with_reason(text).ok()
    }

    /// [`Timestamp::parse_rfc3339`], saying why a time is refused; the error's
    /// message is the detail of an `invalid_attribute` rejection.
    pub(crate) fn parse_rfc3339_with_reason(text: &str) -> Result<Timestamp, TimeError<'_>> {
        if let Some(time) = parse_canonical(text.as_bytes()) {
            return Ok(time);
        }
        let refused = TimeError::NotRfc3339(text);
        // chrono also takes a space for `T` and U+2212 for `-`; SPEC does not.
        if text.as_bytes().get(10) == Some(&b' ') || !text.is_ascii() {
            return Err(refused);
        }
        let parsed = DateTime::parse_from_rfc3339(text).map_err(|_| refused)?;
        // chrono reads second 60 as second 59 plus a whole second of nanoseconds.
        if parsed.nanosecond() >= 1_000_000_000 {
            return Err(TimeError::LeapSecond(text));
        }
        parsed.timestamp_nanos_opt().map(Timestamp).ok_or(refused)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with `Z`; fractional seconds only when present, in
    /// groups of three digits (milliseconds, microseconds or nanoseconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = DateTime::<Utc>::from_timestamp_nanos(self.0);
        let nanos = self.0.rem_euclid(NANOS_PER_SECOND);
        // The digits are written here rather than with chrono's `format`, which
        // interprets a format string on every call.
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
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
    /// `ms`, `s`, `m`, `h`, `d` (for example `15m`, `5d`, `1h30m`), each unit
    /// at most once and from the largest to the smallest: `15m15m` (which
    /// would silently mean 30m) and `5m1h` are most likely typing mistakes.
    pub fn parse_human(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".to_string());
        }
        let bytes = text.as_bytes();
        let mut total: i64 = 0;
        let mut previous_unit = i64::MAX;
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
            if unit >= previous_unit {
                return Err(format!(
                    "{text:?}: each unit at most once, from the largest to the smallest (such as 1h30m)"
                ));
            }
            previous_unit = unit;
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

/// The fast path of [`Timestamp::parse_rfc3339`]: the instant of a time in
/// the form emitters write, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` (`t` and
/// `z` too) with every field in range and a year from 1678 to 2261, so that
/// no offset can take it out of the `i64` range; `None` for anything else,
/// which chrono then parses or refuses with the reason.
///
/// Why it exists, measured (December 2026, 2-core machine): with chrono
/// alone, the in-memory replay of the 1,000,000-event `--faults` stream was
/// 4.9 % slower than before the reshaping (629cfcc), and callgrind put all of
/// the extra instructions of a 100,000-event replay in time parsing (chrono's
/// `parse_from_rfc3339` with lifewatch's checks). With this path the replay
/// takes 760.2 M instructions instead of 780.9 M (759.8 M before the
/// reshaping), about 206 fewer a time, and `benches/time.rs` gives 34 ns a
/// time against 53 ns for chrono alone, out of about 810 ns for a whole
/// event. Only digits and separators are read here; days in a month, leap
/// years and days since the epoch are still chrono's. Second 60, fields out
/// of range, other lengths and years outside 1678-2261 (where an offset
/// could leave the `i64` range) are left to chrono, which refuses them or
/// checks the range, so every refusal keeps its reason.
fn parse_canonical(bytes: &[u8]) -> Option<Timestamp> {
    let [
        y1,
        y2,
        y3,
        y4,
        b'-',
        mo1,
        mo2,
        b'-',
        d1,
        d2,
        b'T' | b't',
        h1,
        h2,
        b':',
        mi1,
        mi2,
        b':',
        s1,
        s2,
        rest @ ..,
    ] = bytes
    else {
        return None;
    };
    let year = digits(&[*y1, *y2, *y3, *y4])?;
    let month = digits(&[*mo1, *mo2])?;
    let day = digits(&[*d1, *d2])?;
    let hour = digits(&[*h1, *h2])?;
    let minute = digits(&[*mi1, *mi2])?;
    let second = digits(&[*s1, *s2])?;
    // Second 60 and out-of-range fields go to chrono, which refuses them.
    if !(1678..=2261).contains(&year) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (nanos, offset) = match rest {
        [b'.', fraction_and_offset @ ..] => {
            let length = fraction_and_offset.iter().take_while(|byte| byte.is_ascii_digit()).count();
            if !(1..=9).contains(&length) {
                return None;
            }
            let (fraction, offset) = fraction_and_offset.split_at(length);
            (digits(fraction)? * 10u32.pow(9 - length as u32), offset)
        }
        _ => (0, rest),
    };
    let offset_seconds = match offset {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let days = i64::from(date.num_days_from_ce()) - DAYS_FROM_CE_TO_EPOCH;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    Some(Timestamp(seconds * NANOS_PER_SECOND + i64::from(nanos)))
}

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const DAYS_FROM_CE_TO_EPOCH: i64 = 719_163;

/// The value of ASCII decimal digits; `None` if any byte is not one.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, byte| {
        let digit = byte.wrapping_sub(b'0');
        (digit <= 9).then(|| value * 10 + u32::from(digit))
    })
}

/// Why a `time` attribute is refused; the message is the rejection's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeError<'a> {
    /// Not `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)` with `T`/`t` and
    /// `Z`/`z`, not a calendar date and time, or outside the range.
    #[error("{0:?} is not an RFC 3339 time with an offset (Z or ±hh:mm)")]
    NotRfc3339(&'a str),
    /// Second `60`.
    #[error("{0:?} has second 60: leap seconds are not accepted (lifewatch keeps no leap-second table)")]
    LeapSecond(&'a str),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5+01:00",
            "2026-11-27T12:00:00\u{2212}02:00",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn refuses_a_leap_second_with_its_own_reason() {
        for text in ["2016-12-31T23:59:60Z", "2016-12-31t23:59:60.999999999z", "2026-11-27T12:30:60-05:00"] {
            assert_eq!(Timestamp::parse_rfc3339_with_reason(text), Err(TimeError::LeapSecond(text)));
        }
        assert_eq!(
            Timestamp::parse_rfc3339_with_reason("2016-12-31T23:59:61Z"),
            Err(TimeError::NotRfc3339("2016-12-31T23:59:61Z"))
        );
    }

    #[test]
    fn a_leap_second_is_an_invalid_attribute_of_the_event() {
        let line = |time: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"e1","source":"s","type":"account.activated","subject":"acc_1","time":"{time}"}}"#
            )
        };
        let cases = [
            (
                "2016-12-31T23:59:60Z",
                r#"attribute "time" "2016-12-31T23:59:60Z" has second 60: leap seconds are not accepted (lifewatch keeps no leap-second table)"#,
            ),
            (
                "2026-13-01T00:00:00Z",
                r#"attribute "time" "2026-13-01T00:00:00Z" is not an RFC 3339 time with an offset (Z or ±hh:mm)"#,
            ),
        ];
        for (time, detail) in cases {
            let rejection = crate::parse_event(line(time).as_bytes()).unwrap_err();
            assert_eq!(rejection.reason, crate::RejectReason::InvalidAttribute, "{time}");
            assert_eq!(rejection.detail, detail);
        }
        assert!(crate::parse_event(line("2016-12-31T23:59:59.999Z").as_bytes()).is_ok());
    }

    /// What lifewatch must answer for `text`, taken from chrono, the oracle:
    /// chrono's instant, except for the forms SPEC deliberately refuses.
    fn expected(text: &str) -> Option<i64> {
        let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        let refused_by_spec =
            // A space instead of `T`: RFC 3339's grammar has `T` or `t`, the
            // space is only a note, and the simulator's faults use it.
            text.as_bytes().get(10) == Some(&b' ')
            // U+2212 MINUS SIGN in the offset: SPEC's offsets are `±hh:mm` in ASCII.
            || text.contains('\u{2212}')
            // A leap second: no leap-second table is kept.
            || text.get(17..19) == Some("60");
        if refused_by_spec {
            return None;
        }
        // An instant chrono has but an i64 of nanoseconds has not (before
        // 1677-09-21 or after 2262-04-11) is refused, not clamped.
        parsed.timestamp_nanos_opt()
    }

    /// lifewatch answers as the oracle does, and a time it accepts is the same
    /// instant for jiff, whose calendar arithmetic is independent of chrono's
    /// (jiff refuses more than 9 fraction digits, which RFC 3339 allows).
    fn check(text: &str) {
        let lifewatch = Timestamp::parse_rfc3339(text).map(Timestamp::unix_nanos);
        assert_eq!(lifewatch, expected(text), "{text:?}");
        // The fast path, where it answers, answers as chrono does.
        if let Some(fast) = parse_canonical(text.as_bytes()) {
            assert_eq!(Some(fast.unix_nanos()), expected(text), "fast path: {text:?}");
        }
        let fraction_digits =
            text.get(20..).map_or(0, |rest| rest.bytes().take_while(u8::is_ascii_digit).count());
        if let Some(nanos) = lifewatch
            && fraction_digits <= 9
        {
            let jiff = text
                .parse::<jiff::Timestamp>()
                .map(|at| at.as_nanosecond())
                .map_err(|error| error.to_string());
            assert_eq!(jiff, Ok(i128::from(nanos)), "{text:?}");
        }
    }

    #[test]
    fn the_fast_path_takes_the_forms_emitters_write() {
        for (text, nanos) in [
            ("2026-11-27T00:00:00Z", 1_795_737_600_000_000_000),
            ("2026-11-27t00:00:00z", 1_795_737_600_000_000_000),
            ("2026-11-27T02:00:00+02:00", 1_795_737_600_000_000_000),
            ("2026-11-26T23:30:00-00:30", 1_795_737_600_000_000_000),
            ("2026-11-27T00:00:00.5Z", 1_795_737_600_500_000_000),
            ("2026-11-27T00:00:00.000000001Z", 1_795_737_600_000_000_001),
            ("1970-01-01T00:00:00Z", 0),
            ("1969-12-31T23:59:59.999999999Z", -1),
            ("2024-02-29T12:00:00Z", 1_709_208_000_000_000_000),
        ] {
            assert_eq!(parse_canonical(text.as_bytes()), Some(Timestamp(nanos)), "{text}");
            check(text);
        }
        // Left to chrono, which refuses them or (outside 1678-2261) checks the range.
        for text in [
            "2016-12-31T23:59:60Z",
            "2026-02-29T00:00:00Z",
            "2026-11-27T12:00:00.1234567891Z",
            "2026-11-27T12:00:00+24:00",
            "2026-11-27 12:00:00Z",
            "1677-09-21T00:12:43.145224192Z",
            "2262-04-11T23:47:16.854775807Z",
        ] {
            assert_eq!(parse_canonical(text.as_bytes()), None, "{text}");
            check(text);
        }
    }

    #[test]
    fn agrees_with_chrono_on_edge_cases() {
        for text in [
            "2024-02-29T00:00:00Z",
            "2000-02-29T12:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "1999-12-31T23:59:59.999999999Z",
            "2000-01-01T00:00:00+00:00",
            "2000-01-01T00:30:00+01:00",
            "1999-12-31T23:30:00-00:30",
            "2026-11-27T12:00:00-00:00",
            "2026-11-27t12:00:00z",
            "2026-11-27T12:00:00.1Z",
            "2026-11-27T12:00:00.123456789Z",
            "2026-11-27T12:00:00.1234567891Z",
            "2026-11-27T12:00:00+23:59",
            "2026-11-27T12:00:00-23:59",
            "2026-11-27T12:00:00+24:00",
            "2026-11-27T12:00:00+02:60",
            "2026-11-27T12:00:00+02",
            "2026-11-27T12:00:00+0200",
            "2026-11-27T12:00:00,5Z",
            "2026-11-27T12:00Z",
            "2026-11-27T12:00:00Z[UTC]",
            "2026-00-10T12:00:00Z",
            "2026-04-31T12:00:00Z",
            "2026-11-00T12:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T12:60:00Z",
            "2026-11-27T12:00:61Z",
            "2026-11-27 12:00:00Z",
            "2026-11-27T12:00:00\u{2212}02:00",
            "2016-12-31T23:59:60Z",
            "1677-09-21T00:12:43.145224192Z",
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775807Z",
            "2262-04-11T23:47:16.854775808Z",
            "2262-04-12T01:47:16.854775807+02:00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "+2026-11-27T12:00:00Z",
            " 2026-11-27T12:00:00Z",
            "2026-11-27T12:00:00Z ",
        ] {
            check(text);
        }
    }

    fn two_digits(range: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = String> {
        range.prop_map(|value| format!("{value:02}"))
    }

    /// Date-times shaped like RFC 3339, with every field sometimes out of range
    /// and the separators, fraction and offset in every form discussed above.
    fn rfc3339_like() -> impl Strategy<Value = String> {
        let year = prop_oneof![1670u32..=2270, 0u32..=9999, Just(1900), Just(2000), Just(2100), Just(2024)]
            .prop_map(|year| format!("{year:04}"));
        let month = prop_oneof![two_digits(1..=12), two_digits(0..=13), two_digits(0..=99)];
        let day = prop_oneof![two_digits(1..=28), two_digits(28..=31), two_digits(0..=32)];
        let separator = prop_oneof![4 => Just("T"), 2 => Just("t"), 1 => Just(" ")];
        let hour = prop_oneof![two_digits(0..=23), two_digits(22..=25)];
        let minute = prop_oneof![two_digits(0..=59), two_digits(58..=61)];
        let second = prop_oneof![two_digits(0..=59), two_digits(58..=61)];
        let fraction = prop_oneof![
            Just(String::new()),
            "[0-9]{1,9}".prop_map(|digits| format!(".{digits}")),
            "[0-9]{10,12}".prop_map(|digits| format!(".{digits}")),
            Just(".".to_string()),
        ];
        let sign = prop_oneof![4 => Just("+"), 4 => Just("-"), 1 => Just("\u{2212}")];
        let offset = prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            (
                sign,
                prop_oneof![two_digits(0..=23), two_digits(0..=25)],
                prop_oneof![two_digits(0..=59), two_digits(0..=61)]
            )
                .prop_map(|(sign, hour, minute)| format!("{sign}{hour}:{minute}")),
            Just("-00:00".to_string()),
            Just(String::new()),
        ];
        (year, month, day, separator, hour, minute, second, fraction, offset).prop_map(
            |(year, month, day, separator, hour, minute, second, fraction, offset)| {
                format!("{year}-{month}-{day}{separator}{hour}:{minute}:{second}{fraction}{offset}")
            },
        )
    }

    proptest! {
        #[test]
        fn agrees_with_chrono_on_generated_times(text in rfc3339_like()) {
            check(&text);
        }

        #[test]
        fn agrees_with_chrono_on_near_misses(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?") {
            check(&text);
        }

        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,32}") {
            check(&text);
        }

        #[test]
        fn formats_what_it_parses(nanos in any::<i64>()) {
            let time = Timestamp::from_unix_nanos(nanos);
            let text = time.to_string();
            prop_assert_eq!(Timestamp::parse_rfc3339(&text), Some(time));
            let jiff = text.parse::<jiff::Timestamp>().map(|at| at.as_nanosecond()).map_err(|error| error.to_string());
            prop_assert_eq!(jiff, Ok(i128::from(nanos)));
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
        assert_eq!(Duration::parse_human("1d2h3m4s5ms").unwrap().as_nanos(), 93_784_005_000_000);
        for repeated_or_out_of_order in ["15m15m", "5m1h", "1s1d", "30s500ms1s"] {
            let error = Duration::parse_human(repeated_or_out_of_order).unwrap_err();
            assert!(error.contains("at most once"), "{repeated_or_out_of_order}: {error}");
        }
    }
}
