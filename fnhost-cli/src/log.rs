//! The log channel: `tracing` events on stderr. The servers' log lines
//! (request logs, timers, listeners, hot swaps) are events with target
//! [`TARGET`]; the libraries add spans (`deployment`, `invocation`) and
//! events of their own (a deployment's log lines).
//!
//! `--log-format text` (the default) prints the CLI's events as it always
//! printed them, `fnhost: LINE`, and nothing of the libraries' (their
//! spans are then disabled and cost nothing). `--log-format json` prints
//! every fnhost event at INFO or above as one JSON object a line, with
//! the span it happened in (`app`, `slot`, `id` of a deployment;
//! `function`, `id` of an invocation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The target of the CLI's own log lines.
pub(crate) const TARGET: &str = "fnhost";
/// The target of lines passed on as they are (a custom handler's or a
/// language worker's output): the text format adds no prefix.
const RAW: &str = "fnhost::raw";

/// A log line of the CLI: `log_line!("...")` (INFO), `log_line!(warn,
/// "...")`, `log_line!(error, "...")`; printed as `fnhost: ...`.
macro_rules! log_line {
    (warn, $($t:tt)*) => { tracing::warn!(target: $crate::log::TARGET, $($t)*) };
    (error, $($t:tt)*) => { tracing::error!(target: $crate::log::TARGET, $($t)*) };
    ($($t:tt)*) => { tracing::info!(target: $crate::log::TARGET, $($t)*) };
}
pub(crate) use log_line;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `fnhost: LINE`, as a person reads it.
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, message, target, span.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether log lines are JSON: then progress observers leave a
/// deployment's log lines to the events.
pub(crate) fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the subscriber for the whole process.
pub(crate) fn install(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(Plain)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() == TARGET || m.target() == RAW
            }))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                *m.level() <= Level::INFO
                    && (m.target() == TARGET
                        || m.target() == RAW
                        || m.target().starts_with("fnhost_"))
            }))
            .boxed(),
    };
    // Only fails when a subscriber is set already: then that one logs.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The sink the libraries' servers take (`with_log`): each line becomes
/// an event.
pub(crate) fn sink() -> Arc<dyn Fn(&str) + Send + Sync> {
    Arc::new(|line: &str| log_line!("{line}"))
}

/// A line of a process fnhost runs, logged as it is.
pub(crate) fn raw_line(line: &str) {
    tracing::info!(target: RAW, "{line}");
}

/// `fnhost: MESSAGE`, the text format of every line before tracing
/// (`MESSAGE` alone for [`raw_line`]s).
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if event.metadata().target() != RAW {
            writer.write_str("fnhost: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
