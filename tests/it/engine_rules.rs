//! One test per rule of `engine::decide` (issue 2, item 5).
//!
//! Most rules run on `RULES`, a small workflow with every construct: a task
//! loop, an exclusive gateway whose branches go to a task, through a second
//! gateway, or through an AICC task; a parallel split with two task branches
//! and its join.

use std::collections::BTreeSet;

use flowbridge::engine::{self, Reason, TodoKind, task_id};
use flowbridge::state::Status;
use rstest::rstest;
use serde_json::json;

use crate::support::{Instance, registry, rejected, samples, the_aicc, the_poa};

/// ```text
/// start → draft → route ─big────→ manager ─approved→ fanout ═╦═ legal → legal_check ═╦═ gather → archive → end
///           ↑       │                │                       ╚═ finance ═════════════╝             ↑
///           │       ├─small→ relay ──┼─────────────────────────────────────────────────────────────┤
///           │       └─service→ service (AICC) ─────────────────────────────────────────────────────┘
///           └──────── rejected ──────┘
/// ```
const RULES: &str = r#"
workflow: rules
name: Rules
defaults:
  target: poa
  poa:
    appId: app-1
    transTypeCode: TT
    taskName: "{{ node.name }} #{{ node.visit }}"
    handlers: "{{ event.assignees | join(',') }}"
  aicc:
    title: "{{ node.name }} for {{ event.serialNumber }}"
    ownerId: "{{ event.assignees[0] }}"
    creatorId: creator-1
    type: Case
    relateId: "{{ event.serialNumber }}"
nodes:
  - { id: start, kind: start }
  - { id: draft, kind: task, name: Draft }
  - { id: route, kind: exclusive }
  - { id: relay, kind: exclusive }
  - { id: manager, kind: task, name: Manager }
  - { id: service, kind: task, name: Service, todo: { target: aicc } }
  - { id: fanout, kind: parallel_split, join: gather }
  - { id: legal, kind: task, name: Legal }
  - { id: legal_check, kind: exclusive }
  - { id: finance, kind: task, name: Finance }
  - { id: gather, kind: parallel_join }
  - { id: archive, kind: task, name: Archive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: draft }
  - { from: draft, to: route }
  - { from: route, to: manager, label: big }
  - { from: route, to: relay, label: small }
  - { from: route, to: service, label: service }
  - { from: relay, to: archive }
  - { from: service, to: archive }
  - { from: manager, to: draft, label: rejected }
  - { from: manager, to: fanout, label: approved }
  - { from: fanout, to: legal }
  - { from: fanout, to: finance }
  - { from: legal, to: legal_check }
  - { from: legal_check, to: gather }
  - { from: finance, to: gather }
  - { from: gather, to: archive }
  - { from: archive, to: end }
"#;

fn rules() -> flowbridge::workflow::Registry {
    registry(RULES)
}

#[test]
fn first_todo_has_no_previous_task_id() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let d = i.ok(None, "draft");
    let todo = the_poa(&d);
    assert_eq!(todo.kind, TodoKind::First);
    assert_eq!(todo.node, "draft");
    assert_eq!(todo.item.previous_task_id, None);
    assert_eq!(todo.item.task_id, i.task("draft", 1));
    let state = d.next_state.as_ref().unwrap();
    assert_eq!(state.latest_todo.as_deref(), Some(i.task("draft", 1).as_str()));
    // The body on the wire has no previousTaskId at all (not null, not "").
    let body = serde_json::to_value(&todo.item).unwrap();
    assert!(body.get("previousTaskId").is_none(), "{body}");
}

#[test]
fn a_start_event_may_name_the_start_node_itself() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let d = i.ok(None, "start");
    assert!(d.actions.is_empty());
    let todo = the_poa(&i.ok(Some("start"), "draft")).clone();
    assert_eq!(todo.kind, TodoKind::First);
}

#[test]
fn gateway_is_passed_through_without_a_todo() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.ok(None, "draft");
    let d = i.ok(Some("draft"), "route");
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    let state = d.next_state.unwrap();
    assert_eq!(state.positions.keys().collect::<Vec<_>>(), ["route"]);
    assert_eq!(state.status, Status::Active);
}

/// Each branch of the exclusive gateway: the todo after it chains to the
/// nearest POA todo upstream on the path taken (draft), through one or two
/// gateways or an AICC task.
#[rstest]
#[case::direct_to_a_task(&["draft", "route", "manager"])]
#[case::through_a_second_gateway(&["draft", "route", "relay", "archive"])]
#[case::through_an_aicc_task(&["draft", "route", "service", "archive"])]
fn chained_todo_after_exclusive_branch_follows_the_todo_before_the_gateway(#[case] path: &[&str]) {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let d = i.walk(path);
    let last = *path.last().unwrap();
    let todo = the_poa(&d);
    assert_eq!(todo.kind, TodoKind::Chained);
    assert_eq!(todo.item.task_id, i.task(last, 1));
    assert_eq!(todo.item.previous_task_id, Some(i.task("draft", 1)));
}

#[test]
fn loop_makes_new_visits_with_new_task_ids_chained_to_the_todo_they_came_from() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route", "manager"]);

    // First loop: manager rejects, draft is visited a second time.
    let d = i.ok(Some("manager"), "draft");
    let draft2 = the_poa(&d);
    assert_eq!(draft2.kind, TodoKind::Chained);
    assert_eq!(draft2.item.task_id, i.task("draft", 2));
    assert_ne!(draft2.item.task_id, i.task("draft", 1));
    assert_eq!(draft2.item.previous_task_id, Some(i.task("manager", 1)));
    assert_eq!(draft2.item.task_name, "Draft #2", "node.visit is the visit");
    assert_eq!(d.next_state.as_ref().unwrap().nodes["draft"].visits, 2);

    // Around again: manager visit 2 chains to draft visit 2, draft visit 3
    // to manager visit 2.
    i.ok(Some("draft"), "route");
    let manager2 = the_poa(&i.ok(Some("route"), "manager")).clone();
    assert_eq!(manager2.item.task_id, i.task("manager", 2));
    assert_eq!(manager2.item.previous_task_id, Some(i.task("draft", 2)));
    let draft3 = the_poa(&i.ok(Some("manager"), "draft")).clone();
    assert_eq!(draft3.item.task_id, i.task("draft", 3));
    assert_eq!(draft3.item.previous_task_id, Some(i.task("manager", 2)));
}

#[test]
fn parallel_split_branches_chain_to_the_todo_before_the_split() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let d = i.walk(&["draft", "route", "manager", "fanout"]);
    assert!(d.actions.is_empty(), "the split itself creates nothing");
    assert_eq!(d.next_state.unwrap().positions["fanout"], 2);
    for branch in ["finance", "legal"] {
        let todo = the_poa(&i.ok(Some("fanout"), branch)).clone();
        assert_eq!(todo.kind, TodoKind::Chained);
        assert_eq!(todo.item.task_id, i.task(branch, 1));
        assert_eq!(todo.item.previous_task_id, Some(i.task("manager", 1)), "{branch}");
    }
    // The split was left by both branches: it is no longer a position.
    let positions: Vec<_> = i.state.as_ref().unwrap().positions.keys().cloned().collect();
    assert_eq!(positions, ["finance", "legal"]);
}

/// The join fires only when every branch arrived; what follows it chains to
/// the todo of the branch that arrived last (the documented rule), also when
/// that branch reached the join through a gateway and the other branch made
/// the instance's latest todo.
#[rstest]
#[case::legal_then_finance("legal_check", "finance", "finance")]
#[case::finance_then_legal("finance", "legal_check", "legal")]
fn parallel_join_fires_when_all_branches_arrived(
    #[case] first: &str,
    #[case] last: &str,
    #[case] chains_to: &str,
) {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route", "manager", "fanout", "legal"]);
    i.ok(Some("fanout"), "finance");
    i.ok(Some("legal"), "legal_check");
    let latest = i.state.as_ref().unwrap().latest_todo.clone();
    assert_eq!(latest, Some(i.task("finance", 1)));

    let d = i.ok(Some(first), "gather");
    assert!(d.actions.is_empty());
    assert!(
        !d.next_state.as_ref().unwrap().positions.contains_key("gather"),
        "one branch arrived: the join has not fired"
    );
    // Leaving the join before it fired is not possible.
    rejected(&i.go(Some("gather"), "archive"), Reason::InvalidTransition);

    let d = i.ok(Some(last), "gather");
    assert!(d.actions.is_empty());
    let state = d.next_state.unwrap();
    assert_eq!(state.positions.keys().collect::<Vec<_>>(), ["gather"]);
    assert_eq!(state.nodes["gather"].visits, 1);

    let archive = the_poa(&i.ok(Some("gather"), "archive")).clone();
    assert_eq!(archive.kind, TodoKind::Chained);
    assert_eq!(archive.item.previous_task_id, Some(i.task(chains_to, 1)));
}

/// "else the instance's latest todo": a branch with no POA todo upstream
/// (the split comes right after the start) chains to the latest todo.
#[test]
fn without_a_todo_upstream_a_todo_chains_to_the_latest_todo_of_the_instance() {
    let reg = registry(
        r#"
workflow: fork
defaults:
  target: poa
  poa: { appId: a, transTypeCode: T, taskName: "{{ node.id }}", handlers: u1 }
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: join }
  - { id: a, kind: task }
  - { id: b, kind: task }
  - { id: join, kind: parallel_join }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: a }
  - { from: split, to: b }
  - { from: a, to: join }
  - { from: b, to: join }
  - { from: join, to: end }
"#,
    );
    let mut i = Instance::new(&reg, "fork", "F1");
    i.ok(None, "split");
    let a = the_poa(&i.ok(Some("split"), "a")).clone();
    assert_eq!(a.kind, TodoKind::First);
    let b = the_poa(&i.ok(Some("split"), "b")).clone();
    assert_eq!(b.kind, TodoKind::Chained);
    assert_eq!(b.item.previous_task_id, Some(i.task("a", 1)));
}

#[test]
fn end_node_completes_the_instance() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route", "relay", "archive"]);
    let d = i.ok(Some("archive"), "end");
    assert!(d.actions.is_empty());
    let state = d.next_state.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert!(state.positions.is_empty());
}

#[test]
fn terminate_cancels_the_instance() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route", "manager"]);
    let d =
        i.send(json!({"eventId": "kill", "workflow": "rules", "serialNumber": "S1", "kind": "terminate"}));
    assert!(d.rejection.is_none() && !d.duplicate);
    assert!(d.actions.is_empty());
    let state = d.next_state.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    assert!(state.positions.is_empty());
}

#[test]
fn same_event_id_again_is_a_duplicate_with_no_action() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let start = i.transition(None, "draft");
    let first = i.send(start.clone());
    assert_eq!(the_poa(&first).kind, TodoKind::First);

    let again = i.send(start);
    assert!(again.duplicate);
    assert!(again.actions.is_empty());
    assert!(again.next_state.is_none());
    assert!(again.rejection.is_none());

    // Also after the instance ended: a resent end event is a duplicate, not
    // an event for a completed instance.
    i.ok(Some("draft"), "route");
    i.ok(Some("route"), "relay");
    i.ok(Some("relay"), "archive");
    let end = i.transition(Some("archive"), "end");
    i.send(end.clone());
    let again = i.send(end);
    assert!(again.duplicate, "{again:?}");
    assert!(again.rejection.is_none());
}

/// What to do before the rejected event, and the event (`from`, `to`).
type Setup = &'static [&'static str];

/// Every rejection reason `decide` can give for a transition event, with a
/// substring of its message; the state is never changed.
#[rstest]
#[case::unknown_to(&["draft"], Some("draft"), "nowhere", Reason::UnknownNode, "`to` names node `nowhere`")]
#[case::unknown_from(&["draft"], Some("nowhere"), "route", Reason::UnknownNode, "`from` names node `nowhere`")]
#[case::not_an_edge(&["draft"], Some("draft"), "archive", Reason::InvalidTransition, "`draft` → `archive` is not a transition")]
#[case::instance_not_at_from(&["draft", "route", "manager"], Some("draft"), "route", Reason::InvalidTransition, "is at [`manager`], not at `draft`")]
#[case::second_start_event(&["draft"], None, "draft", Reason::InvalidTransition, "already started")]
#[case::start_event_to_a_node_not_after_start(&[], None, "manager", Reason::InvalidTransition, "must be the start node `start` or a node right after it")]
#[case::completed(&["draft", "route", "relay", "archive", "end"], Some("archive"), "end", Reason::InstanceCompleted, "already completed")]
fn rejection_reasons_of_transitions(
    #[case] setup: Setup,
    #[case] from: Option<&str>,
    #[case] to: &str,
    #[case] reason: Reason,
    #[case] message: &str,
) {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    if !setup.is_empty() {
        i.walk(setup);
    }
    let before = i.state.clone();
    let msg = rejected(&i.go(from, to), reason);
    assert!(msg.contains(message), "{msg:?} does not contain {message:?}");
    assert_eq!(i.state, before);
}

#[test]
fn event_for_a_cancelled_instance_is_rejected() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route"]);
    i.send(json!({"eventId": "kill", "workflow": "rules", "serialNumber": "S1", "kind": "terminate"}));
    let msg = rejected(&i.go(Some("route"), "manager"), Reason::InstanceCancelled);
    assert!(msg.contains("was terminated"), "{msg}");
    let msg = rejected(
        &i.send(json!({"eventId": "kill-2", "workflow": "rules", "serialNumber": "S1", "kind": "terminate"})),
        Reason::InstanceCancelled,
    );
    assert!(msg.contains("S1"), "{msg}");
}

#[test]
fn event_for_an_unknown_workflow_is_rejected() {
    let reg = rules();
    let mut i = Instance::new(&reg, "no-such-flow", "S1");
    let msg = rejected(&i.go(None, "draft"), Reason::UnknownWorkflow);
    assert!(msg.contains("no workflow `no-such-flow`"), "{msg}");
}

/// A workflow whose fields come from the event's variables, to exercise the
/// render-time rejections. `ticket` targets AICC, `form` POA.
const FIELDS: &str = r#"
workflow: fields
defaults:
  target: aicc
  poa:
    appId: app-1
    transTypeCode: TT
    taskName: "{{ variables.formName }}"
    handlers: u1
  aicc:
    title: "{{ variables.title }}"
    description: "{{ variables.description | default('') }}"
    ownerId: "{{ variables.owner | default('o1') }}"
    creatorId: c1
    priority: "{{ variables.priority | default('Low') }}"
    dueDate: "{{ variables.due | default('2026-11-28 18:00:00') }}"
nodes:
  - { id: start, kind: start }
  - { id: ticket, kind: task, name: 工单 }
  - { id: form, kind: task, todo: { target: poa } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: ticket }
  - { from: start, to: form }
  - { from: ticket, to: end }
  - { from: form, to: end }
"#;

#[rstest]
#[case::missing_variable_aicc("ticket", json!({}), Reason::TemplateError, "`title` template failed")]
#[case::missing_variable_poa("form", json!({}), Reason::TemplateError, "`taskName` template failed")]
#[case::over_byte_limit(
    "ticket",
    // 7 Chinese characters = 21 UTF-8 bytes > ownerId's 20 (but 7 characters).
    json!({"title": "t", "owner": "智慧校园管理员"}),
    Reason::InvalidField,
    "`taskInfo.ownerId` is 21 UTF-8 bytes, over the limit of 20"
)]
#[case::title_over_128_bytes(
    "ticket",
    json!({"title": "工".repeat(43)}),
    Reason::InvalidField,
    "`taskInfo.title` is 129 UTF-8 bytes, over the limit of 128"
)]
#[case::bad_priority("ticket", json!({"title": "t", "priority": "Urgent"}), Reason::InvalidField, "`taskInfo.priority` is \"Urgent\", not one of Critical, High, Medium, Low")]
#[case::bad_due_date("ticket", json!({"title": "t", "due": "2026-11-28T18:00:00Z"}), Reason::InvalidField, "`taskInfo.dueDate` is \"2026-11-28T18:00:00Z\", not a date-time")]
#[case::due_date_not_on_the_calendar("ticket", json!({"title": "t", "due": "2026-02-30 00:00:00"}), Reason::InvalidField, "`taskInfo.dueDate`")]
fn render_rejections(
    #[case] node: &str,
    #[case] variables: serde_json::Value,
    #[case] reason: Reason,
    #[case] message: &str,
) {
    let reg = registry(FIELDS);
    let mut i = Instance::new(&reg, "fields", "F1").with_variables(variables);
    let d = i.go(None, node);
    let msg = rejected(&d, reason);
    assert!(msg.contains(message), "{msg:?} does not contain {message:?}");
    assert!(msg.contains(&format!("node `{node}`")), "{msg}");
    assert!(i.state.is_none(), "the rejected start event left no state");
}

#[test]
fn aicc_node_creates_an_aicc_task_with_its_task_info() {
    let reg = registry(FIELDS);
    let mut i = Instance::new(&reg, "fields", "F1").with_variables(json!({
        "title": "宽带无法连接", "priority": "High", "description": "", "due": "2026-12-01 09:30:00"
    }));
    let d = i.ok(None, "ticket");
    let create = the_aicc(&d);
    assert_eq!(create.node, "ticket");
    assert_eq!(create.intent_id, i.task("ticket", 1));
    let body = serde_json::to_value(&create.task_info).unwrap();
    assert_eq!(
        body,
        json!({
            "title": "宽带无法连接",
            "ownerId": "o1",
            "creatorId": "c1",
            "priority": "High",
            "dueDate": "2026-12-01 09:30:00",
        }),
        "an empty rendered description is omitted"
    );
    let state = d.next_state.as_ref().unwrap();
    assert_eq!(state.pending_aicc.len(), 1);
    assert_eq!(state.pending_aicc[0].intent_id, create.intent_id);
    assert_eq!(state.latest_todo, None, "an AICC task is not a POA todo");
}

#[test]
fn aicc_sample_node_task_info_has_the_seed_fields() {
    let reg = samples();
    let mut i = Instance::new(&reg, "customer-case", "CASE9").with_variables(json!({
        "customerName": "张三", "caseId": "c6m80000014iXKHqDw3c", "dueDate": "2026-11-28 18:00:00"
    }));
    let d = i.ok(None, "register");
    let body = serde_json::to_value(&the_aicc(&d).task_info).unwrap();
    let keys: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    // description and contactId render empty and are omitted.
    assert_eq!(
        keys,
        BTreeSet::from([
            "title",
            "type",
            "relateId",
            "ownerId",
            "creatorId",
            "priority",
            "dueDate"
        ])
    );
    assert_eq!(body["title"], "张三：登记工单");
    assert_eq!(body["priority"], "Medium");
}

#[test]
fn task_ids_are_deterministic_and_fit_poa() {
    let id = task_id("leave-approval", "NUM0001", "dean", 1);
    assert_eq!(id, task_id("leave-approval", "NUM0001", "dean", 1));
    assert!(id.len() <= 64, "{id}");
    assert!(id.is_ascii());
    // The engine uses exactly this id.
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "NUM0001");
    assert_eq!(
        the_poa(&i.ok(None, "draft")).item.task_id,
        task_id("rules", "NUM0001", "draft", 1)
    );
    let mut again = Instance::new(&reg, "rules", "NUM0001");
    assert_eq!(
        the_poa(&again.ok(None, "draft")).item.task_id,
        task_id("rules", "NUM0001", "draft", 1),
        "a fresh replay of the same event gives the same id"
    );
}

#[rstest]
#[case::workflow(("w1", "s", "n", 1), ("w2", "s", "n", 1))]
#[case::serial(("w", "s1", "n", 1), ("w", "s2", "n", 1))]
#[case::node(("w", "s", "n1", 1), ("w", "s", "n2", 1))]
#[case::visit(("w", "s", "n", 1), ("w", "s", "n", 2))]
#[case::boundary_between_parts(("ab", "c", "n", 1), ("a", "bc", "n", 1))]
#[case::boundary_serial_node(("w", "s-n", "x", 1), ("w", "s", "n-x", 1))]
fn task_ids_differ_when_any_part_differs(
    #[case] a: (&str, &str, &str, u32),
    #[case] b: (&str, &str, &str, u32),
) {
    let ia = task_id(a.0, a.1, a.2, a.3);
    let ib = task_id(b.0, b.1, b.2, b.3);
    assert_ne!(ia, ib);
    assert!(ia.len() <= 64 && ib.len() <= 64);
}

#[test]
fn task_id_of_the_longest_accepted_ids_still_fits() {
    let long = "x".repeat(flowbridge::event::MAX_ID_BYTES);
    assert!(task_id(&long, &long, &long, u32::MAX).len() <= 64);
}

/// The seed's field table, every name an `addTransaction` item may carry.
const POA_SEED_FIELDS: &[&str] = &[
    "appId",
    "nodeId",
    "nodeName",
    "taskId",
    "taskName",
    "transTypeCode",
    "transTypeName",
    "handlers",
    "handlingGroup",
    "previousTaskId",
    "autoCreateTransType",
    "canDelegate",
    "initiator",
    "initiatorName",
    "serialNumber",
    "taskSummary",
    "timeOut",
    "transactionName",
    "viewUrl",
    "handleUrl",
    "mHandleUrl",
    "mViewUrl",
    "actions",
];

/// leave-approval maps every field; `dean` has `handlers` (no group),
/// `office` has `handlingGroup` (its `handlers: ""` is omitted).
#[rstest]
#[case::dean(&["counselor", "days_check", "dean"], "handlingGroup")]
#[case::office(&["counselor", "days_check", "office"], "handlers")]
fn poa_body_has_exactly_the_seed_field_names(#[case] path: &[&str], #[case] absent: &str) {
    let reg = samples();
    let mut i = Instance::new(&reg, "leave-approval", "NUM0001")
        .with_variables(json!({"studentName": "李雷", "days": 5, "reason": "回家"}));
    let d = i.walk(path);
    let body = serde_json::to_value(&the_poa(&d).item).unwrap();
    let keys: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = POA_SEED_FIELDS.iter().copied().filter(|f| *f != absent).collect();
    assert_eq!(keys, expected);
    let action = body["actions"][0].as_object().unwrap();
    let action_keys: BTreeSet<&str> = action.keys().map(String::as_str).collect();
    // nextNodeKey is mapped to "" and omitted.
    assert_eq!(
        action_keys,
        BTreeSet::from(["method", "name", "optType", "type", "url", "allowMerge"])
    );
    // Engine defaults: the node's id and name, the event's serial and initiator.
    let node = *path.last().unwrap();
    assert_eq!(body["nodeId"], node);
    assert_eq!(body["serialNumber"], "NUM0001");
    assert_eq!(body["initiator"], "smartadmin");
    assert_eq!(body["initiatorName"], "智慧校园管理员");
    assert_eq!(body["taskId"], i.task(node, 1));
    assert_eq!(body["previousTaskId"], i.task("counselor", 1));
    assert_eq!(body["taskSummary"], json!(["请假天数|5", "事由|回家"]));
}

#[test]
fn decide_is_pure_the_same_inputs_give_the_same_decision() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    i.walk(&["draft", "route", "manager"]);
    let state = i.state.clone();
    let ev = crate::support::event(i.transition(Some("manager"), "fanout"));
    let a = engine::decide(&reg, state.as_ref(), &ev);
    let b = engine::decide(&reg, state.as_ref(), &ev);
    assert_eq!(a, b);
    assert_eq!(i.state, state, "decide does not touch the state it is given");
}

/// An optional field whose template renders empty is omitted from the body,
/// whatever its enum or format would be when set.
#[test]
fn empty_rendered_optional_fields_are_omitted_not_rejected() {
    let reg = registry(
        r#"
workflow: optional
defaults:
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    type: "{{ variables.type | default('') }}"
    relateId: "{{ variables.relateId | default('') }}"
    priority: "{{ variables.priority | default('') }}"
    dueDate: "{{ variables.due | default('') }}"
  poa:
    appId: app-1
    transTypeCode: TT
    taskName: t
    handlers: u1
    actions:
      - name: 撤回
        optType: 1
        type: "{{ variables.actionType | default('') }}"
        method: "{{ variables.method | default('') }}"
nodes:
  - { id: start, kind: start }
  - { id: ticket, kind: task, todo: { target: aicc } }
  - { id: form, kind: task, todo: { target: poa } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: ticket }
  - { from: ticket, to: form }
  - { from: form, to: end }
"#,
    );
    let mut i = Instance::new(&reg, "optional", "O1");
    let d = i.ok(None, "ticket");
    let body = serde_json::to_value(&the_aicc(&d).task_info).unwrap();
    assert_eq!(body, json!({"title": "t", "ownerId": "o1", "creatorId": "c1"}));
    let d = i.ok(Some("ticket"), "form");
    let body = serde_json::to_value(&the_poa(&d).item).unwrap();
    assert_eq!(body["actions"], json!([{"name": "撤回", "optType": 1}]));
}

/// Each `actions[]` entry renders its own templates (two actions with a
/// `url` template each keep their own url).
#[test]
fn each_poa_action_renders_its_own_templates() {
    let reg = registry(
        r#"
workflow: actions
defaults:
  target: poa
  poa:
    appId: app-1
    transTypeCode: TT
    taskName: t
    handlers: u1
    actions:
      - { name: 撤回, type: REVOKE, optType: 0, method: post, url: "https://x/{{ event.serialNumber }}/revoke" }
      - { name: 办理, type: HANDLE, optType: 1, url: "https://x/{{ event.serialNumber }}/handle" }
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    );
    let mut i = Instance::new(&reg, "actions", "A1");
    let d = i.ok(None, "a");
    let body = serde_json::to_value(&the_poa(&d).item).unwrap();
    assert_eq!(
        body["actions"],
        json!([
            {"name": "撤回", "type": "REVOKE", "optType": 0, "method": "post", "url": "https://x/A1/revoke"},
            {"name": "办理", "type": "HANDLE", "optType": 1, "url": "https://x/A1/handle"},
        ])
    );
}

/// `decide` is public and `Event` has public fields, so an adapter can build
/// an event without `Event::decode`; a transition without `to` is then a
/// rejection, not a panic.
#[test]
fn transition_without_to_built_by_hand_is_rejected_not_a_panic() {
    let reg = rules();
    let ev: flowbridge::event::Event =
        serde_json::from_value(json!({"eventId": "e1", "workflow": "rules", "serialNumber": "S1"})).unwrap();
    assert!(ev.to.is_none());
    let d = engine::decide(&reg, None, &ev);
    let msg = rejected(&d, Reason::MalformedEvent);
    assert!(msg.contains("`to`"), "{msg}");
}

/// An instance first seen mid-flow (flowbridge started after it) is
/// adopted: its first todo opens the transaction (docs/architecture.md:
/// only a tracked instance must be at `from`).
#[test]
fn instance_first_seen_mid_flow_is_adopted() {
    let reg = rules();
    let mut i = Instance::new(&reg, "rules", "S1");
    let d = i.ok(Some("route"), "manager");
    let todo = the_poa(&d);
    assert_eq!(todo.kind, TodoKind::First);
    assert_eq!(todo.item.task_id, i.task("manager", 1));
    // From then on it is tracked.
    rejected(&i.go(Some("draft"), "route"), Reason::InvalidTransition);
}

/// The template context: `event` (unknown fields too), `variables`,
/// `instance`, `node`, `task`. `instance.latestTodo` is the todo before this
/// one, and empty (not "none") on the first.
#[test]
fn templates_see_event_variables_instance_node_and_task() {
    let reg = registry(
        r#"
workflow: ctx
defaults:
  target: poa
  poa:
    appId: app-1
    transTypeCode: TT
    taskName: "{{ node.name }}/{{ node.id }}/{{ node.visit }}/{{ task.visit }}"
    handlers: "{{ event.tenant }}-{{ variables.who }}"
    transactionName: "{{ instance.workflow }}/{{ instance.serialNumber }}"
    viewUrl: "{{ instance.latestTodo }}"
    handleUrl: "https://x/{{ task.id }}"
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task, name: 甲 }
  - { id: b, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: b }
  - { from: b, to: end }
"#,
    );
    let mut i = Instance::new(&reg, "ctx", "C1");
    let mut ev = i.transition(None, "a");
    ev["tenant"] = json!("north");
    ev["variables"] = json!({"who": "u7"});
    let d = i.send(ev);
    let item = &the_poa(&d).item;
    assert_eq!(item.task_name, "甲/a/1/1");
    assert_eq!(item.handlers.as_deref(), Some("north-u7"));
    assert_eq!(item.transaction_name.as_deref(), Some("ctx/C1"));
    assert_eq!(item.view_url, None, "empty on the first todo, so omitted");
    assert_eq!(item.handle_url, Some(format!("https://x/{}", i.task("a", 1))));

    let mut ev = i.transition(Some("a"), "b");
    ev["tenant"] = json!("north");
    ev["variables"] = json!({"who": "u8"});
    let d = i.send(ev);
    assert_eq!(the_poa(&d).item.view_url, Some(i.task("a", 1)));
}

/// Integer and boolean fields mapped by a template: the rendered text is
/// parsed ("1" → 1, "true" → true), an empty render leaves the field out
/// like any optional field, and anything else is an invalid_field.
#[rstest]
#[case::set(json!({"delegate": 1, "timeout": "30", "auto": true, "merge": 1}), Some(json!({"canDelegate": 1, "timeOut": 30, "autoCreateTransType": true, "allowMerge": 1})))]
#[case::empty(json!({}), Some(json!({"canDelegate": null, "timeOut": null, "autoCreateTransType": null, "allowMerge": null})))]
#[case::not_an_integer(json!({"delegate": "yes"}), None)]
fn typed_fields_rendered_by_templates(
    #[case] variables: serde_json::Value,
    #[case] expected: Option<serde_json::Value>,
) {
    let reg = registry(
        r#"
workflow: typed
defaults:
  target: poa
  poa:
    appId: app-1
    transTypeCode: TT
    transTypeName: T
    taskName: t
    handlers: u1
    canDelegate: "{{ variables.delegate | default('') }}"
    timeOut: "{{ variables.timeout | default('') }}"
    autoCreateTransType: "{{ variables.auto | default('') | lower }}"
    actions:
      - { name: n, optType: 1, allowMerge: "{{ variables.merge | default('') }}" }
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    );
    let mut i = Instance::new(&reg, "typed", "T1").with_variables(variables);
    let d = i.go(None, "a");
    let Some(expected) = expected else {
        let msg = rejected(&d, Reason::InvalidField);
        assert!(
            msg.contains("`canDelegate` rendered \"yes\", which is not an integer"),
            "{msg}"
        );
        return;
    };
    let body = serde_json::to_value(&the_poa(&d).item).unwrap();
    for field in ["canDelegate", "timeOut", "autoCreateTransType"] {
        assert_eq!(
            body.get(field).unwrap_or(&json!(null)),
            &expected[field],
            "{field}"
        );
    }
    let merge = &body["actions"][0];
    assert_eq!(
        merge.get("allowMerge").unwrap_or(&json!(null)),
        &expected["allowMerge"]
    );
}
