//! Non-HTTP triggers for fnhost.
//!
//! This version has the Azure Storage queue trigger (`queueTrigger`), with
//! the host's semantics: batches, polling backoff, messages hidden while
//! they run, retries, the poison queue, base64 or plain message text, and
//! the host's trigger metadata. [`Listeners`] runs one [`QueueListener`]
//! per queueTrigger function of a [`fnhost_core::Host`]'s current app
//! version and follows hot swaps. [`storage`] is the queue service client
//! it uses (REST with SharedKey signing; works against Azurite).
//!
//! See docs/triggers.md in the repository for the settings and the
//! differences from Azure kept on purpose.

pub mod bindings;
pub mod blob;
pub mod listeners;
pub mod queue;
pub mod rabbitmq;
pub mod storage;

pub use bindings::StorageBindings;
pub use blob::{BlobListener, BlobSpec, BlobsOptions};
pub use listeners::{ListenerSpec, Listeners, ListenersHandle};
pub use queue::{MessageEncoding, QueueListener, QueueSpec, QueuesOptions};
pub use rabbitmq::{RabbitListener, RabbitSpec};
