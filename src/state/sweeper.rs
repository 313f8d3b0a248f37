//! Retention: a background task that purges completed and cancelled
//! instances whose last write is older than the TTL.
//!
//! Closed instances are kept for a while so that late duplicates of their
//! events are still recognized (the dedupe window lives in the state); after
//! the TTL a late event would find no state. The sweep runs at start and then
//! every interval; a failure is logged and retried at the next tick.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::store::{StateStore, now_ms};

/// Spawns the sweep: `store.purge(now - ttl)` at once and every `interval`
/// until `shutdown` completes. Needs a tokio runtime.
pub fn spawn_sweeper(
    store: Arc<dyn StateStore>,
    ttl: Duration,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        // tokio's interval panics on a zero period.
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
            }
            let before = now_ms().saturating_sub(ttl_ms);
            // A purge in progress is finished before shutdown is looked at
            // again: it is one short transaction (or a few for PostgreSQL).
            match store.purge(before).await {
                Ok(0) => tracing::debug!(before_ms = before, "state retention sweep: nothing to purge"),
                Ok(n) => tracing::info!(purged = n, before_ms = before, "state retention sweep"),
                Err(e) => tracing::warn!(error = %e, "state retention sweep failed; retrying next interval"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{InstanceKey, InstanceState, MemoryStore, Status};

    #[tokio::test]
    async fn purges_closed_instances_and_stops_on_shutdown() {
        let store = Arc::new(MemoryStore::new());
        let mut done = InstanceState::new("w", "done");
        done.status = Status::Completed;
        let open = InstanceState::new("w", "open");
        store.put_batch(&[done, open]).await.unwrap();
        let written = store
            .get(&InstanceKey::new("w", "done"))
            .await
            .unwrap()
            .unwrap()
            .updated_at_ms;
        // TTL 0: anything last written before `now` goes; wait for the clock
        // to pass the write's millisecond.
        while now_ms() <= written {
            tokio::task::yield_now().await;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = spawn_sweeper(
            store.clone(),
            Duration::ZERO,
            Duration::from_secs(3600),
            async move {
                let _ = stopped.await;
            },
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while store.get(&InstanceKey::new("w", "done")).await.unwrap().is_some() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the first sweep runs at once");
        assert!(store.get(&InstanceKey::new("w", "open")).await.unwrap().is_some());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap()
            .unwrap();
    }
}
