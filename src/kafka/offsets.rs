//! Per-partition offset tracking: which offsets may be committed.
//!
//! Events of a partition are handed out in offset order but finish out of
//! order (different instances run concurrently). Only the contiguous prefix
//! of finished events may be committed: committing past an unfinished event
//! would lose it on a crash. "Finished" means applied, skipped as a
//! duplicate, or confirmed in the dead-letter topic.

use std::collections::{BTreeMap, VecDeque};

/// One partition's in-flight window.
#[derive(Debug, Default, Clone)]
pub struct PartitionOffsets {
    /// Offsets handed out and not yet committable, in order, with whether
    /// they finished and their Kafka timestamp (ms) for time lag.
    window: VecDeque<(i64, bool, Option<i64>)>,
    /// The next offset to commit (last contiguous finished + 1).
    committable: Option<i64>,
    /// The offset last committed.
    committed: Option<i64>,
}

impl PartitionOffsets {
    /// Records that `offset` was handed out for processing.
    pub fn track(&mut self, offset: i64, timestamp_ms: Option<i64>) {
        debug_assert!(
            self.window.back().is_none_or(|(o, _, _)| *o < offset),
            "offsets arrive in order"
        );
        self.window.push_back((offset, false, timestamp_ms));
    }

    /// Records that `offset` finished; advances the committable point over
    /// the finished prefix. Unknown offsets (e.g. of a revoked and
    /// re-assigned partition) are ignored.
    pub fn finish(&mut self, offset: i64) {
        if let Ok(i) = self.window.binary_search_by_key(&offset, |(o, _, _)| *o) {
            self.window[i].1 = true;
        }
        while let Some(&(o, true, _)) = self.window.front() {
            self.committable = Some(o + 1);
            self.window.pop_front();
        }
    }

    /// Events handed out and not finished.
    pub fn in_flight(&self) -> usize {
        self.window.iter().filter(|(_, done, _)| !done).count()
    }

    /// The next offset to commit, if it moved since the last commit.
    pub fn to_commit(&self) -> Option<i64> {
        match (self.committable, self.committed) {
            (Some(c), Some(d)) if c <= d => None,
            (c, _) => c,
        }
    }

    /// Records a successful commit of `offset`.
    pub fn committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// Kafka timestamp (ms) of the oldest unfinished event.
    pub fn oldest_unfinished_ms(&self) -> Option<i64> {
        self.window
            .iter()
            .find(|(_, done, _)| !done)
            .and_then(|(_, _, ts)| *ts)
    }

    /// The offset most recently committed.
    pub fn last_committed(&self) -> Option<i64> {
        self.committed
    }
}

/// All partitions of one consumer: topic → partition → window. Nested maps
/// so a lookup borrows the topic name instead of allocating a key per event.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    topics: BTreeMap<String, BTreeMap<i32, PartitionOffsets>>,
}

impl OffsetTracker {
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64, timestamp_ms: Option<i64>) {
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_owned(), BTreeMap::new());
        }
        let parts = self.topics.get_mut(topic).expect("inserted above");
        parts.entry(partition).or_default().track(offset, timestamp_ms);
    }

    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.topics.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            p.finish(offset);
        }
    }

    /// Offsets to commit now: (topic, partition, next offset).
    pub fn to_commit(&self) -> Vec<(String, i32, i64)> {
        self.partitions()
            .filter_map(|(t, p, o)| o.to_commit().map(|c| (t.to_owned(), p, c)))
            .collect()
    }

    pub fn committed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.topics.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            p.committed(offset);
        }
    }

    /// Unfinished events of these partitions (all when `None`).
    pub fn in_flight(&self, only: Option<&[(String, i32)]>) -> usize {
        self.partitions()
            .filter(|(t, p, _)| only.is_none_or(|o| o.iter().any(|(ot, op)| ot == t && op == p)))
            .map(|(_, _, o)| o.in_flight())
            .sum()
    }

    /// Forgets partitions (after a revoke has been drained and committed).
    pub fn remove(&mut self, partitions: &[(String, i32)]) {
        for (t, p) in partitions {
            if let Some(parts) = self.topics.get_mut(t) {
                parts.remove(p);
            }
        }
    }

    /// Every tracked partition.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32, &PartitionOffsets)> {
        self.topics
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, o)| (t.as_str(), *p, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_finished_prefix_is_committable() {
        let mut p = PartitionOffsets::default();
        for o in 10..15 {
            p.track(o, Some(o * 1000));
        }
        p.finish(12);
        p.finish(11);
        assert_eq!(p.to_commit(), None, "10 is not finished");
        assert_eq!(p.oldest_unfinished_ms(), Some(10_000));
        p.finish(10);
        assert_eq!(p.to_commit(), Some(13), "10, 11, 12 finished → commit 13");
        assert_eq!(p.in_flight(), 2);
        p.committed(13);
        assert_eq!(p.to_commit(), None, "nothing new since the commit");
        p.finish(14);
        assert_eq!(p.to_commit(), None, "13 still open");
        p.finish(13);
        assert_eq!(p.to_commit(), Some(15));
        assert_eq!(p.oldest_unfinished_ms(), None);
    }

    #[test]
    fn unknown_offsets_are_ignored_and_partitions_are_independent() {
        let mut t = OffsetTracker::default();
        t.track("a", 0, 5, None);
        t.track("a", 1, 7, None);
        t.finish("a", 0, 99);
        t.finish("b", 0, 5);
        assert!(t.to_commit().is_empty());
        t.finish("a", 1, 7);
        assert_eq!(t.to_commit(), vec![("a".to_owned(), 1, 8)]);
        assert_eq!(t.in_flight(Some(&[("a".to_owned(), 0)])), 1);
        t.remove(&[("a".to_owned(), 0)]);
        assert_eq!(t.in_flight(None), 0);
    }
}
