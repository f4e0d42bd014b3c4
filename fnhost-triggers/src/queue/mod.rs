//! The Azure Storage queue trigger (`queueTrigger`).

mod listener;
mod options;

pub use listener::{DEFAULT_MESSAGE_VISIBILITY, QueueListener};
pub use options::{
    MessageEncoding, QueueSpec, QueuesOptions, connection_string, poison_queue_name,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use tokio::sync::Notify;

/// A message's text as the trigger reads it with `encoding`: base64 of the
/// bytes, or the text itself. What an output binding (or a test) writes.
pub fn encode_message(text: &str, encoding: MessageEncoding) -> String {
    match encoding {
        MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(text),
        MessageEncoding::None => text.to_owned(),
    }
}

/// The wake-up of the listeners of one queue in this process, by the
/// queue's URL (`endpoint/name`): a `queue` output binding that writes to
/// a queue wakes its listeners at once (the host's `SharedQueueWatcher`),
/// instead of at their next poll.
pub(crate) fn watcher(endpoint: &str, queue: &str) -> Arc<Notify> {
    static WATCHERS: OnceLock<Mutex<HashMap<String, Arc<Notify>>>> = OnceLock::new();
    let key = format!("{}/{queue}", endpoint.trim_end_matches('/'));
    WATCHERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}
