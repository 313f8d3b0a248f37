//! The workflow YAML as written: raw serde structs, strict about keys
//! (`deny_unknown_fields`) and carrying the line/column of every value so
//! that [`super::compile`] can point at the offending place.
//!
//! See `docs/workflows.md` for the schema with a commented example.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Where in a workflow file something was written (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Self {
        Pos {
            line: s.referenced.line(),
            col: s.referenced.column(),
        }
    }
}

/// A whole workflow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// The workflow id events name in `workflow`.
    pub workflow: Spanned<String>,
    /// Human name, used in diagrams and summaries.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Todo settings shared by every task node; a node's `todo` overrides
    /// them field by field.
    #[serde(default)]
    pub defaults: RawTodo,
    pub nodes: Vec<RawNode>,
    #[serde(default)]
    pub transitions: Vec<RawTransition>,
}

/// Kinds of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Where every instance begins; exactly one per workflow.
    Start,
    /// A human task: entering it creates a todo (POA) or a task (AICC).
    Task,
    /// Exclusive (XOR) gateway: the instance leaves by one of its branches.
    Exclusive,
    /// Parallel gateway that opens branches; names its join in `join`.
    ParallelSplit,
    /// Parallel gateway where the branches of its split meet again.
    ParallelJoin,
    /// Entering an end node completes the instance.
    End,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Start => "start",
            NodeKind::Task => "task",
            NodeKind::Exclusive => "exclusive",
            NodeKind::ParallelSplit => "parallel_split",
            NodeKind::ParallelJoin => "parallel_join",
            NodeKind::End => "end",
        }
    }
}

/// Which system a task node's todo goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Poa,
    Aicc,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Poa => "poa",
            Target::Aicc => "aicc",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub id: Spanned<String>,
    pub kind: Spanned<NodeKind>,
    /// Display name; the POA `nodeName` default. Defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// For a `parallel_split`: the id of its `parallel_join`.
    #[serde(default)]
    pub join: Option<Spanned<String>>,
    /// For a `task`: overrides of the workflow's `defaults`.
    #[serde(default)]
    pub todo: Option<RawTodo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransition {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    /// Shown on the edge in diagrams (e.g. the branch condition).
    #[serde(default)]
    pub label: Option<String>,
}

/// What a task node creates: the target and the field mappings per target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTodo {
    #[serde(default)]
    pub target: Option<Spanned<Target>>,
    #[serde(default)]
    pub poa: Option<RawPoa>,
    #[serde(default)]
    pub aicc: Option<RawAicc>,
}

/// A field's value as written: a literal, or a string that is a template
/// when it contains `{{` or `{%`, or a list of those.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<RawValue>),
}

impl RawValue {
    pub fn describe(&self) -> &'static str {
        match self {
            RawValue::Bool(_) => "a boolean",
            RawValue::Int(_) => "an integer",
            RawValue::Str(_) => "a string",
            RawValue::List(_) => "a list",
        }
    }
}

/// Declares a struct of optional spanned field mappings, one per API field,
/// and `entries()` listing the ones that are set with their API names.
macro_rules! raw_fields {
    ($(#[$meta:meta])* $name:ident { $($field:ident => $api:literal,)* } $($extra:tt)*) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                #[serde(rename = $api, default)]
                pub $field: Option<Spanned<RawValue>>,
            )*
            $($extra)*
        }

        impl $name {
            /// Every API field name this mapping can set.
            pub const FIELDS: &'static [&'static str] = &[$($api),*];

            /// The fields that are set, with their API names.
            pub fn entries(&self) -> Vec<(&'static str, &Spanned<RawValue>)> {
                let mut v = Vec::new();
                $(if let Some(x) = &self.$field { v.push(($api, x)); })*
                v
            }
        }
    };
}

raw_fields!(
    /// POA `addTransaction` item mappings (the seed's field table).
    RawPoa {
        app_id => "appId",
        node_id => "nodeId",
        node_name => "nodeName",
        task_id => "taskId",
        task_name => "taskName",
        trans_type_code => "transTypeCode",
        trans_type_name => "transTypeName",
        auto_create_trans_type => "autoCreateTransType",
        handlers => "handlers",
        handling_group => "handlingGroup",
        previous_task_id => "previousTaskId",
        can_delegate => "canDelegate",
        initiator => "initiator",
        initiator_name => "initiatorName",
        serial_number => "serialNumber",
        task_summary => "taskSummary",
        time_out => "timeOut",
        transaction_name => "transactionName",
        view_url => "viewUrl",
        handle_url => "handleUrl",
        m_handle_url => "mHandleUrl",
        m_view_url => "mViewUrl",
    }
    /// Custom operations; a node's list replaces the defaults' list.
    #[serde(default)]
    pub actions: Option<Vec<RawPoaAction>>,
);

raw_fields!(
    /// One POA `actions[]` entry.
    RawPoaAction {
        method => "method",
        name => "name",
        opt_type => "optType",
        kind => "type",
        url => "url",
        next_node_key => "nextNodeKey",
        allow_merge => "allowMerge",
    }
);

raw_fields!(
    /// AICC `taskInfo` mappings (the seed's table).
    RawAicc {
        title => "title",
        description => "description",
        kind => "type",
        relate_id => "relateId",
        owner_id => "ownerId",
        contact_id => "contactId",
        creator_id => "creatorId",
        priority => "priority",
        due_date => "dueDate",
        attachment => "attachment",
    }
);

/// Parses one workflow file. Errors carry the position serde-saphyr reports.
pub fn parse(text: &str) -> Result<RawWorkflow, (Pos, String)> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                line: l.line(),
                col: l.column(),
            })
            .unwrap_or(Pos { line: 1, col: 1 });
        // serde-saphyr ends its message with " at line L, column C"; the
        // position is already printed in front as `file:L:C:`.
        let message = e.without_snippet().to_string();
        let suffix = format!(" at line {}, column {}", pos.line, pos.col);
        let message = message
            .strip_suffix(&suffix)
            .map(str::to_owned)
            .unwrap_or(message);
        (pos, message)
    })
}
