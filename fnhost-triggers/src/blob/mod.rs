//! The blob trigger (`blobTrigger`): container scans, a receipt per blob
//! version so a blob is processed once across restarts, the poison queue
//! after repeated failures, path patterns and the host's metadata.

mod listener;
mod path;

pub use listener::{BlobListener, DEFAULT_SCAN_INTERVAL, POISON_QUEUE, RECEIPTS_CONTAINER};
pub use path::BlobPattern;

use fnhost_core::app::{AppSettings, Function, FunctionApp, HostConfig};
use fnhost_core::binding::{BindingKind, DataType};
use serde_json::Value;

use crate::queue::connection_string;

/// The blob settings of host.json's `extensions.blobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobsOptions {
    /// Tries before a blob is given up and a message put to
    /// `webjobs-blobtrigger-poison` (`poisonBlobThreshold`, default 5).
    pub poison_threshold: u32,
    /// Blobs processed at once per function (`maxDegreeOfParallelism`,
    /// default 8 × processors).
    pub max_degree_of_parallelism: usize,
}

impl Default for BlobsOptions {
    fn default() -> Self {
        let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
        BlobsOptions {
            poison_threshold: 5,
            max_degree_of_parallelism: 8 * processors,
        }
    }
}

impl BlobsOptions {
    /// The options of host.json (keys compared ignoring case).
    pub fn of(host: &HostConfig) -> Result<BlobsOptions, String> {
        let mut o = BlobsOptions::default();
        let get = |m: &serde_json::Map<String, Value>, k: &str| {
            m.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let Some(Value::Object(section)) = get(&host.document, "extensions")
            .and_then(|e| e.as_object().and_then(|e| get(e, "blobs")))
        else {
            return Ok(o);
        };
        let number = |key: &str| -> Result<Option<u64>, String> {
            match get(&section, key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|n| *n >= 1)
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "host.json extensions.blobs.{key} is {v}: it must be a whole number of at least 1"
                        )
                    }),
            }
        };
        if let Some(n) = number("poisonBlobThreshold")? {
            o.poison_threshold = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("maxDegreeOfParallelism")? {
            o.max_degree_of_parallelism = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(o)
    }
}

/// One blob trigger listener: a blobTrigger function, its path, its
/// connection and the app's blob options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSpec {
    /// The function's name.
    pub function: String,
    /// The container and name pattern (settings resolved).
    pub pattern: BlobPattern,
    /// The name of the setting the connection string came from.
    pub setting: String,
    /// The connection string.
    pub connection: String,
    /// The binding's `dataType` (binary: the function gets bytes).
    pub data_type: Option<DataType>,
    /// The app's `extensions.blobs`.
    pub options: BlobsOptions,
}

impl BlobSpec {
    /// The spec of `function` of `app` when it is a blobTrigger function:
    /// `None` when it is not one, `Some(Err(why))` when it cannot listen.
    pub fn of(function: &Function, app: &FunctionApp) -> Option<Result<BlobSpec, String>> {
        let trigger = function.config.trigger()?;
        let BindingKind::BlobTrigger(b) = &trigger.kind else {
            return None;
        };
        let source = trigger
            .properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("source"))
            .and_then(|(_, v)| v.as_str());
        if source.is_some_and(|s| s.eq_ignore_ascii_case("EventGrid")) {
            return Some(Err(
                "its blobTrigger has source EventGrid, which fnhost does not receive: remove \"source\" (or use LogsAndContainerScan) to have the container scanned".into(),
            ));
        }
        Some(Self::build(
            function,
            app.settings(),
            app.host(),
            b.path.as_deref(),
            b.connection.as_deref(),
            trigger.data_type,
        ))
    }

    fn build(
        function: &Function,
        settings: &AppSettings,
        host: &HostConfig,
        path: Option<&str>,
        connection: Option<&str>,
        data_type: Option<DataType>,
    ) -> Result<BlobSpec, String> {
        let raw = path
            .filter(|p| !p.trim().is_empty())
            .ok_or("its blobTrigger has no path (write \"path\": \"container/{name}\")")?;
        let resolved = settings.resolve(raw).map_err(|e| format!("its path {e}"))?;
        let pattern = BlobPattern::parse(&resolved)?;
        let (setting, connection) = connection_string(settings, connection)?;
        Ok(BlobSpec {
            function: function.name.clone(),
            pattern,
            setting,
            connection,
            data_type,
            options: BlobsOptions::of(host)?,
        })
    }
}

/// The host id receipts are kept under: the app setting
/// `AzureFunctionsWebHost__hostid`, else `WEBSITE_SITE_NAME`, else
/// `fallback` (the app's folder name, or the deployed app's name);
/// lower-cased, letters, digits and dashes, at most 32 characters, as
/// Azure makes it.
pub fn host_id(settings: &AppSettings, fallback: &str) -> String {
    let raw = settings
        .get("AzureFunctionsWebHost__hostid")
        .or_else(|| settings.get("WEBSITE_SITE_NAME"))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(fallback);
    let mut id: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    id.truncate(32);
    let id = id.trim_matches('-').to_owned();
    if id.is_empty() { "fnhost".into() } else { id }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_ids() {
        let mut s = AppSettings::new();
        assert_eq!(host_id(&s, "My_App"), "my-app");
        assert_eq!(host_id(&s, &"x".repeat(40)).len(), 32);
        s.set("WEBSITE_SITE_NAME", "Orders");
        assert_eq!(host_id(&s, "folder"), "orders");
        s.set("AzureFunctionsWebHost__hostid", "fixed-id");
        assert_eq!(host_id(&s, "folder"), "fixed-id");
    }

    #[test]
    fn options() {
        let host = HostConfig::parse(
            r#"{"version": "2.0", "extensions": {"blobs": {"poisonBlobThreshold": 2, "maxDegreeOfParallelism": "3"}}}"#,
        );
        let o = BlobsOptions::of(&host.unwrap()).unwrap();
        assert_eq!(o.poison_threshold, 2);
        assert_eq!(o.max_degree_of_parallelism, 3);
        let bad = HostConfig::parse(
            r#"{"version": "2.0", "extensions": {"blobs": {"poisonBlobThreshold": 0}}}"#,
        );
        assert!(
            BlobsOptions::of(&bad.unwrap())
                .unwrap_err()
                .contains("poisonBlobThreshold")
        );
    }
}
