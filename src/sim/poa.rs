//! The POA simulator: `POST /oauth2/token` and
//! `POST /apis/ttc/v1/transaction/poa/addTransaction`, enforcing
//! `seeds/poa-add-transaction.txt`.
//!
//! A batch is a JSON array; each item is processed on its own, in order,
//! and a failed item never stops the others. An item fails with:
//! - `400 <field> is null` (or another field problem) when
//!   [`contract::poa::check_item`] objects: required fields,
//!   `handlers`|`handlingGroup`, `transTypeName` with `autoCreateTransType`,
//!   enums of `actions[]`;
//! - `400 this app/transTypeCode does not exist` for an unknown appId (when
//!   [`SimOptions::app_ids`] lists them) or a transaction type that neither
//!   exists ([`SimOptions::known_trans_types`] or created earlier) nor is
//!   auto-created;
//! - `500 the app/transactionType is not enabled` for a type in
//!   [`SimOptions::disabled_trans_types`];
//! - `2003 the task already exists` for a taskId seen before;
//! - `2004 this task is not exist` when `previousTaskId` names no task.
//!
//! A first todo (no `previousTaskId`) opens a transaction, except that
//! first todos of one batch with equal (`transTypeCode`, `nodeId`,
//! `initiator`, `serialNumber`) share one; a chained todo joins the
//! transaction of its `previousTaskId`. The answer is `code` 0 with the
//! failed items in `data.errorIds`, exactly as documented. A body that is
//! not a JSON array answers HTTP 400 with `code` 400.
//!
//! [`contract::poa::check_item`]: crate::contract::poa::check_item

use std::collections::{HashMap, HashSet};
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

use super::{Flavor, Shared, SimHandle, SimOptions, lock, lost_response, now_ms};
use crate::contract::FieldProblem;
use crate::contract::poa::{
    ADD_TRANSACTION_PATH, ITEM_ALREADY_EXISTS, ITEM_BUSINESS_ERROR, ITEM_INVALID, ITEM_TASK_NOT_EXIST,
    PoaItem, PoaItemError, PoaResponse, PoaResponseData, TOKEN_PATH, check_item,
};

/// A todo the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimTodo {
    /// The caller's taskId.
    pub task_id: String,
    /// The transaction it belongs to.
    pub transaction_id: String,
    /// The todo it chains to; `None` for the first todo of a transaction.
    pub previous_task_id: Option<String>,
    /// Which request (1, 2, …) created it.
    pub batch: u64,
    /// When the simulator accepted it, ms since the Unix epoch (the end of
    /// the end-to-end latency the benchmark measures).
    #[serde(default)]
    pub accepted_at_ms: i64,
    /// The item as received.
    pub item: PoaItem,
}

/// A transaction and its chain of todos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimTransaction {
    /// `tx-000001`, `tx-000002`, … in order of creation.
    pub transaction_id: String,
    /// From the first todo.
    pub trans_type_code: String,
    /// From the first todo.
    pub initiator: Option<String>,
    /// From the first todo.
    pub serial_number: Option<String>,
    /// TaskIds in the order they joined: the first todo, then the chained.
    pub todos: Vec<String>,
}

/// What the POA simulator holds.
#[derive(Debug, Default)]
pub struct PoaBook {
    todos: Vec<SimTodo>,
    /// taskId → (index in `todos`, index in `transactions`).
    by_task: HashMap<String, (usize, usize)>,
    transactions: Vec<SimTransaction>,
    trans_types: HashSet<String>,
    batches: u64,
}

/// A running POA simulator.
pub type PoaSim = SimHandle<PoaBook>;

/// Starts a POA simulator on `listener` (bind `127.0.0.1:0` for tests).
pub async fn spawn(listener: TcpListener, opts: SimOptions) -> anyhow::Result<PoaSim> {
    let book = PoaBook {
        trans_types: opts.known_trans_types.iter().cloned().collect(),
        ..PoaBook::default()
    };
    let routes = axum::Router::new()
        .route(TOKEN_PATH, post(super::token::<PoaBook>))
        .route(ADD_TRANSACTION_PATH, post(add_transaction))
        .route("/_sim/todos", get(list_todos))
        .route("/_sim/transactions", get(list_transactions));
    super::serve(listener, Flavor::Poa, opts, book, routes).await
}

impl SimHandle<PoaBook> {
    /// Every accepted todo, in order.
    pub fn todos(&self) -> Vec<SimTodo> {
        lock(&self.shared.book).todos.clone()
    }

    /// (taskId, accepted_at_ms) of every accepted todo, in order: what
    /// latency measurements need, without cloning the items.
    pub fn accept_times(&self) -> Vec<(String, i64)> {
        lock(&self.shared.book)
            .todos
            .iter()
            .map(|t| (t.task_id.clone(), t.accepted_at_ms))
            .collect()
    }

    /// How many todos were accepted so far.
    pub fn todo_count(&self) -> usize {
        lock(&self.shared.book).todos.len()
    }

    /// Every transaction with its chain.
    pub fn transactions(&self) -> Vec<SimTransaction> {
        lock(&self.shared.book).transactions.clone()
    }

    /// The transaction holding `task_id`, if any.
    pub fn transaction_of(&self, task_id: &str) -> Option<SimTransaction> {
        let book = lock(&self.shared.book);
        let (_, tx) = *book.by_task.get(task_id)?;
        book.transactions.get(tx).cloned()
    }

    /// `addTransaction` requests processed so far.
    pub fn batches(&self) -> u64 {
        lock(&self.shared.book).batches
    }
}

async fn list_todos(State(sim): State<Arc<Shared<PoaBook>>>) -> Json<Vec<SimTodo>> {
    Json(lock(&sim.book).todos.clone())
}

async fn list_transactions(State(sim): State<Arc<Shared<PoaBook>>>) -> Json<Vec<SimTransaction>> {
    Json(lock(&sim.book).transactions.clone())
}

async fn add_transaction(
    State(sim): State<Arc<Shared<PoaBook>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let c = &sim.common;
    if let Some(resp) = c.inject_before().await {
        return resp;
    }
    if let Some(resp) = c.refuse_token(&headers).or_else(|| c.refuse_non_json(&headers)) {
        return resp;
    }
    if c.take_outer_error() {
        return Json(serde_json::json!({
            "took": 1, "timestamp": now_ms(), "code": -1, "message": "unknown error (simulated)"
        }))
        .into_response();
    }
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return c.error(StatusCode::BAD_REQUEST, "the body must be a JSON array of todos"),
        Err(e) => return c.error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")),
    };
    let errors = lock(&sim.book).apply(items, &c.opts);
    let message = if errors.is_empty() {
        "创建成功"
    } else {
        "创建中有异常数据"
    };
    if c.take_lose_response() {
        return lost_response();
    }
    Json(PoaResponse {
        took: Some(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)),
        timestamp: Some(now_ms()),
        code: 0,
        message: Some(message.to_owned()),
        data: Some(PoaResponseData { error_ids: errors }),
    })
    .into_response()
}

fn item_error(code: i64, task_id: Option<String>, message: impl Into<String>) -> PoaItemError {
    PoaItemError {
        code,
        task_id,
        message: Some(message.into()),
    }
}

/// A field problem in the seed's wording (`transTypeCode is null`,
/// `handlers and handlingGroup are all null`).
fn seed_message(p: &FieldProblem) -> String {
    if p.field == "handlers" {
        "handlers and handlingGroup are all null".to_owned()
    } else if p.message == "is null or empty" {
        format!("{} is null", p.field)
    } else {
        format!("{} {}", p.field, p.message)
    }
}

/// The fields the seed marks required (conditionals are checked apart).
const REQUIRED: &[&str] = &[
    "appId",
    "nodeId",
    "nodeName",
    "taskId",
    "taskName",
    "transTypeCode",
];

type GroupKey = (String, String, Option<String>, Option<String>);

impl PoaBook {
    /// Processes one batch; returns the failed items.
    fn apply(&mut self, items: Vec<Value>, opts: &SimOptions) -> Vec<PoaItemError> {
        self.batches += 1;
        let batch = self.batches;
        let accepted_at_ms = now_ms();
        let mut errors = Vec::new();
        let mut groups: HashMap<GroupKey, usize> = HashMap::new();
        for mut raw in items {
            let hint = raw.get("taskId").and_then(Value::as_str).map(str::to_owned);
            // A required field that is absent or null is reported like an
            // empty one: `<field> is null`, as the seed's samples show.
            if let Value::Object(fields) = &mut raw {
                for name in REQUIRED {
                    if fields.get(*name).is_none_or(Value::is_null) {
                        fields.insert((*name).to_owned(), Value::String(String::new()));
                    }
                }
            }
            let item: PoaItem = match serde_json::from_value(raw) {
                Ok(i) => i,
                Err(e) => {
                    errors.push(item_error(ITEM_INVALID, hint, format!("invalid todo: {e}")));
                    continue;
                }
            };
            let task_id = Some(item.task_id.clone());
            if let Some(p) = check_item(&item).first() {
                errors.push(item_error(ITEM_INVALID, task_id, seed_message(p)));
                continue;
            }
            if !opts.app_ids.is_empty() && !opts.app_ids.contains(&item.app_id) {
                errors.push(item_error(
                    ITEM_INVALID,
                    task_id,
                    "this app/transTypeCode does not exist",
                ));
                continue;
            }
            if !self.trans_types.contains(&item.trans_type_code) {
                if item.auto_create_trans_type == Some(true) {
                    self.trans_types.insert(item.trans_type_code.clone());
                } else {
                    errors.push(item_error(
                        ITEM_INVALID,
                        task_id,
                        "this app/transTypeCode does not exist",
                    ));
                    continue;
                }
            }
            if opts.disabled_trans_types.contains(&item.trans_type_code) {
                errors.push(item_error(
                    ITEM_BUSINESS_ERROR,
                    task_id,
                    "the app/transactionType is not enabled",
                ));
                continue;
            }
            if self.by_task.contains_key(&item.task_id) {
                errors.push(item_error(
                    ITEM_ALREADY_EXISTS,
                    task_id,
                    "the task already exists",
                ));
                continue;
            }
            let tx = match item.previous_task_id.as_deref() {
                Some(prev) => match self.by_task.get(prev) {
                    Some(&(_, tx)) => tx,
                    None => {
                        errors.push(item_error(ITEM_TASK_NOT_EXIST, task_id, "this task is not exist"));
                        continue;
                    }
                },
                None => {
                    let key = (
                        item.trans_type_code.clone(),
                        item.node_id.clone(),
                        item.initiator.clone(),
                        item.serial_number.clone(),
                    );
                    match groups.get(&key) {
                        Some(&tx) => tx,
                        None => {
                            let tx = self.transactions.len();
                            self.transactions.push(SimTransaction {
                                transaction_id: format!("tx-{:06}", tx + 1),
                                trans_type_code: item.trans_type_code.clone(),
                                initiator: item.initiator.clone(),
                                serial_number: item.serial_number.clone(),
                                todos: Vec::new(),
                            });
                            groups.insert(key, tx);
                            tx
                        }
                    }
                }
            };
            let transaction = &mut self.transactions[tx];
            transaction.todos.push(item.task_id.clone());
            self.by_task.insert(item.task_id.clone(), (self.todos.len(), tx));
            self.todos.push(SimTodo {
                task_id: item.task_id.clone(),
                transaction_id: transaction.transaction_id.clone(),
                previous_task_id: item.previous_task_id.clone(),
                batch,
                accepted_at_ms,
                item,
            });
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(task: &str, prev: Option<&str>) -> Value {
        let mut v = serde_json::json!({
            "appId": "app", "nodeId": "n1", "nodeName": "N1", "taskId": task, "taskName": "T",
            "transTypeCode": "TT", "transTypeName": "Type", "autoCreateTransType": true,
            "handlers": "u1", "initiator": "i", "serialNumber": "S1"
        });
        if let Some(p) = prev {
            v["previousTaskId"] = p.into();
        }
        v
    }

    #[test]
    fn book_applies_the_seed_rules_item_by_item() {
        let mut book = PoaBook::default();
        let opts = SimOptions::default();
        let mut no_handlers = item("t3", None);
        no_handlers.as_object_mut().unwrap().remove("handlers");
        let errors = book.apply(
            vec![
                item("t1", None),
                item("t2", Some("t1")),
                no_handlers,
                item("t4", Some("nope")),
                item("t1", None),
                serde_json::json!({"taskId": 5}),
            ],
            &opts,
        );
        let codes: Vec<(i64, Option<&str>)> = errors.iter().map(|e| (e.code, e.task_id.as_deref())).collect();
        assert_eq!(
            codes,
            [
                (400, Some("t3")),
                (2004, Some("t4")),
                (2003, Some("t1")),
                (400, None)
            ]
        );
        assert_eq!(
            errors[0].message.as_deref(),
            Some("handlers and handlingGroup are all null")
        );
        assert_eq!(book.transactions.len(), 1);
        assert_eq!(book.transactions[0].todos, ["t1", "t2"]);
    }

    #[test]
    fn first_todos_of_one_batch_with_equal_keys_share_a_transaction() {
        let mut book = PoaBook::default();
        let opts = SimOptions::default();
        let mut other_serial = item("c", None);
        other_serial["serialNumber"] = "S2".into();
        assert!(
            book.apply(vec![item("a", None), item("b", None), other_serial], &opts)
                .is_empty()
        );
        assert_eq!(book.transactions.len(), 2);
        assert_eq!(book.transactions[0].todos, ["a", "b"]);
        // The same key in a later batch opens a new transaction.
        assert!(book.apply(vec![item("d", None)], &opts).is_empty());
        assert_eq!(book.transactions.len(), 3);
    }

    #[test]
    fn unknown_and_disabled_transaction_types() {
        let mut book = PoaBook::default();
        let opts = SimOptions {
            known_trans_types: vec!["OFF".into()],
            disabled_trans_types: vec!["OFF".into()],
            ..SimOptions::default()
        };
        book.trans_types = opts.known_trans_types.iter().cloned().collect();
        let mut manual = item("m", None);
        manual["autoCreateTransType"] = false.into();
        manual["transTypeCode"] = "NEW".into();
        let mut off = item("o", None);
        off["transTypeCode"] = "OFF".into();
        let errors = book.apply(vec![manual, off], &opts);
        assert_eq!(errors[0].code, 400);
        assert_eq!(
            errors[0].message.as_deref(),
            Some("this app/transTypeCode does not exist")
        );
        assert_eq!(errors[1].code, 500);
    }
}
