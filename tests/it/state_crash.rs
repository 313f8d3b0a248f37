//! Crash safety: a child process writes batches in a loop and is killed with
//! SIGKILL mid-run; after reopening, every batch it reported as committed is
//! there and no batch is half-visible. For redb and PostgreSQL.
//!
//! The child is this test binary run again on the ignored test
//! [`crash_child`] with `FLOWBRIDGE_CRASH_CHILD` saying which store. Batch
//! `b` creates [`PER_BATCH`] instances `b0000012-3` carrying `b` and moves
//! the `head` instance (version = `b`) to `b`; the child prints
//! `committed b` after `put_batch` returns. Each test runs three rounds; a
//! round resumes from `head`, so reopening after a crash is exercised too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use flowbridge::state::{InstanceKey, InstanceState, ListFilter, StateStore, Status};

use super::state_store::{drop_schema, fresh_schema, pg_store, pg_url};

const CHILD_ENV: &str = "FLOWBRIDGE_CRASH_CHILD";
const WORKFLOW: &str = "crash";
const PER_BATCH: u64 = 8;
/// Reported batches after which each round's child is killed.
const KILL_AFTER: [usize; 3] = [25, 7, 40];
/// A round taking longer than this fails (it normally takes well under 1 s).
const ROUND_LIMIT: Duration = Duration::from_secs(60);

fn head_key() -> InstanceKey {
    InstanceKey::new(WORKFLOW, "head")
}

fn batch_of(s: &InstanceState) -> u64 {
    s.latest_todo
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{}/{} carries no batch number", s.workflow, s.serial_number))
}

/// The child's database URL: its connections are named after the schema,
/// so the parent can wait for them to be gone.
fn child_pg_url(schema: &str) -> String {
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={schema}")
}

async fn open_child_store(spec: &str) -> Arc<dyn StateStore> {
    match spec.split_once(':') {
        Some(("redb", path)) => Arc::new(flowbridge::state::RedbStore::open(path).await.expect("open redb")),
        Some(("postgres", schema)) => Arc::new(
            flowbridge::state::PostgresStore::connect(
                &child_pg_url(schema),
                schema,
                2,
                Duration::from_secs(5),
            )
            .await
            .expect("connect"),
        ),
        _ => panic!("bad {CHILD_ENV}={spec}"),
    }
}

/// The child: writes batches until killed. Does nothing (and passes) when
/// not started by a crash test.
#[test]
#[ignore = "the child process of the crash tests, which run it themselves"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open_child_store(&spec).await;
        let mut head = store
            .get(&head_key())
            .await
            .unwrap()
            .unwrap_or_else(|| InstanceState::new(WORKFLOW, "head"));
        let mut batch = head.latest_todo.as_ref().map_or(1, |_| batch_of(&head) + 1);
        loop {
            let mut states: Vec<InstanceState> = (0..PER_BATCH)
                .map(|i| {
                    let mut s = InstanceState::new(WORKFLOW, &format!("b{batch:07}-{i}"));
                    s.latest_todo = Some(batch.to_string());
                    s.status = if batch % 2 == 0 {
                        Status::Completed
                    } else {
                        Status::Active
                    };
                    s.remember(&format!("e-{batch}-{i}"));
                    s
                })
                .collect();
            head.latest_todo = Some(batch.to_string());
            states.push(head.clone());
            let versions = store.put_batch(&states).await.expect("put_batch");
            head.version = *versions.last().expect("one version per state");
            // println! flushes on the newline (stdout is line-buffered).
            println!("committed {batch}");
            batch += 1;
        }
    });
}

/// Runs one child until it reported `kill_after` batches, SIGKILLs it and
/// returns every batch it reported.
fn run_child(spec: &str, kill_after: usize) -> Vec<u64> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "state_crash::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest's "test … ... " may precede the first line.
            if let Some((_, n)) = line.split_once("committed ") {
                let _ = tx.send(n.parse::<u64>().expect("a batch number"));
            }
        }
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let started = std::time::Instant::now();
    let deadline = started + ROUND_LIMIT;
    let mut reported = Vec::new();
    let mut first_at = started;
    while reported.len() < kill_after {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => {
                if reported.is_empty() {
                    first_at = std::time::Instant::now();
                }
                reported.push(n);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the child reported {} batches, then {e:?}; its stderr:\n{}",
                    reported.len(),
                    errors.join().unwrap_or_default()
                );
            }
        }
    }
    // Killing right after a line would always land at the start of the next
    // batch; wait a random part of up to two batch times so the kill lands
    // anywhere in a batch, often inside a commit.
    let per_batch = first_at.elapsed() / u32::try_from(kill_after.max(2) - 1).unwrap_or(1);
    std::thread::sleep(per_batch.mul_f64(2.0 * rand::random::<f64>()));
    // Child::kill is SIGKILL on Unix: no destructors, no flush, no commit.
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed, not finished: {status}");
    reader.join().expect("the reader thread");
    // Lines printed between the last read and the kill were committed too.
    reported.extend(rx.try_iter());
    reported
}

/// Checks the store after a crash: all of every batch up to `head`, nothing
/// of any later one, and every reported batch in. Returns the head batch.
async fn check(store: &dyn StateStore, reported: &[u64]) -> u64 {
    let head = store.get(&head_key()).await.unwrap().expect("the head instance");
    let head_batch = batch_of(&head);
    assert_eq!(head.version, head_batch, "the head moved once per batch");
    let max_reported = reported.iter().copied().max().unwrap_or(0);
    assert!(
        max_reported <= head_batch,
        "batch {max_reported} was reported committed but the head is at {head_batch}"
    );
    let all = store
        .list(&ListFilter {
            workflow: Some(WORKFLOW.into()),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    let mut per_batch = std::collections::BTreeMap::<u64, u64>::new();
    for s in all.iter().filter(|s| s.serial_number != "head") {
        *per_batch.entry(batch_of(s)).or_default() += 1;
        assert_eq!(s.version, 1);
    }
    for b in 1..=head_batch {
        assert_eq!(
            per_batch.remove(&b),
            Some(PER_BATCH),
            "batch {b} is not whole (head at {head_batch})"
        );
    }
    assert!(
        per_batch.is_empty(),
        "instances of batches after the head: {per_batch:?}"
    );
    head_batch
}

async fn crash_rounds(spec: &str, open: impl AsyncFn() -> Arc<dyn StateStore>) {
    let mut last = 0;
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let reported = run_child(spec, kill_after);
        assert!(
            reported.first().is_some_and(|b| *b == last + 1),
            "round {round} resumed after batch {last}: {reported:?}"
        );
        let store = open().await;
        last = check(&*store, &reported).await;
    }
}

#[tokio::test]
async fn redb_keeps_every_committed_batch_whole_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let spec = format!("redb:{}", path.display());
    crash_rounds(&spec, async || {
        Arc::new(
            flowbridge::state::RedbStore::open(&path)
                .await
                .expect("reopen after the crash"),
        ) as Arc<dyn StateStore>
    })
    .await;
}

#[tokio::test]
async fn postgres_keeps_every_committed_batch_whole_across_sigkill() {
    let schema = fresh_schema();
    let Some(store) = pg_store(&schema).await else {
        return;
    };
    let spec = format!("postgres:{schema}");
    crash_rounds(&spec, async || {
        // The server may still finish a COMMIT the dead child sent; look
        // only once its connection is gone, so the check sees a final state.
        let gone = async {
            loop {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                        .bind(&schema)
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(ROUND_LIMIT, gone)
            .await
            .expect("the killed child's connection closes");
        Arc::new(store.clone()) as Arc<dyn StateStore>
    })
    .await;
    drop_schema(&store).await;
}
