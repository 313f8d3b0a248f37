//! The sample workflows and event streams of `workflows/`, compiled into the
//! binary so that `demo` needs no files.

/// (file name, YAML) of every sample workflow.
pub const WORKFLOWS: &[(&str, &str)] = &[
    (
        "customer-case.yaml",
        include_str!("../workflows/customer-case.yaml"),
    ),
    (
        "equipment-repair.yaml",
        include_str!("../workflows/equipment-repair.yaml"),
    ),
    (
        "leave-approval.yaml",
        include_str!("../workflows/leave-approval.yaml"),
    ),
    (
        "thesis-review.yaml",
        include_str!("../workflows/thesis-review.yaml"),
    ),
];

/// (file name, JSONL) of every sample event stream.
pub const EVENTS: &[(&str, &str)] = &[
    (
        "customer-case.jsonl",
        include_str!("../workflows/events/customer-case.jsonl"),
    ),
    (
        "equipment-repair.jsonl",
        include_str!("../workflows/events/equipment-repair.jsonl"),
    ),
    (
        "leave-approval.jsonl",
        include_str!("../workflows/events/leave-approval.jsonl"),
    ),
    (
        "thesis-review.jsonl",
        include_str!("../workflows/events/thesis-review.jsonl"),
    ),
];
