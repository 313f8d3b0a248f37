//! The default `StateStore`: an embedded redb file, for one replica.
//!
//! redb is ACID and crash-safe: a transaction whose `commit` returned is on
//! disk (fsync, `Durability::Immediate`), and a crash at any moment leaves the
//! file at the last committed transaction. `put_batch` is one write
//! transaction, so a batch is all or nothing.
//!
//! Layout (tables are typed; [`LAYOUT`] in the `meta` table names this one):
//! - `instances`: (workflow, serialNumber) → (version, updated_at_ms,
//!   status, [`codec`] bytes). The header fields let the version check,
//!   `list --status` and index upkeep run without parsing JSON.
//! - `closed`: (updated_at_ms, workflow, serialNumber) → () for completed and
//!   cancelled instances, so `purge` reads only what it deletes.
//!
//! Group commit: `put_batch` encodes its states on the caller and hands them
//! to one writer thread, which takes every batch waiting (up to
//! [`MAX_GROUP_ROWS`] states) into one write transaction — one commit and
//! one fsync for the micro-batches of all pipeline lanes — and answers each
//! batch after the commit. Each batch keeps its own all-or-nothing version
//! check: a conflicting batch is answered `Conflict` and writes nothing, the
//! others in its group commit; batches of one group apply in arrival order.
//!
//! The other redb calls block, so they run on `spawn_blocking`; no lock is
//! held across an await (redb serializes write transactions itself). The
//! file is locked while open: a second process (e.g. `flowbridge state`
//! while the service runs) gets a clear "in use" error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use futures::future::{BoxFuture, FutureExt};

use super::codec;
use super::store::{InstanceKey, ListFilter, StateStore, StoreError, check_unique, now_ms};
use super::{InstanceState, Status};

/// (workflow, serialNumber).
type Key = (&'static str, &'static str);
/// (version, updated_at_ms, status code, codec bytes).
type Record = (u64, i64, u8, &'static [u8]);

/// Key → Record of every instance.
const INSTANCES: TableDefinition<Key, Record> = TableDefinition::new("instances");
/// (updated_at_ms, workflow, serialNumber) of closed instances.
const CLOSED: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("closed");
/// "layout" → [`LAYOUT`].
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// Version of the table layout above; a file with another one is refused.
pub const LAYOUT: u32 = 1;

/// The default file, relative to the working directory.
pub const DEFAULT_PATH: &str = "./data/flowbridge.redb";

/// Default page cache: what the store keeps in memory however many
/// instances the file holds (`state.cache_mb`).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Most states one group commit writes (more wait for the next one).
pub const MAX_GROUP_ROWS: usize = 4096;

/// A `StateStore` in one redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    writer: Arc<Writer>,
}

/// The group-commit writer thread and the way to it. Dropped with the last
/// clone of the store: closes the queue and waits for the thread, so the
/// file is unlocked once the store is gone.
struct Writer {
    queue: Option<mpsc::Sender<WriteJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            // The thread only ends by the queue closing; a panic in it has
            // already answered its batches with errors (their senders drop).
            let _ = t.join();
        }
    }
}

/// One `put_batch` waiting for the writer.
struct WriteJob {
    rows: Vec<Row>,
    now: i64,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish()
    }
}

fn status_code(s: Status) -> u8 {
    match s {
        Status::Active => 0,
        Status::Completed => 1,
        Status::Cancelled => 2,
    }
}

fn status_of(code: u8) -> Option<Status> {
    match code {
        0 => Some(Status::Active),
        1 => Some(Status::Completed),
        2 => Some(Status::Cancelled),
        _ => None,
    }
}

fn is_closed(code: u8) -> bool {
    code != status_code(Status::Active)
}

impl RedbStore {
    /// Opens (or creates, with its parent directories) the file at `path`
    /// with the default page cache ([`DEFAULT_CACHE_BYTES`]).
    /// Blocking: call it from `spawn_blocking` or before the runtime starts
    /// serving ([`open`](super::open) does the former).
    pub fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        Self::open_blocking_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`open_blocking`](Self::open_blocking) with a page cache of
    /// `cache_bytes`: what the store holds in memory, whatever the number
    /// of instances (redb's own default is 1 GiB, which a large state file
    /// fills).
    pub fn open_blocking_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                ::redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                    "redb {shown} is in use by another process (a running flowbridge?); \
                 stop it, or share state through PostgreSQL"
                )),
                e => StoreError::Backend(format!("cannot open redb {shown}: {e}")),
            })?;
        let db = Arc::new(db);
        let path = Arc::new(path.to_owned());
        init(&db, &path)?;
        let (queue, jobs) = mpsc::channel();
        let thread = {
            let (db, path) = (db.clone(), path.clone());
            std::thread::Builder::new()
                .name("flowbridge-redb".into())
                .spawn(move || write_loop(&db, &path, &jobs))
                .map_err(|e| StoreError::Backend(format!("cannot start the redb writer thread: {e}")))?
        };
        Ok(Self {
            db,
            path,
            writer: Arc::new(Writer {
                queue: Some(queue),
                thread: Some(thread),
            }),
        })
    }

    /// Opens `path` on the blocking pool.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES).await
    }

    /// [`open`](Self::open) with a page cache of `cache_bytes`.
    pub async fn open_with_cache(path: impl Into<PathBuf>, cache_bytes: usize) -> Result<Self, StoreError> {
        let path = path.into();
        tokio::task::spawn_blocking(move || Self::open_blocking_with_cache(&path, cache_bytes))
            .await
            .map_err(|e| StoreError::Backend(format!("redb open task failed: {e}")))?
    }

    /// The file this store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn backend(&self, e: impl Into<::redb::Error>) -> StoreError {
        backend(&self.path, e)
    }

    /// Runs `f` with this store on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StoreError::Backend(format!("redb task failed: {e}")))?
    }

    fn get_many_blocking(&self, keys: &[InstanceKey]) -> Result<Vec<Option<InstanceState>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend(e))?;
        let table = txn.open_table(INSTANCES).map_err(|e| self.backend(e))?;
        keys.iter()
            .map(|key| {
                let Some(guard) = table
                    .get((key.workflow.as_str(), key.serial_number.as_str()))
                    .map_err(|e| self.backend(e))?
                else {
                    return Ok(None);
                };
                let (version, updated, status, bytes) = guard.value();
                decode(key, version, updated, status, bytes).map(Some)
            })
            .collect()
    }

    fn list_blocking(&self, filter: &ListFilter) -> Result<Vec<InstanceState>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.backend(e))?;
        let table = txn.open_table(INSTANCES).map_err(|e| self.backend(e))?;
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let iter = match &filter.workflow {
            Some(w) => table.range((w.as_str(), "")..).map_err(|e| self.backend(e))?,
            None => table.iter().map_err(|e| self.backend(e))?,
        };
        let wanted = filter.status.map(status_code);
        for item in iter {
            let (k, v) = item.map_err(|e| self.backend(e))?;
            let (w, n) = k.value();
            if filter.workflow.as_deref().is_some_and(|fw| fw != w) {
                break; // past the workflow's key range
            }
            let (version, updated, status, bytes) = v.value();
            if wanted.is_some_and(|c| c != status) {
                continue;
            }
            out.push(decode(&InstanceKey::new(w, n), version, updated, status, bytes)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn purge_blocking(&self, before_ms: i64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.backend(e))?;
        let purged = {
            let mut table = txn.open_table(INSTANCES).map_err(|e| self.backend(e))?;
            let mut closed = txn.open_table(CLOSED).map_err(|e| self.backend(e))?;
            let old: Vec<(i64, String, String)> = closed
                .range(..(before_ms, "", ""))
                .map_err(|e| self.backend(e))?
                .map(|item| {
                    item.map(|(k, _)| {
                        let (t, w, n) = k.value();
                        (t, w.to_owned(), n.to_owned())
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(|e| self.backend(e))?;
            let mut purged = 0;
            for (t, w, n) in &old {
                closed
                    .remove((*t, w.as_str(), n.as_str()))
                    .map_err(|e| self.backend(e))?;
                // The index entry is kept in step with the record in the same
                // transactions; check anyway so a stale entry can never
                // delete a live instance.
                let matches = table
                    .get((w.as_str(), n.as_str()))
                    .map_err(|e| self.backend(e))?
                    .is_some_and(|g| {
                        let (_, updated, status, _) = g.value();
                        updated == *t && is_closed(status)
                    });
                if matches {
                    table
                        .remove((w.as_str(), n.as_str()))
                        .map_err(|e| self.backend(e))?;
                    purged += 1;
                }
            }
            purged
        };
        txn.commit().map_err(|e| self.backend(e))?;
        Ok(purged)
    }
}

fn backend(path: &Path, e: impl Into<::redb::Error>) -> StoreError {
    StoreError::Backend(format!("redb {}: {}", path.display(), e.into()))
}

/// Creates the tables and checks the layout version.
fn init(db: &Database, path: &Path) -> Result<(), StoreError> {
    let be = |e: ::redb::Error| backend(path, e);
    let txn = db.begin_write().map_err(|e| be(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| be(e.into()))?;
        let found = meta.get("layout").map_err(|e| be(e.into()))?.map(|g| g.value());
        match found {
            None => {
                meta.insert("layout", LAYOUT).map_err(|e| be(e.into()))?;
            }
            Some(LAYOUT) => {}
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "redb {} has layout version {other}; this build reads {LAYOUT}",
                    path.display()
                )));
            }
        }
        txn.open_table(INSTANCES).map_err(|e| be(e.into()))?;
        txn.open_table(CLOSED).map_err(|e| be(e.into()))?;
    }
    txn.commit().map_err(|e| be(e.into()))
}

/// The writer thread: each round takes the batches waiting into one
/// transaction (group commit) until the queue closes.
fn write_loop(db: &Database, path: &Path, jobs: &mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut rows = first.rows.len();
        let mut group = vec![first];
        while rows < MAX_GROUP_ROWS {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += job.rows.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // A panic answers the group's batches with errors (their reply
        // senders drop); the thread carries on with the next group.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_group(db, path, group)));
    }
}

/// Writes a group of batches in one transaction and answers each: a batch
/// that conflicts at once (nothing of it written), the others after the
/// commit. A failure other than a conflict aborts the transaction and
/// answers every batch not yet answered with it.
fn commit_group(db: &Database, path: &Path, group: Vec<WriteJob>) {
    let fail_all = |group: Vec<WriteJob>, e: StoreError| {
        for job in group {
            let _ = job.reply.send(Err(e.clone()));
        }
    };
    let txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => return fail_all(group, backend(path, e)),
    };
    let mut applied = Vec::with_capacity(group.len());
    {
        let tables = txn
            .open_table(INSTANCES)
            .and_then(|t| Ok((t, txn.open_table(CLOSED)?)));
        let (mut table, mut closed) = match tables {
            Ok(t) => t,
            Err(e) => return fail_all(group, backend(path, e)),
        };
        let mut jobs = group.into_iter();
        while let Some(job) = jobs.next() {
            match apply(&mut table, &mut closed, path, &job.rows, job.now) {
                Ok(versions) => applied.push((job, versions)),
                Err(e @ StoreError::Conflict { .. }) => {
                    let _ = job.reply.send(Err(e));
                }
                Err(e) => {
                    // Part of this batch may be in the transaction: drop it
                    // uncommitted (an abort) and fail everything pending.
                    let pending = applied.into_iter().map(|(j, _)| j);
                    return fail_all(pending.chain([job]).chain(jobs).collect(), e);
                }
            }
        }
    }
    let answer = txn.commit().map_err(|e| backend(path, e));
    for (job, versions) in applied {
        let _ = job.reply.send(answer.clone().map(|()| versions));
    }
}

/// One batch in an open write transaction: checks every version first (a
/// conflict names all the conflicting keys and writes nothing), then writes.
fn apply(
    table: &mut ::redb::Table<'_, Key, Record>,
    closed: &mut ::redb::Table<'_, (i64, &'static str, &'static str), ()>,
    path: &Path,
    rows: &[Row],
    now: i64,
) -> Result<Vec<u64>, StoreError> {
    let be = |e: ::redb::StorageError| backend(path, e);
    let mut olds = Vec::with_capacity(rows.len());
    let mut conflicts = Vec::new();
    for r in rows {
        let old = table
            .get((r.workflow.as_str(), r.serial_number.as_str()))
            .map_err(be)?
            .map(|g| {
                let (version, updated, status, _) = g.value();
                (version, updated, status)
            });
        if old.map_or(0, |o| o.0) != r.expected {
            conflicts.push(InstanceKey::new(&r.workflow, &r.serial_number));
        }
        olds.push(old);
    }
    if !conflicts.is_empty() {
        return Err(StoreError::Conflict { keys: conflicts });
    }
    let mut versions = Vec::with_capacity(rows.len());
    for (r, old) in rows.iter().zip(olds) {
        let (w, n) = (r.workflow.as_str(), r.serial_number.as_str());
        if let Some((_, updated, status)) = old
            && is_closed(status)
        {
            closed.remove((updated, w, n)).map_err(be)?;
        }
        let version = r.expected + 1;
        table
            .insert((w, n), (version, now, r.status, r.bytes.as_slice()))
            .map_err(be)?;
        if is_closed(r.status) {
            closed.insert((now, w, n), ()).map_err(be)?;
        }
        versions.push(version);
    }
    Ok(versions)
}

/// A state to write, encoded as it will be stored.
struct Row {
    workflow: String,
    serial_number: String,
    /// The version the writer read (0 = must not exist yet).
    expected: u64,
    status: u8,
    /// [`codec`] bytes, stamped with `expected + 1` and the write time.
    bytes: Vec<u8>,
}

impl Row {
    fn new(s: &InstanceState, now: i64) -> Row {
        Row {
            workflow: s.workflow.clone(),
            serial_number: s.serial_number.clone(),
            expected: s.version,
            status: status_code(s.status),
            bytes: codec::encode_stamped(s, s.version + 1, now),
        }
    }
}

/// A stored record back to a state; the header is authoritative.
fn decode(
    key: &InstanceKey,
    version: u64,
    updated: i64,
    status: u8,
    bytes: &[u8],
) -> Result<InstanceState, StoreError> {
    let mut state = codec::decode(key, bytes)?;
    state.version = version;
    state.updated_at_ms = updated;
    state.status = status_of(status).ok_or_else(|| StoreError::Corrupt {
        key: key.clone(),
        message: format!("unknown status code {status}"),
    })?;
    Ok(state)
}

impl StateStore for RedbStore {
    fn get<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<Option<InstanceState>, StoreError>> {
        let keys = vec![key.clone()];
        async move {
            let mut v = self.blocking(move |s| s.get_many_blocking(&keys)).await?;
            Ok(v.pop().flatten())
        }
        .boxed()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [InstanceKey],
    ) -> BoxFuture<'a, Result<Vec<Option<InstanceState>>, StoreError>> {
        let keys = keys.to_vec();
        async move { self.blocking(move |s| s.get_many_blocking(&keys)).await }.boxed()
    }

    fn put_batch<'a>(&'a self, states: &'a [InstanceState]) -> BoxFuture<'a, Result<Vec<u64>, StoreError>> {
        async move {
            if states.is_empty() {
                return Ok(Vec::new());
            }
            check_unique(states)?;
            // Encoded here, stamped as stored, so only bytes go to the
            // writer thread.
            let now = now_ms();
            let rows: Vec<Row> = states.iter().map(|s| Row::new(s, now)).collect();
            let (reply, answer) = tokio::sync::oneshot::channel();
            let queue = self
                .writer
                .queue
                .as_ref()
                .expect("present until the store is dropped");
            queue
                .send(WriteJob { rows, now, reply })
                .map_err(|_| StoreError::Backend("the redb writer thread stopped".into()))?;
            answer
                .await
                .map_err(|_| StoreError::Backend("the redb writer thread stopped before answering".into()))?
        }
        .boxed()
    }

    fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, Result<Vec<InstanceState>, StoreError>> {
        let filter = filter.clone();
        async move { self.blocking(move |s| s.list_blocking(&filter)).await }.boxed()
    }

    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move { self.blocking(move |s| s.purge_blocking(before_ms)).await }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            self.blocking(|s| {
                let txn = s.db.begin_read().map_err(|e| s.backend(e))?;
                txn.open_table(INSTANCES).map_err(|e| s.backend(e))?;
                Ok(())
            })
            .await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_parent_dirs_and_refuses_a_second_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.redb");
        let store = RedbStore::open_blocking(&path).unwrap();
        assert!(path.exists());
        let err = RedbStore::open_blocking(&path).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(store);
        RedbStore::open_blocking(&path).unwrap();
    }

    #[test]
    fn a_file_of_another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("layout", 9).unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open_blocking(&path).unwrap_err();
        assert!(err.to_string().contains("layout version 9"), "{err}");
    }

    #[test]
    fn an_unknown_status_code_is_corrupt() {
        let s = InstanceState::new("w", "n");
        let err = decode(&InstanceKey::of(&s), 1, 0, 7, &codec::encode(&s)).unwrap_err();
        assert!(
            err.to_string().contains("w/n") && err.to_string().contains("status code 7"),
            "{err}"
        );
    }
}
