//! Huawei AICC: create task (`seeds/aicc-create-task.txt`).
//!
//! Byte limits are UTF-8 bytes, not characters.

use serde::{Deserialize, Serialize};

use super::{FieldProblem, check_bytes, check_datetime};

/// Path of the create call below the AICC base URL.
pub const CREATE_TASK_PATH: &str = "/service/AICC__Case/1.0.0/openapi/task";
/// Path of the list call, used to reconcile creates whose outcome is unknown.
pub const LIST_TASK_PATH: &str = "/service/AICC__Case/1.0.0/openapi/task/list";
/// Path of the token endpoint below the AICC base URL.
pub const TOKEN_PATH: &str = "/baas/auth/v1.0/oauth2/token";

/// The only documented value of `type`.
pub const TYPE_CASE: &str = "Case";
/// The documented values of `priority`.
pub const PRIORITIES: &[&str] = &["Critical", "High", "Medium", "Low"];

/// (field, UTF-8 byte limit, required) as the seed's table gives them.
pub const LIMITS: &[(&str, usize, bool)] = &[
    ("title", 128, true),
    ("description", 20_000, false),
    ("relateId", 20, false),
    ("ownerId", 20, true),
    ("contactId", 20, false),
    ("creatorId", 20, true),
    ("priority", 128, false),
    ("attachment", 255, false),
];

/// The limit of one field, if it has one.
pub fn byte_limit(field: &str) -> Option<usize> {
    LIMITS.iter().find(|(f, _, _)| *f == field).map(|(_, l, _)| *l)
}

/// The `taskInfo` object of a create-task request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AiccTaskInfo {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relate_id: Option<String>,
    pub owner_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    pub creator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
}

impl AiccTaskInfo {
    /// The value of a field by its API name.
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "title" => Some(&self.title),
            "description" => self.description.as_deref(),
            "type" => self.kind.as_deref(),
            "relateId" => self.relate_id.as_deref(),
            "ownerId" => Some(&self.owner_id),
            "contactId" => self.contact_id.as_deref(),
            "creatorId" => Some(&self.creator_id),
            "priority" => self.priority.as_deref(),
            "dueDate" => self.due_date.as_deref(),
            "attachment" => self.attachment.as_deref(),
            _ => None,
        }
    }
}

/// Request body of `POST task`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTaskRequest {
    pub task_info: AiccTaskInfo,
}

/// The AICC envelope: `resCode` "0" is success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub res_code: String,
    #[serde(default)]
    pub res_msg: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
}

/// `result` of a successful create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTask {
    pub task_id: String,
}

/// Request body of `POST task/list`: the filters a reconcile needs.
///
/// `start`, `limit` (1..=100) and `creatorId` are required; `title` is a
/// fuzzy match on AICC's side, so callers re-check titles exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    pub creator_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relate_id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// First row, from 0.
    pub start: u32,
    /// Rows wanted, 1..=[`LIST_LIMIT_MAX`].
    pub limit: u32,
}

/// The largest `limit` `task/list` accepts.
pub const LIST_LIMIT_MAX: u32 = 100;

/// `result` of `task/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksResult {
    #[serde(default)]
    pub task_list: Vec<ListedTask>,
    /// How many tasks match in total (more than `taskList` when paged).
    #[serde(default)]
    pub count: u64,
}

/// One task of a `task/list` answer; only the fields a reconcile compares
/// (unknown fields are ignored, AICC returns many more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListedTask {
    /// The task id (the docs call it `taskId`; `id` is accepted too).
    #[serde(alias = "id")]
    pub task_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `YYYY-MM-DD HH:mm:ss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
}

/// Checks a single field's value against the contract (limit, enum, format).
pub fn check_field(field: &str, value: &str) -> Result<(), FieldProblem> {
    let name = format!("taskInfo.{field}");
    if let Some(limit) = byte_limit(field) {
        check_bytes(&name, value, limit)?;
    }
    match field {
        "type" if value != TYPE_CASE => Err(FieldProblem::new(
            name,
            format!("is \"{value}\"; the only documented value is \"{TYPE_CASE}\""),
        )),
        "priority" if !PRIORITIES.contains(&value) => Err(FieldProblem::new(
            name,
            format!("is \"{value}\", not one of {}", PRIORITIES.join(", ")),
        )),
        "dueDate" => check_datetime(&name, value),
        _ => Ok(()),
    }
}

/// Checks a whole `taskInfo`: required fields, limits, enums, the
/// `type` → `relateId` conditional and the `dueDate` format.
pub fn check_task_info(info: &AiccTaskInfo) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for (field, _, required) in LIMITS {
        match info.get(field) {
            Some(v) if v.is_empty() && *required => {
                problems.push(FieldProblem::new(format!("taskInfo.{field}"), "is required"))
            }
            Some(v) => problems.extend(check_field(field, v).err()),
            None if *required => problems.push(FieldProblem::new(format!("taskInfo.{field}"), "is required")),
            None => {}
        }
    }
    for field in ["type", "dueDate"] {
        if let Some(v) = info.get(field) {
            problems.extend(check_field(field, v).err());
        }
    }
    if info.kind.is_some() && info.relate_id.as_deref().is_none_or(str::is_empty) {
        problems.push(FieldProblem::new(
            "taskInfo.relateId",
            "is required when `type` is set",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sample_is_valid_and_round_trips() {
        let body = r#"{"taskInfo":{"title":"test002","description":"test001","type":"Case",
            "ownerId":"10gg00000148QvgpaLAm","relateId":"c6m80000014iXKHqDw3c",
            "dueDate":"2023-07-08 00:00:00","contactId":"ciIy0000013y7cC8T2rA",
            "priority":"Low","creatorId":"10gg00000148QvgpaLAm"}}"#;
        let req: CreateTaskRequest = serde_json::from_str(body).unwrap();
        assert!(check_task_info(&req.task_info).is_empty());
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["taskInfo"]["type"], "Case");
        assert_eq!(back["taskInfo"]["relateId"], "c6m80000014iXKHqDw3c");
    }

    #[test]
    fn type_requires_relate_id_and_enums_hold() {
        let info = AiccTaskInfo {
            title: "t".into(),
            owner_id: "o".into(),
            creator_id: "c".into(),
            kind: Some("Case".into()),
            priority: Some("Urgent".into()),
            ..Default::default()
        };
        let fields: Vec<String> = check_task_info(&info).into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["taskInfo.priority", "taskInfo.relateId"]);
    }
}
