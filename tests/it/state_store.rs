//! The `StateStore` contract, run against every store: in-memory, redb and
//! PostgreSQL (rstest cases `memory`, `redb`, `postgres`).
//!
//! PostgreSQL: `FLOWBRIDGE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one fresh schema per test,
//! dropped at its end (schemas left by failed runs are dropped after an
//! hour). Unreachable → the test is skipped with a note, or fails when
//! `CI=true`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use flowbridge::state::{
    AiccIntent, FORMAT_VERSION, InstanceKey, InstanceState, ListFilter, NodeState, PostgresStore, StateStore,
    Status, StoreConfig, StoreError, StoreKind, fingerprint, now_ms,
};
use rstest::rstest;
use secrecy::SecretString;

/// The stores the contract runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redb,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("FLOWBRIDGE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A schema name no other test (or test run) uses: `fbtest_<ms>_<pid>_<n>`.
pub fn fresh_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "fbtest_{}_{}_{}",
        now_ms(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connects to the test database and migrates `schema`; `None` (with a
/// note) when PostgreSQL is unreachable outside CI; panics in CI.
pub async fn pg_store(schema: &str) -> Option<PostgresStore> {
    let url = pg_url();
    match PostgresStore::connect(&url, schema, 4, Duration::from_secs(5)).await {
        Ok(store) => {
            drop_stale_schemas(&store).await;
            Some(store)
        }
        Err(e) if in_ci() => {
            panic!("PostgreSQL tests need a server at {url} (CI=true, so not skipping): {e}")
        }
        Err(e) => {
            eprintln!("note: skipping a PostgreSQL test, {url} is not usable: {e}");
            None
        }
    }
}

/// Drops `fbtest_*` schemas older than an hour (left by failed runs), once
/// per process.
async fn drop_stale_schemas(store: &PostgresStore) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return;
    }
    let Ok(rows) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'fbtest\\_%'",
    )
    .fetch_all(store.pool())
    .await
    else {
        return;
    };
    let cutoff = now_ms() - 3_600_000;
    for name in rows {
        let born = name.split('_').nth(1).and_then(|ms| ms.parse::<i64>().ok());
        if born.is_some_and(|ms| ms < cutoff) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(store.pool())
                .await;
        }
    }
}

pub async fn drop_schema(store: &PostgresStore) {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema()))
        .execute(store.pool())
        .await
        .expect("drop the test schema");
}

/// One store under test and what it takes to reopen and clean it.
pub struct Harness {
    pub store: Arc<dyn StateStore>,
    kind: Kind,
    /// redb: the directory holding the file.
    dir: Option<tempfile::TempDir>,
    /// postgres: the schema.
    schema: Option<String>,
}

impl Harness {
    /// A fresh, empty store of `kind`; `None` when PostgreSQL is unreachable
    /// outside CI.
    pub async fn new(kind: Kind) -> Option<Harness> {
        let mut h = Harness {
            store: Arc::new(flowbridge::state::MemoryStore::new()),
            kind,
            dir: None,
            schema: None,
        };
        match kind {
            Kind::Memory => {}
            Kind::Redb => {
                h.dir = Some(tempfile::tempdir().expect("a temp dir"));
                h.store = flowbridge::state::open(&h.config()).await.expect("open redb");
            }
            Kind::Postgres => {
                let schema = fresh_schema();
                h.store = Arc::new(pg_store(&schema).await?);
                h.schema = Some(schema);
            }
        }
        Some(h)
    }

    fn config(&self) -> StoreConfig {
        match self.kind {
            Kind::Memory => StoreConfig {
                kind: StoreKind::Memory,
                ..StoreConfig::default()
            },
            Kind::Redb => StoreConfig {
                kind: StoreKind::Redb,
                path: self.redb_path(),
                ..StoreConfig::default()
            },
            Kind::Postgres => StoreConfig {
                kind: StoreKind::Postgres,
                url: Some(SecretString::from(pg_url())),
                schema: self.schema.clone().expect("postgres harness has a schema"),
                pool_size: 4,
                ..StoreConfig::default()
            },
        }
    }

    fn redb_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("redb harness has a dir")
            .path()
            .join("data/state.redb")
    }

    /// Closes the store and opens it again from its file or database
    /// (memory: unchanged).
    pub async fn reopen(&mut self) {
        if self.kind == Kind::Memory {
            return;
        }
        // Drop first: redb locks its file.
        self.store = Arc::new(flowbridge::state::MemoryStore::new());
        self.store = flowbridge::state::open(&self.config()).await.expect("reopen");
    }

    /// Drops the PostgreSQL schema (the redb dir goes with the harness).
    pub async fn done(self) {
        if let Some(schema) = &self.schema {
            let pg = PostgresStore::connect(&pg_url(), schema, 1, Duration::from_secs(5))
                .await
                .expect("reconnect to drop the schema");
            drop_schema(&pg).await;
        }
    }
}

fn key(w: &str, s: &str) -> InstanceKey {
    InstanceKey::new(w, s)
}

/// A state with every field set to something other than its default.
fn full(w: &str, s: &str) -> InstanceState {
    let mut st = InstanceState::new(w, s);
    st.status = Status::Active;
    st.nodes.insert(
        "counselor".into(),
        NodeState {
            visits: 2,
            latest_task: Some("fb-0123456789abcdef0123456789abcdef".into()),
            anchor: Some("fb-anchor".into()),
            arrived: 0,
        },
    );
    st.nodes.insert(
        "join".into(),
        NodeState {
            visits: 1,
            latest_task: None,
            anchor: None,
            arrived: 1,
        },
    );
    st.positions.insert("dean".into(), 1);
    st.positions.insert("split-a".into(), 2);
    st.latest_todo = Some("fb-latest".into());
    for i in 0..40 {
        st.remember(&format!("e-{i}"));
    }
    st.pending_aicc.push(AiccIntent {
        intent_id: "ai-1".into(),
        node: "call".into(),
        visit: 1,
        title: "回访 李雷".into(),
        creator_id: "c1".into(),
        owner_id: "o1".into(),
        relate_id: Some("r1".into()),
    });
    st
}

fn with_status(w: &str, s: &str, status: Status) -> InstanceState {
    let mut st = InstanceState::new(w, s);
    st.status = status;
    st
}

/// Waits until the clock has passed `ms` (stores stamp writes with it).
async fn tick_past(ms: i64) {
    while now_ms() <= ms {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn conflict_keys(r: Result<Vec<u64>, StoreError>) -> Vec<InstanceKey> {
    match r {
        Err(StoreError::Conflict { keys }) => keys,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn unknown_instance_is_none(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    assert_eq!(h.store.get(&key("w", "nope")).await.unwrap(), None);
    assert_eq!(
        h.store.get_many(&[key("w", "a"), key("x", "b")]).await.unwrap(),
        vec![None, None]
    );
    assert_eq!(
        h.store.get_many(&[]).await.unwrap(),
        Vec::<Option<InstanceState>>::new()
    );
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn put_then_get_round_trips_every_field(#[case] kind: Kind) {
    let Some(mut h) = Harness::new(kind).await else {
        return;
    };
    let mut st = full("leave-approval", "NUM0001");
    st.updated_at_ms = 5; // the store's clock wins
    st.format = 0; // the store writes its own format
    let before = now_ms();
    assert_eq!(
        h.store.put_batch(std::slice::from_ref(&st)).await.unwrap(),
        vec![1]
    );
    let after = now_ms();

    let got = h.store.get(&InstanceKey::of(&st)).await.unwrap().expect("stored");
    assert!(
        (before..=after).contains(&got.updated_at_ms),
        "{} not in {before}..={after}",
        got.updated_at_ms
    );
    let mut want = st.clone();
    want.version = 1;
    want.format = FORMAT_VERSION;
    want.updated_at_ms = got.updated_at_ms;
    assert_eq!(got, want);

    // An update from the version read: every field changes and comes back.
    let mut next = got.clone();
    next.status = Status::Completed;
    next.nodes.clear();
    next.positions.clear();
    next.latest_todo = None;
    next.pending_aicc.clear();
    next.remember("e-last");
    assert_eq!(h.store.put(&next).await.unwrap(), 2);
    h.reopen().await;
    let got2 = h.store.get(&InstanceKey::of(&st)).await.unwrap().expect("stored");
    assert!(got2.updated_at_ms >= got.updated_at_ms);
    next.version = 2;
    next.updated_at_ms = got2.updated_at_ms;
    assert_eq!(got2, next);
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn stale_versions_conflict_and_write_nothing(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    let a = full("w", "a");
    h.store.put(&a).await.unwrap(); // a is at version 1
    let stored_a = h.store.get(&key("w", "a")).await.unwrap();

    // Create over an existing instance (version 0), next to a valid create.
    let mut a0 = a.clone();
    a0.latest_todo = Some("overwritten?".into());
    let b = InstanceState::new("w", "b");
    let keys = conflict_keys(h.store.put_batch(&[b.clone(), a0]).await);
    assert_eq!(keys, vec![key("w", "a")]);
    assert_eq!(
        h.store.get(&key("w", "b")).await.unwrap(),
        None,
        "nothing of the batch is written"
    );
    assert_eq!(h.store.get(&key("w", "a")).await.unwrap(), stored_a);

    // A version from the future, and an update of an instance that does not exist.
    let mut a5 = a.clone();
    a5.version = 5;
    let mut c3 = InstanceState::new("w", "c");
    c3.version = 3;
    let keys = conflict_keys(h.store.put_batch(&[a5, b.clone(), c3]).await);
    assert_eq!(
        keys,
        vec![key("w", "a"), key("w", "c")],
        "every conflicting key, in batch order"
    );
    assert_eq!(
        h.store.get_many(&[key("w", "b"), key("w", "c")]).await.unwrap(),
        vec![None, None]
    );

    // Two writers read version 1; only the first write wins.
    let mut first = stored_a.clone().unwrap();
    let mut second = first.clone();
    first.latest_todo = Some("first".into());
    second.latest_todo = Some("second".into());
    assert_eq!(h.store.put(&first).await.unwrap(), 2);
    assert_eq!(
        conflict_keys(h.store.put_batch(&[second]).await),
        vec![key("w", "a")]
    );
    let now = h.store.get(&key("w", "a")).await.unwrap().unwrap();
    assert_eq!((now.version, now.latest_todo.as_deref()), (2, Some("first")));

    let err = h.store.put_batch(&[b.clone(), b.clone()]).await.unwrap_err();
    assert_eq!(err, StoreError::DuplicateKey(key("w", "b")));
    assert!(err.to_string().contains("w/b"), "{err}");
    assert_eq!(h.store.get(&key("w", "b")).await.unwrap(), None);
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn concurrent_writers_of_one_version_have_one_winner(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    h.store.put(&InstanceState::new("w", "x")).await.unwrap();
    let read = h.store.get(&key("w", "x")).await.unwrap().unwrap();
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = h.store.clone();
            let mut s = read.clone();
            s.latest_todo = Some(format!("writer-{i}"));
            tokio::spawn(async move { store.put(&s).await })
        })
        .collect();
    let mut wins = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, 2);
                wins += 1;
            }
            Err(StoreError::Conflict { keys }) => assert_eq!(keys, vec![key("w", "x")]),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(h.store.get(&key("w", "x")).await.unwrap().unwrap().version, 2);
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn batches_are_all_or_nothing(#[case] kind: Kind) {
    let Some(mut h) = Harness::new(kind).await else {
        return;
    };
    h.store.put(&InstanceState::new("w", "s0099")).await.unwrap();
    // 99 valid creates and one create over an existing instance.
    let batch: Vec<InstanceState> = (0..100).map(|i| full("w", &format!("s{i:04}"))).collect();
    assert_eq!(
        conflict_keys(h.store.put_batch(&batch).await),
        vec![key("w", "s0099")]
    );
    assert_eq!(h.store.list(&ListFilter::default()).await.unwrap().len(), 1);

    // Without the conflict it is written whole; mixed creates and updates.
    let mut batch = batch;
    batch[99].version = 1;
    let versions = h.store.put_batch(&batch).await.unwrap();
    assert_eq!(versions.len(), 100);
    assert!(
        versions[..99].iter().all(|v| *v == 1) && versions[99] == 2,
        "{versions:?}"
    );
    assert_eq!(h.store.put_batch(&[]).await.unwrap(), Vec::<u64>::new());
    h.reopen().await;
    let all = h.store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 100);
    assert!(all.iter().all(|s| s.applied == batch[0].applied));
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn get_many_answers_in_the_order_asked(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    let states: Vec<InstanceState> = ["c", "a", "b"]
        .iter()
        .map(|s| InstanceState::new("w", s))
        .collect();
    h.store.put_batch(&states).await.unwrap();
    let asked = [
        key("w", "b"),
        key("w", "zz"),
        key("w", "a"),
        key("v", "a"),
        key("w", "c"),
        key("w", "b"),
    ];
    let got: Vec<Option<String>> = h
        .store
        .get_many(&asked)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.map(|s| s.serial_number))
        .collect();
    let want = [Some("b"), None, Some("a"), None, Some("c"), Some("b")].map(|s| s.map(String::from));
    assert_eq!(got, want);
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn list_filters_orders_and_limits(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    let states = vec![
        with_status("wf2", "a", Status::Active),
        with_status("wf", "b", Status::Completed),
        with_status("wf", "a", Status::Active),
        with_status("wf", "c", Status::Cancelled),
        with_status("wf", "d", Status::Active),
        with_status("w", "z", Status::Active),
        with_status("wf", "B", Status::Active),
    ];
    h.store.put_batch(&states).await.unwrap();
    let list = |workflow: Option<&str>, status: Option<Status>, limit: Option<usize>| {
        let store = h.store.clone();
        let filter = ListFilter {
            workflow: workflow.map(String::from),
            status,
            limit,
        };
        async move {
            store
                .list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| format!("{}/{}", s.workflow, s.serial_number))
                .collect::<Vec<_>>()
        }
    };
    // Key order is bytewise: "B" < "a", "w" < "wf" < "wf2".
    assert_eq!(
        list(None, None, None).await,
        ["w/z", "wf/B", "wf/a", "wf/b", "wf/c", "wf/d", "wf2/a"]
    );
    assert_eq!(
        list(Some("wf"), None, None).await,
        ["wf/B", "wf/a", "wf/b", "wf/c", "wf/d"]
    );
    assert_eq!(
        list(Some("wf"), Some(Status::Active), None).await,
        ["wf/B", "wf/a", "wf/d"]
    );
    assert_eq!(
        list(Some("wf"), Some(Status::Active), Some(2)).await,
        ["wf/B", "wf/a"]
    );
    assert_eq!(list(None, Some(Status::Completed), None).await, ["wf/b"]);
    assert_eq!(list(None, Some(Status::Cancelled), None).await, ["wf/c"]);
    assert_eq!(
        list(None, Some(Status::Active), Some(3)).await,
        ["w/z", "wf/B", "wf/a"]
    );
    assert_eq!(list(Some("nope"), None, None).await, Vec::<String>::new());
    assert_eq!(list(None, None, Some(0)).await, Vec::<String>::new());
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn purge_removes_only_closed_instances_written_before_the_cutoff(#[case] kind: Kind) {
    let Some(mut h) = Harness::new(kind).await else {
        return;
    };
    let old = vec![
        with_status("w", "done", Status::Completed),
        with_status("w", "gone", Status::Cancelled),
        with_status("w", "busy", Status::Active),
        with_status("w", "again", Status::Completed),
    ];
    h.store.put_batch(&old).await.unwrap();
    let written = h
        .store
        .get(&key("w", "done"))
        .await
        .unwrap()
        .unwrap()
        .updated_at_ms;
    tick_past(written).await;
    let cutoff = now_ms();
    // Written at or after the cutoff: a new closed instance, and an old one
    // written again (its retention restarts).
    let again = h.store.get(&key("w", "again")).await.unwrap().unwrap();
    h.store
        .put_batch(&[with_status("w", "new", Status::Completed), again])
        .await
        .unwrap();

    assert_eq!(
        h.store.purge(written).await.unwrap(),
        0,
        "the cutoff is exclusive"
    );
    assert_eq!(h.store.purge(cutoff).await.unwrap(), 2);
    assert_eq!(h.store.purge(cutoff).await.unwrap(), 0);
    h.reopen().await;
    let left: Vec<String> = h
        .store
        .list(&ListFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.serial_number)
        .collect();
    assert_eq!(left, ["again", "busy", "new"]);
    // A purged instance can start over.
    assert_eq!(h.store.put(&InstanceState::new("w", "done")).await.unwrap(), 1);
    h.done().await;
}

#[rstest]
#[case::memory(Kind::Memory)]
#[case::redb(Kind::Redb)]
#[case::postgres(Kind::Postgres)]
#[tokio::test]
async fn ping_answers(#[case] kind: Kind) {
    let Some(h) = Harness::new(kind).await else { return };
    h.store.ping().await.unwrap();
    h.done().await;
}

// --- PostgreSQL only: migrations and unreadable rows.

#[tokio::test]
async fn postgres_migrations_are_idempotent_and_concurrent_starts_agree() {
    let schema = fresh_schema();
    let Some(first) = pg_store(&schema).await else {
        return;
    };
    // Several replicas starting at once on an already-migrated schema, and
    // on a fresh one.
    let fresh = fresh_schema();
    let opens = (0..4).flat_map(|_| [schema.clone(), fresh.clone()]).map(|s| {
        tokio::spawn(async move { PostgresStore::connect(&pg_url(), &s, 1, Duration::from_secs(5)).await })
    });
    for o in futures::future::join_all(opens).await {
        o.unwrap().unwrap();
    }
    for s in [&schema, &fresh] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{s}\".flowbridge_migrations"))
            .fetch_one(first.pool())
            .await
            .unwrap();
        assert_eq!(n, 1, "{s}");
    }
    // A schema migrated by a newer build is refused.
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".flowbridge_migrations (version, name) VALUES (99, 'future')"
    ))
    .execute(first.pool())
    .await
    .unwrap();
    let err = PostgresStore::connect(&pg_url(), &schema, 1, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at migration 99"), "{err}");
    let other = PostgresStore::connect(&pg_url(), &fresh, 1, Duration::from_secs(5))
        .await
        .unwrap();
    drop_schema(&other).await;
    drop_schema(&first).await;
}

#[tokio::test]
async fn postgres_unreadable_rows_are_corrupt_errors_naming_the_instance() {
    let Some(store) = pg_store(&fresh_schema()).await else {
        return;
    };
    store.put(&InstanceState::new("w", "future")).await.unwrap();
    store.put(&InstanceState::new("w", "garbled")).await.unwrap();
    let t = format!("\"{}\".instance_state", store.schema());
    sqlx::query(&format!(
        "UPDATE {t} SET format = 9 WHERE serial_number = 'future'"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!(
        "UPDATE {t} SET body = '{{\"workflow\": 3}}' WHERE serial_number = 'garbled'"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let garbled = format!("bad format-{FORMAT_VERSION} JSON");
    for (serial, says) in [
        ("future", "unknown format version 9"),
        ("garbled", garbled.as_str()),
    ] {
        let err = store.get(&key("w", serial)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { key: k, .. } if *k == key("w", serial)),
            "{err}"
        );
        assert!(
            err.to_string().contains(says) && err.to_string().contains(&format!("w/{serial}")),
            "{err}"
        );
    }
    drop_schema(&store).await;
}

/// A row a format-1 build wrote (eventIds in `applied`) reads through the
/// same migration as redb's values and is written back as format 2.
#[tokio::test]
async fn postgres_reads_format_1_rows_and_writes_them_as_format_2() {
    let Some(store) = pg_store(&fresh_schema()).await else {
        return;
    };
    store.put(&InstanceState::new("w", "old")).await.unwrap();
    let t = format!("\"{}\".instance_state", store.schema());
    sqlx::query(&format!(
        "UPDATE {t} SET format = 1, body = '{{\"format\": 1, \"workflow\": \"w\", \"serialNumber\": \"old\", \
         \"status\": \"active\", \"positions\": {{\"dean\": 1}}, \"applied\": [\"e-1\", \"the-old-id\"], \
         \"version\": 1, \"updatedAtMs\": 0}}' WHERE serial_number = 'old'"
    ))
    .execute(store.pool())
    .await
    .unwrap();

    let mut got = store.get(&key("w", "old")).await.unwrap().expect("stored");
    assert!(got.has_applied("e-1") && got.has_applied("the-old-id"));
    assert!(!got.has_applied("e-2"));
    assert_eq!((got.format, got.version), (FORMAT_VERSION, 1));
    assert_eq!(got.positions.get("dean"), Some(&1));

    got.remember("e-2");
    assert_eq!(store.put(&got).await.unwrap(), 2);
    let (format, applied): (i16, serde_json::Value) = sqlx::query_as(&format!(
        "SELECT format, body->'applied' FROM {t} WHERE serial_number = 'old'"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(i64::from(format), i64::from(FORMAT_VERSION));
    let hex = |id: &str| format!("{:016x}", fingerprint(id));
    assert_eq!(
        applied,
        serde_json::json!([hex("e-1"), hex("the-old-id"), hex("e-2")])
    );
    let again = store.get(&key("w", "old")).await.unwrap().expect("stored");
    assert!(
        ["e-1", "the-old-id", "e-2"]
            .iter()
            .all(|id| again.has_applied(id))
    );
    drop_schema(&store).await;
}

#[tokio::test]
async fn postgres_unreachable_is_a_backend_error_naming_the_server() {
    // Port 1 on localhost: nothing listens there.
    let err = PostgresStore::connect("postgres://u@127.0.0.1:1/db", "x", 1, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
    assert!(err.to_string().contains("u@127.0.0.1:1/db"), "{err}");
}
