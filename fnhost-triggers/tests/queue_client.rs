//! The queue client against a real Azurite: SharedKey signing, every
//! operation the trigger uses, and the errors it must tell apart.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fnhost_triggers::storage::{QueueService, StorageAccount, StorageError};
use support::Azurite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_against_azurite() {
    let azurite = Azurite::start().await;
    let service = QueueService::from_connection_string(&azurite.connection_string()).unwrap();
    let q = service.queue("orders");

    // A missing queue is a 404 with its code, and has no count.
    let e = q.receive(1, Duration::from_secs(30)).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert_eq!(e.code(), Some("QueueNotFound"), "{e}");
    assert!(e.is_transient());
    assert_eq!(q.approximate_count().await.unwrap(), None);

    assert!(q.create().await.unwrap());
    assert!(!q.create().await.unwrap(), "creating again is not an error");
    // Text that needs escaping, and more than ASCII.
    let text = r#"<a & "b"> 'c' é ✓ {"k": [1, 2]}"#;
    let put = q.put(text, None).await.unwrap();
    assert!(!put.id.is_empty());
    q.put("second", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), Some(2));

    let peeked = q.peek(32).await.unwrap();
    assert_eq!(peeked.len(), 1, "the delayed message is not visible");
    assert_eq!(peeked[0].text, text);

    let got = q.receive(32, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.id, put.id);
    assert_eq!(m.text, text);
    assert_eq!(m.dequeue_count, 1);
    assert!(m.insertion_time.is_some() && m.expiration_time.is_some());
    assert!(m.next_visible.unwrap() > chrono::Utc::now());
    assert!(
        q.receive(32, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );

    // Update keeps the text, gives a new receipt, and the old one is stale.
    let renewed = q
        .update_message(&m.id, &m.pop_receipt, Duration::from_secs(30), None)
        .await
        .unwrap();
    assert_ne!(renewed.pop_receipt, m.pop_receipt);
    let stale = q.delete_message(&m.id, &m.pop_receipt).await.unwrap_err();
    assert_eq!(stale.status(), Some(400), "{stale}");
    // Released at once: received again, with its text and a higher count.
    q.update_message(&m.id, &renewed.pop_receipt, Duration::ZERO, None)
        .await
        .unwrap();
    let again = q.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again[0].id, m.id);
    assert_eq!(again[0].text, text);
    assert_eq!(again[0].dequeue_count, 2);
    // Update can replace the text.
    let replaced = q
        .update_message(
            &m.id,
            &again[0].pop_receipt,
            Duration::ZERO,
            Some("new text"),
        )
        .await
        .unwrap();
    let m3 = q.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(m3[0].text, "new text");
    assert_ne!(m3[0].pop_receipt, replaced.pop_receipt);
    q.delete_message(&m3[0].id, &m3[0].pop_receipt)
        .await
        .unwrap();
    let gone = q
        .delete_message(&m3[0].id, &m3[0].pop_receipt)
        .await
        .unwrap_err();
    assert_eq!(gone.status(), Some(404), "{gone}");

    q.clear().await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), Some(0));
    q.delete().await.unwrap();
    assert_eq!(q.approximate_count().await.unwrap(), None);

    // An invalid name is refused before any request.
    let e = service.queue("Bad_Name").create().await.unwrap_err();
    assert!(matches!(e, StorageError::Config(_)), "{e}");
    azurite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_and_a_closed_port_is_unreachable() {
    let azurite = Azurite::start().await;
    let wrong = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=d3Jvbmc=;QueueEndpoint={}/devstoreaccount1",
        azurite.endpoint
    );
    let e = QueueService::from_connection_string(&wrong)
        .unwrap()
        .queue("orders")
        .create()
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(!e.is_transient());
    let endpoint = azurite.endpoint.clone();
    azurite.stop().await;
    // The port is closed now.
    let e = QueueService::new(StorageAccount::emulator(&endpoint))
        .unwrap()
        .queue("orders")
        .create()
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unreachable { .. }), "{e}");
    assert!(e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_are_reached_over_tls_and_verified() {
    let (azurite, cert) = Azurite::start_https().await;
    assert!(
        azurite.endpoint.starts_with("https://"),
        "{}",
        azurite.endpoint
    );
    let account = StorageAccount::emulator(&azurite.endpoint);
    // Trusting the certificate: every operation works.
    let tls = fnhost_triggers::storage::tls_trusting(&cert).unwrap();
    let q = QueueService::with_tls(account.clone(), tls)
        .unwrap()
        .queue("secure");
    assert!(q.create().await.unwrap());
    q.put("over tls", None).await.unwrap();
    let got = q.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got[0].text, "over tls");
    q.delete_message(&got[0].id, &got[0].pop_receipt)
        .await
        .unwrap();
    // The system's roots do not know a self-signed certificate: refused.
    let e = QueueService::new(account)
        .unwrap()
        .queue("secure")
        .approximate_count()
        .await
        .unwrap_err();
    assert!(
        e.to_string().to_ascii_lowercase().contains("certificate"),
        "{e}"
    );
    azurite.stop().await;
}
