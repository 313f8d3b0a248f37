//! In-memory `StateStore` (tests, `replay`, the reference for the contract).

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::{BoxFuture, FutureExt};

use super::store::{InstanceKey, ListFilter, StateStore, StoreError, check_unique, now_ms};
use super::{FORMAT_VERSION, InstanceState, Status};

/// States in a map behind a mutex (never held across an await).
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<InstanceKey, InstanceState>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceKey, InstanceState>> {
        // A panic while holding the lock leaves a consistent map (every
        // mutation below is a single insert/remove), so poisoning is ignored.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<Option<InstanceState>, StoreError>> {
        let v = self.lock().get(key).cloned();
        async move { Ok(v) }.boxed()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [InstanceKey],
    ) -> BoxFuture<'a, Result<Vec<Option<InstanceState>>, StoreError>> {
        let map = self.lock();
        let v = keys.iter().map(|k| map.get(k).cloned()).collect();
        async move { Ok(v) }.boxed()
    }

    fn put_batch<'a>(&'a self, states: &'a [InstanceState]) -> BoxFuture<'a, Result<Vec<u64>, StoreError>> {
        if let Err(e) = check_unique(states) {
            return async move { Err(e) }.boxed();
        }
        let now = now_ms();
        let mut map = self.lock();
        let conflicts: Vec<InstanceKey> = states
            .iter()
            .filter(|s| map.get(&InstanceKey::of(s)).map_or(0, |cur| cur.version) != s.version)
            .map(InstanceKey::of)
            .collect();
        let result = if conflicts.is_empty() {
            Ok(states
                .iter()
                .map(|s| {
                    let mut stored = s.clone();
                    stored.version = s.version + 1;
                    stored.updated_at_ms = now;
                    stored.format = FORMAT_VERSION;
                    map.insert(InstanceKey::of(s), stored);
                    s.version + 1
                })
                .collect())
        } else {
            Err(StoreError::Conflict { keys: conflicts })
        };
        async move { result }.boxed()
    }

    fn list<'a>(&'a self, filter: &'a ListFilter) -> BoxFuture<'a, Result<Vec<InstanceState>, StoreError>> {
        let v = self
            .lock()
            .values()
            .filter(|s| filter.workflow.as_ref().is_none_or(|w| &s.workflow == w))
            .filter(|s| filter.status.is_none_or(|st| s.status == st))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn purge(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.status == Status::Active || s.updated_at_ms >= before_ms);
        let n = (before - map.len()) as u64;
        async move { Ok(n) }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }
}
