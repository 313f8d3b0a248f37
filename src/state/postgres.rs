//! `StateStore` in PostgreSQL, for replicas of one consumer group that share
//! the work (a rebalance moves an instance to another replica; its state
//! must follow).
//!
//! - Migrations are embedded (`migrations/*.sql`) and applied by
//!   [`PostgresStore::connect`] in one transaction under an advisory lock
//!   (replicas starting together apply them once), recorded in
//!   `<schema>.flowbridge_migrations`; a database migrated by a newer build is
//!   refused.
//! - Optimistic concurrency: a `version` column. `put_batch` is one
//!   transaction of at most two statements over `UNNEST`ed arrays —
//!   `UPDATE … WHERE version = expected` for existing instances,
//!   `INSERT … ON CONFLICT DO NOTHING` for new ones — and compares the keys
//!   each `RETURNING` gave back with the keys sent: any missing key is a
//!   conflict and the whole transaction is rolled back. Under READ COMMITTED
//!   a concurrent writer's change is re-checked against the `WHERE`, so two
//!   replicas can never both win.
//! - Every object lives in a configurable schema (tests use one each).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Row};

use super::codec;
use super::store::{InstanceKey, ListFilter, StateStore, StoreError, check_unique, now_ms};
use super::{FORMAT_VERSION, InstanceState, Status};

/// The embedded migrations: (version, name, SQL with `{schema}` for the
/// quoted schema name). Append only; never edit an applied one.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "instance_state",
    include_str!("migrations/0001_instance_state.sql"),
)];

/// The default schema.
pub const DEFAULT_SCHEMA: &str = "flowbridge";

/// How many closed instances one purge statement deletes at most (short
/// transactions: the sweep never holds many row locks at once).
const PURGE_CHUNK: i64 = 5_000;

/// Checks that `schema` is a plain lowercase SQL identifier (it is put into
/// statements, so nothing else is accepted).
pub fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name `{schema}`: use 1–63 of a-z, 0-9, _ (not starting with a digit)"
        )))
    }
}

/// The statements, with the schema filled in once.
#[derive(Debug)]
struct Queries {
    get_many: String,
    update: String,
    insert: String,
    list: String,
    purge: String,
}

impl Queries {
    fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".instance_state");
        Self {
            get_many: format!(
                "SELECT workflow, serial_number, version, status, updated_at_ms, format, body::text \
                 FROM {t} WHERE (workflow, serial_number) IN \
                 (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            ),
            update: format!(
                "UPDATE {t} AS t SET version = t.version + 1, status = u.status, \
                 updated_at_ms = $6, format = $7, body = u.body::jsonb \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[]) \
                 AS u(workflow, serial_number, expected, status, body) \
                 WHERE t.workflow = u.workflow AND t.serial_number = u.serial_number \
                 AND t.version = u.expected \
                 RETURNING t.workflow, t.serial_number"
            ),
            insert: format!(
                "INSERT INTO {t} (workflow, serial_number, version, status, updated_at_ms, format, body) \
                 SELECT u.workflow, u.serial_number, 1, u.status, $4, $5, u.body::jsonb \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $6::text[]) \
                 AS u(workflow, serial_number, status, body) \
                 ON CONFLICT (workflow, serial_number) DO NOTHING \
                 RETURNING workflow, serial_number"
            ),
            list: format!(
                "SELECT workflow, serial_number, version, status, updated_at_ms, format, body::text \
                 FROM {t} WHERE ($1::text IS NULL OR workflow = $1) \
                 AND ($2::text IS NULL OR status = $2) \
                 ORDER BY workflow, serial_number LIMIT $3"
            ),
            purge: format!(
                "DELETE FROM {t} AS t USING (SELECT workflow, serial_number FROM {t} \
                 WHERE status <> 'active' AND updated_at_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) AS d \
                 WHERE t.workflow = d.workflow AND t.serial_number = d.serial_number \
                 AND t.status <> 'active' AND t.updated_at_ms < $1"
            ),
        }
    }
}

/// A `StateStore` in one PostgreSQL schema, through a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
    q: std::sync::Arc<Queries>,
}

fn pg(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("postgres: {e}"))
}

impl PostgresStore {
    /// Connects to `url` with a pool of `pool_size` connections (waiting at
    /// most `connect_timeout` for one) and migrates `schema`.
    pub async fn connect(
        url: &str,
        schema: &str,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        // Named in pg_stat_activity, unless the URL or PGAPPNAME names it.
        if opts.get_application_name().is_none() {
            opts = opts.application_name("flowbridge");
        }
        let target = format!(
            "{}@{}:{}/{}",
            opts.get_username(),
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("")
        );
        // One direct connection first: the pool retries until its timeout and
        // then reports only that, hiding the cause (refused, auth, no such
        // database).
        let unreachable =
            |why: String| StoreError::Backend(format!("cannot connect to PostgreSQL {target}: {why}"));
        let probe = tokio::time::timeout(connect_timeout, opts.connect())
            .await
            .map_err(|_| unreachable(format!("no answer within {connect_timeout:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        // Only a courtesy to the server; the probe is done either way.
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(connect_timeout)
            .connect_with(opts)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Self::with_pool(pool, schema).await
    }

    /// Uses an existing pool; migrates `schema`.
    pub async fn with_pool(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        migrate(&pool, schema).await?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
            q: std::sync::Arc::new(Queries::new(schema)),
        })
    }

    /// The pool (for operators' queries, tests and benches).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

/// Applies the migrations `schema` lacks, in one transaction.
async fn migrate(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let fail = |e: sqlx::Error| StoreError::Backend(format!("migrating PostgreSQL schema {schema}: {e}"));
    let quoted = format!("\"{schema}\"");
    let mut tx = pool.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("flowbridge-migrate:{schema}"))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    // A &str without arguments runs as a simple query: several statements.
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}; \
         CREATE TABLE IF NOT EXISTS {quoted}.flowbridge_migrations (\
           version integer PRIMARY KEY, name text NOT NULL, \
           applied_at timestamptz NOT NULL DEFAULT now())"
    );
    tx.execute(setup.as_str()).await.map_err(fail)?;
    let applied: HashSet<i32> = sqlx::query(&format!("SELECT version FROM {quoted}.flowbridge_migrations"))
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?
        .iter()
        .map(|r| r.try_get::<i32, _>(0))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        return Err(StoreError::Backend(format!(
            "PostgreSQL schema {schema} is at migration {newer}, newer than this build knows ({known})"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tracing::info!(schema, version, name, "applying state-store migration");
        let sql = sql.replace("{schema}", &quoted);
        tx.execute(sql.as_str())
            .await
            .map_err(|e| StoreError::Backend(format!("migration {version} ({name}) on {schema}: {e}")))?;
        sqlx::query(&format!(
            "INSERT INTO {quoted}.flowbridge_migrations (version, name) VALUES ($1, $2)"
        ))
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}

/// A row of `get_many`/`list` back to a state; the columns are
/// authoritative for version, status and time.
fn from_row(row: &PgRow) -> Result<InstanceState, StoreError> {
    let workflow: String = row.try_get(0).map_err(pg)?;
    let serial: String = row.try_get(1).map_err(pg)?;
    let key = InstanceKey::new(workflow, serial);
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.clone(),
        message,
    };
    let version: i64 = row.try_get(2).map_err(pg)?;
    let status: String = row.try_get(3).map_err(pg)?;
    let updated: i64 = row.try_get(4).map_err(pg)?;
    let format: i16 = row.try_get(5).map_err(pg)?;
    let body: String = row.try_get(6).map_err(pg)?;
    let format = u32::try_from(format).map_err(|_| corrupt(format!("negative format version {format}")))?;
    let mut state = codec::decode_json(&key, format, body.as_bytes())?;
    state.version = u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?;
    state.updated_at_ms = updated;
    state.status = match status.as_str() {
        "active" => Status::Active,
        "completed" => Status::Completed,
        "cancelled" => Status::Cancelled,
        other => return Err(corrupt(format!("unknown status `{other}`"))),
    };
    Ok(state)
}

/// Column arrays of a batch: workflow, serial_number, status, body.
type Columns<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'static str>, Vec<String>);

fn keys_of(rows: &[PgRow]) -> Result<HashSet<(String, String)>, StoreError> {
    rows.iter()
        .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
        .collect()
}

impl PostgresStore {
    async fn get_many_impl(&self, keys: &[InstanceKey]) -> Result<Vec<Option<InstanceState>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let workflows: Vec<&str> = keys.iter().map(|k| k.workflow.as_str()).collect();
        let serials: Vec<&str> = keys.iter().map(|k| k.serial_number.as_str()).collect();
        let rows = sqlx::query(&self.q.get_many)
            .bind(&workflows)
            .bind(&serials)
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        let mut found: HashMap<InstanceKey, InstanceState> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let s = from_row(row)?;
            found.insert(InstanceKey::of(&s), s);
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn put_batch_impl<'a>(&self, states: &'a [InstanceState]) -> Result<Vec<u64>, StoreError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        check_unique(states)?;
        let now = now_ms();
        let format = i16::try_from(FORMAT_VERSION).map_err(|_| {
            StoreError::Backend(format!("format version {FORMAT_VERSION} does not fit smallint"))
        })?;
        let (updates, inserts): (Vec<&InstanceState>, Vec<&InstanceState>) =
            states.iter().partition(|s| s.version > 0);
        let body = |s: &InstanceState| {
            let mut stored = s.clone();
            stored.version = s.version + 1;
            stored.updated_at_ms = now;
            stored.format = FORMAT_VERSION;
            // codec::encode_json writes JSON, which is UTF-8.
            String::from_utf8(codec::encode_json(&stored)).expect("serde_json writes UTF-8")
        };
        let columns = |set: &[&'a InstanceState]| -> Columns<'a> {
            let w = set.iter().map(|s| s.workflow.as_str()).collect();
            let n = set.iter().map(|s| s.serial_number.as_str()).collect();
            let st = set.iter().map(|s| s.status.as_str()).collect();
            let b = set.iter().map(|s| body(s)).collect();
            (w, n, st, b)
        };

        let mut tx = self.pool.begin().await.map_err(pg)?;
        let mut written: HashSet<(String, String)> = HashSet::with_capacity(states.len());
        if !updates.is_empty() {
            let (w, n, st, b) = columns(&updates);
            let expected: Vec<i64> = updates
                .iter()
                .map(|s| {
                    i64::try_from(s.version).map_err(|_| StoreError::Conflict {
                        keys: vec![InstanceKey::of(s)],
                    })
                })
                .collect::<Result<_, _>>()?;
            let rows = sqlx::query(&self.q.update)
                .bind(&w)
                .bind(&n)
                .bind(&expected)
                .bind(&st)
                .bind(&b)
                .bind(now)
                .bind(format)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg)?;
            written.extend(keys_of(&rows)?);
        }
        if !inserts.is_empty() {
            let (w, n, st, b) = columns(&inserts);
            let rows = sqlx::query(&self.q.insert)
                .bind(&w)
                .bind(&n)
                .bind(&st)
                .bind(now)
                .bind(format)
                .bind(&b)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg)?;
            written.extend(keys_of(&rows)?);
        }
        let conflicts: Vec<InstanceKey> = states
            .iter()
            .filter(|s| !written.contains(&(s.workflow.clone(), s.serial_number.clone())))
            .map(InstanceKey::of)
            .collect();
        if !conflicts.is_empty() {
            tx.rollback().await.map_err(pg)?;
            return Err(StoreError::Conflict { keys: conflicts });
        }
        tx.commit().await.map_err(pg)?;
        Ok(states.iter().map(|s| s.version + 1).collect())
    }

    async fn list_impl(&self, filter: &ListFilter) -> Result<Vec<InstanceState>, StoreError> {
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(&self.q.list)
            .bind(filter.workflow.as_deref())
            .bind(filter.status.map(Status::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?;
        rows.iter().map(from_row).collect()
    }

    async fn purge_impl(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(&self.q.purge)
                .bind(before_ms)
                .bind(PURGE_CHUNK)
                .execute(&self.pool)
                .await
                .map_err(pg)?
                .rows_affected();
            total += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

impl StateStore for PostgresStore {
    fn get<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<Option<InstanceState>, StoreError>> {
        async move {
            let mut v = self.get_many_impl(std::slice::from_ref(key)).await?;
            Ok(v.pop().flatten())
        }
        .boxed()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [InstanceKey],
    ) -> BoxFuture<'a, Result<Vec<Option<InstanceState>>, StoreError>> {
        self.get_many_impl(keys).boxed()
    }

    fn put_batch<'a>(&'a self, states: &'a [InstanceState]) -> BoxFuture<'a, Result<Vec<u64>, StoreError>> {
        self.put_batch_impl(states).boxed()
    }

    fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, Result<Vec<InstanceState>, StoreError>> {
        self.list_impl(filter).boxed()
    }

    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.purge_impl(before_ms).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(pg)?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["flowbridge", "_x", "fb_test_12"] {
            validate_schema(ok).unwrap();
        }
        for bad in ["", "1a", "Flow", "a-b", "a\"; drop", &"x".repeat(64)] {
            let err = validate_schema(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }
}
