//! The canonical node-transition event and its decoding.
//!
//! ```json
//! {"eventId": "e-1001", "workflow": "leave-approval", "serialNumber": "NUM0001",
//!  "from": "counselor", "to": "dean", "initiator": "smartadmin",
//!  "initiatorName": "智慧校园管理员", "assignees": ["t001"],
//!  "variables": {"studentName": "李雷", "days": 5},
//!  "occurredAt": "2026-11-21T08:00:00Z"}
//! ```
//! `from` is absent or null when an instance starts; `kind` is `transition`
//! (the default) or `terminate`. Unknown fields are kept in [`Event::extra`]
//! for templates. A decoding error names the field and the problem.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest identifier (eventId, workflow, serialNumber, node id) accepted, in
/// UTF-8 bytes. Longer values are rejected at decode rather than truncated.
pub const MAX_ID_BYTES: usize = 256;

/// What the event says happened to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The instance moved from node `from` to node `to`.
    #[default]
    Transition,
    /// The instance was cancelled upstream.
    Terminate,
}

/// A node-transition event.
///
/// Absent optional fields are not serialized, so to a template they are
/// undefined (an error under strict undefined) rather than `none`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event; derived from the source position when absent.
    #[serde(default)]
    pub event_id: String,
    pub workflow: String,
    pub serial_number: String,
    #[serde(default)]
    pub kind: EventKind,
    /// The node the instance left; `None` when the instance starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The node the instance entered; required unless `kind` is `terminate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_name: Option<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Fields this schema does not name, kept for templates (`event.<name>`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where an event was read from; gives events without an `eventId` a
/// stable one and goes into dead-letter headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// Line `line` (1-based) of a JSONL file.
    File { file: &'a str, line: usize },
    /// A Kafka record.
    Kafka {
        topic: &'a str,
        partition: i32,
        offset: i64,
    },
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { file, line } => write!(f, "{file}:{line}"),
            Source::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}/{partition}@{offset}"),
        }
    }
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .field { Some(f) => format!("field `{f}`: {}", .message), None => .message.clone() })]
pub struct DecodeError {
    /// The offending field (a JSON path such as `variables.days`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl DecodeError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

impl Event {
    /// Decodes one event from JSON bytes and checks what the schema cannot:
    /// non-empty identifiers within [`MAX_ID_BYTES`], `to` present for a
    /// transition. An absent `eventId` is derived from `source`.
    pub fn decode(bytes: &[u8], source: Source<'_>) -> Result<Event, DecodeError> {
        // The plain decoder first: tracking the path of every field costs
        // time on every event, and only a bad one needs the path. That one
        // is decoded again, with the path, for the message.
        let mut event: Event = match serde_json::from_slice(bytes) {
            Ok(event) => event,
            Err(_) => Self::decode_error(bytes)?,
        };
        if event.event_id.is_empty() {
            event.event_id = source.to_string();
        }
        event.check()?;
        Ok(event)
    }

    /// Decodes `bytes` that failed to decode, for an error naming the field.
    fn decode_error(bytes: &[u8]) -> Result<Event, DecodeError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let event = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // serde_json's message already names missing fields; the path
            // names the field for type errors ("invalid type: integer …").
            let message = strip_position(&inner.to_string());
            if path == "." || message.starts_with("missing field") {
                DecodeError { field: None, message }
            } else {
                DecodeError {
                    field: Some(path),
                    message,
                }
            }
        })?;
        // What the plain decoder also refuses: more after the event.
        de.end().map_err(|e| DecodeError {
            field: None,
            message: strip_position(&e.to_string()),
        })?;
        Ok(event)
    }

    fn check(&self) -> Result<(), DecodeError> {
        let ids = [
            ("eventId", Some(self.event_id.as_str())),
            ("workflow", Some(self.workflow.as_str())),
            ("serialNumber", Some(self.serial_number.as_str())),
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
        ];
        for (field, value) in ids {
            let Some(value) = value else { continue };
            if value.trim().is_empty() {
                return Err(DecodeError::field(field, "is empty"));
            }
            if value.len() > MAX_ID_BYTES {
                return Err(DecodeError::field(
                    field,
                    format!(
                        "is {} bytes, over the limit of {MAX_ID_BYTES} ({})",
                        value.len(),
                        crate::contract::preview(value)
                    ),
                ));
            }
        }
        if self.kind == EventKind::Transition && self.to.is_none() {
            return Err(DecodeError::field(
                "to",
                "is missing: a transition event needs the node the instance entered",
            ));
        }
        Ok(())
    }
}

/// serde_json appends " at line 1 column 17"; the position inside a one-line
/// event is noise next to the field path.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Source<'static> = Source::File {
        file: "events.jsonl",
        line: 7,
    };

    #[test]
    fn decodes_the_design_example_and_keeps_unknown_fields() {
        let json = r#"{"eventId": "e-1001", "workflow": "leave-approval", "serialNumber": "NUM0001",
            "from": "counselor", "to": "dean", "initiator": "smartadmin",
            "initiatorName": "智慧校园管理员", "assignees": ["t001"],
            "variables": {"studentName": "李雷", "days": 5},
            "occurredAt": "2026-11-21T08:00:00Z", "tenant": "north"}"#;
        let e = Event::decode(json.as_bytes(), SRC).unwrap();
        assert_eq!(e.event_id, "e-1001");
        assert_eq!(e.to.as_deref(), Some("dean"));
        assert_eq!(e.variables["days"], 5);
        assert_eq!(e.extra["tenant"], "north");
        assert_eq!(e.kind, EventKind::Transition);
    }

    #[test]
    fn missing_event_id_is_derived_from_the_source() {
        let json = r#"{"workflow": "w", "serialNumber": "s", "to": "a"}"#;
        let e = Event::decode(json.as_bytes(), SRC).unwrap();
        assert_eq!(e.event_id, "events.jsonl:7");
        let kafka = Source::Kafka {
            topic: "t",
            partition: 3,
            offset: 42,
        };
        assert_eq!(Event::decode(json.as_bytes(), kafka).unwrap().event_id, "t/3@42");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"workflow": 5, "serialNumber": "s", "to": "a"}"#,
                "field `workflow`: invalid type: integer `5`, expected a string",
            ),
            (r#"{"serialNumber": "s", "to": "a"}"#, "missing field `workflow`"),
            (
                r#"{"workflow": "w", "serialNumber": "s"}"#,
                "field `to`: is missing",
            ),
            (
                r#"{"workflow": "w", "serialNumber": " ", "to": "a"}"#,
                "field `serialNumber`: is empty",
            ),
            (
                r#"{"workflow": "w", "serialNumber": "s", "to": "a", "kind": "pause"}"#,
                "field `kind`: unknown variant `pause`",
            ),
            (
                r#"{"workflow": "w", "serialNumber": "s", "to": "a", "assignees": [1]}"#,
                "field `assignees[0]`: invalid type",
            ),
            ("not json", "expected ident"),
            (
                r#"{"workflow": "w", "serialNumber": "s", "to": "a"} {"workflow": "x"}"#,
                "trailing characters",
            ),
        ];
        for (json, expected) in cases {
            let err = Event::decode(json.as_bytes(), SRC).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{json}: got {err:?}");
        }
        let long = format!(
            r#"{{"workflow": "w", "serialNumber": "{}", "to": "a"}}"#,
            "x".repeat(300)
        );
        let err = Event::decode(long.as_bytes(), SRC).unwrap_err().to_string();
        assert!(err.contains("300 bytes, over the limit of 256"), "{err}");
    }

    #[test]
    fn terminate_needs_no_target_node() {
        let json = r#"{"workflow": "w", "serialNumber": "s", "kind": "terminate"}"#;
        assert_eq!(
            Event::decode(json.as_bytes(), SRC).unwrap().kind,
            EventKind::Terminate
        );
    }
}
