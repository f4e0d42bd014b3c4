//! Parameter constraints: `int`, `long`, `bool`, `guid`, `double`,
//! `decimal`, `datetime`, `alpha`, `required`, the lengths, `min`, `max`,
//! `range` and `regex`.

use std::str::FromStr;

use regex::Regex;

#[derive(Clone, Debug)]
pub(super) enum Constraint {
    Int,
    Long,
    Bool,
    Guid,
    Double,
    Decimal,
    DateTime,
    Alpha,
    Required,
    MinLength(usize),
    MaxLength(usize),
    Length(usize, usize),
    Min(i64),
    Max(i64),
    Range(i64, i64),
    /// Boxed: rare, and it would otherwise triple the size of every constraint.
    Regex(Box<RegexConstraint>),
}

#[derive(Clone, Debug)]
pub(super) struct RegexConstraint {
    pattern: String,
    regex: Regex,
}

/// Parses a constraint's comma-separated arguments; returns how many there
/// are and the first two (the most any constraint takes).
fn constraint_args<N: FromStr + Copy + Default>(
    name: &str,
    args: Option<&str>,
) -> Result<(usize, [N; 2]), String> {
    let args =
        args.ok_or_else(|| format!("constraint '{name}' requires arguments in parentheses"))?;
    let mut first = [N::default(); 2];
    let mut count = 0;
    for a in args.split(',') {
        let a = a.trim();
        let v = a
            .parse::<N>()
            .map_err(|_| format!("constraint '{name}' has an invalid argument '{a}'"))?;
        if let Some(slot) = first.get_mut(count) {
            *slot = v;
        }
        count += 1;
    }
    Ok((count, first))
}

impl Constraint {
    pub(super) fn parse(name: &str, args: Option<&str>) -> Result<Self, String> {
        let no_args = |c: Constraint| match args {
            None => Ok(c),
            Some(_) => Err(format!("constraint '{name}' takes no arguments")),
        };
        // Lower-case into a stack buffer; every known name fits in it.
        let mut buf = [0u8; 9];
        let lower: &[u8] = match buf.get_mut(..name.len()) {
            Some(dst) => {
                dst.copy_from_slice(name.as_bytes());
                dst.make_ascii_lowercase();
                dst
            }
            None => b"",
        };
        match lower {
            b"int" => no_args(Constraint::Int),
            b"long" => no_args(Constraint::Long),
            b"bool" => no_args(Constraint::Bool),
            b"guid" => no_args(Constraint::Guid),
            b"double" => no_args(Constraint::Double),
            b"decimal" => no_args(Constraint::Decimal),
            b"datetime" => no_args(Constraint::DateTime),
            b"alpha" => no_args(Constraint::Alpha),
            b"required" => no_args(Constraint::Required),
            b"minlength" | b"maxlength" => match constraint_args::<usize>(name, args)? {
                (1, [n, _]) if lower == b"minlength" => Ok(Constraint::MinLength(n)),
                (1, [n, _]) => Ok(Constraint::MaxLength(n)),
                _ => Err(format!("constraint '{name}' takes exactly one argument")),
            },
            b"length" => match constraint_args::<usize>(name, args)? {
                (1, [n, _]) => Ok(Constraint::Length(n, n)),
                (2, [a, b]) if a <= b => Ok(Constraint::Length(a, b)),
                (2, _) => Err(format!(
                    "constraint '{name}': the minimum length is greater than the maximum"
                )),
                _ => Err(format!("constraint '{name}' takes one or two arguments")),
            },
            b"min" | b"max" => match constraint_args::<i64>(name, args)? {
                (1, [n, _]) if lower == b"min" => Ok(Constraint::Min(n)),
                (1, [n, _]) => Ok(Constraint::Max(n)),
                _ => Err(format!("constraint '{name}' takes exactly one argument")),
            },
            b"range" => match constraint_args::<i64>(name, args)? {
                (2, [a, b]) if a <= b => Ok(Constraint::Range(a, b)),
                (2, _) => Err(format!(
                    "constraint '{name}': the minimum is greater than the maximum"
                )),
                _ => Err(format!("constraint '{name}' takes exactly two arguments")),
            },
            b"regex" => {
                let pattern = args
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("constraint '{name}' requires a pattern argument"))?;
                let regex = Regex::new(&format!("(?i){pattern}"))
                    .map_err(|e| format!("constraint '{name}' has an invalid regex: {e}"))?;
                Ok(Constraint::Regex(Box::new(RegexConstraint {
                    pattern: pattern.to_owned(),
                    regex,
                })))
            }
            _ => Err(format!("unknown route constraint '{name}'")),
        }
    }

    /// Whether two constraints are the same once normalised (name case and
    /// `length(n)` versus `length(n,n)` do not matter; regexes compare by
    /// pattern text).
    pub(super) fn same(&self, other: &Constraint) -> bool {
        use Constraint as C;
        match (self, other) {
            (C::MinLength(a), C::MinLength(b)) | (C::MaxLength(a), C::MaxLength(b)) => a == b,
            (C::Length(a, b), C::Length(c, d)) => a == c && b == d,
            (C::Min(a), C::Min(b)) | (C::Max(a), C::Max(b)) => a == b,
            (C::Range(a, b), C::Range(c, d)) => a == c && b == d,
            (C::Regex(a), C::Regex(b)) => a.pattern == b.pattern,
            // Same data-less variant, or different variants.
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    pub(super) fn accepts(&self, v: &str) -> bool {
        match self {
            Constraint::Int => v.trim().parse::<i32>().is_ok(),
            Constraint::Long => v.trim().parse::<i64>().is_ok(),
            Constraint::Bool => {
                let t = v.trim();
                t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false")
            }
            Constraint::Guid => is_guid(v),
            Constraint::Double => is_double(v),
            Constraint::Decimal => is_decimal(v),
            Constraint::DateTime => is_datetime(v),
            Constraint::Alpha => v.bytes().all(|b| b.is_ascii_alphabetic()),
            Constraint::Required => !v.is_empty(),
            // .NET measures string length in UTF-16 code units.
            Constraint::MinLength(n) => v.encode_utf16().count() >= *n,
            Constraint::MaxLength(n) => v.encode_utf16().count() <= *n,
            Constraint::Length(a, b) => (*a..=*b).contains(&v.encode_utf16().count()),
            Constraint::Min(n) => v.trim().parse::<i64>().is_ok_and(|x| x >= *n),
            Constraint::Max(n) => v.trim().parse::<i64>().is_ok_and(|x| x <= *n),
            Constraint::Range(a, b) => v
                .trim()
                .parse::<i64>()
                .is_ok_and(|x| (*a..=*b).contains(&x)),
            Constraint::Regex(r) => r.regex.is_match(v),
        }
    }
}

/// `Guid.TryParse` formats N, D, B and P.
fn is_guid(v: &str) -> bool {
    let s = v.trim().as_bytes();
    let dashed = |d: &[u8]| {
        d.len() == 36
            && d.iter().enumerate().all(|(i, &b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    match s.len() {
        32 => s.iter().all(u8::is_ascii_hexdigit),
        36 => dashed(s),
        38 => matches!((s[0], s[37]), (b'{', b'}') | (b'(', b')')) && dashed(&s[1..37]),
        _ => false,
    }
}

/// Digits with optional `,` group separators, optional fraction, and (when
/// `exponent`) an optional exponent; returns the integer digits on success.
fn number_syntax(s: &str, exponent: bool) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut int_digits = 0;
    while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b',' && int_digits > 0)) {
        int_digits += usize::from(b[i].is_ascii_digit());
        i += 1;
    }
    let int_end = i;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            frac_digits += 1;
            i += 1;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if exponent && i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    (i == b.len()).then(|| &s[..int_end])
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['+', '-']).unwrap_or(s)
}

/// `double.TryParse` with invariant culture, float style and thousands.
fn is_double(v: &str) -> bool {
    let body = strip_sign(v.trim());
    ["infinity", "nan"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
        || body == "\u{221e}"
        || number_syntax(body, true).is_some()
}

/// `decimal.TryParse` with invariant culture and number style (no exponent,
/// magnitude up to `79228162514264337593543950335`).
fn is_decimal(v: &str) -> bool {
    const MAX: &str = "79228162514264337593543950335";
    let Some(int_part) = number_syntax(strip_sign(v.trim()), false) else {
        return false;
    };
    let digits: String = int_part.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    digits.len() < MAX.len() || (digits.len() == MAX.len() && digits <= MAX)
}

/// A practical subset of `DateTime.TryParse` with invariant culture: ISO 8601
/// dates and date-times (with `T` or a space, optional seconds, fraction and
/// offset or `Z`) and the invariant `MM/dd/yyyy` form (reachable only through
/// `%2F`).
fn is_datetime(v: &str) -> bool {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let t = v.trim();
    if DateTime::parse_from_rfc3339(t).is_ok() {
        return true;
    }
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    const DATE_TIMES: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    ];
    const DATES: [&str; 3] = ["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"];
    DATE_TIMES
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(t, f).is_ok())
        || DATES
            .iter()
            .any(|f| NaiveDate::parse_from_str(t, f).is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::route::testing::*;

    // ----- constraints -----

    #[test]
    fn constraint_int_long() {
        check_constraint(
            "int",
            &["0", "42", "-7", "+7", "2147483647", "-2147483648"],
            &["2147483648", "4x", "1.5", "abc", "%20"],
        );
        check_constraint(
            "long",
            &["9223372036854775807"],
            &["9223372036854775808", "x1"],
        );
    }

    #[test]
    fn constraint_bool_guid_alpha() {
        check_constraint("bool", &["true", "FALSE", "True"], &["yes", "1", "tru"]);
        check_constraint(
            "guid",
            &[
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "0F8FAD5BD9CB469FA16570867728950E",
                "%7B0f8fad5b-d9cb-469f-a165-70867728950e%7D",
                "(0f8fad5b-d9cb-469f-a165-70867728950e)",
            ],
            &[
                "0f8fad5b-d9cb-469f-a165-70867728950",
                "0f8fad5bd9cb-469f-a165-70867728950ee",
                "zf8fad5b-d9cb-469f-a165-70867728950e",
                "{0f8fad5b-d9cb-469f-a165-70867728950e)",
            ],
        );
        check_constraint("alpha", &["abcXYZ"], &["abc1", "%C3%A9t%C3%A9"]);
    }

    #[test]
    fn constraint_double_decimal() {
        check_constraint(
            "double",
            &[
                "1",
                "1.5",
                "-1.5e10",
                ".5",
                "1.",
                "1,000.25",
                "NaN",
                "-Infinity",
                "1E-3",
            ],
            &["abc", "1e", "1.2.3", ",1", "e5", "inf", "-"],
        );
        check_constraint(
            "decimal",
            &[
                "1",
                "-1.25",
                "1,000",
                "79228162514264337593543950335",
                "0.0000001",
            ],
            &["1e5", "79228162514264337593543950336", "NaN", "x"],
        );
    }

    #[test]
    fn constraint_datetime() {
        check_constraint(
            "datetime",
            &[
                "2024-01-31",
                "2024-01-31T10:20:30",
                "2024-01-31T10:20:30.123Z",
                "2024-01-31T10:20:30%2B02:00",
                "2024-01-31%2010:20",
                "01%2F31%2F2024",
            ],
            &["2024-13-01", "2024-02-30", "yesterday", "10:20"],
        );
    }

    #[test]
    fn constraint_lengths_and_ranges() {
        assert!(accepts("minlength(3)", "abc") && !accepts("minlength(3)", "ab"));
        assert!(accepts("maxlength(3)", "abc") && !accepts("maxlength(3)", "abcd"));
        assert!(accepts("length(3)", "abc") && !accepts("length(3)", "abcd"));
        assert!(accepts("length(2,3)", "ab") && accepts("length(2,3)", "abc"));
        assert!(!accepts("length(2,3)", "a") && !accepts("length(2,3)", "abcd"));
        // UTF-16 length, as .NET measures it: "é" is one unit.
        assert!(accepts("length(1)", "%C3%A9"));
        assert!(accepts("min(10)", "10") && !accepts("min(10)", "9"));
        assert!(!accepts("min(10)", "ten"));
        assert!(accepts("max(10)", "-5") && !accepts("max(10)", "11"));
        assert!(accepts("range(1,5)", "1") && accepts("range(1,5)", "5"));
        assert!(!accepts("range(1,5)", "0") && !accepts("range(1,5)", "6"));
        assert!(accepts("required", "x"));
        assert!(accepts("int:min(1)", "3") && !accepts("int:min(1)", "0"));
    }

    #[test]
    fn constraint_regex_is_unanchored_and_case_insensitive() {
        assert!(accepts("regex(b)", "abc"));
        assert!(accepts("regex(^ABC$)", "abc"));
        assert!(!accepts("regex(^ab$)", "abc"));
        assert!(accepts("regex(^[a-z]{{2}}\\d+$)", "Ab12"));
        assert!(!accepts("regex(^[a-z]{{2}}\\d+$)", "A12"));
        assert!(accepts("regex(^(x|y):z$)", "x:z"));
        assert!(accepts("REGEX(a)", "a"));
        assert!(accepts("INT", "1"));
    }
}
