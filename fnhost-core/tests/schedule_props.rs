//! Property tests for `fnhost_core::schedule`: `next_after` against
//! brute-force references that interpret the generated expression
//! independently of the parser.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use fnhost_core::schedule::{CronField, CronSchedule, Schedule};
use proptest::prelude::*;
use proptest::test_runner::Config;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One generated field: its text and the values it should match
/// (`set[v]` for value `v`).
#[derive(Clone, Debug)]
struct Field {
    text: String,
    set: Vec<bool>,
}

/// Renders a value of `kind` as a number or, where the field has names
/// and `use_name` says so, as a name in a random-looking case.
fn render(kind: CronField, v: u32, use_name: u8) -> String {
    let name = match kind {
        CronField::Month => Some(MONTHS[(v - 1) as usize]),
        CronField::DayOfWeek => Some(DAYS[v as usize]),
        _ => None,
    };
    match (name, use_name % 4) {
        (Some(n), 1) => n.to_string(),
        (Some(n), 2) => n.to_ascii_uppercase(),
        (Some(n), 3) => n.to_ascii_lowercase(),
        _ => v.to_string(),
    }
}

/// One list item, by its reference meaning.
#[derive(Clone, Debug)]
enum Item {
    Star,
    StarStep(u32),
    Single(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
    SingleStep(u32, u32),
}

fn item(kind: CronField) -> impl Strategy<Value = (Item, u8, u8)> {
    let (min, max) = kind.bounds();
    let width = max - min + 1;
    let value = min..=max;
    let pair = (min..=max, min..=max).prop_map(|(a, b)| (a.min(b), a.max(b)));
    let step = 1..=width + 2;
    let items = prop_oneof![
        1 => Just(Item::Star),
        2 => step.clone().prop_map(Item::StarStep),
        3 => value.clone().prop_map(Item::Single),
        3 => pair.clone().prop_map(|(a, b)| Item::Range(a, b)),
        2 => (pair, step.clone()).prop_map(|((a, b), n)| Item::RangeStep(a, b, n)),
        1 => (value, step).prop_map(|(v, n)| Item::SingleStep(v, n)),
    ];
    (items, any::<u8>(), any::<u8>())
}

fn field(kind: CronField, star_weight: u32) -> impl Strategy<Value = Field> {
    let (min, max) = kind.bounds();
    let list = prop::collection::vec(item(kind), 1..=3).prop_map(move |items| {
        let mut set = vec![false; (max + 1) as usize];
        let mut texts = Vec::new();
        for (item, name_a, name_b) in items {
            let (lo, hi, step, text) = match item {
                Item::Star => (min, max, 1, "*".to_string()),
                Item::StarStep(n) => (min, max, n, format!("*/{n}")),
                Item::Single(v) => (v, v, 1, render(kind, v, name_a)),
                Item::Range(a, b) => (
                    a,
                    b,
                    1,
                    format!("{}-{}", render(kind, a, name_a), render(kind, b, name_b)),
                ),
                Item::RangeStep(a, b, n) => (
                    a,
                    b,
                    n,
                    format!(
                        "{}-{}/{n}",
                        render(kind, a, name_a),
                        render(kind, b, name_b)
                    ),
                ),
                Item::SingleStep(v, n) => (v, max, n, format!("{}/{n}", render(kind, v, name_a))),
            };
            let mut v = lo;
            while v <= hi {
                set[v as usize] = true;
                v += step;
            }
            texts.push(text);
        }
        Field {
            text: texts.join(","),
            set,
        }
    });
    let star = Just(Field {
        text: "*".to_string(),
        set: (0..=max).map(|v| v >= min).collect(),
    });
    prop_oneof![star_weight => star, 4 => list]
}

/// A generated expression and its six reference sets.
#[derive(Clone, Debug)]
struct Expr {
    text: String,
    fields: [Field; 6],
}

impl Expr {
    fn has(&self, i: usize, v: u32) -> bool {
        self.fields[i].set[v as usize]
    }

    fn day_matches(&self, t: &NaiveDateTime) -> bool {
        self.has(3, t.day())
            && self.has(4, t.month())
            && self.has(5, t.weekday().num_days_from_sunday())
    }

    fn time_matches(&self, t: &NaiveDateTime) -> bool {
        self.has(0, t.second()) && self.has(1, t.minute()) && self.has(2, t.hour())
    }
}

fn expr(date_star_weight: u32) -> impl Strategy<Value = Expr> {
    (
        field(CronField::Second, 1),
        field(CronField::Minute, 1),
        field(CronField::Hour, 1),
        field(CronField::Day, date_star_weight),
        field(CronField::Month, date_star_weight),
        field(CronField::DayOfWeek, date_star_weight),
    )
        .prop_map(|(s, mi, h, d, mo, w)| {
            let fields = [s, mi, h, d, mo, w];
            let text = fields
                .iter()
                .map(|f| f.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            Expr { text, fields }
        })
}

/// Expressions whose date fields are all `*`.
fn time_only_expr() -> impl Strategy<Value = Expr> {
    expr(u32::MAX / 8).prop_filter("date fields are *", |e| {
        e.fields[3].text == "*" && e.fields[4].text == "*" && e.fields[5].text == "*"
    })
}

/// Instants from 1970 to the end of 2100, with sub-second parts.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let end = Utc
        .with_ymd_and_hms(2100, 12, 31, 23, 59, 59)
        .single()
        .map_or(0, |t| t.timestamp());
    (0..=end, prop_oneof![Just(0u32), 0u32..1_000_000_000])
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap_or_default())
}

/// The first whole second strictly after `t` (sub-seconds truncated).
fn first_candidate(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t) + TimeDelta::seconds(1)
}

/// Reference: step second by second (at most two days).
fn brute_seconds(e: &Expr, after: NaiveDateTime) -> Option<NaiveDateTime> {
    let mut t = first_candidate(after);
    for _ in 0..2 * 86_400 {
        if e.day_matches(&t) && e.time_matches(&t) {
            return Some(t);
        }
        t += TimeDelta::seconds(1);
    }
    None
}

/// Reference: step day by day (up to 401 years), then minute by minute,
/// then second by second within a matching minute.
fn brute_days(e: &Expr, after: NaiveDateTime) -> Option<NaiveDateTime> {
    let start = first_candidate(after);
    let mut day = start.date();
    let last = chrono::NaiveDate::from_ymd_opt(day.year() + 402, 1, 1)?;
    while day <= last {
        let probe = day.and_hms_opt(0, 0, 0)?;
        if e.day_matches(&probe) {
            for minute in 0..1440 {
                let m = probe + TimeDelta::minutes(minute);
                if !(e.has(2, m.hour()) && e.has(1, m.minute())) {
                    continue;
                }
                for sec in 0..60 {
                    let t = m + TimeDelta::seconds(sec);
                    if t >= start && e.has(0, sec as u32) {
                        return Some(t);
                    }
                }
            }
        }
        day = day.succ_opt()?;
    }
    None
}

fn parse(e: &Expr) -> Result<Schedule, TestCaseError> {
    Schedule::parse(&e.text)
        .map_err(|err| TestCaseError::fail(format!("{:?} rejected: {err}", e.text)))
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn time_fields_match_second_by_second_reference(e in time_only_expr(), after in instant()) {
        let schedule = parse(&e)?;
        let got = schedule.next_after(&after).map(|t| t.naive_utc());
        prop_assert_eq!(got, brute_seconds(&e, after.naive_utc()), "{}", e.text);
    }

    #[test]
    fn all_fields_match_day_by_day_reference(e in expr(2), after in instant()) {
        let schedule = parse(&e)?;
        let got = schedule.next_after(&after).map(|t| t.naive_utc());
        prop_assert_eq!(got, brute_days(&e, after.naive_utc()), "{}", e.text);
    }

    #[test]
    fn fixed_offset_uses_local_wall_clock(
        e in expr(3),
        after in instant(),
        offset_minutes in -14 * 60..=14 * 60i32,
    ) {
        let zone = FixedOffset::east_opt(offset_minutes * 60)
            .ok_or_else(|| TestCaseError::fail("offset out of range"))?;
        let local_after = after.with_timezone(&zone);
        let schedule = parse(&e)?;
        let got = schedule.next_after(&local_after);
        if let Some(t) = &got {
            prop_assert_eq!(t.offset(), &zone);
            prop_assert!(*t > local_after);
        }
        let got = got.map(|t| t.naive_local());
        prop_assert_eq!(got, brute_days(&e, local_after.naive_local()), "{}", e.text);
    }

    #[test]
    fn upcoming_is_increasing_and_matching(e in expr(3), after in instant()) {
        let cron = CronSchedule::parse(&e.text)
            .map_err(|err| TestCaseError::fail(format!("{:?} rejected: {err}", e.text)))?;
        let runs = cron.upcoming(&after, 5);
        let mut previous = after;
        for run in &runs {
            prop_assert!(*run > previous, "{} not after {}", run, previous);
            prop_assert!(cron.matches(run));
            prop_assert_eq!(run.nanosecond(), 0);
            previous = *run;
        }
    }

    #[test]
    fn display_round_trips(e in expr(2)) {
        let schedule = parse(&e)?;
        prop_assert_eq!(schedule.to_string(), e.text.clone());
        let again = parse(&Expr { text: schedule.to_string(), fields: e.fields.clone() })?;
        prop_assert_eq!(again, schedule);
    }

    #[test]
    fn intervals_round_trip_and_add(
        days in 0u64..400,
        secs in 0u64..86_400,
        ticks in prop_oneof![Just(0u32), 0u32..10_000_000],
        after in instant(),
    ) {
        let interval = std::time::Duration::new(days * 86_400 + secs, ticks * 100);
        prop_assume!(!interval.is_zero());
        let schedule = Schedule::Interval(interval);
        let text = schedule.to_string();
        let parsed = Schedule::parse(&text)
            .map_err(|err| TestCaseError::fail(format!("{text:?} rejected: {err}")))?;
        prop_assert_eq!(&parsed, &schedule, "{}", text);
        let delta = TimeDelta::from_std(interval)
            .map_err(|_| TestCaseError::fail("interval too large"))?;
        prop_assert_eq!(parsed.next_after(&after), Some(after + delta));
    }
}
