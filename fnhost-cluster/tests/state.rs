//! The state store's behaviour, the same suite against both drivers:
//! SQLite in a temporary home and PostgreSQL (a fresh database on the
//! server at FNHOST_TEST_POSTGRES, default
//! postgres://postgres@127.0.0.1:5432/postgres; scripts/test.sh installs
//! and starts one when missing).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use fnhost_cluster::state::{
    self, Assignment, Placement, PlacementMode, StateStore, TimerRun, TimerStatus, WorkerRecord,
    WorkerState,
};

fn worker(name: &str, hash: &str) -> WorkerRecord {
    let mut w: WorkerRecord = serde_json::from_value(serde_json::json!({
        "name": name, "labels": {"zone": "a"}, "capacity": 4, "state": "joining",
        "drain_requested": false, "status": "{}", "last_heartbeat": 1000,
        "registered_at": 1000, "generation": 0
    }))
    .unwrap();
    w.credential_hash = hash.into();
    w
}

fn assignment(w: &str, app: &str, dep: &str) -> Assignment {
    serde_json::from_value(serde_json::json!({
        "worker": w, "app": app, "slot": "production", "deployment": dep,
        "manifest": format!("m-{dep}"), "settings_version": "s1"
    }))
    .unwrap()
}

fn run(tick: &str, leader: &str) -> TimerRun {
    serde_json::from_value(serde_json::json!({
        "app": "app", "slot": "production", "function": "Tick", "tick": tick,
        "leader": leader, "lease_token": 1, "worker": "", "status": "claimed",
        "past_due": false, "claimed_at": fnhost_cluster::now_ms()
    }))
    .unwrap()
}

fn timer_status(last: i64, next: i64, last_updated: i64) -> TimerStatus {
    serde_json::from_value(serde_json::json!({
        "last": last, "next": next, "last_updated": last_updated
    }))
    .unwrap()
}

/// The suite: `open` opens another handle on the same store (a second
/// process or manager).
async fn suite<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn StateStore>>,
{
    let s = open().await;
    // Migrations are idempotent: a second handle opens the same schema.
    let s2 = open().await;

    // Join tokens: only hashes are kept.
    s.add_join_token("t1", "hash1", 1).await.unwrap();
    s2.add_join_token("t2", "hash2", 2).await.unwrap();
    let mut hashes = s.join_token_hashes().await.unwrap();
    hashes.sort();
    assert_eq!(hashes, vec!["hash1", "hash2"]);

    // Registry.
    let w = s.register_worker(&worker("w1", "c1")).await.unwrap();
    assert_eq!(w.state, WorkerState::Joining);
    assert_eq!(w.labels.get("zone").map(String::as_str), Some("a"));
    let g1 = w.generation;
    let hb = s
        .heartbeat("w1", WorkerState::Ready, r#"{"instances":[]}"#, 5000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((hb.state, hb.last_heartbeat), (WorkerState::Ready, 5000));
    assert!(
        s.heartbeat("nobody", WorkerState::Ready, "{}", 1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s2.request_drain("w1").await.unwrap());
    assert!(!s2.request_drain("nobody").await.unwrap());
    assert!(s.worker("w1").await.unwrap().unwrap().drain_requested);
    // Registering again: new credential, drain request cleared, newer
    // generation.
    let again = s.register_worker(&worker("w1", "c2")).await.unwrap();
    assert_eq!(again.credential_hash, "c2");
    assert!(!again.drain_requested && again.generation > g1);
    s.register_worker(&worker("w2", "c3")).await.unwrap();
    let names: Vec<String> = s2
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, vec!["w1", "w2"]);

    // Placements.
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), "a".to_string());
    s.set_placement(&Placement::fixed("app", "production", 3))
        .await
        .unwrap();
    s.set_placement(&Placement::auto("app", "staging", 1, 4).with_labels(labels.clone()))
        .await
        .unwrap();
    s2.set_placement(&Placement::every_worker("other", "production"))
        .await
        .unwrap();
    s.set_placement(&Placement::fixed("app", "production", 2))
        .await
        .unwrap();
    let p = s.placements().await.unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!((p[0].mode, p[0].min_instances), (PlacementMode::Fixed, 2));
    assert_eq!((p[1].mode, p[1].max_instances), (PlacementMode::Auto, 4));
    assert_eq!(p[1].labels, labels);
    assert_eq!(p[2].mode, PlacementMode::EveryWorker);
    assert!(s.remove_placement("other", "production").await.unwrap());
    assert!(!s.remove_placement("other", "production").await.unwrap());

    // Assignments: the generation moves only when they change.
    let g = s.worker("w1").await.unwrap().unwrap().generation;
    let g_a = s
        .set_assignments("w1", &[assignment("w1", "app", "d1")])
        .await
        .unwrap();
    assert_eq!(g_a, g + 1);
    let g_same = s2
        .set_assignments("w1", &[assignment("w1", "app", "d1")])
        .await
        .unwrap();
    assert_eq!(g_same, g_a, "unchanged assignments keep the generation");
    let g_b = s
        .set_assignments("w1", &[assignment("w1", "app", "d2")])
        .await
        .unwrap();
    assert_eq!(g_b, g_a + 1);
    s.set_assignments("w2", &[assignment("w2", "app", "d2")])
        .await
        .unwrap();
    assert_eq!(s.assignments().await.unwrap().len(), 2);
    s.remove_worker("w2").await.unwrap();
    assert_eq!(
        s.assignments().await.unwrap().len(),
        1,
        "a removed worker's assignments go"
    );

    // Leases: one holder at a time; a new holder gets a greater token.
    for (store, holder, now, token, what) in [
        (&s, "A", 10_000, Some(1), "free: taken"),
        (&s2, "B", 10_500, None, "held by A"),
        (&s, "A", 10_900, Some(1), "renewed"),
        (&s2, "B", 11_800, None, "still held by A"),
        (&s2, "B", 12_000, Some(2), "expired: taken over"),
        (&s, "A", 12_100, None, "held by B"),
    ] {
        let got = store.acquire_lease("leader", holder, 1000, now).await;
        assert_eq!(got.unwrap(), token, "{holder} at {now}: {what}");
    }
    let l = s.lease("leader").await.unwrap().unwrap();
    assert_eq!((l.holder.as_str(), l.token), ("B", 2));
    s2.release_lease("leader", "B").await.unwrap();
    assert_eq!(
        s.acquire_lease("leader", "A", 1000, 12_200).await.unwrap(),
        Some(3),
        "released: free at once"
    );

    // Timer runs: a tick is claimed once, whoever asks.
    assert!(
        s.claim_timer_run(&run("2026-01-01T00:00:00.000Z", "A"))
            .await
            .unwrap()
    );
    assert!(
        !s2.claim_timer_run(&run("2026-01-01T00:00:00.000Z", "B"))
            .await
            .unwrap()
    );
    s.finish_timer_run(
        "app",
        "production",
        "Tick",
        "2026-01-01T00:00:00.000Z",
        "w1",
        "dispatched",
    )
    .await
    .unwrap();
    let runs = s2.timer_runs("app", "production", "Tick").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].leader.as_str(), runs[0].worker.as_str()),
        ("A", "w1")
    );
    // Claims racing from two handles: exactly one wins each tick.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { s.clone() } else { s2.clone() };
        set.spawn(async move {
            store
                .claim_timer_run(&run("race", &format!("L{i}")))
                .await
                .unwrap()
        });
    }
    let mut won = 0;
    while let Some(r) = set.join_next().await {
        won += usize::from(r.unwrap());
    }
    assert_eq!(won, 1, "one claim of a tick wins");
    assert!(
        s.timer_status("app", "production", "Tick")
            .await
            .unwrap()
            .is_none()
    );
    let st = timer_status(1, 2, 3);
    s.set_timer_status("app", "production", "Tick", st)
        .await
        .unwrap();
    let st2 = timer_status(2, 4, 5);
    s2.set_timer_status("app", "production", "Tick", st2)
        .await
        .unwrap();
    assert_eq!(
        s.timer_status("app", "production", "Tick").await.unwrap(),
        Some(st2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_in_the_home() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().to_path_buf();
    suite(|| {
        let path = path.clone();
        async move { state::open(&path, None).await.unwrap() }
    })
    .await;
    assert!(home.path().join(state::SQLITE_FILE).exists());
}

/// The server the PostgreSQL tests use.
fn postgres_admin_url() -> String {
    std::env::var("FNHOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on the test server, dropped by the guard.
#[derive(Debug)]
struct TestDb {
    admin: String,
    name: String,
    /// Its URL.
    url: String,
}

impl TestDb {
    async fn new() -> TestDb {
        let admin = postgres_admin_url();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is needed at {admin} (FNHOST_TEST_POSTGRES): {e}; \
                     scripts/test.sh installs and starts it"
                )
            });
        tokio::spawn(conn);
        let name = format!(
            "fnhost_test_{}",
            &fnhost_cluster::random_secret().unwrap()[..12]
        );
        client
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        TestDb {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let db = TestDb::new().await;
    let url = db.url.clone();
    let home = tempfile::tempdir().unwrap();
    let path = home.path().to_path_buf();
    suite(|| {
        let (url, path) = (url.clone(), path.clone());
        async move { state::open(&path, Some(&url)).await.unwrap() }
    })
    .await;
    assert!(
        !home.path().join(state::SQLITE_FILE).exists(),
        "nothing in the home"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_says_which() {
    let home = tempfile::tempdir().unwrap();
    let err = state::open(home.path(), Some("postgres://fn:secret@127.0.0.1:1/none"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgres://fn@127.0.0.1:1/none"), "{err}");
    assert!(!err.contains("secret"), "no password in messages: {err}");
}
