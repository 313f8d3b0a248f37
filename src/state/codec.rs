//! The stored form of an [`InstanceState`]: one format-version byte, then
//! the state as JSON.
//!
//! Why JSON behind a version byte rather than a compact binary format:
//! - the structs use `skip_serializing_if`/`default`, which self-describing
//!   formats honour and positional binary formats (bincode, postcard) break
//!   on; additive fields need no format bump;
//! - operators can read it (`flowbridge state get`, `psql` on the `jsonb`
//!   column) and no dependency is added;
//! - the size is dominated by ids (32 recent eventIds, 35-byte task ids),
//!   which a binary format would store as the same strings: ~2.2 KB for an
//!   instance six nodes in with a full dedupe window, ~0.4 KB after its first
//!   event (`cargo bench --bench state` prints both); a binary format would
//!   save only the JSON punctuation and field names.
//!
//! The byte lets a later release read this format and migrate; a byte this
//! build does not know is [`StoreError::Corrupt`], never a panic or a guess.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::store::{InstanceKey, StoreError};
use super::{AiccIntent, FORMAT_VERSION, InstanceState, NodeState, Status};

/// The state as stored: `[FORMAT_VERSION as u8] ++ JSON`.
pub fn encode(state: &InstanceState) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.push(format_byte());
    append_json(state, &mut out);
    out
}

/// [`encode`] of `state` as a store writes it — with `version`,
/// `updated_at_ms` and the current `format` — without copying the state to
/// set them (a store writes many states per transaction).
pub fn encode_stamped(state: &InstanceState, version: u64, updated_at_ms: i64) -> Vec<u8> {
    /// [`InstanceState`]'s serialized form, field for field and in the same
    /// order, borrowing everything but the stamped fields
    /// (`stamped_matches_a_stamped_copy` keeps the two in step).
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Stamped<'a> {
        format: u32,
        workflow: &'a str,
        serial_number: &'a str,
        status: Status,
        nodes: &'a BTreeMap<String, NodeState>,
        positions: &'a BTreeMap<String, u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        latest_todo: &'a Option<String>,
        applied: &'a VecDeque<String>,
        #[serde(skip_serializing_if = "<[AiccIntent]>::is_empty")]
        pending_aicc: &'a [AiccIntent],
        version: u64,
        updated_at_ms: i64,
    }
    let stamped = Stamped {
        format: FORMAT_VERSION,
        workflow: &state.workflow,
        serial_number: &state.serial_number,
        status: state.status,
        nodes: &state.nodes,
        positions: &state.positions,
        latest_todo: &state.latest_todo,
        applied: &state.applied,
        pending_aicc: &state.pending_aicc,
        version,
        updated_at_ms,
    };
    let mut out = Vec::with_capacity(1024);
    out.push(format_byte());
    // As in `append_json`: strings, numbers and maps into a Vec cannot fail.
    serde_json::to_writer(&mut out, &stamped).expect("InstanceState always serializes to JSON");
    out
}

/// The JSON part alone (PostgreSQL keeps the version in its own column).
pub fn encode_json(state: &InstanceState) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    append_json(state, &mut out);
    out
}

/// [`FORMAT_VERSION`] as the leading byte.
pub fn format_byte() -> u8 {
    const _: () = assert!(
        FORMAT_VERSION <= u8::MAX as u32,
        "the format version must fit one byte"
    );
    FORMAT_VERSION as u8
}

fn append_json(state: &InstanceState, out: &mut Vec<u8>) {
    // Serializing to a Vec cannot fail: every field is a string, number,
    // map with string keys, or sequence, and writing to a Vec is infallible.
    serde_json::to_writer(&mut *out, state).expect("InstanceState always serializes to JSON");
}

/// Reads what [`encode`] wrote for `key`.
pub fn decode(key: &InstanceKey, bytes: &[u8]) -> Result<InstanceState, StoreError> {
    let Some((&format, json)) = bytes.split_first() else {
        return Err(corrupt(key, "empty value".to_owned()));
    };
    decode_json(key, u32::from(format), json)
}

/// Reads the JSON part of format `format` for `key`, checking that the
/// state names that key.
pub fn decode_json(key: &InstanceKey, format: u32, json: &[u8]) -> Result<InstanceState, StoreError> {
    if format != FORMAT_VERSION {
        return Err(corrupt(
            key,
            format!("unknown format version {format} (this build reads {FORMAT_VERSION})"),
        ));
    }
    let state: InstanceState =
        serde_json::from_slice(json).map_err(|e| corrupt(key, format!("bad format-{format} JSON: {e}")))?;
    if state.workflow != key.workflow || state.serial_number != key.serial_number {
        return Err(corrupt(
            key,
            format!("the value belongs to {}/{}", state.workflow, state.serial_number),
        ));
    }
    Ok(state)
}

fn corrupt(key: &InstanceKey, message: String) -> StoreError {
    StoreError::Corrupt {
        key: key.clone(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AiccIntent, NodeState, Status};

    fn sample() -> InstanceState {
        let mut s = InstanceState::new("leave-approval", "NUM0001");
        s.status = Status::Completed;
        s.nodes.insert(
            "dean".into(),
            NodeState {
                visits: 2,
                latest_task: Some("fb-0123".into()),
                anchor: Some("fb-0123".into()),
                arrived: 1,
            },
        );
        s.positions.insert("dean".into(), 1);
        s.latest_todo = Some("fb-0123".into());
        s.remember("e-1");
        s.pending_aicc.push(AiccIntent {
            intent_id: "i-1".into(),
            node: "call".into(),
            visit: 1,
            title: "t".into(),
            creator_id: "c".into(),
            owner_id: "o".into(),
            relate_id: None,
        });
        s.version = 7;
        s.updated_at_ms = 1_700_000_000_000;
        s
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let key = InstanceKey::of(&s);
        assert_eq!(decode(&key, &encode(&s)).unwrap(), s);
        assert_eq!(decode_json(&key, FORMAT_VERSION, &encode_json(&s)).unwrap(), s);
    }

    #[test]
    fn stamped_matches_a_stamped_copy() {
        let mut copy = sample();
        for s in [sample(), InstanceState::new("w", "n")] {
            copy.clone_from(&s);
            copy.version = 42;
            copy.updated_at_ms = 1_800_000_000_000;
            copy.format = FORMAT_VERSION;
            assert_eq!(encode_stamped(&s, 42, 1_800_000_000_000), encode(&copy));
        }
    }

    #[test]
    fn unknown_version_is_corrupt_and_names_the_key() {
        let s = sample();
        let key = InstanceKey::of(&s);
        let mut bytes = encode(&s);
        bytes[0] = 99;
        let err = decode(&key, &bytes).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { key: k, .. } if *k == key));
        let text = err.to_string();
        assert!(
            text.contains("leave-approval/NUM0001") && text.contains("version 99"),
            "{text}"
        );
    }

    #[test]
    fn bad_bytes_are_corrupt() {
        let key = InstanceKey::new("w", "s");
        for bytes in [&b""[..], b"\x01", b"\x01{not json", b"\x01[1,2]"] {
            assert!(
                matches!(decode(&key, bytes), Err(StoreError::Corrupt { .. })),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_value_under_the_wrong_key_is_corrupt() {
        let s = sample();
        let err = decode(&InstanceKey::new("other", "x"), &encode(&s)).unwrap_err();
        assert!(
            err.to_string().contains("belongs to leave-approval/NUM0001"),
            "{err}"
        );
    }
}
