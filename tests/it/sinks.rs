//! The POA and AICC sinks over real HTTP on 127.0.0.1: against the
//! simulators (outcomes, tokens, faults) and against wiremock where the
//! exact request shape matters.

use std::collections::BTreeMap;

use flowbridge::contract::aicc::AiccTaskInfo;
use flowbridge::contract::poa::{PoaAction, PoaItem};
use flowbridge::sim::{Faults, FaultsPatch, SimOptions};
use flowbridge::sink::{
    AiccApi, AiccConfig, AiccSink, AuthConfig, OAuthConfig, Outcome, PoaApi, PoaConfig, PoaSink, SinkReason,
    StaticTokenConfig,
};
use flowbridge::state::AiccIntent;
use futures::future::join_all;
use rstest::rstest;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::sim_support::{aicc_sim, fast_retry, poa_sim};

// ---------- helpers ----------

fn todo(task: &str, serial: &str, prev: Option<&str>) -> PoaItem {
    PoaItem {
        app_id: "app-1".into(),
        node_id: format!("node-{task}"),
        node_name: "辅导员审核".into(),
        task_id: task.into(),
        task_name: format!("请假审批 {task}"),
        trans_type_code: "LEAVE".into(),
        trans_type_name: Some("学生请假".into()),
        auto_create_trans_type: Some(true),
        handlers: Some("t001".into()),
        previous_task_id: prev.map(Into::into),
        initiator: Some("smartadmin".into()),
        serial_number: Some(serial.into()),
        ..PoaItem::default()
    }
}

fn oauth(id: String, secret: &SecretString) -> OAuthConfig {
    let mut o = OAuthConfig::new(id, secret.expose_secret());
    o.retry = fast_retry(3);
    o
}

fn poa_config(base_url: String, auth: AuthConfig) -> PoaConfig {
    let mut c = PoaConfig::new(base_url, auth);
    c.linger_ms = 2;
    c.retry = fast_retry(4);
    c.item_retries = 2;
    c.item_retry_backoff_ms = 5;
    c.request_timeout_ms = 3_000;
    c
}

fn poa_sink_for(sim: &flowbridge::sim::poa::PoaSim) -> PoaSink {
    let (id, secret) = sim.credentials();
    PoaSink::new(poa_config(sim.base_url(), AuthConfig::Oauth(oauth(id, &secret)))).expect("valid config")
}

fn aicc_config(base_url: String, auth: AuthConfig) -> AiccConfig {
    let mut c = AiccConfig::new(base_url, auth);
    c.retry = fast_retry(4);
    c.request_timeout_ms = 3_000;
    c.reconcile_delay_ms = 5;
    c
}

fn aicc_sink_for(sim: &flowbridge::sim::aicc::AiccSim) -> AiccSink {
    let (id, secret) = sim.credentials();
    AiccSink::new(aicc_config(sim.base_url(), AuthConfig::Oauth(oauth(id, &secret)))).expect("valid config")
}

fn task_info(title: &str) -> AiccTaskInfo {
    AiccTaskInfo {
        title: title.into(),
        description: Some("设备报修".into()),
        kind: Some("Case".into()),
        relate_id: Some("c6m80000014iXKHqDw3c".into()),
        owner_id: "10gg00000148QvgpaLAm".into(),
        creator_id: "10gg00000148QvgpaLAm".into(),
        priority: Some("High".into()),
        due_date: Some("2026-12-01 18:00:00".into()),
        ..AiccTaskInfo::default()
    }
}

fn intent_for(info: &AiccTaskInfo, id: &str) -> AiccIntent {
    AiccIntent {
        intent_id: id.into(),
        node: "repair".into(),
        visit: 1,
        title: info.title.clone(),
        creator_id: info.creator_id.clone(),
        owner_id: info.owner_id.clone(),
        relate_id: info.relate_id.clone(),
    }
}

fn done(task_id: &str) -> Outcome {
    Outcome::Done {
        task_id: task_id.into(),
    }
}

fn form_of(req: &Request) -> BTreeMap<String, String> {
    let body = String::from_utf8_lossy(&req.body);
    let url = reqwest::Url::parse(&format!("http://x/?{body}")).expect("a form is a query string");
    url.query_pairs().into_owned().collect()
}

fn poa_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "took": 3, "timestamp": 1688956011462i64, "code": 0, "message": "创建成功", "data": {"errorIds": []}
    }))
}

// ---------- request shape (wiremock) ----------

#[rstest]
#[case::bearer("Bearer ", "Bearer tok-1")]
#[case::bare("", "tok-1")]
#[tokio::test]
async fn poa_request_has_the_seed_field_names_and_the_configured_prefix(
    #[case] prefix: &str,
    #[case] authorization: &str,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .and(|req: &Request| {
            let form = form_of(req);
            form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some("fb-client")
                && form.get("client_secret").map(String::as_str) == Some("fb-secret")
                && form.get("scope").map(String::as_str) == Some("ttc:v1:writeTtc,ttc:v1:writeTransaction")
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-1", "token_type": "bearer", "expires_in": 3600
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/apis/ttc/v1/transaction/poa/addTransaction"))
        .and(header("authorization", authorization))
        .and(header("content-type", "application/json"))
        .and(body_json(json!([{
            "appId": "app-1", "nodeId": "node-T2", "nodeName": "辅导员审核", "taskId": "T2",
            "taskName": "请假审批 T2", "transTypeCode": "LEAVE", "transTypeName": "学生请假",
            "autoCreateTransType": true, "handlers": "t001", "previousTaskId": "T1",
            "initiator": "smartadmin", "serialNumber": "NUM0001", "canDelegate": 0,
            "initiatorName": "智慧校园管理员", "taskSummary": ["摘要1|内容1"], "timeOut": 0,
            "transactionName": "自定义事务名称", "viewUrl": "v", "handleUrl": "h",
            "mHandleUrl": "mh", "mViewUrl": "mv",
            "actions": [{"method": "post", "name": "撤回", "optType": 0, "type": "REVOKE",
                         "url": "http://example.invalid/revoke", "nextNodeKey": "", "allowMerge": 0}]
        }])))
        .respond_with(poa_ok())
        .expect(1)
        .mount(&server)
        .await;

    let mut o = OAuthConfig::new("fb-client", "fb-secret");
    o.scope = Some("ttc:v1:writeTtc,ttc:v1:writeTransaction".into());
    let mut cfg = poa_config(server.uri(), AuthConfig::Oauth(o));
    cfg.authorization_prefix = prefix.into();
    let sink = PoaSink::new(cfg).unwrap();
    let mut item = todo("T2", "NUM0001", Some("T1"));
    item.can_delegate = Some(0);
    item.initiator_name = Some("智慧校园管理员".into());
    item.task_summary = Some(vec!["摘要1|内容1".into()]);
    item.time_out = Some(0);
    item.transaction_name = Some("自定义事务名称".into());
    item.view_url = Some("v".into());
    item.handle_url = Some("h".into());
    item.m_handle_url = Some("mh".into());
    item.m_view_url = Some("mv".into());
    item.actions = Some(vec![PoaAction {
        method: Some("post".into()),
        name: Some("撤回".into()),
        opt_type: Some(0),
        kind: Some("REVOKE".into()),
        url: Some("http://example.invalid/revoke".into()),
        next_node_key: Some(String::new()),
        allow_merge: Some(0),
    }]);
    assert_eq!(sink.send("wf/NUM0001", item).await, done("T2"));
}

#[tokio::test]
async fn aicc_request_has_access_token_header_and_task_info_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/baas/auth/v1.0/oauth2/token"))
        .and(|req: &Request| {
            let form = form_of(req);
            form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some("aicc-client")
                && form.get("client_secret").map(String::as_str) == Some("aicc-secret")
                && !form.contains_key("scope")
        })
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "tok-a", "token_type": "Bearer", "expires_in": "1800"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/service/AICC__Case/1.0.0/openapi/task"))
        .and(header("access-token", "tok-a"))
        .and(|req: &Request| !req.headers.contains_key("authorization"))
        .and(body_json(json!({"taskInfo": {
            "title": "test002", "description": "设备报修", "type": "Case",
            "relateId": "c6m80000014iXKHqDw3c", "ownerId": "10gg00000148QvgpaLAm",
            "creatorId": "10gg00000148QvgpaLAm", "priority": "High", "dueDate": "2026-12-01 18:00:00"
        }})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resCode": "0", "resMsg": "成功", "result": {"taskId": "ccqG0000014iXvGKONQO"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/service/AICC__Case/1.0.0/openapi/task/list"))
        .and(header("access-token", "tok-a"))
        .and(body_json(json!({
            "creatorId": "10gg00000148QvgpaLAm", "title": "test002", "ownerId": "10gg00000148QvgpaLAm",
            "relateId": "c6m80000014iXKHqDw3c", "start": 0, "limit": 100
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resCode": "0", "resMsg": "成功",
            "result": {"count": 2, "taskList": [
                {"taskId": "other", "taskNo": "1", "title": "test002 (copy)", "ownerId": "10gg00000148QvgpaLAm"},
                {"taskId": "ccqG0000014iXvGKONQO", "taskNo": "2", "title": "test002", "ownerId": "10gg00000148QvgpaLAm"}
            ]}
        })))
        .expect(1)
        .mount(&server)
        .await;

    let o = OAuthConfig::new("aicc-client", "aicc-secret");
    let sink = AiccSink::new(aicc_config(server.uri(), AuthConfig::Oauth(o))).unwrap();
    let info = task_info("test002");
    assert_eq!(sink.create(info.clone()).await, done("ccqG0000014iXvGKONQO"));
    let found = sink.find(intent_for(&info, "i-1")).await;
    assert_eq!(found, Ok(Some("ccqG0000014iXvGKONQO".to_owned())));
}

// ---------- POA batching and per-item outcomes (simulator) ----------

#[tokio::test]
async fn mixed_batch_gets_each_items_own_outcome() {
    let sim = poa_sim(SimOptions {
        known_trans_types: vec!["OFF".into()],
        disabled_trans_types: vec!["OFF".into()],
        ..SimOptions::default()
    })
    .await;
    let (id, secret) = sim.credentials();
    let mut cfg = poa_config(sim.base_url(), AuthConfig::Oauth(oauth(id, &secret)));
    // The batch closes when all six are in, never by time.
    cfg.max_batch = 6;
    cfg.linger_ms = 60_000;
    let setup = poa_sink_for(&sim);
    assert_eq!(setup.send("wf/S0", todo("t0", "S0", None)).await, done("t0"));

    let sink = PoaSink::new(cfg).unwrap();
    let mut no_handlers = todo("bad", "S3", None);
    no_handlers.handlers = None;
    let mut disabled = todo("off", "S6", None);
    disabled.trans_type_code = "OFF".into();
    let items = vec![
        ("wf/S1", todo("first", "S1", None)),
        ("wf/S0", todo("chained", "S0", Some("t0"))),
        ("wf/S3", no_handlers),
        ("wf/S4", todo("orphan", "S4", Some("no-such-task"))),
        ("wf/S5", todo("t0", "S5", None)),
        ("wf/S6", disabled),
    ];
    let outcomes = join_all(items.into_iter().map(|(inst, item)| sink.send(inst, item))).await;

    assert_eq!(outcomes[0], done("first"));
    assert_eq!(outcomes[1], done("chained"));
    assert!(
        matches!(&outcomes[2], Outcome::Reject { reason: SinkReason::ApiRejected, message, .. }
            if message.contains("400") && message.contains("handlers and handlingGroup are all null")),
        "{:?}",
        outcomes[2]
    );
    // 2004: resent item_retries (2) times, then given up.
    assert!(
        matches!(&outcomes[3], Outcome::Reject { reason: SinkReason::RetriesExhausted, message, attempts: 3 }
            if message.contains("2004")),
        "{:?}",
        outcomes[3]
    );
    // 2003: already exists = done (idempotent resend).
    assert_eq!(outcomes[4], done("t0"));
    assert!(
        matches!(&outcomes[5], Outcome::Reject { reason: SinkReason::RetriesExhausted, message, .. }
            if message.contains("500") && message.contains("not enabled")),
        "{:?}",
        outcomes[5]
    );

    let todos = sim.todos();
    let batch_of = |t: &str| todos.iter().find(|x| x.task_id == t).map(|x| x.batch);
    assert_eq!(batch_of("first"), batch_of("chained"), "one batch for all six");
    assert_eq!(todos.len(), 3, "t0, first, chained: {todos:?}");
    assert_eq!(sim.transaction_of("chained").unwrap().todos, ["t0", "chained"]);
    // setup batch + the mixed batch + 2 resend rounds of the two retryable items.
    assert_eq!(sim.batches(), 4);
}

#[tokio::test]
async fn items_of_one_instance_never_share_a_batch_and_keep_their_order() {
    let sim = poa_sim(SimOptions::default()).await;
    let (id, secret) = sim.credentials();
    let mut cfg = poa_config(sim.base_url(), AuthConfig::Oauth(oauth(id, &secret)));
    cfg.max_batch = 4;
    cfg.linger_ms = 20;
    let sink = PoaSink::new(cfg).unwrap();
    // A chain sent all at once: each chained item names the one before.
    let items = vec![
        ("wf/A", todo("a1", "A", None)),
        ("wf/A", todo("a2", "A", Some("a1"))),
        ("wf/A", todo("a3", "A", Some("a2"))),
        ("wf/B", todo("b1", "B", None)),
    ];
    let outcomes = join_all(items.into_iter().map(|(inst, item)| sink.send(inst, item))).await;
    assert_eq!(outcomes, [done("a1"), done("a2"), done("a3"), done("b1")]);

    let todos = sim.todos();
    let batch_of = |t: &str| todos.iter().find(|x| x.task_id == t).unwrap().batch;
    assert!(
        batch_of("a1") < batch_of("a2") && batch_of("a2") < batch_of("a3"),
        "{todos:?}"
    );
    assert_eq!(sim.transaction_of("a3").unwrap().todos, ["a1", "a2", "a3"]);
}

#[tokio::test]
async fn a_resent_todo_is_done_and_not_created_twice() {
    let sim = poa_sim(SimOptions::default()).await;
    let sink = poa_sink_for(&sim);
    assert_eq!(sink.send("wf/S1", todo("x1", "S1", None)).await, done("x1"));
    assert_eq!(sink.send("wf/S1", todo("x1", "S1", None)).await, done("x1"));

    // The response to a processed batch is lost: the sink resends, POA
    // answers 2003, the todo is done once.
    sim.patch_faults(FaultsPatch {
        lose_response_next: Some(1),
        ..FaultsPatch::default()
    });
    assert_eq!(sink.send("wf/S2", todo("x2", "S2", None)).await, done("x2"));
    let ids: Vec<String> = sim.todos().into_iter().map(|t| t.task_id).collect();
    assert_eq!(ids, ["x1", "x2"]);
    assert_eq!(sim.stats().injected, 1);
}

// ---------- tokens ----------

#[tokio::test]
async fn poa_token_survives_expiry_without_a_401() {
    let sim = poa_sim(SimOptions {
        faults: Faults {
            token_lifetime_ms: 1_000,
            ..Faults::default()
        },
        ..SimOptions::default()
    })
    .await;
    let sink = poa_sink_for(&sim);
    assert_eq!(sink.send("wf/S1", todo("e1", "S1", None)).await, done("e1"));
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(sink.send("wf/S2", todo("e2", "S2", None)).await, done("e2"));
    let stats = sim.stats();
    assert_eq!(stats.tokens_issued, 2, "{stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "the sink refreshed before using an expired token"
    );
}

#[tokio::test]
async fn refused_token_is_refreshed_once_and_the_request_resent() {
    let poa = poa_sim(SimOptions::default()).await;
    let sink = poa_sink_for(&poa);
    assert_eq!(sink.send("wf/S1", todo("r1", "S1", None)).await, done("r1"));
    poa.revoke_tokens();
    assert_eq!(sink.send("wf/S2", todo("r2", "S2", None)).await, done("r2"));
    let stats = poa.stats();
    assert_eq!((stats.unauthorized, stats.tokens_issued), (1, 2), "{stats:?}");

    let aicc = aicc_sim(SimOptions::default()).await;
    let sink = aicc_sink_for(&aicc);
    assert!(matches!(
        sink.create(task_info("one")).await,
        Outcome::Done { .. }
    ));
    aicc.revoke_tokens();
    assert!(matches!(
        sink.create(task_info("two")).await,
        Outcome::Done { .. }
    ));
    let stats = aicc.stats();
    assert_eq!((stats.unauthorized, stats.tokens_issued), (1, 2), "{stats:?}");
    assert_eq!(aicc.tasks().len(), 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let sim = poa_sim(SimOptions::default()).await;
    let (id, secret) = sim.credentials();
    let mut cfg = poa_config(sim.base_url(), AuthConfig::Oauth(oauth(id, &secret)));
    cfg.max_batch = 1;
    cfg.max_in_flight = 8;
    let sink = PoaSink::new(cfg).unwrap();
    let sends = (0..16).map(|i| {
        let sink = sink.clone();
        async move {
            sink.send(
                &format!("wf/C{i}"),
                todo(&format!("c{i}"), &format!("C{i}"), None),
            )
            .await
        }
    });
    let outcomes = join_all(sends).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Done { .. })),
        "{outcomes:?}"
    );
    assert_eq!(sim.stats().tokens_issued, 1);
}

#[tokio::test]
async fn token_endpoint_failures_are_retried_then_reported() {
    let sim = poa_sim(SimOptions::default()).await;
    sim.patch_faults(FaultsPatch {
        token_fail_next: Some(2),
        ..FaultsPatch::default()
    });
    let sink = poa_sink_for(&sim);
    assert_eq!(sink.send("wf/S1", todo("k1", "S1", None)).await, done("k1"));
    assert_eq!(sim.stats().token_refused, 2);

    // Wrong credentials: every token request fails; the todo is rejected
    // with the token endpoint's answer, and the secret is not in it.
    let bad = oauth("flowbridge".into(), &SecretString::from("wrong-secret-xyz"));
    let sink = PoaSink::new(poa_config(sim.base_url(), AuthConfig::Oauth(bad))).unwrap();
    match sink.send("wf/S2", todo("k2", "S2", None)).await {
        Outcome::Reject {
            reason: SinkReason::RetriesExhausted,
            message,
            ..
        } => {
            assert!(message.contains("token") && message.contains("401"), "{message}");
            assert!(!message.contains("wrong-secret-xyz"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn static_tokens_are_sent_as_configured() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/apis/ttc/v1/transaction/poa/addTransaction"))
        .and(header("authorization", "Bearer fixed-token"))
        .respond_with(poa_ok())
        .expect(1)
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("fixed-token"),
    });
    let sink = PoaSink::new(poa_config(server.uri(), auth)).unwrap();
    assert_eq!(sink.send("wf/S1", todo("s1", "S1", None)).await, done("s1"));
}

// ---------- retries and garbage ----------

#[tokio::test]
async fn whole_batch_failures_are_retried_until_success() {
    let sim = poa_sim(SimOptions::default()).await;
    sim.patch_faults(FaultsPatch {
        fail_next: Some(1),
        garbage_next: Some(1),
        outer_error_next: Some(1),
        ..FaultsPatch::default()
    });
    let sink = poa_sink_for(&sim);
    // 503, then an HTML 200, then outer code -1, then success: 4 attempts.
    assert_eq!(sink.send("wf/S1", todo("w1", "S1", None)).await, done("w1"));
    assert_eq!(sim.stats().injected, 3);
    assert_eq!(sim.todos().len(), 1);

    let aicc = aicc_sim(SimOptions::default()).await;
    aicc.patch_faults(FaultsPatch {
        fail_next: Some(2),
        ..FaultsPatch::default()
    });
    let sink = aicc_sink_for(&aicc);
    assert!(matches!(sink.create(task_info("w")).await, Outcome::Done { .. }));
    assert_eq!(aicc.tasks().len(), 1);
}

#[tokio::test]
async fn exhausted_retries_reject_with_the_last_error() {
    let sim = poa_sim(SimOptions::default()).await;
    let sink = poa_sink_for(&sim);
    assert_eq!(sink.send("wf/S0", todo("o0", "S0", None)).await, done("o0"));
    sim.patch_faults(FaultsPatch {
        outage: Some(true),
        ..FaultsPatch::default()
    });
    let outcomes = join_all([
        sink.send("wf/S1", todo("o1", "S1", None)),
        sink.send("wf/S2", todo("o2", "S2", None)),
    ])
    .await;
    for o in outcomes {
        match o {
            Outcome::Reject {
                reason: SinkReason::RetriesExhausted,
                message,
                attempts: 4,
            } => assert!(message.contains("503"), "{message}"),
            other => panic!("expected RetriesExhausted after 4 attempts, got {other:?}"),
        }
    }

    let aicc = aicc_sim(SimOptions::default()).await;
    aicc.patch_faults(FaultsPatch {
        outage: Some(true),
        ..FaultsPatch::default()
    });
    let sink = aicc_sink_for(&aicc);
    assert!(matches!(
        sink.create(task_info("x")).await,
        Outcome::Reject {
            reason: SinkReason::RetriesExhausted,
            ..
        }
    ));
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_not_cut_short() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/apis/ttc/v1/transaction/poa/addTransaction"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .expect(1)
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("t"),
    });
    let sink = PoaSink::new(poa_config(server.uri(), auth)).unwrap();
    // Waiting 30 s does not fit the 5 s budget: give up after one attempt
    // rather than retry sooner than the server asked.
    match sink.send("wf/S1", todo("ra", "S1", None)).await {
        Outcome::Reject {
            reason: SinkReason::RetriesExhausted,
            message,
            attempts: 1,
        } => assert!(message.contains("429"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[rstest]
#[case::empty(200, "")]
#[case::null(200, "null")]
#[case::array(200, "[]")]
#[case::code_as_string(200, r#"{"code":"0","data":{"errorIds":[]}}"#)]
#[case::code_zero_without_data(200, r#"{"code":0,"message":"ok"}"#)]
#[case::bad_error_entry(200, r#"{"code":0,"data":{"errorIds":[{"code":"x","taskId":1}]}}"#)]
#[case::truncated(200, r#"{"code":0,"data":{"errorIds":["#)]
#[case::html_5xx(502, "<html>bad gateway</html>")]
#[case::outer_code(200, r#"{"code":500,"message":"unknown"}"#)]
#[tokio::test]
async fn poa_garbage_is_retried_then_rejected_never_a_panic(#[case] status: u16, #[case] body: &str) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/apis/ttc/v1/transaction/poa/addTransaction"))
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .expect(4)
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("t"),
    });
    let sink = PoaSink::new(poa_config(server.uri(), auth)).unwrap();
    match sink.send("wf/S1", todo("g1", "S1", None)).await {
        Outcome::Reject {
            reason: SinkReason::RetriesExhausted,
            attempts: 4,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn poa_error_entries_for_other_tasks_are_ignored() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/apis/ttc/v1/transaction/poa/addTransaction"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "code": 0, "message": "创建中有异常数据",
            "data": {"errorIds": [{"code": 400, "taskId": "someone-else", "message": "x is null"},
                                  {"code": 400, "message": "no task id"}]}
        })))
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("t"),
    });
    let sink = PoaSink::new(poa_config(server.uri(), auth)).unwrap();
    assert_eq!(sink.send("wf/S1", todo("mine", "S1", None)).await, done("mine"));
}

#[rstest]
#[case::html_200(200, "<html>oops</html>")]
#[case::rescode_zero_without_result(200, r#"{"resCode":"0","resMsg":"成功"}"#)]
#[case::empty_task_id(200, r#"{"resCode":"0","result":{"taskId":""}}"#)]
#[case::gateway_timeout(504, "")]
#[tokio::test]
async fn aicc_ambiguous_answers_are_unknown_and_not_resent(#[case] status: u16, #[case] body: &str) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/service/AICC__Case/1.0.0/openapi/task"))
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .expect(1)
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("t"),
    });
    let sink = AiccSink::new(aicc_config(server.uri(), auth)).unwrap();
    assert!(
        matches!(
            sink.create(task_info("amb")).await,
            Outcome::Unknown { attempts: 1, .. }
        ),
        "an ambiguous create must not be resent"
    );
}

#[tokio::test]
async fn aicc_refused_task_is_rejected_at_once() {
    let sim = aicc_sim(SimOptions::default()).await;
    let sink = aicc_sink_for(&sim);
    // 43 Chinese characters = 129 UTF-8 bytes: over title's 128.
    let info = task_info(&"报".repeat(43));
    match sink.create(info).await {
        Outcome::Reject {
            reason: SinkReason::ApiRejected,
            message,
            attempts: 1,
        } => assert!(message.contains("title") && message.contains("400"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(sim.tasks().is_empty());
}

// ---------- AICC reconcile ----------

#[tokio::test]
async fn aicc_lost_response_is_reconciled_without_a_duplicate() {
    let sim = aicc_sim(SimOptions::default()).await;
    let sink = aicc_sink_for(&sim);

    // Plain create: the task is made but the answer is lost → Unknown.
    sim.patch_faults(FaultsPatch {
        lose_response_next: Some(1),
        ..FaultsPatch::default()
    });
    let first = task_info("报修 A-101");
    assert!(matches!(
        sink.create(first.clone()).await,
        Outcome::Unknown { .. }
    ));
    assert_eq!(sim.tasks().len(), 1);
    // Reconcile finds it: no second create.
    let found = sink.find(intent_for(&first, "i-a")).await.unwrap();
    assert_eq!(found.as_deref(), Some(sim.tasks()[0].task_id.as_str()));

    // The runtime's path: create_reconciled settles it by itself.
    sim.patch_faults(FaultsPatch {
        lose_response_next: Some(1),
        ..FaultsPatch::default()
    });
    let second = task_info("报修 B-202");
    let outcome = sink
        .create_reconciled(&intent_for(&second, "i-b"), second.clone())
        .await;
    let tasks = sim.tasks();
    assert_eq!(tasks.len(), 2, "no duplicate: {tasks:?}");
    assert_eq!(outcome, done(&tasks[1].task_id));
    assert_eq!(tasks[1].info, second);
}

#[tokio::test]
async fn aicc_unknown_outcome_not_found_is_resent_once() {
    let sim = aicc_sim(SimOptions::default()).await;
    let sink = aicc_sink_for(&sim);
    // An unreadable 200 (nothing created): unknown; task/list shows
    // nothing; one resend creates it.
    sim.patch_faults(FaultsPatch {
        garbage_next: Some(1),
        ..FaultsPatch::default()
    });
    let info = task_info("报修 C-303");
    let outcome = sink.create_reconciled(&intent_for(&info, "i-c"), info).await;
    let tasks = sim.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(outcome, done(&tasks[0].task_id));
}

#[tokio::test]
async fn aicc_unknown_twice_and_never_found_is_unreconciled() {
    // Every create answers an unreadable 200; task/list never shows the
    // task: one resend at most, then a rejection for a human to check.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/service/AICC__Case/1.0.0/openapi/task"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>?</html>"))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/service/AICC__Case/1.0.0/openapi/task/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resCode": "0", "resMsg": "成功", "result": {"count": 0, "taskList": []}
        })))
        .expect(2)
        .mount(&server)
        .await;
    let auth = AuthConfig::Static(StaticTokenConfig {
        token: SecretString::from("t"),
    });
    let sink = AiccSink::new(aicc_config(server.uri(), auth)).unwrap();
    let info = task_info("报修 D-404");
    match sink.create_reconciled(&intent_for(&info, "i-d"), info).await {
        Outcome::Reject {
            reason: SinkReason::AiccUnreconciled,
            attempts: 2,
            message,
        } => assert!(message.contains("i-d"), "{message}"),
        other => panic!("{other:?}"),
    }
}
