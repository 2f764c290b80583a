//! Standard (Vixie) cron expressions and their fire times in a time zone.
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with
//! seconds in front. Each field is `*`, a value, a range `a-b`, a step
//! `*/n`, `a-b/n` or `a/n`, or a comma-separated list of those; months take
//! `JAN`..`DEC` and weekdays `SUN`..`SAT` (case-insensitive), and weekday
//! `0` and `7` are both Sunday. When both day fields are restricted (neither
//! starts with `*`), a day matching either fires; otherwise a day must match
//! both. `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight` and `@hourly` name the usual expressions.
//!
//! We parse cron ourselves rather than use the `cron` crate (Quartz
//! semantics: `1` is Sunday, seconds required) so the semantics are exactly
//! Vixie's, and the daylight-saving rules below are ours to state and test.
//!
//! Fire times are wall-clock times in the schedule's IANA time zone:
//! - a local time skipped by a spring-forward change fires once, at the
//!   first instant after the gap (`30 2 * * *` in Europe/Berlin on
//!   2026-03-29 fires at 03:00 CEST); every match inside one gap coalesces
//!   into that single fire;
//! - a local time that happens twice in autumn fires once, at its first
//!   occurrence (the summer-time one). A schedule therefore never fires
//!   twice for the same wall-clock time, and an expression such as
//!   `*/15 * * * *` pauses during the repeated hour.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use thiserror::Error;

/// Why an expression or a time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CronError {
    /// The expression is malformed.
    #[error("invalid cron expression `{expression}`: {message}")]
    Expression {
        /// The expression as given.
        expression: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone `{0}` (use an IANA name such as `Europe/Berlin` or `UTC`)")]
    TimeZone(String),
}

/// One field's bounds and names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[] };
const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Field = Field { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
};
// 7 is accepted as Sunday and folded onto 0 after parsing.
const DAY_OF_WEEK: Field =
    Field { name: "day-of-week", min: 0, max: 7, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] };

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let upper = text.to_ascii_uppercase();
        let value = match self.names.iter().position(|n| *n == upper) {
            // Names count from the field's first value: JAN is 1, SUN is 0.
            Some(index) => index as u32 + self.min,
            None => text.parse::<u32>().map_err(|_| {
                let hint = if self.names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({}..{})", self.names[0], self.names[self.names.len() - 1])
                };
                format!("{} field: `{text}` is not a number{hint}", self.name)
            })?,
        };
        if value < self.min || value > self.max {
            return Err(format!("{} field: {value} is out of range {}-{}", self.name, self.min, self.max));
        }
        Ok(value)
    }

    /// The set of values `text` selects, as a bit mask.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut mask = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(format!("{} field `{text}` has an empty list item", self.name));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{} field: step `{step}` must be a positive number", self.name)
                    })?;
                    (range, Some(step))
                }
                None => (item, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((low, high)) = range.split_once('-') {
                let (low, high) = (self.value(low)?, self.value(high)?);
                if low > high {
                    return Err(format!("{} field: range {range} runs backwards", self.name));
                }
                (low, high)
            } else {
                let value = self.value(range)?;
                // `a/n` means from a to the end in steps of n.
                (value, if step.is_some() { self.max } else { value })
            };
            let step = step.unwrap_or(1);
            let mut value = low;
            while value <= high {
                mask |= 1 << value;
                value += step;
            }
        }
        Ok(mask)
    }
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: a day matching either fires.
    either_day: bool,
    source: String,
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(expression: &str) -> Result<Self, CronError> {
        let invalid = |message: String| CronError::Expression { expression: expression.to_string(), message };
        let trimmed = expression.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(invalid(format!(
                    "unknown macro `{trimmed}` (@yearly, @monthly, @weekly, @daily, @hourly)"
                )));
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(invalid(format!(
                    "has {n} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
                )));
            }
        };
        let weekdays = DAY_OF_WEEK.parse(rest[4]).map_err(invalid)?;
        let cron = Cron {
            seconds: SECOND.parse(second).map_err(invalid)?,
            minutes: MINUTE.parse(rest[0]).map_err(invalid)?,
            hours: HOUR.parse(rest[1]).map_err(invalid)?,
            days: DAY_OF_MONTH.parse(rest[2]).map_err(invalid)?,
            months: MONTH.parse(rest[3]).map_err(invalid)?,
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            either_day: !rest[2].starts_with('*') && !rest[4].starts_with('*'),
            source: trimmed.to_string(),
        };
        if !cron.can_fire() {
            return Err(invalid("never fires: no month has the days it names".into()));
        }
        Ok(cron)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn has(mask: u64, bit: u32) -> bool {
    mask & (1 << bit) != 0
}

/// How far ahead a search looks: long enough for 29 February on a given
/// weekday, short enough to end quickly for a day that never comes.
const SEARCH_DAYS: i64 = 366 * 28;

impl Cron {
    /// Whether some day of some named month can match.
    fn can_fire(&self) -> bool {
        if self.either_day && self.weekdays != 0 {
            return true;
        }
        // The longest each month gets (February in a leap year).
        const LONGEST: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12)
            .any(|m| has(self.months, m) && next_bit(self.days, 1).is_some_and(|d| d <= LONGEST[m as usize]))
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = has(self.days, date.day());
        let dow = has(self.weekdays, date.weekday().num_days_from_sunday());
        if self.either_day { dom || dow } else { dom && dow }
    }

    /// The earliest time of day at or after `from` that matches.
    fn time_from(&self, from: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (from.hour(), from.minute(), from.second());
        let mut hour = next_bit(self.hours, h0)?;
        loop {
            let same_hour = hour == h0;
            let mut minute = next_bit(self.minutes, if same_hour { m0 } else { 0 });
            while let Some(m) = minute {
                let start = if same_hour && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, start) {
                    return NaiveTime::from_hms_opt(hour, m, s);
                }
                minute = next_bit(self.minutes, m + 1);
            }
            hour = next_bit(self.hours, hour + 1)?;
        }
    }

    /// The earliest local wall-clock time at or after `from` that matches.
    pub fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = from.date() + Duration::days(SEARCH_DAYS);
        let mut date = from.date();
        let mut time = from.time().with_nanosecond(0)?;
        while date <= limit {
            if !has(self.months, date.month()) {
                let (y, m) =
                    if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
                date = NaiveDate::from_ymd_opt(y, m, 1)?;
                time = NaiveTime::MIN;
                continue;
            }
            if self.day_matches(date)
                && let Some(at) = self.time_from(time)
            {
                return Some(date.and_time(at));
            }
            date = date.succ_opt()?;
            time = NaiveTime::MIN;
        }
        None
    }
}

/// A cron expression in a time zone: the fire times of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

/// Parses an IANA time zone name.
pub fn parse_zone(name: &str) -> Result<Tz, CronError> {
    name.parse::<Tz>().map_err(|_| CronError::TimeZone(name.to_string()))
}

impl CronSchedule {
    /// Parses `expression` for the IANA time zone `zone`.
    pub fn new(expression: &str, zone: &str) -> Result<Self, CronError> {
        Ok(Self { cron: expression.parse()?, zone: parse_zone(zone)? })
    }

    /// The expression.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The first fire time strictly after `after`, following the rules in
    /// this module's documentation; `None` if there is none within decades.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Every local time maps to the first instant whose wall clock reads
        // it or later; that map never decreases, so walking local matches in
        // order finds the first fire after `after`. Matches whose instant is
        // not later are the repeated hour's second pass or a coalesced gap.
        let mut from = after.with_timezone(&self.zone).naive_local().with_nanosecond(0)?;
        loop {
            let local = self.cron.next_local(from)?;
            let at = self.instant(local);
            if at > after {
                return Some(at);
            }
            from = local + Duration::seconds(1);
        }
    }

    /// The first instant whose wall clock in this zone reads `local` or later.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
            LocalResult::None => self.gap_end(local),
        }
    }

    /// The instant a spring-forward gap containing `local` ends.
    fn gap_end(&self, local: NaiveDateTime) -> DateTime<Utc> {
        // UTC offsets lie within -12 h..+14 h, so the instant is in this window.
        let naive_utc = local.and_utc().timestamp();
        let (mut low, mut high) = (naive_utc - 15 * 3600, naive_utc + 13 * 3600);
        let past = |t: i64| {
            let at = DateTime::from_timestamp(t, 0).unwrap_or_default();
            at.with_timezone(&self.zone).naive_local() > local
        };
        while low + 1 < high {
            let mid = low + (high - low) / 2;
            if past(mid) { high = mid } else { low = mid }
        }
        DateTime::from_timestamp(high, 0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn fires(expression: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
        let schedule = CronSchedule::new(expression, zone).unwrap();
        let mut at = utc(after);
        (0..n)
            .map(|_| {
                at = schedule.next_after(at).unwrap();
                at.to_rfc3339()
            })
            .collect()
    }

    fn error(expression: &str) -> String {
        expression.parse::<Cron>().unwrap_err().to_string()
    }

    #[test]
    fn original_cases() {
        assert_eq!(
            fires("0 0 * * *", "UTC", "2026-01-01T12:00:00Z", 2),
            ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00"]
        );
        // 2026-01-04 is a Sunday.
        assert_eq!(
            fires("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", 2),
            ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"]
        );
        assert_eq!(
            fires("* * * * * *", "UTC", "2026-01-01T00:00:00.5Z", 3),
            ["2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00", "2026-01-01T00:00:03+00:00"]
        );
    }

    #[test]
    fn weekday_ranges_and_names_are_standard() {
        // Friday 2026-01-02 23:00: the next weekdays are Mon 5th .. Fri 9th.
        let weekdays = fires("0 9 * * 1-5", "UTC", "2026-01-02T23:00:00Z", 5);
        let named = fires("0 9 * * mon-FRI", "UTC", "2026-01-02T23:00:00Z", 5);
        assert_eq!(weekdays, named);
        assert_eq!(weekdays[0], "2026-01-05T09:00:00+00:00");
        assert_eq!(weekdays[4], "2026-01-09T09:00:00+00:00");
        assert_eq!(fires("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", 1), ["2026-01-04T00:00:00+00:00"]);
        assert_eq!(fires("0 0 1 jun *", "UTC", "2026-01-01T00:00:00Z", 1), ["2026-06-01T00:00:00+00:00"]);
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, or any Friday: Fri 2 Jan, Fri 9 Jan, Tue 13 Jan, Fri 16 Jan.
        assert_eq!(
            fires("0 0 13 * 5", "UTC", "2026-01-01T00:00:00Z", 4),
            [
                "2026-01-02T00:00:00+00:00",
                "2026-01-09T00:00:00+00:00",
                "2026-01-13T00:00:00+00:00",
                "2026-01-16T00:00:00+00:00"
            ]
        );
        // With a `*` day-of-month only the weekday restricts.
        assert_eq!(fires("0 0 * * 2", "UTC", "2026-01-01T00:00:00Z", 1), ["2026-01-06T00:00:00+00:00"]);
        // `*/2` starts with `*`, so (as in Vixie cron) both must match.
        assert_eq!(fires("0 0 */2 * 2", "UTC", "2026-01-01T00:00:00Z", 1), ["2026-01-13T00:00:00+00:00"]);
    }

    #[test]
    fn steps_lists_and_macros() {
        assert_eq!(
            fires("*/20 9-10 * * *", "UTC", "2026-01-01T09:30:00Z", 4),
            [
                "2026-01-01T09:40:00+00:00",
                "2026-01-01T10:00:00+00:00",
                "2026-01-01T10:20:00+00:00",
                "2026-01-01T10:40:00+00:00"
            ]
        );
        assert_eq!(
            fires("5,10/25 0 1 1 *", "UTC", "2026-06-01T00:00:00Z", 3)[..2],
            ["2027-01-01T00:05:00+00:00", "2027-01-01T00:10:00+00:00"]
        );
        assert_eq!(
            fires("@daily", "UTC", "2026-01-01T01:00:00Z", 1),
            fires("0 0 * * *", "UTC", "2026-01-01T01:00:00Z", 1)
        );
        // Leap day, found years ahead.
        assert_eq!(fires("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1), ["2028-02-29T00:00:00+00:00"]);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error("* * *").contains("has 3 fields"), "{}", error("* * *"));
        assert!(error("60 * * * *").contains("minute field: 60 is out of range 0-59"));
        assert!(error("0 0 32 * *").contains("day-of-month field: 32 is out of range 1-31"));
        assert!(error("0 0 * * 8").contains("day-of-week field: 8 is out of range 0-7"));
        assert!(error("0 0 * FOO *").contains("month field: `FOO` is not a number or a name (JAN..DEC)"));
        assert!(error("0 5-1 * * *").contains("hour field: range 5-1 runs backwards"));
        assert!(error("*/0 * * * *").contains("step `0` must be a positive number"));
        assert!(error("0 0 30 2 *").contains("never fires"));
        assert!(error("@reboot").contains("unknown macro"));
        assert!(error("1,,2 * * * *").contains("empty list item"));
        assert_eq!(
            CronSchedule::new("* * * * *", "Mars/Olympus").unwrap_err().to_string(),
            "unknown time zone `Mars/Olympus` (use an IANA name such as `Europe/Berlin` or `UTC`)"
        );
    }

    #[test]
    fn time_zones() {
        // 09:00 in Tokyo (UTC+9), New York (UTC-5 in January), Kolkata (UTC+5:30).
        assert_eq!(
            fires("0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T00:00:00+00:00"]
        );
        assert_eq!(
            fires("0 9 * * *", "America/New_York", "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T14:00:00+00:00"]
        );
        assert_eq!(
            fires("0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T03:30:00+00:00"]
        );
    }

    #[test]
    fn spring_forward_gap_fires_once_at_its_end() {
        // Europe/Berlin jumps 02:00 CET -> 03:00 CEST on 2026-03-29 (01:00 UTC).
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00+00:00", // 02:30 CET
                "2026-03-29T01:00:00+00:00", // no 02:30: at 03:00 CEST, the gap's end
                "2026-03-30T00:30:00+00:00"  // 02:30 CEST
            ]
        );
        // Every match in the gap, and 03:00 itself, coalesce into one fire.
        assert_eq!(
            fires("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:40:00Z", 3),
            ["2026-03-29T00:45:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-29T01:15:00+00:00"]
        );
    }

    #[test]
    fn autumn_repeated_time_fires_once() {
        // Europe/Berlin goes 03:00 CEST -> 02:00 CET on 2026-10-25 (01:00 UTC):
        // 02:30 happens at 00:30 UTC and again at 01:30 UTC.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
        // Asked from inside the second pass, it does not fire again that day.
        assert_eq!(
            fires("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00+00:00"]
        );
        // A half-hourly schedule fires each wall-clock time once.
        assert_eq!(
            fires("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:10:00Z", 3),
            [
                "2026-10-25T00:30:00+00:00", // 02:30 CEST
                "2026-10-25T02:00:00+00:00", // 03:00 CET (02:00 and 02:30 CET were seen)
                "2026-10-25T02:30:00+00:00"
            ]
        );
    }

    #[test]
    fn new_york_dst() {
        // 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).
        assert_eq!(
            fires("30 2 * * *", "America/New_York", "2026-03-08T00:00:00Z", 1),
            ["2026-03-08T07:00:00+00:00"]
        );
        assert_eq!(
            fires("30 1 * * *", "America/New_York", "2026-11-01T00:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
    }
}
