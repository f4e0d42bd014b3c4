//! .NET `TimeSpan` strings, as host.json and function.json write durations
//! (`functionTimeout`, retry intervals, timer intervals).
//!
//! Accepted forms, as `TimeSpan.Parse` reads them: `d` (whole days),
//! `hh:mm`, `hh:mm:ss`, `hh:mm:ss.fffffff`, `d.hh:mm`, `d.hh:mm:ss[.f]`,
//! each with an optional leading `-`. When the first number
//! of `a:b:c` is 24 or more it is read as `d:hh:mm`, so `24:00:00` is 24 days.

use std::fmt;
use std::time::Duration;

/// A parsed TimeSpan: a length of time and its sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan {
    /// Whether the span is negative.
    pub negative: bool,
    /// Its length.
    pub duration: Duration,
}

/// A string that is not a TimeSpan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{text}' is not a valid TimeSpan ({reason}): write [d.]hh:mm:ss, such as \"00:05:00\" for five minutes"
)]
pub struct TimeSpanError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl TimeSpan {
    /// Parses a TimeSpan string.
    pub fn parse(text: &str) -> Result<TimeSpan, TimeSpanError> {
        let fail = |reason: String| TimeSpanError {
            text: text.to_owned(),
            reason,
        };
        let number = |part: &str, what: &str| -> Result<u64, TimeSpanError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(format!("the {what} \"{part}\" is not a number")));
            }
            part.parse::<u64>()
                .map_err(|_| fail(format!("the {what} {part} is too large")))
        };
        let split_days = |first: &str| -> Result<(u64, u64), TimeSpanError> {
            match first.split_once('.') {
                Some((d, h)) => Ok((number(d, "number of days")?, number(h, "hours")?)),
                None => Ok((0, number(first, "hours")?)),
            }
        };
        let trimmed = text.trim();
        let (negative, body) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if body.is_empty() {
            return Err(fail("it is empty".to_owned()));
        }
        let (days, hours, minutes, seconds, nanos) = if !body.contains(':') {
            (number(body, "number of days")?, 0, 0, 0, 0)
        } else {
            let parts: Vec<&str> = body.split(':').collect();
            match parts.as_slice() {
                [first, m] => {
                    let (d, h) = split_days(first)?;
                    (d, h, number(m, "minutes")?, 0, 0)
                }
                [first, second, third] => {
                    let (d, h) = split_days(first)?;
                    let (sec, frac) = match third.split_once('.') {
                        Some((s, f)) => (s, Some(f)),
                        None => (*third, None),
                    };
                    if !first.contains('.') && h >= 24 {
                        // .NET reads `a:b:c` with a >= 24 as d:hh:mm.
                        if frac.is_some() {
                            return Err(fail("a first number of 24 or more is read as days (d:hh:mm), which takes no fraction".to_owned()));
                        }
                        let hh = number(second, "hours")?;
                        if hh >= 24 {
                            return Err(fail(format!(
                                "hours must be 0-23, not {hh} (a first number of 24 or more is read as days, d:hh:mm)"
                            )));
                        }
                        (h, hh, number(sec, "minutes")?, 0, 0)
                    } else {
                        let nanos = match frac {
                            Some(f) => parse_fraction(f).ok_or_else(|| {
                                fail("the fraction of a second must be 1 to 7 digits".to_owned())
                            })?,
                            None => 0,
                        };
                        (
                            d,
                            h,
                            number(second, "minutes")?,
                            number(sec, "seconds")?,
                            nanos,
                        )
                    }
                }
                _ => {
                    return Err(fail(format!(
                        "it has {} colon-separated parts, expected 2 or 3",
                        parts.len()
                    )));
                }
            }
        };
        if hours >= 24 {
            return Err(fail(format!("hours must be 0-23, not {hours}")));
        }
        if minutes >= 60 {
            return Err(fail(format!("minutes must be 0-59, not {minutes}")));
        }
        if seconds >= 60 {
            return Err(fail(format!("seconds must be 0-59, not {seconds}")));
        }
        if days > MAX_DAYS {
            return Err(fail(format!(
                "{days} days is more than a TimeSpan can hold ({MAX_DAYS} days)"
            )));
        }
        let secs = ((days * 24 + hours) * 60 + minutes) * 60 + seconds;
        Ok(TimeSpan {
            negative,
            duration: Duration::new(secs, nanos),
        })
    }

    /// Whether this is zero or negative.
    pub fn is_zero_or_negative(&self) -> bool {
        self.negative || self.duration.is_zero()
    }
}

/// `TimeSpan.MaxValue` is about 10,675,199 days.
const MAX_DAYS: u64 = 10_675_199;

/// Seven digits at most, in ticks of 100 ns, as nanoseconds.
fn parse_fraction(part: &str) -> Option<u32> {
    if part.is_empty() || part.len() > 7 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ticks = 0u32;
    for (i, b) in part.bytes().enumerate() {
        ticks += u32::from(b - b'0') * 10u32.pow(6 - i as u32);
    }
    Some(ticks * 100)
}

/// Formats a duration as .NET does: `[d.]hh:mm:ss[.fffffff]`.
pub fn format_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (days, rem) = (total / 86_400, total % 86_400);
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    let mut out = if days > 0 {
        format!("{days}.{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    };
    let ticks = d.subsec_nanos() / 100;
    if ticks > 0 {
        out.push_str(&format!(".{ticks:07}"));
    }
    out
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&format_duration(self.duration))
    }
}

impl std::str::FromStr for TimeSpan {
    type Err = TimeSpanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeSpan::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        TimeSpan::parse(s).unwrap().duration.as_secs()
    }

    #[test]
    fn reads_the_dotnet_forms() {
        assert_eq!(secs("00:05:00"), 300);
        assert_eq!(secs("01:30"), 5400);
        assert_eq!(secs("1.02:03:04"), 93_784);
        assert_eq!(secs("2"), 2 * 86_400);
        assert_eq!(secs("24:00:00"), 24 * 86_400);
        let half = TimeSpan::parse("00:00:30.5").unwrap().duration;
        assert_eq!(half, Duration::from_millis(30_500));
        let minus = TimeSpan::parse("-1").unwrap();
        assert!(minus.negative && minus.is_zero_or_negative());
    }

    #[test]
    fn rejects_what_dotnet_rejects() {
        for bad in [
            "",
            "abc",
            "25:61:00",
            "00:60:00",
            "00:00:60",
            "1:2:3:4:5",
            "00:00:00.12345678",
            "1.24:00:00",
        ] {
            assert!(TimeSpan::parse(bad).is_err(), "{bad}");
        }
        let err = TimeSpan::parse("00:99:00").unwrap_err().to_string();
        assert!(err.contains("minutes must be 0-59, not 99"), "{err}");
    }

    #[test]
    fn formats_like_dotnet() {
        assert_eq!(format_duration(Duration::from_secs(300)), "00:05:00");
        assert_eq!(format_duration(Duration::from_secs(93_784)), "1.02:03:04");
        assert_eq!(
            format_duration(Duration::from_millis(1500)),
            "00:00:01.5000000"
        );
    }
}
