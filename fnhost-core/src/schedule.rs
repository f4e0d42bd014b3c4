//! Timer trigger schedules: NCRONTAB expressions with seconds, and .NET
//! `TimeSpan` intervals.
//!
//! A timer trigger's `schedule` (after `%Setting%` resolution, which is the
//! caller's job) is either
//!
//! * a six-field NCRONTAB expression
//!   `{second} {minute} {hour} {day} {month} {day-of-week}`, for example
//!   `0 */5 * * * *` (every five minutes) or `0 30 9 * * Mon-Fri`
//!   (09:30 on weekdays), or
//! * a .NET `TimeSpan` string such as `00:05:00` or `1.02:03:04`, which
//!   means "run every interval".
//!
//! ```
//! use fnhost_core::schedule::Schedule;
//! use chrono::{TimeZone, Utc};
//!
//! let every_five = Schedule::parse("0 */5 * * * *").expect("valid");
//! let t = Utc.with_ymd_and_hms(2024, 3, 1, 10, 2, 0).unwrap();
//! let next = every_five.next_after(&t).expect("has a next run");
//! assert_eq!(next, Utc.with_ymd_and_hms(2024, 3, 1, 10, 5, 0).unwrap());
//!
//! let interval: Schedule = "00:00:30".parse().expect("valid");
//! assert!(!interval.is_cron());
//! assert_eq!(interval.to_string(), "00:00:30");
//! ```
//!
//! Unlike classic cron, when both the day-of-month and the day-of-week
//! fields are restricted, a time must match **both** (`0 0 0 13 * 5` is
//! midnight on each Friday the 13th). A field written `*` restricts nothing.
//!
//! Long (about 1,350 lines): 770 lines of NCRONTAB and TimeSpan parsing and
//! the next-occurrence search across time zones and DST, the rest tests.

use crate::timespan::TimeSpan;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Timelike,
};

/// How many years ahead a cron search looks before concluding that the
/// expression never fires. The Gregorian calendar (weekdays included)
/// repeats every 400 years, so an expression with no occurrence in this
/// window has none at all.
const SEARCH_YEARS: i32 = 401;

/// Example expressions used in error messages.
const CRON_EXAMPLE: &str = "\"0 */5 * * * *\" (every 5 minutes)";
const TIMESPAN_EXAMPLE: &str = "\"00:05:00\" (every 5 minutes)";
const NOT_RECOGNIZED: &str =
    "The schedule expression was not recognized as a valid cron expression or timespan string.";

/// A parsed timer schedule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// A six-field NCRONTAB expression.
    Cron(CronSchedule),
    /// A fixed interval (from a .NET `TimeSpan` string): the next run after
    /// instant `t` is `t + interval`.
    Interval(Duration),
}

impl Schedule {
    /// Parses a schedule expression: a six-field NCRONTAB expression, or,
    /// when the text does not look like cron, a .NET `TimeSpan` interval.
    ///
    /// `%Setting%` references must already be resolved.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::new(
                ScheduleErrorKind::Empty,
                None,
                format!(
                    "The schedule expression is empty; write a 6-field NCRONTAB expression such as {CRON_EXAMPLE} or a timespan such as {TIMESPAN_EXAMPLE}."
                ),
            ));
        }
        if trimmed.split_whitespace().nth(1).is_some() {
            return CronSchedule::parse(trimmed).map(Schedule::Cron);
        }
        // A single token: cron needs six fields, so this can only be a
        // timespan.
        if trimmed.contains(':')
            || trimmed
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            return parse_timespan(trimmed).map(Schedule::Interval);
        }
        Err(ScheduleError::new(
            ScheduleErrorKind::Unrecognized,
            None,
            format!(
                "{NOT_RECOGNIZED} \"{trimmed}\" is a single word: an NCRONTAB schedule needs 6 fields {{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}, e.g. {CRON_EXAMPLE}, and a timespan looks like {TIMESPAN_EXAMPLE} or \"1.02:03:04\" (d.hh:mm:ss)."
            ),
        ))
    }

    /// The next occurrence strictly after `after`, computed in the time
    /// zone of `after`.
    ///
    /// For cron schedules the sub-second part of `after` is ignored and the
    /// search runs over local wall-clock times (see
    /// [`CronSchedule::next_after`]). For intervals the result is
    /// `after + interval`. `None` means there is no further occurrence (an
    /// impossible date such as February 30th, a zero interval, or the end of
    /// the representable time range).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        match self {
            Schedule::Cron(cron) => cron.next_after(after),
            Schedule::Interval(interval) => {
                if interval.is_zero() {
                    return None;
                }
                let delta = TimeDelta::from_std(*interval).ok()?;
                after.clone().checked_add_signed(delta)
            }
        }
    }

    /// The next `n` occurrences after `after` (fewer if the schedule runs
    /// out).
    pub fn upcoming<Tz: TimeZone>(&self, after: &DateTime<Tz>, n: usize) -> Vec<DateTime<Tz>> {
        upcoming_by(after, n, |at| self.next_after(at))
    }

    /// Whether this is a cron schedule (as opposed to an interval).
    pub fn is_cron(&self) -> bool {
        matches!(self, Schedule::Cron(_))
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    /// The canonical text: the cron expression with single spaces between
    /// fields, or the interval as .NET prints a `TimeSpan`
    /// (`hh:mm:ss`, `d.hh:mm:ss`, with `.fffffff` when there is a fraction).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(cron) => fmt::Display::fmt(cron, f),
            Schedule::Interval(interval) => fmt_timespan(*interval, f),
        }
    }
}

/// One of the six fields of an NCRONTAB expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Seconds, 0-59.
    Second,
    /// Minutes, 0-59.
    Minute,
    /// Hours, 0-23.
    Hour,
    /// Day of the month, 1-31.
    Day,
    /// Month, 1-12 or `Jan`-`Dec`.
    Month,
    /// Day of the week, 0-6 (Sunday is 0) or `Sun`-`Sat`.
    DayOfWeek,
}

impl CronField {
    /// All fields, in expression order.
    pub const ALL: [CronField; 6] = [
        CronField::Second,
        CronField::Minute,
        CronField::Hour,
        CronField::Day,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    /// The field's name as used in error messages (`"day-of-week"`).
    pub fn name(self) -> &'static str {
        match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::Day => "day",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest value the field accepts.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Second | CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::Day => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 6),
        }
    }

    fn range_hint(self) -> &'static str {
        match self {
            CronField::Second => "seconds are 0-59",
            CronField::Minute => "minutes are 0-59",
            CronField::Hour => "hours are 0-23",
            CronField::Day => "days of the month are 1-31",
            CronField::Month => "months are 1-12 or Jan-Dec",
            CronField::DayOfWeek => "day-of-week is 0-6 (Sunday is 0) or Sun-Sat",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &[
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ],
            CronField::DayOfWeek => &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
            _ => &[],
        }
    }

    fn index(self) -> usize {
        match self {
            CronField::Second => 0,
            CronField::Minute => 1,
            CronField::Hour => 2,
            CronField::Day => 3,
            CronField::Month => 4,
            CronField::DayOfWeek => 5,
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed six-field NCRONTAB expression.
///
/// Each field is kept as a bit set (bit `v` set when value `v` matches).
/// Equality compares the normalized text as well as the matching values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    /// Bit sets indexed like [`CronField::index`].
    masks: [u64; 6],
    /// The expression with single spaces between fields.
    text: String,
}

impl CronSchedule {
    /// Parses a six-field NCRONTAB expression
    /// `{second} {minute} {hour} {day} {month} {day-of-week}`.
    pub fn parse(expr: &str) -> Result<CronSchedule, ScheduleError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let text = fields.join(" ");
        if fields.len() != 6 {
            return Err(field_count_error(&text, fields.len()));
        }
        let mut masks = [0u64; 6];
        for (field, raw) in CronField::ALL.into_iter().zip(&fields) {
            masks[field.index()] = parse_field(field, raw)?;
        }
        Ok(CronSchedule { masks, text })
    }

    /// The values a field matches, ascending.
    pub fn values(&self, field: CronField) -> Vec<u32> {
        let mask = self.masks[field.index()];
        (0..64).filter(|bit| mask & (1u64 << bit) != 0).collect()
    }

    /// Whether the local wall-clock time of `at` (ignoring sub-seconds)
    /// matches every field.
    pub fn matches<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> bool {
        self.matches_naive(&at.naive_local())
    }

    /// Whether a wall-clock time (ignoring sub-seconds) matches every field.
    pub fn matches_naive(&self, at: &NaiveDateTime) -> bool {
        let has = |field: CronField, v: u32| self.masks[field.index()] & (1u64 << v) != 0;
        has(CronField::Second, at.second())
            && has(CronField::Minute, at.minute())
            && has(CronField::Hour, at.hour())
            && has(CronField::Day, at.day())
            && has(CronField::Month, at.month())
            && has(CronField::DayOfWeek, at.weekday().num_days_from_sunday())
    }

    /// The next occurrence strictly after `after`, computed in the time zone
    /// of `after`.
    ///
    /// The sub-second part of `after` is ignored. The search runs over local
    /// (wall-clock) times: a local time that does not exist (a DST gap) is
    /// skipped, and an ambiguous one (a DST overlap) fires once, at its
    /// earliest mapping. `None` means the expression never fires (such as
    /// `0 0 0 30 2 *`) or the result would not be representable.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = after.timezone();
        let local = after.naive_local();
        let truncated = local.with_nanosecond(0).unwrap_or(local);
        let mut from = truncated.checked_add_signed(TimeDelta::seconds(1))?;
        let last_year = from.year().checked_add(SEARCH_YEARS)?;
        loop {
            let candidate = self.next_naive_from(from, last_year)?;
            if let Some(instant) = tz.from_local_datetime(&candidate).earliest()
                && instant > *after
            {
                return Some(instant);
            }
            // Skipped (DST gap) or already fired (second pass of an overlap).
            from = candidate.checked_add_signed(TimeDelta::seconds(1))?;
        }
    }

    /// The next `n` occurrences after `after`.
    pub fn upcoming<Tz: TimeZone>(&self, after: &DateTime<Tz>, n: usize) -> Vec<DateTime<Tz>> {
        upcoming_by(after, n, |at| self.next_after(at))
    }

    /// The first wall-clock time at or after `from` (whole seconds) that
    /// matches, looking no further than the end of `last_year`.
    fn next_naive_from(&self, from: NaiveDateTime, last_year: i32) -> Option<NaiveDateTime> {
        let [
            sec_mask,
            min_mask,
            hour_mask,
            day_mask,
            month_mask,
            dow_mask,
        ] = self.masks;
        let (mut year, mut month, mut day) = (from.year(), from.month(), from.day());
        let (mut hour, mut minute, mut second) = (from.hour(), from.minute(), from.second());

        'search: loop {
            if year > last_year {
                return None;
            }
            // Month.
            match next_bit(month_mask, month) {
                Some(m) if m == month => {}
                Some(m) => {
                    (month, day, hour, minute, second) = (m, 1, 0, 0, 0);
                }
                None => {
                    (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                    continue 'search;
                }
            }
            // Day: both day-of-month and day-of-week must match.
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let dim = days_in_month(year, month);
            let dow_of_first = first.weekday().num_days_from_sunday();
            let mut found = None;
            let mut d = day;
            while d <= dim {
                match next_bit(day_mask, d) {
                    Some(candidate) if candidate <= dim => {
                        let dow = (dow_of_first + candidate - 1) % 7;
                        if dow_mask & (1u64 << dow) != 0 {
                            found = Some(candidate);
                            break;
                        }
                        d = candidate + 1;
                    }
                    _ => break,
                }
            }
            match found {
                Some(d) if d == day => {}
                Some(d) => {
                    (day, hour, minute, second) = (d, 0, 0, 0);
                }
                None => {
                    if month == 12 {
                        (year, month) = (year + 1, 1);
                    } else {
                        month += 1;
                    }
                    (day, hour, minute, second) = (1, 0, 0, 0);
                    continue 'search;
                }
            }
            // Hour.
            match next_bit(hour_mask, hour).filter(|&h| h <= 23) {
                Some(h) if h == hour => {}
                Some(h) => {
                    (hour, minute, second) = (h, 0, 0);
                }
                None => {
                    (day, hour, minute, second) = (day + 1, 0, 0, 0);
                    continue 'search;
                }
            }
            // Minute.
            match next_bit(min_mask, minute).filter(|&m| m <= 59) {
                Some(m) if m == minute => {}
                Some(m) => {
                    (minute, second) = (m, 0);
                }
                None => {
                    (hour, minute, second) = (hour + 1, 0, 0);
                    continue 'search;
                }
            }
            // Second.
            match next_bit(sec_mask, second).filter(|&s| s <= 59) {
                Some(s) => second = s,
                None => {
                    (minute, second) = (minute + 1, 0);
                    continue 'search;
                }
            }
            let date = NaiveDate::from_ymd_opt(year, month, day)?;
            let time = NaiveTime::from_hms_opt(hour, minute, second)?;
            return Some(date.and_time(time));
        }
    }
}

impl FromStr for CronSchedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl fmt::Display for CronSchedule {
    /// The expression with single spaces between fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The lowest set bit of `mask` at position `from` or above.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask >> from;
    if rest == 0 {
        None
    } else {
        Some(from + rest.trailing_zeros())
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap { 29 } else { 28 }
        }
    }
}

// ---------------------------------------------------------------------------
// Cron parsing
// ---------------------------------------------------------------------------

fn field_count_error(text: &str, count: usize) -> ScheduleError {
    let shape = "{second} {minute} {hour} {day} {month} {day-of-week}";
    let message = if count == 5 {
        format!(
            "\"{text}\" has 5 fields; NCRONTAB schedules need 6 fields {shape}: try \"0 {text}\""
        )
    } else {
        let noun = if count == 1 { "field" } else { "fields" };
        format!(
            "\"{text}\" has {count} {noun}; NCRONTAB schedules need exactly 6 fields {shape}, e.g. {CRON_EXAMPLE}"
        )
    };
    ScheduleError::new(ScheduleErrorKind::FieldCount, None, message)
}

const SYNTAX_HINT: &str =
    "use *, numbers, names, ranges (a-b), lists (a,b,c-d) and steps (*/n, a-b/n, a/n)";

fn parse_field(field: CronField, raw: &str) -> Result<u64, ScheduleError> {
    if let Some(c) = raw.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(unsupported(field, raw, c));
    }
    let mut mask = 0u64;
    for item in raw.split(',') {
        mask |= parse_item(field, raw, item)?;
    }
    Ok(mask)
}

fn unsupported(field: CronField, raw: &str, c: char) -> ScheduleError {
    ScheduleError::new(
        ScheduleErrorKind::UnsupportedCharacter,
        Some(field),
        format!(
            "{field} field \"{raw}\": the character '{c}' is not supported by NCRONTAB (there is no ?, L, W or #); {SYNTAX_HINT}"
        ),
    )
}

fn parse_item(field: CronField, raw: &str, item: &str) -> Result<u64, ScheduleError> {
    let (min, max) = field.bounds();
    if item.is_empty() {
        return Err(ScheduleError::new(
            ScheduleErrorKind::InvalidValue,
            Some(field),
            format!(
                "{field} field \"{raw}\" has an empty list item; separate values with single commas, e.g. 1,2,5-7"
            ),
        ));
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(field, raw, step)?)),
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = parse_value(field, raw, a)?;
        let hi = parse_value(field, raw, b)?;
        if lo > hi {
            return Err(ScheduleError::new(
                ScheduleErrorKind::ReversedRange,
                Some(field),
                format!(
                    "{field} field \"{raw}\": the range {range} is reversed; write the smaller value first ({b}-{a}), or use a list such as {a}-{max},{min}-{b} to wrap around"
                ),
            ));
        }
        (lo, hi)
    } else {
        let v = parse_value(field, raw, range)?;
        if step.is_some() { (v, max) } else { (v, v) }
    };
    let step = step.unwrap_or(1);
    let mut mask = 0u64;
    let mut v = lo;
    while v <= hi {
        mask |= 1u64 << v;
        v = match v.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(mask)
}

fn parse_step(field: CronField, raw: &str, step: &str) -> Result<u32, ScheduleError> {
    if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(c) = step.chars().find(|c| matches!(c, 'L' | 'W')) {
            return Err(unsupported(field, raw, c));
        }
        return Err(ScheduleError::new(
            ScheduleErrorKind::InvalidValue,
            Some(field),
            format!(
                "{field} field \"{raw}\": the step \"{step}\" is not a number; write a step such as */5"
            ),
        ));
    }
    match step.parse::<u32>() {
        Ok(0) => Err(ScheduleError::new(
            ScheduleErrorKind::ZeroStep,
            Some(field),
            format!(
                "{field} field \"{raw}\": a step of 0 is not allowed; the step must be 1 or more, e.g. */5"
            ),
        )),
        Ok(n) => Ok(n),
        // Larger than any range: matches only the start, like any step
        // wider than the field.
        Err(_) => Ok(u32::MAX),
    }
}

fn parse_value(field: CronField, raw: &str, token: &str) -> Result<u32, ScheduleError> {
    let (min, max) = field.bounds();
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        let value = token
            .parse::<u32>()
            .ok()
            .filter(|v| (min..=max).contains(v));
        return value.ok_or_else(|| {
            ScheduleError::new(
                ScheduleErrorKind::OutOfRange,
                Some(field),
                format!(
                    "{field} field \"{raw}\": the value {token} is out of range; {}",
                    field.range_hint()
                ),
            )
        });
    }
    let lower = token.to_ascii_lowercase();
    if let Some(pos) = field.names().iter().position(|n| *n == lower) {
        let base = if field == CronField::Month { 1 } else { 0 };
        return Ok(pos as u32 + base);
    }
    if let Some(c) = token.chars().find(|c| matches!(c, 'L' | 'W' | '?' | '#')) {
        return Err(unsupported(field, raw, c));
    }
    let what = if token.is_empty() {
        "an empty value".to_string()
    } else {
        format!("\"{token}\"")
    };
    let expected = match field {
        CronField::Month => "a number 1-12 or a month name Jan-Dec",
        CronField::DayOfWeek => "a number 0-6 (Sunday is 0) or a day name Sun-Sat",
        CronField::Second | CronField::Minute => "a number 0-59",
        CronField::Hour => "a number 0-23",
        CronField::Day => "a number 1-31",
    };
    Err(ScheduleError::new(
        ScheduleErrorKind::InvalidValue,
        Some(field),
        format!("{field} field \"{raw}\": {what} is not valid here; write {expected}"),
    ))
}

// ---------------------------------------------------------------------------
// TimeSpan parsing and printing
// ---------------------------------------------------------------------------

fn timespan_error(text: &str, reason: &str) -> ScheduleError {
    ScheduleError::new(
        ScheduleErrorKind::InvalidTimeSpan,
        None,
        format!(
            "{NOT_RECOGNIZED} \"{text}\" is not a valid timespan: {reason}. Write hh:mm:ss, d.hh:mm:ss or hh:mm, e.g. {TIMESPAN_EXAMPLE}, or a 6-field NCRONTAB expression such as {CRON_EXAMPLE}."
        ),
    )
}

/// Parses a timer interval: a .NET TimeSpan (see [`crate::timespan`]) that
/// is longer than zero.
fn parse_timespan(text: &str) -> Result<Duration, ScheduleError> {
    let span = TimeSpan::parse(text).map_err(|e| timespan_error(text, &e.reason))?;
    let interval = span.duration;
    if interval.is_zero() {
        return Err(ScheduleError::new(
            ScheduleErrorKind::NonPositiveInterval,
            None,
            format!(
                "The schedule interval \"{text}\" is zero; a timer interval must be greater than zero, e.g. {TIMESPAN_EXAMPLE}."
            ),
        ));
    }
    if span.negative {
        return Err(ScheduleError::new(
            ScheduleErrorKind::NonPositiveInterval,
            None,
            format!(
                "The schedule interval \"{text}\" is negative; a timer interval must be greater than zero: drop the leading '-'."
            ),
        ));
    }
    Ok(interval)
}

/// Prints like .NET's `TimeSpan.ToString()`: `[d.]hh:mm:ss[.fffffff]`.
fn fmt_timespan(interval: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&crate::timespan::format_duration(interval))
}

/// The next `n` values of `next`, each after the one before.
fn upcoming_by<Tz: TimeZone>(
    after: &DateTime<Tz>,
    n: usize,
    next: impl Fn(&DateTime<Tz>) -> Option<DateTime<Tz>>,
) -> Vec<DateTime<Tz>> {
    let mut out = Vec::with_capacity(n.min(1024));
    let mut at = after.clone();
    while out.len() < n {
        match next(&at) {
            Some(value) => {
                at = value.clone();
                out.push(value);
            }
            None => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What kind of problem a [`ScheduleError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScheduleErrorKind {
    /// The expression is empty.
    Empty,
    /// The expression has whitespace-separated parts but not exactly six
    /// cron fields (five fields: the seconds field is missing).
    FieldCount,
    /// A cron field uses `?`, `L`, `W` or `#`, which NCRONTAB lacks.
    UnsupportedCharacter,
    /// A cron field holds something that is not a number, a name, a
    /// range, a list or a step.
    InvalidValue,
    /// A cron value is outside its field's range.
    OutOfRange,
    /// A cron range runs backwards (`5-1`).
    ReversedRange,
    /// A cron step is zero (`*/0`).
    ZeroStep,
    /// A `TimeSpan`-like string that does not parse.
    InvalidTimeSpan,
    /// A `TimeSpan` interval that is zero or negative.
    NonPositiveInterval,
    /// Neither a cron expression nor a timespan.
    Unrecognized,
}

/// Why a schedule expression was rejected. The message says what to write
/// instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError {
    kind: ScheduleErrorKind,
    field: Option<CronField>,
    message: String,
}

impl ScheduleError {
    fn new(kind: ScheduleErrorKind, field: Option<CronField>, message: String) -> ScheduleError {
        ScheduleError {
            kind,
            field,
            message,
        }
    }

    /// The full, human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind of problem.
    pub fn kind(&self) -> ScheduleErrorKind {
        self.kind
    }

    /// The cron field at fault, when the problem is inside one field.
    pub fn field(&self) -> Option<CronField> {
        self.field
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScheduleError {}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn cron(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    fn err(expr: &str) -> ScheduleError {
        match Schedule::parse(expr) {
            Ok(s) => panic!("{expr:?} should be rejected, got {s:?}"),
            Err(e) => e,
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid UTC time")
    }

    fn next(expr: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Schedule::parse(expr).expect("valid").next_after(&after)
    }

    fn interval(expr: &str) -> Duration {
        match Schedule::parse(expr) {
            Ok(Schedule::Interval(d)) => d,
            other => panic!("{expr:?} should be an interval, got {other:?}"),
        }
    }

    // --- cron forms -------------------------------------------------------

    #[test]
    fn star_matches_whole_range() {
        let c = cron("* * * * * *");
        assert_eq!(c.values(CronField::Second), (0..=59).collect::<Vec<_>>());
        assert_eq!(c.values(CronField::Hour), (0..=23).collect::<Vec<_>>());
        assert_eq!(c.values(CronField::Day), (1..=31).collect::<Vec<_>>());
        assert_eq!(c.values(CronField::Month), (1..=12).collect::<Vec<_>>());
        assert_eq!(c.values(CronField::DayOfWeek), (0..=6).collect::<Vec<_>>());
    }

    #[test]
    fn single_values_ranges_lists_steps() {
        let c = cron("5 1-3 1,2,10-12 */10 2-11/3 3/2");
        assert_eq!(c.values(CronField::Second), vec![5]);
        assert_eq!(c.values(CronField::Minute), vec![1, 2, 3]);
        assert_eq!(c.values(CronField::Hour), vec![1, 2, 10, 11, 12]);
        assert_eq!(c.values(CronField::Day), vec![1, 11, 21, 31]);
        assert_eq!(c.values(CronField::Month), vec![2, 5, 8, 11]);
        assert_eq!(c.values(CronField::DayOfWeek), vec![3, 5]);
    }

    #[test]
    fn steps_wider_than_the_field() {
        let c = cron("*/100 */59 0/24 * * *");
        assert_eq!(c.values(CronField::Second), vec![0]);
        assert_eq!(c.values(CronField::Minute), vec![0, 59]);
        assert_eq!(c.values(CronField::Hour), vec![0]);
    }

    #[test]
    fn names_are_case_insensitive_and_work_in_ranges() {
        let c = cron("0 0 0 * jan,MAR-May,Dec/1 Mon-fri");
        assert_eq!(c.values(CronField::Month), vec![1, 3, 4, 5, 12]);
        assert_eq!(c.values(CronField::DayOfWeek), vec![1, 2, 3, 4, 5]);
        let c = cron("0 0 0 * * SUN,sat");
        assert_eq!(c.values(CronField::DayOfWeek), vec![0, 6]);
        let c = cron("0 0 0 * * wed");
        assert_eq!(c.values(CronField::DayOfWeek), vec![3]);
    }

    #[test]
    fn every_five_minutes() {
        let t = utc(2024, 3, 1, 10, 2, 7);
        assert_eq!(next("0 */5 * * * *", t), Some(utc(2024, 3, 1, 10, 5, 0)));
        let t = utc(2024, 3, 1, 10, 55, 0);
        assert_eq!(next("0 */5 * * * *", t), Some(utc(2024, 3, 1, 11, 0, 0)));
    }

    #[test]
    fn strictly_after_and_subseconds_truncated() {
        let t = utc(2024, 3, 1, 10, 5, 0);
        assert_eq!(next("0 */5 * * * *", t), Some(utc(2024, 3, 1, 10, 10, 0)));
        let t = utc(2024, 3, 1, 10, 4, 59) + TimeDelta::milliseconds(999);
        assert_eq!(next("0 */5 * * * *", t), Some(utc(2024, 3, 1, 10, 5, 0)));
        let t = utc(2024, 3, 1, 10, 5, 0) + TimeDelta::milliseconds(1);
        assert_eq!(next("0 */5 * * * *", t), Some(utc(2024, 3, 1, 10, 10, 0)));
        let t = utc(2024, 3, 1, 10, 0, 14) + TimeDelta::milliseconds(500);
        assert_eq!(next("*/15 * * * * *", t), Some(utc(2024, 3, 1, 10, 0, 15)));
    }

    #[test]
    fn weekdays_at_half_past_nine() {
        // 2024-03-01 is a Friday.
        let t = utc(2024, 3, 1, 9, 30, 0);
        let s = Schedule::parse("0 30 9 * * 1-5").expect("valid");
        let got = s.upcoming(&t, 3);
        assert_eq!(
            got,
            vec![
                utc(2024, 3, 4, 9, 30, 0),
                utc(2024, 3, 5, 9, 30, 0),
                utc(2024, 3, 6, 9, 30, 0)
            ]
        );
    }

    #[test]
    fn midnight_new_year_and_year_rollover() {
        let t = utc(2024, 6, 15, 12, 0, 0);
        assert_eq!(next("0 0 0 1 1 *", t), Some(utc(2025, 1, 1, 0, 0, 0)));
        let t = utc(2024, 12, 31, 23, 59, 59);
        assert_eq!(next("* * * * * *", t), Some(utc(2025, 1, 1, 0, 0, 0)));
        assert_eq!(next("0 0 0 1 1 *", t), Some(utc(2025, 1, 1, 0, 0, 0)));
        assert_eq!(
            next("59 59 23 31 12 *", t),
            Some(utc(2025, 12, 31, 23, 59, 59))
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_must_both_match() {
        // Friday the 13th: 2024-09-13, 2024-12-13, 2025-06-13.
        let s = Schedule::parse("0 0 0 13 * 5").expect("valid");
        let got = s.upcoming(&utc(2024, 3, 1, 0, 0, 0), 3);
        assert_eq!(
            got,
            vec![
                utc(2024, 9, 13, 0, 0, 0),
                utc(2024, 12, 13, 0, 0, 0),
                utc(2025, 6, 13, 0, 0, 0)
            ]
        );
        let s = Schedule::parse("0 0 0 13 * Fri").expect("valid");
        assert_eq!(
            s.next_after(&utc(2024, 3, 1, 0, 0, 0)),
            Some(utc(2024, 9, 13, 0, 0, 0))
        );
    }

    #[test]
    fn only_one_of_day_fields_restricted() {
        // Day-of-week alone: every Sunday (2024-03-03).
        assert_eq!(
            next("0 0 0 * * 0", utc(2024, 3, 1, 0, 0, 0)),
            Some(utc(2024, 3, 3, 0, 0, 0))
        );
        // Day-of-month alone: the 15th.
        assert_eq!(
            next("0 0 0 15 * *", utc(2024, 3, 1, 0, 0, 0)),
            Some(utc(2024, 3, 15, 0, 0, 0))
        );
    }

    #[test]
    fn leap_day() {
        let t = utc(2024, 3, 1, 0, 0, 0);
        assert_eq!(next("0 0 0 29 2 *", t), Some(utc(2028, 2, 29, 0, 0, 0)));
        // 2100 is not a leap year.
        let t = utc(2096, 3, 1, 0, 0, 0);
        assert_eq!(next("0 0 0 29 2 *", t), Some(utc(2104, 2, 29, 0, 0, 0)));
    }

    #[test]
    fn skips_months_without_the_day() {
        let t = utc(2024, 1, 31, 12, 0, 0);
        assert_eq!(next("0 0 0 31 * *", t), Some(utc(2024, 3, 31, 0, 0, 0)));
        assert_eq!(next("0 0 0 30 * *", t), Some(utc(2024, 3, 30, 0, 0, 0)));
    }

    #[test]
    fn impossible_dates_never_fire() {
        let t = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(next("0 0 0 30 2 *", t), None);
        assert_eq!(next("0 0 0 31 4 *", t), None);
        assert_eq!(next("0 0 0 31 2,4,6,9,11 *", t), None);
        let s = Schedule::parse("0 0 0 30 2 *").expect("valid");
        assert!(s.upcoming(&t, 5).is_empty());
    }

    #[test]
    fn rare_but_possible_dates_fire() {
        // February 29th on a Monday: 2044-02-29.
        let t = utc(2024, 3, 1, 0, 0, 0);
        assert_eq!(next("0 0 0 29 2 Mon", t), Some(utc(2044, 2, 29, 0, 0, 0)));
    }

    #[test]
    fn fixed_offset_zone_uses_local_wall_clock() {
        let tz = FixedOffset::east_opt(5 * 3600 + 1800).expect("valid offset");
        let t = tz
            .with_ymd_and_hms(2024, 3, 1, 8, 0, 0)
            .single()
            .expect("valid time");
        let s = Schedule::parse("0 30 9 * * *").expect("valid");
        let got = s.next_after(&t).expect("fires");
        assert_eq!(got.offset(), t.offset());
        assert_eq!(got.naive_local().to_string(), "2024-03-01 09:30:00");
        assert_eq!(got.with_timezone(&Utc), utc(2024, 3, 1, 4, 0, 0));
    }

    /// A zone with a one-hour DST gap at 02:00 and a one-hour overlap at
    /// 02:00 (back to 01:00), built with fixed dates for the test.
    #[derive(Clone, Copy, Debug)]
    struct ToyDst;

    impl ToyDst {
        // Summer time (+01:00) from 2024-03-31 01:00 UTC to 2024-10-27 01:00 UTC;
        // otherwise +00:00.
        fn summer_start() -> NaiveDateTime {
            NaiveDate::from_ymd_opt(2024, 3, 31)
                .and_then(|d| d.and_hms_opt(1, 0, 0))
                .expect("valid")
        }
        fn summer_end() -> NaiveDateTime {
            NaiveDate::from_ymd_opt(2024, 10, 27)
                .and_then(|d| d.and_hms_opt(1, 0, 0))
                .expect("valid")
        }
        fn offset_at_utc(utc: &NaiveDateTime) -> FixedOffset {
            let secs = if *utc >= Self::summer_start() && *utc < Self::summer_end() {
                3600
            } else {
                0
            };
            FixedOffset::east_opt(secs).expect("valid")
        }
    }

    impl TimeZone for ToyDst {
        type Offset = FixedOffset;

        fn from_offset(_: &FixedOffset) -> Self {
            ToyDst
        }

        fn offset_from_local_date(&self, _: &NaiveDate) -> chrono::MappedLocalTime<FixedOffset> {
            unimplemented!("not used")
        }

        fn offset_from_local_datetime(
            &self,
            local: &NaiveDateTime,
        ) -> chrono::MappedLocalTime<FixedOffset> {
            let winter = FixedOffset::east_opt(0).expect("valid");
            let summer = FixedOffset::east_opt(3600).expect("valid");
            let candidates: Vec<FixedOffset> = [summer, winter]
                .into_iter()
                .filter(|off| {
                    let as_utc = *local - TimeDelta::seconds(i64::from(off.local_minus_utc()));
                    Self::offset_at_utc(&as_utc) == *off
                })
                .collect();
            match candidates.as_slice() {
                [] => chrono::MappedLocalTime::None,
                [one] => chrono::MappedLocalTime::Single(*one),
                // Summer (+1) maps to the earlier instant.
                [a, b] => chrono::MappedLocalTime::Ambiguous(*a, *b),
                _ => unreachable!(),
            }
        }

        fn offset_from_utc_date(&self, _: &NaiveDate) -> FixedOffset {
            unimplemented!("not used")
        }

        fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
            Self::offset_at_utc(utc)
        }
    }

    #[test]
    fn dst_gap_is_skipped() {
        // 01:30 local on 2024-03-31 does not exist (01:00 -> 02:00).
        let s = Schedule::parse("0 30 1 * * *").expect("valid");
        let t = ToyDst.from_utc_datetime(&utc(2024, 3, 30, 12, 0, 0).naive_utc());
        let got = s.next_after(&t).expect("fires");
        assert_eq!(got.naive_local().to_string(), "2024-04-01 01:30:00");
        // Every minute: 00:59 then straight to 02:00.
        let s = Schedule::parse("0 * * * * *").expect("valid");
        let t = ToyDst.from_utc_datetime(&utc(2024, 3, 31, 0, 59, 0).naive_utc());
        let got = s.next_after(&t).expect("fires");
        assert_eq!(got.naive_local().to_string(), "2024-03-31 02:00:00");
        assert_eq!(got.with_timezone(&Utc), utc(2024, 3, 31, 1, 0, 0));
    }

    #[test]
    fn dst_overlap_fires_once_at_earliest() {
        // 01:30 local on 2024-10-27 happens twice; fire only at +01:00.
        let s = Schedule::parse("0 30 1 * * *").expect("valid");
        let t = ToyDst.from_utc_datetime(&utc(2024, 10, 26, 12, 0, 0).naive_utc());
        let got = s.upcoming(&t, 2);
        assert_eq!(got[0].with_timezone(&Utc), utc(2024, 10, 27, 0, 30, 0));
        assert_eq!(got[1].naive_local().to_string(), "2024-10-28 01:30:00");
        // Every 30 minutes through the overlap: 00:30, 01:00, 01:30 (summer),
        // then the repeated hour is skipped, then 02:00.
        let s = Schedule::parse("0 */30 * * * *").expect("valid");
        let t = ToyDst.from_utc_datetime(&utc(2024, 10, 26, 23, 0, 0).naive_utc());
        let got: Vec<DateTime<Utc>> = s
            .upcoming(&t, 4)
            .into_iter()
            .map(|d| d.with_timezone(&Utc))
            .collect();
        assert_eq!(
            got,
            vec![
                utc(2024, 10, 26, 23, 30, 0),
                utc(2024, 10, 27, 0, 0, 0),
                utc(2024, 10, 27, 0, 30, 0),
                utc(2024, 10, 27, 2, 0, 0),
            ]
        );
        // Starting inside the second pass of the overlap.
        let t = ToyDst.from_utc_datetime(&utc(2024, 10, 27, 1, 10, 0).naive_utc());
        let got = s.next_after(&t).expect("fires");
        assert_eq!(got.with_timezone(&Utc), utc(2024, 10, 27, 2, 0, 0));
    }

    #[test]
    fn matches_checks_every_field() {
        let c = cron("0 30 9 13 * Fri");
        assert!(c.matches(&utc(2024, 9, 13, 9, 30, 0)));
        assert!(!c.matches(&utc(2024, 9, 13, 9, 30, 1)));
        assert!(!c.matches(&utc(2024, 8, 13, 9, 30, 0)));
    }

    // --- cron errors ------------------------------------------------------

    #[test]
    fn five_fields_suggest_seconds() {
        let e = err("0 */5 * * *");
        assert_eq!(e.kind(), ScheduleErrorKind::FieldCount);
        assert_eq!(
            e.message(),
            "\"0 */5 * * *\" has 5 fields; NCRONTAB schedules need 6 fields {second} {minute} {hour} {day} {month} {day-of-week}: try \"0 0 */5 * * *\""
        );
    }

    #[test]
    fn seven_fields_rejected() {
        let e = err("0 0 0 1 1 * 2024");
        assert_eq!(e.kind(), ScheduleErrorKind::FieldCount);
        assert!(e.message().contains("has 7 fields"), "{e}");
        assert!(e.message().contains("exactly 6 fields"), "{e}");
        let e = err("0  0");
        assert!(e.message().contains("\"0 0\" has 2 fields"), "{e}");
    }

    #[test]
    fn bad_names_rejected() {
        let e = err("0 0 0 * Foo *");
        assert_eq!(e.kind(), ScheduleErrorKind::InvalidValue);
        assert_eq!(e.field(), Some(CronField::Month));
        assert!(e.message().contains("\"Foo\""), "{e}");
        assert!(e.message().contains("Jan-Dec"), "{e}");
        // Day names are not month names and vice versa.
        let e = err("0 0 0 * Mon *");
        assert_eq!(e.field(), Some(CronField::Month));
        let e = err("0 0 0 * * Jan");
        assert_eq!(e.field(), Some(CronField::DayOfWeek));
        assert!(e.message().contains("Sun-Sat"), "{e}");
        // Full names are not accepted.
        let e = err("0 0 0 * * Monday");
        assert_eq!(e.kind(), ScheduleErrorKind::InvalidValue);
        // Names only in month and day-of-week.
        let e = err("0 0 Mon * * *");
        assert_eq!(e.field(), Some(CronField::Hour));
    }

    #[test]
    fn question_mark_l_w_hash_rejected() {
        for (expr, c, field) in [
            ("0 0 0 ? * 1", '?', CronField::Day),
            ("0 0 0 L * *", 'L', CronField::Day),
            ("0 0 0 15W * *", 'W', CronField::Day),
            ("0 0 0 LW * *", 'L', CronField::Day),
            ("0 0 0 * * 5L", 'L', CronField::DayOfWeek),
            ("0 0 0 * * 5#3", '#', CronField::DayOfWeek),
            ("0 0 0 * * ?", '?', CronField::DayOfWeek),
        ] {
            let e = err(expr);
            assert_eq!(
                e.kind(),
                ScheduleErrorKind::UnsupportedCharacter,
                "{expr}: {e}"
            );
            assert_eq!(e.field(), Some(field), "{expr}");
            assert!(e.message().contains(&format!("'{c}'")), "{expr}: {e}");
        }
    }

    #[test]
    fn zero_step_rejected() {
        for expr in ["*/0 * * * * *", "0 0-30/0 * * * *", "0 0 5/0 * * *"] {
            let e = err(expr);
            assert_eq!(e.kind(), ScheduleErrorKind::ZeroStep, "{expr}");
            assert!(e.message().contains("1 or more"), "{e}");
        }
        let e = err("*/x * * * * *");
        assert_eq!(e.kind(), ScheduleErrorKind::InvalidValue);
        let e = err("*/ * * * * *");
        assert_eq!(e.kind(), ScheduleErrorKind::InvalidValue);
    }

    #[test]
    fn out_of_range_rejected() {
        for (expr, field, value) in [
            ("60 * * * * *", CronField::Second, "60"),
            ("0 60 * * * *", CronField::Minute, "60"),
            ("0 0 24 * * *", CronField::Hour, "24"),
            ("0 0 0 0 * *", CronField::Day, "0"),
            ("0 0 0 32 * *", CronField::Day, "32"),
            ("0 0 0 * 0 *", CronField::Month, "0"),
            ("0 0 0 * 13 *", CronField::Month, "13"),
            ("0 0 0 * * 8", CronField::DayOfWeek, "8"),
            ("0 0 0-99999999999 * * *", CronField::Hour, "99999999999"),
        ] {
            let e = err(expr);
            assert_eq!(e.kind(), ScheduleErrorKind::OutOfRange, "{expr}");
            assert_eq!(e.field(), Some(field), "{expr}");
            assert!(e.message().contains(field.name()), "{e}");
            assert!(e.message().contains(&format!("value {value} ")), "{e}");
        }
    }

    #[test]
    fn day_of_week_seven_rejected() {
        let e = err("0 0 0 * * 7");
        assert_eq!(e.kind(), ScheduleErrorKind::OutOfRange);
        assert!(
            e.message().contains("day-of-week is 0-6 (Sunday is 0)"),
            "{e}"
        );
        let e = err("0 0 0 * * 1-7");
        assert!(
            e.message().contains("day-of-week is 0-6 (Sunday is 0)"),
            "{e}"
        );
    }

    #[test]
    fn reversed_range_rejected() {
        let e = err("0 0 5-1 * * *");
        assert_eq!(e.kind(), ScheduleErrorKind::ReversedRange);
        assert_eq!(e.field(), Some(CronField::Hour));
        assert!(e.message().contains("5-1"), "{e}");
        assert!(e.message().contains("hour"), "{e}");
        let e = err("0 0 0 * * Fri-Mon");
        assert_eq!(e.kind(), ScheduleErrorKind::ReversedRange);
    }

    #[test]
    fn malformed_items_rejected() {
        for expr in [
            "0 1,,2 * * * *",
            "0 1- * * * *",
            "0 -1 * * * *",
            "0 /5 * * * *",
            "0 1/2/3 * * * *",
            "0 *-5 * * * *",
            "0 9:30 * * * *",
        ] {
            let e = err(expr);
            assert_eq!(e.kind(), ScheduleErrorKind::InvalidValue, "{expr}: {e}");
            assert_eq!(e.field(), Some(CronField::Minute), "{expr}");
        }
    }

    #[test]
    fn empty_and_single_word_rejected() {
        assert_eq!(err("").kind(), ScheduleErrorKind::Empty);
        assert_eq!(err("   ").kind(), ScheduleErrorKind::Empty);
        let e = err("*/5");
        assert_eq!(e.kind(), ScheduleErrorKind::Unrecognized);
        assert!(e.message().starts_with(NOT_RECOGNIZED), "{e}");
        let e = err("hourly");
        assert_eq!(e.kind(), ScheduleErrorKind::Unrecognized);
    }

    // --- TimeSpan ---------------------------------------------------------

    #[test]
    fn timespan_forms() {
        assert_eq!(interval("00:05:00"), Duration::from_secs(300));
        assert_eq!(interval("  00:05:00 "), Duration::from_secs(300));
        assert_eq!(
            interval("1.02:03:04"),
            Duration::from_secs(86_400 + 2 * 3600 + 3 * 60 + 4)
        );
        assert_eq!(interval("24:00:00"), Duration::from_secs(24 * 86_400));
        assert_eq!(
            interval("30:02:03"),
            Duration::from_secs(30 * 86_400 + 2 * 3600 + 3 * 60)
        );
        assert_eq!(interval("00:00:30.5"), Duration::from_millis(30_500));
        assert_eq!(interval("00:00:00.0000001"), Duration::from_nanos(100));
        assert_eq!(interval("1:2:3"), Duration::from_secs(3723));
        assert_eq!(interval("01:30"), Duration::from_secs(5400));
        assert_eq!(interval("2.01:30"), Duration::from_secs(2 * 86_400 + 5400));
        assert_eq!(interval("3"), Duration::from_secs(3 * 86_400));
    }

    #[test]
    fn timespan_errors() {
        for (expr, needle) in [
            ("25:61:00", "hours must be 0-23"),
            ("00:61:00", "minutes must be 0-59"),
            ("00:00:60", "seconds must be 0-59"),
            ("1.24:00:00", "hours must be 0-23"),
            ("24:00", "hours must be 0-23"),
            ("00:00:01.12345678", "1 to 7 digits"),
            ("00:00:01.", "1 to 7 digits"),
            ("24:00:00.5", "no fraction"),
            ("1:2:3:4:5", "5 colon-separated parts"),
            ("aa:00:00", "not a number"),
            ("00::00", "not a number"),
            ("99999999.00:00:00", "more than a TimeSpan can hold"),
        ] {
            let e = err(expr);
            assert_eq!(e.kind(), ScheduleErrorKind::InvalidTimeSpan, "{expr}: {e}");
            assert!(e.message().starts_with(NOT_RECOGNIZED), "{e}");
            assert!(e.message().contains(needle), "{expr}: {e}");
        }
    }

    #[test]
    fn non_positive_intervals_rejected() {
        for expr in ["-00:05:00", "00:00:00", "-0", "0.00:00:00", "0"] {
            let e = err(expr);
            assert_eq!(
                e.kind(),
                ScheduleErrorKind::NonPositiveInterval,
                "{expr}: {e}"
            );
            assert!(e.message().contains("greater than zero"), "{e}");
        }
    }

    #[test]
    fn interval_next_after_adds() {
        let s = Schedule::parse("00:05:00").expect("valid");
        assert!(!s.is_cron());
        let t = utc(2024, 3, 1, 10, 2, 7) + TimeDelta::milliseconds(250);
        let want = t + TimeDelta::minutes(5);
        assert_eq!(s.next_after(&t), Some(want));
        assert_eq!(
            s.upcoming(&t, 3).last(),
            Some(&(t + TimeDelta::minutes(15)))
        );
        assert_eq!(Schedule::Interval(Duration::ZERO).next_after(&t), None);
    }

    // --- Display ----------------------------------------------------------

    #[test]
    fn display_round_trips() {
        for (input, canonical) in [
            ("0  */5 *\t* * *", "0 */5 * * * *"),
            (" 0 30 9 * * Mon-Fri ", "0 30 9 * * Mon-Fri"),
            ("00:05:00", "00:05:00"),
            ("1:2:3", "01:02:03"),
            ("1.02:03:04", "1.02:03:04"),
            ("24:00:00", "24.00:00:00"),
            ("00:00:30.5", "00:00:30.5000000"),
            ("01:30", "01:30:00"),
            ("3", "3.00:00:00"),
        ] {
            let s: Schedule = input.parse().expect("valid");
            assert_eq!(s.to_string(), canonical, "{input:?}");
            let again: Schedule = s.to_string().parse().expect("canonical text parses");
            assert_eq!(again, s, "{input:?}");
        }
    }

    #[test]
    fn is_cron() {
        assert!(Schedule::parse("0 0 * * * *").expect("valid").is_cron());
        assert!(matches!(
            "0 0 * * * *".parse::<Schedule>(),
            Ok(Schedule::Cron(_))
        ));
    }
}
