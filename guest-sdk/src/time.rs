//! Time as the engine writes it: the clock WASI gives every guest, as RFC
//! 3339 UTC with milliseconds, and the calendar arithmetic a handler needs
//! to move a date by whole days without a date library.
//!
//! ```
//! let now = objectos_guest::time::now();
//! assert!(now.rfc3339().ends_with('Z'));
//! let (y, m, d) = objectos_guest::time::civil_from_days(objectos_guest::time::days_from_civil(2024, 3, 1) - 1);
//! assert_eq!((y, m, d), (2024, 2, 29));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

/// An instant, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: u64,
    /// Milliseconds past that second.
    pub millis: u32,
}

/// The current time.
pub fn now() -> Timestamp {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp { unix_seconds: since.as_secs(), millis: since.subsec_millis() }
}

impl Timestamp {
    /// RFC 3339 in UTC with milliseconds, the engine's own format:
    /// `2026-11-29T10:15:00.123Z`.
    pub fn rfc3339(&self) -> String {
        let (y, m, d) = civil_from_days((self.unix_seconds / 86_400) as i64);
        let s = self.unix_seconds % 86_400;
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", s / 3600, s / 60 % 60, s % 60, self.millis)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `z` days after 1970-01-01: the inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_convert_both_ways() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn timestamps_are_written_as_the_engine_writes_them() {
        let at = Timestamp { unix_seconds: 1_795_948_500, millis: 7 };
        assert_eq!(at.rfc3339(), "2026-11-29T10:35:00.007Z");
    }
}
