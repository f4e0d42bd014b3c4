//! Non-HTTP triggers and bindings for fnhost, with the semantics of
//! Azure's extensions:
//!
//! - [`queue`]: the Azure Storage queue trigger (`queueTrigger`): batches,
//!   polling backoff, messages hidden while they run, retries, the poison
//!   queue, base64 or plain message text, the host's trigger metadata;
//! - [`blob`]: the blob trigger (`blobTrigger`): container scans, a
//!   receipt per blob version, the poison queue, path patterns;
//! - [`rabbitmq`]: the RabbitMQ trigger (`rabbitMQTrigger`): ack, the
//!   extension's requeue count, dead-lettering;
//! - [`bindings`]: [`StorageBindings`], the middleware that runs the
//!   `queue`, `blob` and `rabbitMQ` output bindings and the `blob` input
//!   binding for every executor, with binding expressions;
//! - [`Listeners`]: one listener per trigger function of a
//!   [`fnhost_core::Host`]'s current app version, following hot swaps;
//! - [`storage`]: the Azure Storage queue and blob clients they use (REST
//!   with SharedKey signing; Azurite, or Azure over https).
//!
//! ```no_run
//! # async fn demo(app: fnhost_core::FunctionApp) {
//! use std::sync::Arc;
//! use std::time::Duration;
//! let host = Arc::new(
//!     fnhost_core::Host::builder()
//!         .with_default_executors()
//!         .middleware(Arc::new(fnhost_triggers::StorageBindings::new()))
//!         .build(app),
//! );
//! host.start().await.expect("the executors start");
//! let listeners = fnhost_triggers::Listeners::new(host.clone()).start();
//! // ... serve ...
//! listeners.stop(Duration::from_secs(30)).await;
//! # }
//! ```
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
