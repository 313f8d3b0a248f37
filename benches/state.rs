//! State-store throughput: instance writes per second for batch sizes 1,
//! 100 and 1000 on redb and PostgreSQL (creates, then updates of the same
//! instances), and bytes per stored instance.
//!
//! `cargo bench --bench state`. A plain `main` (harness = false): each case
//! writes batches one after another — as one pipeline worker does — for
//! about [`CASE_TIME`], then prints instances/s. PostgreSQL uses
//! `FLOWBRIDGE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) in a throw-away schema and is
//! skipped with a note when unreachable. redb writes to a temp dir on the
//! same disk as `TMPDIR`; every commit is fsynced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowbridge::engine::task_id;
use flowbridge::state::{InstanceState, PostgresStore, RedbStore, StateStore, codec, now_ms};

/// How long each (store, batch size, create/update) case runs at least.
const CASE_TIME: Duration = Duration::from_secs(2);
const BATCH_SIZES: [usize; 3] = [1, 100, 1000];

/// A random-looking version-4 UUID, deterministic in `i` (splitmix64), as
/// upstream eventIds are. Their randomness matters for PostgreSQL, which
/// compresses large `jsonb` values: ids sharing most of their characters
/// compressed well under format 1, which stored the ids themselves.
fn event_id(i: u64) -> String {
    fn splitmix64(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (a, b) = (splitmix64(i), splitmix64(!i));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 | (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// An instance as the engine leaves it mid-way through an approval chain:
/// six task nodes visited, one position, a full dedupe window of 32 event
/// ids (random UUIDs), the latest todo.
fn typical(workflow: &str, serial: &str) -> InstanceState {
    let mut s = InstanceState::new(workflow, serial);
    let nodes = ["apply", "counselor", "dean", "office", "archive", "notify"];
    for (i, node) in nodes.iter().enumerate() {
        let id = task_id(workflow, serial, node, 1);
        let entry = s.nodes.entry((*node).to_owned()).or_default();
        entry.visits = 1;
        entry.latest_task = Some(id.clone());
        entry.anchor = Some(id.clone());
        if i == nodes.len() - 1 {
            s.latest_todo = Some(id);
        }
    }
    s.positions.insert("notify".into(), 1);
    for i in 0..32 {
        s.remember(&event_id(i));
    }
    s
}

/// After the first event: one node, one event id.
fn fresh(workflow: &str, serial: &str) -> InstanceState {
    let mut s = InstanceState::new(workflow, serial);
    let id = task_id(workflow, serial, "apply", 1);
    let n = s.nodes.entry("apply".into()).or_default();
    n.visits = 1;
    n.latest_task = Some(id.clone());
    n.anchor = Some(id.clone());
    s.latest_todo = Some(id);
    s.positions.insert("counselor".into(), 1);
    s.remember("0c4bd3b0-7d3c-4f5e-9a1b-5b1f0e9c2d11");
    s
}

/// Writes batches of `size` for at least [`CASE_TIME`]: first creates of new
/// instances, then updates of those. Returns (creates/s, updates/s).
async fn measure(store: &dyn StateStore, tag: &str, size: usize) -> (f64, f64) {
    let mut written: Vec<Vec<InstanceState>> = Vec::new();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < CASE_TIME || written.len() < 3 {
        let batch: Vec<InstanceState> = (0..size)
            .map(|i| {
                typical(
                    "leave-approval",
                    &format!("{tag}-{size}-{:06}-{i:04}", written.len()),
                )
            })
            .collect();
        let versions = store.put_batch(&batch).await.expect("create batch");
        n += batch.len();
        written.push(
            batch
                .into_iter()
                .zip(versions)
                .map(|(mut s, v)| {
                    s.version = v;
                    s
                })
                .collect(),
        );
    }
    let creates = n as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut n = 0usize;
    'outer: loop {
        for batch in &mut written {
            for s in batch.iter_mut() {
                s.remember("ffffffff-7d3c-4f5e-9a1b-000000000000");
            }
            let versions = store.put_batch(batch).await.expect("update batch");
            for (s, v) in batch.iter_mut().zip(versions) {
                s.version = v;
            }
            n += batch.len();
            if start.elapsed() >= CASE_TIME {
                break 'outer;
            }
        }
    }
    let updates = n as f64 / start.elapsed().as_secs_f64();
    (creates, updates)
}

async fn run_cases(name: &str, store: &dyn StateStore) {
    for size in BATCH_SIZES {
        let (c, u) = measure(store, name, size).await;
        println!("{name:<10} batch {size:>4}: {c:>9.0} creates/s  {u:>9.0} updates/s");
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let t = typical("leave-approval", "NUM0000001");
        let f = fresh("leave-approval", "NUM0000001");
        println!(
            "encoded state (format byte + JSON): typical {} bytes, after the first event {} bytes",
            codec::encode(&t).len(),
            codec::encode(&f).len()
        );

        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bench.redb");
        let redb = RedbStore::open(&path).await.expect("open redb");
        run_cases("redb", &redb).await;
        let count = redb.list(&Default::default()).await.expect("list").len();
        drop(redb);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "redb       file {:.1} MiB for {count} instances: {} bytes/instance (B-tree pages, copy-on-write slack included)",
            size as f64 / 1048576.0,
            size / count.max(1) as u64
        );

        let url = std::env::var("FLOWBRIDGE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("fbbench_{}", now_ms());
        match PostgresStore::connect(&url, &schema, 4, Duration::from_secs(5)).await {
            Err(e) => println!("postgres   skipped: {e}"),
            Ok(pg) => {
                let pg = Arc::new(pg);
                run_cases("postgres", &*pg).await;
                let t = format!("\"{schema}\".instance_state");
                let _ = sqlx::query(&format!("VACUUM ANALYZE {t}")).execute(pg.pool()).await;
                let row: (i64, i64, f64) = sqlx::query_as(&format!(
                    "SELECT count(*), pg_total_relation_size('{t}'), avg(pg_column_size(body))::float8 FROM {t}"
                ))
                .fetch_one(pg.pool())
                .await
                .expect("sizes");
                println!(
                    "postgres   {} instances: {} bytes/instance on disk (table+TOAST+indexes, after updates), body jsonb {:.0} bytes",
                    row.0,
                    row.1 / row.0.max(1),
                    row.2
                );
                let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(pg.pool())
                    .await;
            }
        }
    });
}
