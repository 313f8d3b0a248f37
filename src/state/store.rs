//! The `StateStore` seam: where instance states live between events.
//!
//! Writes are conditional on the version the writer read (optimistic
//! concurrency: a conflict is an error, never a silent overwrite) and come in
//! batches written in one transaction (group commit).
//!
//! The contract every implementation keeps (and `tests/it/state_store.rs`
//! checks against each of them):
//! - a key appears at most once in a batch ([`StoreError::DuplicateKey`]);
//! - the store sets `version` (expected + 1), `updated_at_ms` (its clock at
//!   the write) and `format` ([`FORMAT_VERSION`](super::FORMAT_VERSION)) of
//!   what it stores; the caller's values of the last two are ignored;
//! - a batch is written whole or not at all, and once `put_batch` returned
//!   `Ok` the write survives a crash of the process.

use futures::future::BoxFuture;

use super::{InstanceState, Status};

/// (workflow, serialNumber): what identifies an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub workflow: String,
    pub serial_number: String,
}

impl InstanceKey {
    /// The key of instance `serial_number` of `workflow`.
    pub fn new(workflow: impl Into<String>, serial_number: impl Into<String>) -> Self {
        Self {
            workflow: workflow.into(),
            serial_number: serial_number.into(),
        }
    }

    /// The key of `state`.
    pub fn of(state: &InstanceState) -> Self {
        Self::new(&state.workflow, &state.serial_number)
    }
}

impl std::fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.workflow, self.serial_number)
    }
}

/// Store failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed these instances since they were read; nothing
    /// of the batch was written.
    #[error("version conflict on {}", .keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Conflict { keys: Vec<InstanceKey> },
    /// A stored value could not be read (unknown format version, bad bytes).
    #[error("stored state of {key} is unreadable: {message}")]
    Corrupt { key: InstanceKey, message: String },
    /// The same instance appears twice in one batch; nothing was written.
    /// (Coalesce to the latest state per instance before writing.)
    #[error("instance {0} appears more than once in one batch")]
    DuplicateKey(InstanceKey),
    /// The backend failed (I/O, connection, SQL).
    #[error("state store: {0}")]
    Backend(String),
}

/// What `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only instances of this workflow.
    pub workflow: Option<String>,
    /// Only instances in this status.
    pub status: Option<Status>,
    /// At most this many (the first ones in key order).
    pub limit: Option<usize>,
}

/// Milliseconds since the Unix epoch by the system clock (what stores stamp
/// `updated_at_ms` with and what retention compares against).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The civil date (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's algorithm), for the UTC timestamps flowbridge prints.
pub fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Checks that no key appears twice in `states`.
pub(crate) fn check_unique(states: &[InstanceState]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(states.len());
    for s in states {
        if !seen.insert((s.workflow.as_str(), s.serial_number.as_str())) {
            return Err(StoreError::DuplicateKey(InstanceKey::of(s)));
        }
    }
    Ok(())
}

/// Where instance states are kept.
pub trait StateStore: Send + Sync + 'static {
    /// One instance's state.
    fn get<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<Option<InstanceState>, StoreError>>;

    /// Many states, in the order of `keys`.
    fn get_many<'a>(
        &'a self,
        keys: &'a [InstanceKey],
    ) -> BoxFuture<'a, Result<Vec<Option<InstanceState>>, StoreError>>;

    /// Writes every state in one transaction, each only if the stored
    /// version equals its `version` (0 = must not exist yet); all or
    /// nothing. Returns the new versions (old + 1) in order. A stale
    /// version is [`StoreError::Conflict`] naming every conflicting key.
    /// A `Backend` error, or dropping the future before it resolves, leaves
    /// it unknown whether the batch committed: re-read before deciding again.
    fn put_batch<'a>(&'a self, states: &'a [InstanceState]) -> BoxFuture<'a, Result<Vec<u64>, StoreError>>;

    /// [`put_batch`](Self::put_batch) of one state; returns its new version.
    fn put<'a>(&'a self, state: &'a InstanceState) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let versions = self.put_batch(std::slice::from_ref(state)).await?;
            versions
                .first()
                .copied()
                .ok_or_else(|| StoreError::Backend("put_batch returned no version for one state".into()))
        })
    }

    /// States matching `filter`, ordered by key.
    fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, Result<Vec<InstanceState>, StoreError>>;

    /// Deletes completed and cancelled instances last written before
    /// `before_ms` (ms since the Unix epoch); returns how many.
    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Whether the store is reachable (for readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
