//! The stored form of an [`InstanceState`]: one format-version byte, then
//! the state as JSON.
//!
//! Why JSON behind a version byte rather than a compact binary format:
//! - the structs use `skip_serializing_if`/`default`, which self-describing
//!   formats honour and positional binary formats (bincode, postcard) break
//!   on; additive fields need no format bump;
//! - operators can read it (`flowbridge state get`, `psql` on the `jsonb`
//!   column) and no dependency is added;
//! - the size is dominated by ids (35-byte task ids, the dedupe window),
//!   which a binary format would store as the same strings: 1542 bytes for
//!   an instance six nodes in with a full dedupe window, 354 after its first
//!   event (`cargo bench --bench state` prints both); a binary format would
//!   save mostly the JSON punctuation and field names.
//!
//! The dedupe window (`applied`) holds 64-bit
//! [`fingerprint`](super::fingerprint)s of the eventIds (format 2), each a
//! 16-digit lowercase hex string — a string, as JSON tools such as jq round
//! numbers above 2^53 — written from a stack buffer. Format 1 stored the
//! eventIds themselves: 32 UUIDs made the same instance 2182 bytes (374
//! after the first event), and its PostgreSQL `jsonb` body 2478 bytes
//! against 1843 now (same bench, random UUIDs).
//!
//! The byte lets a release read earlier formats and migrate them on read
//! ([`decode_json`]; the next write stores the current one): format 1 is
//! read by fingerprinting its eventIds. A byte this build does not know is
//! [`StoreError::Corrupt`], never a panic or a guess.

use std::collections::BTreeMap;

use serde::Serialize;

use super::store::{InstanceKey, StoreError};
use super::{AiccIntent, DedupeWindow, FORMAT_VERSION, InstanceState, NodeState, Status};

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
        applied: &'a DedupeWindow,
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
/// state names that key. An earlier format is migrated: the state comes back
/// as [`FORMAT_VERSION`] (and is written so on its next write).
pub fn decode_json(key: &InstanceKey, format: u32, json: &[u8]) -> Result<InstanceState, StoreError> {
    let bad = |e: serde_json::Error| corrupt(key, format!("bad format-{format} JSON: {e}"));
    let state = match format {
        FORMAT_VERSION => serde_json::from_slice::<InstanceState>(json).map_err(bad)?,
        1 => from_format_1(json).map_err(bad)?,
        _ => {
            return Err(corrupt(
                key,
                format!("unknown format version {format} (this build reads 1 to {FORMAT_VERSION})"),
            ));
        }
    };
    if state.workflow != key.workflow || state.serial_number != key.serial_number {
        return Err(corrupt(
            key,
            format!("the value belongs to {}/{}", state.workflow, state.serial_number),
        ));
    }
    Ok(state)
}

/// Format 1 → 2: `applied` held the eventIds themselves; they become their
/// fingerprints, in the same order. Everything else is unchanged.
fn from_format_1(json: &[u8]) -> Result<InstanceState, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(json)?;
    let ids: Vec<String> = match value.as_object_mut().and_then(|o| o.remove("applied")) {
        Some(ids) => serde_json::from_value(ids)?,
        None => Vec::new(),
    };
    // Not an object: from_value says what it got instead.
    let mut state: InstanceState = serde_json::from_value(value)?;
    for id in &ids {
        state.remember(id);
    }
    state.format = FORMAT_VERSION;
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
    use crate::state::{AiccIntent, NodeState, Status, fingerprint};

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

    /// A value as a format-1 build (eventIds in `applied`) wrote it, byte for
    /// byte.
    const FORMAT_1: &[u8] = b"\x01{\"format\":1,\"workflow\":\"leave-approval\",\"serialNumber\":\"NUM0001\",\
        \"status\":\"active\",\"nodes\":{\"apply\":{\"visits\":1,\"latestTask\":\"fb-1\",\"anchor\":\"fb-1\"}},\
        \"positions\":{\"dean\":1},\"latestTodo\":\"fb-1\",\
        \"applied\":[\"e-0\",\"the-old-id\"],\"version\":3,\"updatedAtMs\":1700000000000}";

    #[test]
    fn format_1_is_migrated_to_fingerprints() {
        let key = InstanceKey::new("leave-approval", "NUM0001");
        let s = decode(&key, FORMAT_1).unwrap();
        assert!(s.has_applied("the-old-id") && s.has_applied("e-0"));
        assert!(!s.has_applied("e-1"));
        assert_eq!(
            s.applied.as_slice(),
            [fingerprint("e-0"), fingerprint("the-old-id")],
            "same order"
        );
        assert_eq!(s.format, FORMAT_VERSION);
        assert_eq!((s.version, s.updated_at_ms), (3, 1_700_000_000_000));
        assert_eq!(s.nodes["apply"].latest_task.as_deref(), Some("fb-1"));
        assert_eq!(s.latest_todo.as_deref(), Some("fb-1"));

        // Written back as format 2: hex fingerprints, not the ids.
        let bytes = encode(&s);
        assert_eq!(bytes[0], 2);
        let json: serde_json::Value = serde_json::from_slice(&bytes[1..]).unwrap();
        assert_eq!(json["format"], 2);
        assert_eq!(
            json["applied"],
            serde_json::json!(["0009419940bea044", "ef0266292e2d4c9e"])
        );
        assert_eq!(decode(&key, &bytes).unwrap(), s);

        // PostgreSQL's path: the format from its column, the JSON alone.
        assert_eq!(decode_json(&key, 1, &FORMAT_1[1..]).unwrap(), s);
        // Without `applied` (it had `serde(default)`): an empty window.
        let s = decode_json(
            &key,
            1,
            br#"{"format":1,"workflow":"leave-approval","serialNumber":"NUM0001","status":"active"}"#,
        )
        .unwrap();
        assert!(s.applied.is_empty());
    }

    #[test]
    fn formats_are_not_mixed() {
        let key = InstanceKey::new("w", "s");
        let v1 = br#"{"format":1,"workflow":"w","serialNumber":"s","status":"active","applied":["e-1"]}"#;
        let v2 = br#"{"format":2,"workflow":"w","serialNumber":"s","status":"active","applied":["d769bd57079dc641"]}"#;
        // Format 2 holds fingerprints only.
        let err = decode_json(&key, 2, v1).unwrap_err().to_string();
        assert!(
            err.contains("bad format-2 JSON") && err.contains("16 lowercase hex digits"),
            "{err}"
        );
        // In format 1 a hex-looking string is an eventId like any other.
        let s = decode_json(&key, 1, v2).unwrap();
        assert!(s.has_applied("d769bd57079dc641") && !s.has_applied("e-1"));
        // Both name the same id: fingerprint("e-1") is d769bd57079dc641.
        assert_eq!(
            decode_json(&key, 2, v2).unwrap(),
            decode_json(&key, 1, v1).unwrap()
        );
        // A format-1 `applied` that is not a list of strings is corrupt.
        let bad = br#"{"format":1,"workflow":"w","serialNumber":"s","status":"active","applied":[1]}"#;
        let err = decode_json(&key, 1, bad).unwrap_err().to_string();
        assert!(err.contains("bad format-1 JSON"), "{err}");
    }

    #[test]
    fn unknown_version_is_corrupt_and_names_the_key() {
        let s = sample();
        let key = InstanceKey::of(&s);
        for version in [0, 3, 99] {
            let mut bytes = encode(&s);
            bytes[0] = version;
            let err = decode(&key, &bytes).unwrap_err();
            assert!(matches!(&err, StoreError::Corrupt { key: k, .. } if *k == key));
            let text = err.to_string();
            assert!(
                text.contains("leave-approval/NUM0001") && text.contains(&format!("version {version} ")),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_bytes_are_corrupt() {
        let key = InstanceKey::new("w", "s");
        for bytes in [
            &b""[..],
            b"\x01",
            b"\x01{not json",
            b"\x01[1,2]",
            b"\x02",
            b"\x02{not json",
            b"\x02[1,2]",
        ] {
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
