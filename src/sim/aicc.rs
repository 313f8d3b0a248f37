//! The AICC simulator: `POST /baas/auth/v1.0/oauth2/token`,
//! `POST /service/AICC__Case/1.0.0/openapi/task` and `.../task/list`,
//! enforcing `seeds/aicc-create-task.txt`.
//!
//! Create: the token goes in `access-token`; the body is exactly
//! `{"taskInfo": {...}}` with only the documented fields, all strings;
//! [`contract::aicc::check_task_info`] must pass (UTF-8 byte limits,
//! required fields, `type`/`priority` enums, `type` → `relateId`, `dueDate`
//! format). Success answers `{"resCode": "0", "resMsg": "成功", "result":
//! {"taskId": …}}` with a fresh 20-character id; errors answer an HTTP
//! 4xx/5xx with `{"resCode": "<status>", "resMsg": …}` (AICC publishes no
//! list of task error codes; the simulator's codes are the HTTP status).
//!
//! List: `creatorId`, `start` and `limit` (1..=100) are required; `title`
//! is a substring match (AICC: fuzzy), the other filters exact.
//!
//! [`contract::aicc::check_task_info`]: crate::contract::aicc::check_task_info

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

use super::{Flavor, Shared, SimHandle, SimOptions, lock, lost_response, now_datetime};
use crate::contract::aicc::{
    AiccTaskInfo, CREATE_TASK_PATH, CreatedTask, Envelope, LIST_LIMIT_MAX, LIST_TASK_PATH, ListTasksResult,
    ListedTask, TOKEN_PATH, check_task_info,
};

/// The fields `taskInfo` may have (the seed's table).
const TASK_INFO_FIELDS: &[&str] = &[
    "title",
    "description",
    "type",
    "relateId",
    "ownerId",
    "contactId",
    "creatorId",
    "priority",
    "dueDate",
    "attachment",
];

/// The fields a `task/list` body may have.
const LIST_FIELDS: &[&str] = &[
    "title",
    "status",
    "priority",
    "ownerId",
    "type",
    "relateId",
    "start",
    "limit",
    "classification",
    "contactId",
    "creatorId",
    "startTime",
    "endTime",
];

/// A task the simulator created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimTask {
    /// The id AICC generated.
    pub task_id: String,
    /// The `taskInfo` as received.
    pub info: AiccTaskInfo,
    /// `YYYY-MM-DD HH:mm:ss`, UTC.
    pub created_date: String,
    /// Always `Pending` (nothing here changes status).
    pub status: String,
}

/// What the AICC simulator holds.
#[derive(Debug, Default)]
pub struct AiccBook {
    tasks: Vec<SimTask>,
}

/// A running AICC simulator.
pub type AiccSim = SimHandle<AiccBook>;

/// Starts an AICC simulator on `listener` (bind `127.0.0.1:0` for tests).
pub async fn spawn(listener: TcpListener, opts: SimOptions) -> anyhow::Result<AiccSim> {
    let routes = axum::Router::new()
        .route(TOKEN_PATH, post(super::token::<AiccBook>))
        .route(CREATE_TASK_PATH, post(create_task))
        .route(LIST_TASK_PATH, post(list_tasks))
        .route("/_sim/tasks", get(sim_tasks))
        .route("/_sim/todos", get(sim_tasks));
    super::serve(listener, Flavor::Aicc, opts, AiccBook::default(), routes).await
}

impl SimHandle<AiccBook> {
    /// Every created task, in order.
    pub fn tasks(&self) -> Vec<SimTask> {
        lock(&self.shared.book).tasks.clone()
    }
}

async fn sim_tasks(State(sim): State<Arc<Shared<AiccBook>>>) -> Json<Vec<SimTask>> {
    Json(lock(&sim.book).tasks.clone())
}

/// The `taskInfo` of a create body, or what is wrong with it.
fn parse_create(body: &[u8]) -> Result<AiccTaskInfo, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(k) = top.keys().find(|k| *k != "taskInfo") {
        return Err(format!(
            "unknown field `{k}`: the body is {{\"taskInfo\": {{...}}}}"
        ));
    }
    let Some(info) = top.get("taskInfo") else {
        return Err("taskInfo is required".into());
    };
    let Value::Object(fields) = info else {
        return Err("taskInfo must be an object".into());
    };
    if let Some(k) = fields.keys().find(|k| !TASK_INFO_FIELDS.contains(&k.as_str())) {
        return Err(format!("taskInfo.{k} is not a field of taskInfo"));
    }
    if let Some((k, _)) = fields.iter().find(|(_, v)| !v.is_string()) {
        return Err(format!("taskInfo.{k} must be a string"));
    }
    let info: AiccTaskInfo =
        serde_json::from_value(info.clone()).map_err(|e| format!("taskInfo is invalid: {e}"))?;
    let problems = check_task_info(&info);
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(text.join("; "));
    }
    Ok(info)
}

async fn create_task(State(sim): State<Arc<Shared<AiccBook>>>, headers: HeaderMap, body: Bytes) -> Response {
    let c = &sim.common;
    if let Some(resp) = c.inject_before().await {
        return resp;
    }
    if let Some(resp) = c.refuse_token(&headers).or_else(|| c.refuse_non_json(&headers)) {
        return resp;
    }
    let info = match parse_create(&body) {
        Ok(i) => i,
        Err(message) => return c.error(StatusCode::BAD_REQUEST, &message),
    };
    let task_id = {
        let mut book = lock(&sim.book);
        let task_id = format!("fbsim{:015}", book.tasks.len() + 1);
        book.tasks.push(SimTask {
            task_id: task_id.clone(),
            info,
            created_date: now_datetime(),
            status: "Pending".to_owned(),
        });
        task_id
    };
    if c.take_lose_response() {
        return lost_response();
    }
    Json(Envelope {
        res_code: "0".to_owned(),
        res_msg: Some("成功".to_owned()),
        result: Some(CreatedTask { task_id }),
    })
    .into_response()
}

/// Validated `task/list` filters.
struct ListQuery {
    filters: serde_json::Map<String, Value>,
    start: usize,
    limit: usize,
}

fn parse_list(body: &[u8]) -> Result<ListQuery, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(filters) = value else {
        return Err("the body must be a JSON object".into());
    };
    if let Some(k) = filters.keys().find(|k| !LIST_FIELDS.contains(&k.as_str())) {
        return Err(format!("{k} is not a filter of task/list"));
    }
    match filters.get("creatorId").and_then(Value::as_str) {
        Some(c) if !c.is_empty() => {}
        _ => return Err("creatorId is required".into()),
    }
    let start = filters
        .get("start")
        .and_then(Value::as_u64)
        .ok_or("start is required (a number from 0)")?;
    let limit = filters
        .get("limit")
        .and_then(Value::as_u64)
        .filter(|l| (1..=u64::from(LIST_LIMIT_MAX)).contains(l))
        .ok_or("limit is required (a number from 1 to 100)")?;
    Ok(ListQuery {
        start: usize::try_from(start).unwrap_or(usize::MAX),
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        filters,
    })
}

fn listed(t: &SimTask) -> ListedTask {
    ListedTask {
        task_id: t.task_id.clone(),
        title: Some(t.info.title.clone()),
        owner_id: Some(t.info.owner_id.clone()),
        creator_id: Some(t.info.creator_id.clone()),
        relate_id: t.info.relate_id.clone(),
        description: t.info.description.clone(),
        status: Some(t.status.clone()),
        created_date: Some(t.created_date.clone()),
    }
}

fn keep(t: &SimTask, q: &ListQuery) -> bool {
    q.filters.iter().all(|(k, v)| {
        let Some(want) = v.as_str() else {
            return true;
        };
        match k.as_str() {
            "title" => t.info.title.contains(want),
            "status" => t.status == want,
            "creatorId" | "ownerId" | "type" | "relateId" | "priority" | "contactId" => {
                t.info.get(k) == Some(want)
            }
            _ => true,
        }
    })
}

async fn list_tasks(State(sim): State<Arc<Shared<AiccBook>>>, headers: HeaderMap, body: Bytes) -> Response {
    let c = &sim.common;
    if let Some(resp) = c.inject_before().await {
        return resp;
    }
    if let Some(resp) = c.refuse_token(&headers).or_else(|| c.refuse_non_json(&headers)) {
        return resp;
    }
    let q = match parse_list(&body) {
        Ok(q) => q,
        Err(message) => return c.error(StatusCode::BAD_REQUEST, &message),
    };
    let result = {
        let book = lock(&sim.book);
        let matching: Vec<&SimTask> = book.tasks.iter().filter(|t| keep(t, &q)).collect();
        ListTasksResult {
            count: matching.len() as u64,
            task_list: matching
                .into_iter()
                .skip(q.start)
                .take(q.limit)
                .map(listed)
                .collect(),
        }
    };
    if c.take_lose_response() {
        return lost_response();
    }
    Json(Envelope {
        res_code: "0".to_owned(),
        res_msg: Some("成功".to_owned()),
        result: Some(result),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_checked_strictly() {
        let ok = br#"{"taskInfo":{"title":"t","ownerId":"o","creatorId":"c","priority":"Low"}}"#;
        assert!(parse_create(ok).is_ok());
        for (body, needle) in [
            (&br#"{"taskInfo":{"title":"t","ownerId":"o"}}"#[..], "creatorId"),
            (br#"{"taskInfo":{"title":"t","ownerId":"o","creatorId":"c","owner":"x"}}"#, "owner"),
            (br#"{"taskInfo":{"title":"t","ownerId":"o","creatorId":"c","priority":"Urgent"}}"#, "priority"),
            (br#"{"taskInfo":{"title":"t","ownerId":"o","creatorId":"c","type":"Case"}}"#, "relateId"),
            (br#"{"taskInfo":{"title":"t","ownerId":"o","creatorId":"c","dueDate":"2023-07-08T00:00:00"}}"#, "dueDate"),
            (br#"{"taskInfo":{"title":1,"ownerId":"o","creatorId":"c"}}"#, "title"),
            (br#"{"task":{}}"#, "task"),
            (br#"[1]"#, "object"),
        ] {
            let err = parse_create(body).unwrap_err();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        // 7 Chinese characters are 21 UTF-8 bytes: over ownerId's 20.
        let long = r#"{"taskInfo":{"title":"t","ownerId":"智慧校园管理员","creatorId":"c"}}"#;
        assert!(parse_create(long.as_bytes()).unwrap_err().contains("ownerId"));
    }

    #[test]
    fn list_requires_creator_start_and_a_bounded_limit() {
        assert!(parse_list(br#"{"creatorId":"c","start":0,"limit":100}"#).is_ok());
        assert!(parse_list(br#"{"start":0,"limit":10}"#).is_err());
        assert!(parse_list(br#"{"creatorId":"c","start":0,"limit":101}"#).is_err());
        assert!(parse_list(br#"{"creatorId":"c","limit":1}"#).is_err());
        assert!(parse_list(br#"{"creatorId":"c","start":0,"limit":1,"foo":1}"#).is_err());
    }
}
