//! Retry policies (`retry` in host.json or function.json).

use std::time::Duration;

use serde_json::Value;

use crate::binding::property;
use crate::diag::{Code, DocReporter};
use crate::json::Seg;
use crate::timespan::TimeSpan;

/// How often and how soon a failed invocation is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The strategy with its intervals.
    pub strategy: RetryStrategy,
    /// Retries after the first attempt; `None` means without end (`-1`).
    pub max_retry_count: Option<u32>,
}

/// The delay between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    /// The same delay every time.
    FixedDelay {
        /// The delay.
        delay: Duration,
    },
    /// A delay that doubles from `minimum` up to `maximum`.
    ExponentialBackoff {
        /// The first delay.
        minimum: Duration,
        /// The longest delay.
        maximum: Duration,
    },
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        match self.strategy {
            RetryStrategy::FixedDelay { delay } => delay,
            RetryStrategy::ExponentialBackoff { minimum, maximum } => {
                let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
                minimum.saturating_mul(factor).min(maximum)
            }
        }
    }

    /// Whether retry number `retry` (0 for the first) may run.
    pub fn allows(&self, retry: u32) -> bool {
        self.max_retry_count.is_none_or(|max| retry < max)
    }
}

/// Parses the `retry` object at `path`, reporting its problems.
pub(crate) fn parse_retry(
    value: &Value,
    path: &[Seg<'_>],
    rep: &mut DocReporter<'_>,
) -> Option<RetryPolicy> {
    let sub = |key: &'static str| {
        let mut p = path.to_vec();
        p.push(Seg::Key(key));
        p
    };
    let Some(map) = value.as_object() else {
        rep.error(
            Code::Retry,
            path,
            "\"retry\" must be an object such as {\"strategy\": \"fixedDelay\", \"maxRetryCount\": 3, \"delayInterval\": \"00:00:05\"}",
        );
        return None;
    };
    let max_retry_count = match property(map, "maxRetryCount") {
        Some(Value::Number(n)) if n.as_i64() == Some(-1) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
            n.as_u64().map(|n| n as u32)
        }
        _ => {
            rep.error(
                Code::Retry,
                &sub("maxRetryCount"),
                "\"maxRetryCount\" must be a whole number of retries, or -1 for no limit",
            );
            return None;
        }
    };
    let mut interval = |key: &'static str| -> Option<Duration> {
        match property(map, key)
            .and_then(Value::as_str)
            .map(TimeSpan::parse)
        {
            Some(Ok(t)) if !t.negative => Some(t.duration),
            Some(Ok(_)) => {
                rep.error(
                    Code::Retry,
                    &sub(key),
                    format!("\"{key}\" must not be negative"),
                );
                None
            }
            Some(Err(e)) => {
                rep.error(Code::Retry, &sub(key), format!("\"{key}\": {e}"));
                None
            }
            None => {
                rep.error(
                    Code::Retry,
                    path,
                    format!("this retry strategy needs \"{key}\", a TimeSpan such as \"00:00:05\""),
                );
                None
            }
        }
    };
    let strategy = match property(map, "strategy").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("fixedDelay") => RetryStrategy::FixedDelay {
            delay: interval("delayInterval")?,
        },
        Some(s) if s.eq_ignore_ascii_case("exponentialBackoff") => {
            let minimum = interval("minimumInterval");
            let maximum = interval("maximumInterval");
            let (minimum, maximum) = (minimum?, maximum?);
            if minimum > maximum {
                rep.error(
                    Code::Retry,
                    &sub("maximumInterval"),
                    "\"maximumInterval\" must not be shorter than \"minimumInterval\"",
                );
                return None;
            }
            RetryStrategy::ExponentialBackoff { minimum, maximum }
        }
        _ => {
            rep.error(
                Code::Retry,
                &sub("strategy"),
                "\"strategy\" must be \"fixedDelay\" or \"exponentialBackoff\"",
            );
            return None;
        }
    };
    Some(RetryPolicy {
        strategy,
        max_retry_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = RetryPolicy {
            strategy: RetryStrategy::ExponentialBackoff {
                minimum: Duration::from_secs(1),
                maximum: Duration::from_secs(5),
            },
            max_retry_count: Some(4),
        };
        let delays: Vec<u64> = (0..5).map(|r| p.delay(r).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert!(p.allows(3) && !p.allows(4));
    }
}
