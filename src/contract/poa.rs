//! POA transaction center: `addTransaction` (`seeds/poa-add-transaction.txt`).
//!
//! Field names are the seed's field table (`transactionName`, `mHandleUrl`,
//! `mViewUrl`), not the misspellings of its sample (`transcationName`,
//! `mhandleUrl`).

use serde::{Deserialize, Serialize};

use super::FieldProblem;

/// Path of the create call below the POA base URL.
pub const ADD_TRANSACTION_PATH: &str = "/apis/ttc/v1/transaction/poa/addTransaction";
/// Path of the token endpoint below the POA base URL.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Longest taskId flowbridge sends (its deterministic ids are far shorter).
pub const TASK_ID_MAX_BYTES: usize = 64;

/// Item code: the item is invalid (a field is null, the app or transaction
/// type does not exist). Resending the same item cannot help.
pub const ITEM_INVALID: i64 = 400;
/// Item code: a business error (app or transaction type not enabled, …).
pub const ITEM_BUSINESS_ERROR: i64 = 500;
/// Item code: the task already exists (a resend of a created todo).
pub const ITEM_ALREADY_EXISTS: i64 = 2003;
/// Item code: the task named (e.g. by `previousTaskId`) does not exist.
pub const ITEM_TASK_NOT_EXIST: i64 = 2004;
/// Item code: the transaction does not exist.
pub const ITEM_TRANSACTION_NOT_EXIST: i64 = 2008;
/// Item code: the transaction does not exist (spelling of sibling calls).
pub const ITEM_TRANSACTION_NOT_EXISTS: i64 = 2009;

/// One item of an `addTransaction` batch: one todo.
///
/// `previousTaskId` absent = the first todo, which also opens the
/// transaction; present = a todo chained into the transaction of that task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoaItem {
    pub app_id: String,
    pub node_id: String,
    pub node_name: String,
    pub task_id: String,
    pub task_name: String,
    pub trans_type_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trans_type_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_trans_type: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_delegate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_summary: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m_handle_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m_view_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<PoaAction>>,
}

/// One custom operation (`actions[]`) on a todo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoaAction {
    /// `get`, `post` or `put`; required when `optType` is 0 (api).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1 = page, 0 = api.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_type: Option<i64>,
    /// One of [`ACTION_TYPES`].
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_node_key: Option<String>,
    /// 0 = may not be merged, 1 = may be merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_merge: Option<i64>,
}

/// The documented values of `actions[].type`.
pub const ACTION_TYPES: &[&str] = &[
    "HANDLE",
    "BREAK_UP",
    "REVOKE",
    "HANG_UP",
    "ACTIVE",
    "CIRCULARIZE",
    "TRANSFER",
    "PROMOTER",
    "HANDLEDR",
    "DEAL",
    "ALL",
];

/// The documented values of `actions[].method`.
pub const ACTION_METHODS: &[&str] = &["get", "post", "put"];

/// Response of every POA write call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoaResponse {
    #[serde(default)]
    pub took: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// 0 = the call was processed (items may still have failed).
    pub code: i64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<PoaResponseData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoaResponseData {
    #[serde(default)]
    pub error_ids: Vec<PoaItemError>,
}

/// One failed item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoaItemError {
    pub code: i64,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Checks one item against the seed's rules: required fields, the
/// `handlers`/`handlingGroup` and `autoCreateTransType`/`transTypeName`
/// conditionals, the documented enums, and the taskId length.
///
/// `previousTaskId` existence is the server's business (item code 2004).
pub fn check_item(item: &PoaItem) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for (field, value) in [
        ("appId", &item.app_id),
        ("nodeId", &item.node_id),
        ("nodeName", &item.node_name),
        ("taskId", &item.task_id),
        ("taskName", &item.task_name),
        ("transTypeCode", &item.trans_type_code),
    ] {
        if value.trim().is_empty() {
            problems.push(FieldProblem::new(field, "is null or empty"));
        }
    }
    if let Err(p) = super::check_bytes("taskId", &item.task_id, TASK_ID_MAX_BYTES) {
        problems.push(p);
    }
    if is_blank(&item.handlers) && is_blank(&item.handling_group) {
        problems.push(FieldProblem::new(
            "handlers",
            "and `handlingGroup` are both empty: one of them is required",
        ));
    }
    if item.auto_create_trans_type == Some(true) && is_blank(&item.trans_type_name) {
        problems.push(FieldProblem::new(
            "transTypeName",
            "is required when `autoCreateTransType` is true",
        ));
    }
    if let Some(v) = item.can_delegate
        && v != 0
        && v != 1
    {
        problems.push(FieldProblem::new("canDelegate", format!("is {v}, not 0 or 1")));
    }
    if let Some(prev) = &item.previous_task_id
        && prev.trim().is_empty()
    {
        problems.push(FieldProblem::new(
            "previousTaskId",
            "is empty: omit it for a first todo",
        ));
    }
    for (i, action) in item.actions.iter().flatten().enumerate() {
        problems.extend(check_action(i, action));
    }
    problems
}

fn check_action(i: usize, a: &PoaAction) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let field = |name: &str| format!("actions[{i}].{name}");
    match a.opt_type {
        Some(0) => match a.method.as_deref() {
            None | Some("") => problems.push(FieldProblem::new(
                field("method"),
                "is required when `optType` is 0 (api)",
            )),
            Some(m) if !ACTION_METHODS.contains(&m) => problems.push(FieldProblem::new(
                field("method"),
                format!("is \"{m}\", not one of get, post, put"),
            )),
            Some(_) => {}
        },
        Some(1) | None => {}
        Some(v) => problems.push(FieldProblem::new(
            field("optType"),
            format!("is {v}, not 0 (api) or 1 (page)"),
        )),
    }
    if let Some(t) = a.kind.as_deref()
        && !ACTION_TYPES.contains(&t)
    {
        problems.push(FieldProblem::new(
            field("type"),
            format!("is \"{t}\", not one of {}", ACTION_TYPES.join(", ")),
        ));
    }
    if let Some(v) = a.allow_merge
        && v != 0
        && v != 1
    {
        problems.push(FieldProblem::new(
            field("allowMerge"),
            format!("is {v}, not 0 or 1"),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> PoaItem {
        PoaItem {
            app_id: "app".into(),
            node_id: "n1".into(),
            node_name: "Node 1".into(),
            task_id: "t1".into(),
            task_name: "Task 1".into(),
            trans_type_code: "TT".into(),
            handlers: Some("smartadmin".into()),
            ..PoaItem::default()
        }
    }

    #[test]
    fn field_names_are_the_seed_table_spellings() {
        let mut item = valid();
        item.transaction_name = Some("x".into());
        item.m_handle_url = Some("u".into());
        item.m_view_url = Some("v".into());
        item.previous_task_id = Some("t0".into());
        let json = serde_json::to_value(&item).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "transactionName",
            "mHandleUrl",
            "mViewUrl",
            "previousTaskId",
            "appId",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"transcationName"));
    }

    #[test]
    fn conditionals_are_enforced() {
        assert!(check_item(&valid()).is_empty());
        let mut no_handlers = valid();
        no_handlers.handlers = None;
        assert_eq!(check_item(&no_handlers)[0].field, "handlers");
        no_handlers.handling_group = Some("g1".into());
        assert!(check_item(&no_handlers).is_empty());

        let mut auto = valid();
        auto.auto_create_trans_type = Some(true);
        assert_eq!(check_item(&auto)[0].field, "transTypeName");
    }
}
