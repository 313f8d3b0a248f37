//! Per-instance state: what the engine needs to decide first vs chained.
//!
//! An instance is keyed by (workflow, serialNumber). Its state records, per
//! node, how often the instance entered it and the todo it created there;
//! where the instance currently is (its positions, more than one inside a
//! parallel split); the latest POA todo; fingerprints of recent eventIds for
//! dedupe ([`dedupe`]); and the AICC creates that were decided but whose AICC
//! task id is not yet known.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the serialized form; bump it and migrate when fields change
/// ([`codec::decode_json`] reads every earlier one).
///
/// - 1: `applied` held the recent eventIds themselves.
/// - 2: `applied` holds their [`fingerprint`]s as 16-digit hex strings.
pub const FORMAT_VERSION: u32 = 2;

/// How many recent eventIds an instance remembers (as fingerprints) for
/// dedupe.
pub const DEDUPE_WINDOW: usize = 32;

/// The lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started and not yet ended.
    #[default]
    Active,
    /// Entered an end node.
    Completed,
    /// Terminated upstream (`kind: terminate`).
    Cancelled,
}

impl Status {
    /// The lowercase name (`active`, `completed`, `cancelled`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// What the instance did at one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    /// How many times the instance entered the node.
    pub visits: u32,
    /// The todo created on the latest visit (POA taskId, or AICC task id once
    /// known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_task: Option<String>,
    /// The POA todo a todo after this node chains to: the node's own todo for
    /// a POA task node, otherwise the anchor the instance brought in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<String>,
    /// For a parallel join: branches arrived since it last fired.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub arrived: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An AICC create the engine decided; AICC creates are not idempotent, so
/// the intent is stored before the call and resolved with the returned id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiccIntent {
    /// Deterministic id of (workflow, serialNumber, node, visit).
    pub intent_id: String,
    /// The AICC task node the create is for.
    pub node: String,
    /// Which entry of `node` it is for.
    pub visit: u32,
    /// The fields a reconcile (`task/list`) searches by.
    pub title: String,
    /// AICC creator of the task (reconcile search field).
    pub creator_id: String,
    /// AICC owner of the task (reconcile search field).
    pub owner_id: String,
    /// AICC relate id, when the node maps one (reconcile search field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relate_id: Option<String>,
}

/// The state of one workflow instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceState {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// Workflow id (first half of the key).
    pub workflow: String,
    /// The instance's serialNumber (second half of the key).
    pub serial_number: String,
    /// Lifecycle; completed and cancelled instances are purged after the
    /// retention TTL.
    pub status: Status,
    /// Per node id (sorted, so the serialized form is stable).
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeState>,
    /// Where the instance is: node id → departures still expected (1, or a
    /// parallel split's number of branches not yet taken).
    #[serde(default)]
    pub positions: BTreeMap<String, u32>,
    /// The latest POA todo created for the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_todo: Option<String>,
    /// [`fingerprint`]s of the recent eventIds, oldest first, at most
    /// [`DEDUPE_WINDOW`].
    #[serde(default)]
    pub applied: DedupeWindow,
    /// AICC creates decided and not yet confirmed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_aicc: Vec<AiccIntent>,
    /// Optimistic-concurrency version, incremented by the store on write.
    #[serde(default)]
    pub version: u64,
    /// Milliseconds since the Unix epoch of the last write, stamped by the
    /// store on each write (the engine is pure and does not read clocks);
    /// retention counts from it.
    #[serde(default)]
    pub updated_at_ms: i64,
}

impl InstanceState {
    /// A fresh, active instance with no history.
    pub fn new(workflow: &str, serial_number: &str) -> Self {
        Self {
            format: FORMAT_VERSION,
            workflow: workflow.to_owned(),
            serial_number: serial_number.to_owned(),
            status: Status::Active,
            nodes: BTreeMap::new(),
            positions: BTreeMap::new(),
            latest_todo: None,
            applied: DedupeWindow::new(),
            pending_aicc: Vec::new(),
            version: 0,
            updated_at_ms: 0,
        }
    }

    /// Whether `event_id` was applied recently (its fingerprint is in the
    /// window; see [`dedupe`] on collisions).
    pub fn has_applied(&self, event_id: &str) -> bool {
        self.applied.contains(fingerprint(event_id))
    }

    /// Remembers `event_id`'s fingerprint, forgetting the oldest beyond the
    /// window.
    pub fn remember(&mut self, event_id: &str) {
        self.applied.push(fingerprint(event_id));
    }

    /// Marks an AICC intent done with the id AICC returned.
    pub fn resolve_aicc(&mut self, intent_id: &str, aicc_task_id: &str) -> bool {
        let Some(i) = self.pending_aicc.iter().position(|p| p.intent_id == intent_id) else {
            return false;
        };
        let intent = self.pending_aicc.remove(i);
        if let Some(node) = self.nodes.get_mut(&intent.node)
            && node.visits == intent.visit
        {
            node.latest_task = Some(aicc_task_id.to_owned());
        }
        true
    }
}

pub mod cli;
pub mod codec;
pub mod config;
pub mod dedupe;
pub mod memory;
pub mod postgres;
pub mod redb;
pub mod store;
pub mod sweeper;

pub use self::postgres::PostgresStore;
pub use self::redb::RedbStore;
pub use config::{StoreConfig, StoreKind, open};
pub use dedupe::{DedupeWindow, fingerprint};
pub use memory::MemoryStore;
pub use store::{InstanceKey, ListFilter, StateStore, StoreError, now_ms};
pub use sweeper::spawn_sweeper;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_window_of_event_ids() {
        let mut s = InstanceState::new("w", "n");
        assert!(!s.has_applied("e-0"));
        for i in 0..=DEDUPE_WINDOW {
            s.remember(&format!("e-{i}"));
        }
        assert!(!s.has_applied("e-0"), "the oldest is forgotten");
        assert!((1..=DEDUPE_WINDOW).all(|i| s.has_applied(&format!("e-{i}"))));
        assert!(!s.has_applied("e-33x"));
        assert_eq!(s.applied.len(), DEDUPE_WINDOW);
        assert_eq!(s.applied.as_slice()[0], fingerprint("e-1"));
    }
}
