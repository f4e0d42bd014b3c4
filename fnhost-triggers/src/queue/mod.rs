//! The Azure Storage queue trigger (`queueTrigger`).

mod listener;
mod options;

pub use listener::{DEFAULT_MESSAGE_VISIBILITY, QueueListener};
pub use options::{
    MessageEncoding, QueueSpec, QueuesOptions, connection_string, poison_queue_name,
};

use base64::Engine as _;

/// A message's text as the trigger reads it with `encoding`: base64 of the
/// bytes, or the text itself. What an output binding (or a test) writes.
pub fn encode_message(text: &str, encoding: MessageEncoding) -> String {
    match encoding {
        MessageEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(text),
        MessageEncoding::None => text.to_owned(),
    }
}
