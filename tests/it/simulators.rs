//! The simulators enforce the seeds: raw HTTP against them on 127.0.0.1.

use std::time::Duration;

use flowbridge::sim::{Faults, SimOptions, SimStats};
use serde_json::{Value, json};

use crate::sim_support::{aicc_sim, poa_sim};

const ADD: &str = "/apis/ttc/v1/transaction/poa/addTransaction";
const TASK: &str = "/service/AICC__Case/1.0.0/openapi/task";
const LIST: &str = "/service/AICC__Case/1.0.0/openapi/task/list";

async fn token(client: &reqwest::Client, base: &str, path: &str) -> String {
    let resp: Value = client
        .post(format!("{base}{path}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "flowbridge"),
            ("client_secret", "flowbridge-sim-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp["expires_in"].as_u64().unwrap() >= 1, "{resp}");
    resp["access_token"].as_str().unwrap().to_owned()
}

async fn post_json(client: &reqwest::Client, url: String, auth: (&str, &str), body: Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .header(auth.0, auth.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `Bearer <token>` from the POA simulator's token endpoint.
async fn poa_bearer(client: &reqwest::Client, base: &str) -> String {
    format!("Bearer {}", token(client, base, "/oauth2/token").await)
}

fn item(task: &str) -> Value {
    json!({
        "appId": "GzqhyfpMLSEexyO78bDgO-UWlK6PwOyAE", "nodeId": "NODE0001", "nodeName": "节点1",
        "taskId": task, "taskName": "待办名称", "transTypeCode": "TTCODE0001", "transTypeName": "事务类型0001",
        "autoCreateTransType": true, "handlers": "smartadmin", "initiator": "smartadmin", "serialNumber": "NUM0001"
    })
}

#[tokio::test]
async fn poa_checks_every_item_and_answers_error_ids_as_documented() {
    let sim = poa_sim(SimOptions::default()).await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let bearer = poa_bearer(&c, &base).await;
    let auth = ("authorization", bearer.as_str());

    let mut no_handlers = item("TTTT-PL-004");
    no_handlers["handlers"] = json!("");
    let mut no_type_code = item("TTTT-PL-002");
    no_type_code.as_object_mut().unwrap().remove("transTypeCode");
    let mut no_type_name = item("TTTT-PL-005");
    no_type_name.as_object_mut().unwrap().remove("transTypeName");
    let chained = json!({
        "previousTaskId": "TASK0001", "appId": "GzqhyfpMLSEexyO78bDgO-UWlK6PwOyAE", "handlers": "smartadmin",
        "initiator": "smartadmin", "nodeId": "NODE0002", "nodeName": "节点2", "taskId": "TASK0002",
        "taskName": "待办名称0002", "transTypeCode": "TTCODE0001"
    });
    let mut orphan = chained.clone();
    orphan["taskId"] = json!("TASK0003");
    orphan["previousTaskId"] = json!("NO-SUCH-TASK");
    let body = json!([
        item("TASK0001"),
        chained,
        no_type_code,
        no_handlers,
        no_type_name,
        orphan,
        item("TASK0001")
    ]);
    let (status, resp) = post_json(&c, format!("{base}{ADD}"), auth, body).await;

    assert_eq!(status, 200);
    assert_eq!(resp["code"], 0);
    assert_eq!(resp["message"], "创建中有异常数据");
    assert!(resp["took"].is_i64() && resp["timestamp"].is_i64());
    assert_eq!(
        resp["data"]["errorIds"],
        json!([
            {"code": 400, "taskId": "TTTT-PL-002", "message": "transTypeCode is null"},
            {"code": 400, "taskId": "TTTT-PL-004", "message": "handlers and handlingGroup are all null"},
            {"code": 400, "taskId": "TTTT-PL-005",
             "message": "transTypeName is required when `autoCreateTransType` is true"},
            {"code": 2004, "taskId": "TASK0003", "message": "this task is not exist"},
            {"code": 2003, "taskId": "TASK0001", "message": "the task already exists"}
        ])
    );
    // The chain, over the control route too.
    let txs: Value = c
        .get(format!("{base}/_sim/transactions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(txs[0]["todos"], json!(["TASK0001", "TASK0002"]));
    assert_eq!(txs.as_array().unwrap().len(), 1);
    let todos: Value = c
        .get(format!("{base}/_sim/todos"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(todos[1]["previousTaskId"], "TASK0001");
    assert_eq!(todos[1]["item"]["nodeName"], "节点2");

    // A body that is not an array is refused as a whole.
    let (status, resp) = post_json(&c, format!("{base}{ADD}"), auth, item("X")).await;
    assert_eq!((status, resp["code"].as_i64()), (400, Some(400)));
}

#[tokio::test]
async fn poa_refuses_missing_wrong_and_expired_tokens() {
    let sim = poa_sim(SimOptions {
        faults: Faults {
            token_lifetime_ms: 50,
            ..Faults::default()
        },
        ..SimOptions::default()
    })
    .await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let url = format!("{base}{ADD}");
    let resp = c.post(&url).json(&json!([])).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, _) = post_json(&c, url.clone(), ("authorization", "Bearer nope"), json!([])).await;
    assert_eq!(status, 401);
    let t = token(&c, &base, "/oauth2/token").await;
    // The right token without the prefix is not accepted either.
    let (status, _) = post_json(&c, url.clone(), ("authorization", &t), json!([])).await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {t}");
    let (status, resp) = post_json(&c, url.clone(), ("authorization", &bearer), json!([])).await;
    assert_eq!((status, resp["code"].as_i64()), (200, Some(0)));
    tokio::time::sleep(Duration::from_millis(80)).await;
    let (status, resp) = post_json(&c, url, ("authorization", &bearer), json!([])).await;
    assert_eq!(status, 401);
    assert_eq!(resp["message"], "token expired");

    // Wrong client secret, wrong grant.
    let bad = c
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "flowbridge"),
            ("client_secret", "guess"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let bad = c
        .post(format!("{base}/oauth2/token"))
        .form(&[("grant_type", "password"), ("client_id", "flowbridge")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let stats: SimStats = c
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.unauthorized, 4);
    assert_eq!(stats.token_refused, 2);
}

#[tokio::test]
async fn poa_scope_is_enforced_when_required() {
    let sim = poa_sim(SimOptions {
        required_scope: Some("ttc:v1:writeTtc".into()),
        ..SimOptions::default()
    })
    .await;
    let c = reqwest::Client::new();
    let url = format!("{}/oauth2/token", sim.base_url());
    let form = |scope: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", "flowbridge"),
            ("client_secret", "flowbridge-sim-secret"),
            ("scope", scope),
        ]
    };
    let without = c.post(&url).form(&form("other")).send().await.unwrap();
    assert_eq!(without.status().as_u16(), 400);
    let with = c
        .post(&url)
        .form(&form("ttc:v1:writeTtc,ttc:v1:writeTransaction"))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status().as_u16(), 200);
}

#[tokio::test]
async fn aicc_enforces_byte_limits_enums_dates_and_generates_ids() {
    let sim = aicc_sim(SimOptions::default()).await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let t = token(&c, &base, "/baas/auth/v1.0/oauth2/token").await;
    let auth = ("access-token", t.as_str());
    let sample = json!({"taskInfo": {
        "title": "test002", "description": "test001", "type": "Case", "ownerId": "10gg00000148QvgpaLAm",
        "relateId": "c6m80000014iXKHqDw3c", "dueDate": "2023-07-08 00:00:00",
        "contactId": "ciIy0000013y7cC8T2rA", "priority": "Low", "creatorId": "10gg00000148QvgpaLAm"
    }});
    let (status, resp) = post_json(&c, format!("{base}{TASK}"), auth, sample.clone()).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["resCode"], "0");
    let id = resp["result"]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20);

    for (field, value, needle) in [
        // 7 Chinese characters = 21 UTF-8 bytes, over 20 (7 chars would fit).
        ("ownerId", json!("智慧校园管理员"), "ownerId"),
        ("title", json!("题".repeat(43)), "title"),
        ("priority", json!("Urgent"), "priority"),
        ("type", json!("Ticket"), "type"),
        ("dueDate", json!("2023/07/08 00:00:00"), "dueDate"),
        ("creatorId", json!(""), "creatorId"),
        ("relateId", Value::Null, "relateId"),
        ("color", json!("red"), "color"),
    ] {
        let mut body = sample.clone();
        if value.is_null() {
            body["taskInfo"].as_object_mut().unwrap().remove(field);
        } else {
            body["taskInfo"][field] = value;
        }
        let (status, resp) = post_json(&c, format!("{base}{TASK}"), auth, body).await;
        assert_eq!(status, 400, "{field}: {resp}");
        assert_eq!(resp["resCode"], "400");
        assert!(
            resp["resMsg"].as_str().unwrap().contains(needle),
            "{field}: {resp}"
        );
    }
    let (status, _) = post_json(
        &c,
        format!("{base}{TASK}"),
        ("access-token", "forged"),
        sample.clone(),
    )
    .await;
    assert_eq!(status, 401);
    // AICC wants the raw token in access-token, not an Authorization header.
    let bearer = format!("Bearer {t}");
    let (status, _) = post_json(
        &c,
        format!("{base}{TASK}"),
        ("authorization", &bearer),
        sample.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(sim.tasks().len(), 1);

    // task/list finds it by the reconcile filters; limit is bounded.
    let filters = json!({"creatorId": "10gg00000148QvgpaLAm", "title": "test0", "relateId": "c6m80000014iXKHqDw3c",
                         "start": 0, "limit": 100});
    let (status, resp) = post_json(&c, format!("{base}{LIST}"), auth, filters.clone()).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["result"]["count"], 1);
    assert_eq!(resp["result"]["taskList"][0]["taskId"], id.as_str());
    let mut over = filters.clone();
    over["limit"] = json!(101);
    let (status, _) = post_json(&c, format!("{base}{LIST}"), auth, over).await;
    assert_eq!(status, 400);
    let mut other = filters;
    other["creatorId"] = json!("someone-else");
    let (_, resp) = post_json(&c, format!("{base}{LIST}"), auth, other).await;
    assert_eq!(resp["result"]["count"], 0);
}

#[tokio::test]
async fn faults_are_controlled_over_http() {
    let sim = aicc_sim(SimOptions::default()).await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let t = token(&c, &base, "/baas/auth/v1.0/oauth2/token").await;
    let now: Value = c
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"fail_next": 1, "retry_after_secs": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["fail_next"], 1);
    let resp = c
        .post(format!("{base}{LIST}"))
        .header("access-token", &t)
        .json(&json!({"creatorId": "c", "start": 0, "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    let typo = c
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"fail_nxt": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status().as_u16(), 400);
    assert_eq!(sim.faults().fail_next, 0);
}

#[tokio::test]
async fn an_outage_armed_for_a_later_request_starts_there_and_ends_by_itself() {
    let sim = poa_sim(SimOptions::default()).await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let bearer = poa_bearer(&c, &base).await;
    let auth = ("authorization", bearer.as_str());
    let armed = c
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"outage_for_ms": 1500, "outage_after_requests": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status().as_u16(), 200);
    let send = |task: &'static str| post_json(&c, format!("{base}{ADD}"), auth, json!([item(task)]));

    let (first, body) = send("T-armed-1").await;
    assert_eq!((first, &body["code"]), (200, &json!(0)), "{body}");
    let (second, _) = send("T-armed-2").await;
    assert_eq!(second, 503, "the second request falls in the outage");
    let (third, _) = send("T-armed-3").await;
    assert_eq!(third, 503, "the outage lasts its length, not one request");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (after, body) = send("T-armed-2").await;
    assert_eq!((after, &body["code"]), (200, &json!(0)), "{body}");
    assert_eq!(sim.stats().injected, 2);
}
