//! The queue service's operations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::{Method, StatusCode};

use super::{
    Response, StorageAccount, StorageError, Transport, parse_body, status_error, time,
    unless_missing, xml,
};

/// The queue service of one account.
#[derive(Debug, Clone)]
pub struct QueueService {
    transport: Transport,
}

impl QueueService {
    /// A client of `account`'s queue service (no request is made).
    pub fn new(account: StorageAccount) -> Result<QueueService, StorageError> {
        Ok(QueueService {
            transport: Transport::new(account.clone(), &account.queue_endpoint, None)?,
        })
    }

    /// A client whose `https` requests trust `tls`'s roots instead of the
    /// system's (see [`super::tls_trusting`]).
    pub fn with_tls(
        account: StorageAccount,
        tls: super::TlsConfig,
    ) -> Result<QueueService, StorageError> {
        Ok(QueueService {
            transport: Transport::new(account.clone(), &account.queue_endpoint, Some(tls))?,
        })
    }

    /// From a connection string (see [`StorageAccount::parse`]).
    pub fn from_connection_string(connection_string: &str) -> Result<QueueService, StorageError> {
        Self::new(StorageAccount::parse(connection_string)?)
    }

    /// The account.
    pub fn account(&self) -> &StorageAccount {
        self.transport.account()
    }

    /// A client of one queue (the name is checked when a request is made).
    pub fn queue(&self, name: &str) -> QueueClient {
        QueueClient {
            transport: self.transport.clone(),
            name: name.to_owned(),
        }
    }
}

/// One queue.
#[derive(Debug, Clone)]
pub struct QueueClient {
    transport: Transport,
    name: String,
}

/// A message received with Get Messages: hidden until
/// [`QueueMessage::next_visible`], and deleted or updated with its
/// [`QueueMessage::pop_receipt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The message id.
    pub id: String,
    /// When it was put.
    pub insertion_time: Option<DateTime<Utc>>,
    /// When it expires.
    pub expiration_time: Option<DateTime<Utc>>,
    /// The receipt that deletes or updates it.
    pub pop_receipt: String,
    /// When it becomes visible again.
    pub next_visible: Option<DateTime<Utc>>,
    /// How many times it was received, this time included.
    pub dequeue_count: u64,
    /// The text as stored (base64 when the writer encoded it).
    pub text: String,
}

/// A message seen with Peek Messages (not hidden, no receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedMessage {
    /// The message id.
    pub id: String,
    /// How many times it was received.
    pub dequeue_count: u64,
    /// The text as stored.
    pub text: String,
}

/// What Put Message returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReceipt {
    /// The new message's id.
    pub id: String,
    /// Its pop receipt.
    pub pop_receipt: String,
}

/// What Update Message returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateReceipt {
    /// The receipt to use from now on.
    pub pop_receipt: String,
    /// When the message becomes visible.
    pub next_visible: Option<DateTime<Utc>>,
}

/// Whether `name` is a valid queue name: 3 to 63 characters, lower-case
/// letters, digits and single dashes, starting and ending with a letter or
/// digit.
pub fn is_valid_queue_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

impl QueueClient {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue service's endpoint, as configured.
    pub fn endpoint(&self) -> &str {
        &self.transport.account().queue_endpoint
    }

    fn check_name(&self) -> Result<(), StorageError> {
        if is_valid_queue_name(&self.name) {
            Ok(())
        } else {
            Err(StorageError::Config(format!(
                "'{}' is not a valid queue name: use 3 to 63 lower-case letters, digits and single dashes",
                self.name
            )))
        }
    }

    async fn call(
        &self,
        operation: &str,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<String>,
        ok: &[StatusCode],
    ) -> Result<Response, StorageError> {
        self.check_name()?;
        let mut path = vec![self.name.as_str()];
        path.extend_from_slice(segments);
        let response = self.transport.send(method, &path, query, body).await?;
        if ok.contains(&response.status) {
            Ok(response)
        } else {
            Err(status_error(
                format!("{operation} on queue '{}'", self.name),
                &response,
            ))
        }
    }

    /// Creates the queue; `Ok(false)` when it already existed.
    pub async fn create(&self) -> Result<bool, StorageError> {
        let r = self
            .call(
                "Create Queue",
                Method::PUT,
                &[],
                &[],
                None,
                &[StatusCode::CREATED, StatusCode::NO_CONTENT],
            )
            .await?;
        Ok(r.status == StatusCode::CREATED)
    }

    /// Deletes the queue and its messages.
    pub async fn delete(&self) -> Result<(), StorageError> {
        self.call(
            "Delete Queue",
            Method::DELETE,
            &[],
            &[],
            None,
            &[StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }

    /// The approximate number of messages, or `None` when the queue does
    /// not exist.
    pub async fn approximate_count(&self) -> Result<Option<u64>, StorageError> {
        let got = self
            .call(
                "Get Queue Metadata",
                Method::GET,
                &[],
                &[("comp", "metadata".into())],
                None,
                &[StatusCode::OK],
            )
            .await;
        Ok(unless_missing(got)?.map(|r| {
            r.header("x-ms-approximate-messages-count")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }))
    }

    /// Puts a message with this text (encoded by the caller as the reader
    /// expects), visible after `visibility` (now when `None`).
    pub async fn put(
        &self,
        text: &str,
        visibility: Option<Duration>,
    ) -> Result<MessageReceipt, StorageError> {
        let mut query = Vec::new();
        if let Some(v) = visibility {
            query.push(("visibilitytimeout", v.as_secs().to_string()));
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessage><MessageText>{}</MessageText></QueueMessage>",
            xml::escape(text)
        );
        let r = self
            .call(
                "Put Message",
                Method::POST,
                &["messages"],
                &query,
                Some(body),
                &[StatusCode::CREATED],
            )
            .await?;
        let root = parse_body(&r)?;
        let m = root
            .child("QueueMessage")
            .ok_or_else(|| bad("Put Message", "no QueueMessage"))?;
        Ok(MessageReceipt {
            id: m.child_text("MessageId").unwrap_or_default().to_owned(),
            pop_receipt: m.child_text("PopReceipt").unwrap_or_default().to_owned(),
        })
    }

    /// Receives up to `count` (1 to 32) messages, hiding them for
    /// `visibility`.
    pub async fn receive(
        &self,
        count: u32,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, StorageError> {
        let query = [
            ("numofmessages", count.clamp(1, 32).to_string()),
            ("visibilitytimeout", visibility.as_secs().max(1).to_string()),
        ];
        self.messages("Get Messages", &query)
            .await?
            .iter()
            .map(|m| {
                Ok(QueueMessage {
                    id: required(m, "MessageId")?.to_owned(),
                    insertion_time: time(m.child_text("InsertionTime")),
                    expiration_time: time(m.child_text("ExpirationTime")),
                    pop_receipt: required(m, "PopReceipt")?.to_owned(),
                    next_visible: time(m.child_text("TimeNextVisible")),
                    dequeue_count: m
                        .child_text("DequeueCount")
                        .and_then(|c| c.trim().parse().ok())
                        .unwrap_or(1),
                    text: m.child_text("MessageText").unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    /// Looks at up to `count` (1 to 32) visible messages without hiding
    /// them.
    pub async fn peek(&self, count: u32) -> Result<Vec<PeekedMessage>, StorageError> {
        let query = [
            ("numofmessages", count.clamp(1, 32).to_string()),
            ("peekonly", "true".to_owned()),
        ];
        Ok(self
            .messages("Peek Messages", &query)
            .await?
            .iter()
            .map(|m| PeekedMessage {
                id: m.child_text("MessageId").unwrap_or_default().to_owned(),
                dequeue_count: m
                    .child_text("DequeueCount")
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(0),
                text: m.child_text("MessageText").unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// The `QueueMessage` elements of a Get or Peek Messages answer.
    async fn messages(
        &self,
        operation: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<xml::Element>, StorageError> {
        let r = self
            .call(
                operation,
                Method::GET,
                &["messages"],
                query,
                None,
                &[StatusCode::OK],
            )
            .await?;
        let mut root = parse_body(&r)?;
        root.children.retain(|m| m.name == "QueueMessage");
        Ok(root.children)
    }

    /// Deletes a received message.
    pub async fn delete_message(&self, id: &str, pop_receipt: &str) -> Result<(), StorageError> {
        self.call(
            "Delete Message",
            Method::DELETE,
            &["messages", id],
            &[("popreceipt", pop_receipt.to_owned())],
            None,
            &[StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }

    /// Hides a received message for `visibility` from now (zero: visible at
    /// once), keeping its text, or replacing it with `text`. The returned
    /// receipt replaces the old one.
    pub async fn update_message(
        &self,
        id: &str,
        pop_receipt: &str,
        visibility: Duration,
        text: Option<&str>,
    ) -> Result<UpdateReceipt, StorageError> {
        let body = text.map(|t| {
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessage><MessageText>{}</MessageText></QueueMessage>",
                xml::escape(t)
            )
        });
        let r = self
            .call(
                "Update Message",
                Method::PUT,
                &["messages", id],
                &[
                    ("popreceipt", pop_receipt.to_owned()),
                    ("visibilitytimeout", visibility.as_secs().to_string()),
                ],
                body,
                &[StatusCode::NO_CONTENT],
            )
            .await?;
        let pop_receipt = r
            .header("x-ms-popreceipt")
            .ok_or_else(|| bad("Update Message", "no x-ms-popreceipt header"))?
            .to_owned();
        Ok(UpdateReceipt {
            pop_receipt,
            next_visible: time(r.header("x-ms-time-next-visible")),
        })
    }

    /// Deletes every message.
    pub async fn clear(&self) -> Result<(), StorageError> {
        self.call(
            "Clear Messages",
            Method::DELETE,
            &["messages"],
            &[],
            None,
            &[StatusCode::NO_CONTENT],
        )
        .await
        .map(drop)
    }
}

fn required<'a>(m: &'a xml::Element, name: &str) -> Result<&'a str, StorageError> {
    m.child_text(name)
        .ok_or_else(|| bad("Get Messages", &format!("a message without {name}")))
}

fn bad(operation: &str, what: &str) -> StorageError {
    StorageError::BadResponse(format!("{operation}: the service's answer has {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["abc", "orders", "orders-poison", "a1-b2", &"a".repeat(63)] {
            assert!(is_valid_queue_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Orders",
            "-abc",
            "abc-",
            "a--b",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_queue_name(bad), "{bad}");
        }
    }

    #[test]
    fn service_times() {
        let t = time(Some("Fri, 09 Oct 2009 21:04:30 GMT")).map(|t| t.to_rfc3339());
        assert_eq!(t.as_deref(), Some("2009-10-09T21:04:30+00:00"));
        assert_eq!(time(Some("yesterday")), None);
    }
}
