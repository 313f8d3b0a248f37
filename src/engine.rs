//! `decide`: the pure function at the heart of flowbridge.
//!
//! Given the loaded workflows, one instance's state and an event, it decides
//! which todos to create and whether each is the **first** of its
//! transaction or **chained** to an earlier one, and what the instance's
//! state becomes. It does no I/O and reads no clock, so every rule below is
//! unit-tested without Kafka or HTTP.
//!
//! The rules:
//! - instance key = (workflow, serialNumber); a visit = how many times the
//!   instance entered a node, counting this one;
//! - taskIds are deterministic in (workflow, serialNumber, node, visit);
//! - no POA todo yet for the instance → first todo (no `previousTaskId`);
//!   otherwise chained, `previousTaskId` = the latest todo of the nearest
//!   POA task node upstream of `to` on the path the instance took (through
//!   gateways and other non-task nodes), else the instance's latest todo;
//! - a loop back to an earlier node is a new visit with a new taskId,
//!   chained to the todo it came from;
//! - each branch of a parallel split chains to the todo before the split;
//!   a join fires when all its branches arrived, and what follows it chains
//!   to the todo of the branch that arrived last;
//! - `from → to` must be a transition of the graph, and `from` a node the
//!   instance is at;
//! - entering an end node completes the instance; `kind: terminate`
//!   cancels it; later events for it are rejected;
//! - an eventId the instance already applied changes nothing (duplicate).

use std::fmt;

use minijinja::Value;
use petgraph::graph::NodeIndex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::contract::{aicc::AiccTaskInfo, poa::PoaItem};
use crate::event::{Event, EventKind};
use crate::state::{AiccIntent, InstanceState, Status};
use crate::workflow::fast::Scope;
use crate::workflow::fields::RenderError;
use crate::workflow::{Node, NodeKind, Registry, Todo, Workflow};

/// Why an event was rejected; the machine-readable part goes into the
/// dead-letter headers and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The bytes are not a valid event.
    MalformedEvent,
    /// No workflow with the event's id is loaded.
    UnknownWorkflow,
    /// `from` or `to` is not a node of the workflow.
    UnknownNode,
    /// `from → to` is not a transition, or the instance is not at `from`.
    InvalidTransition,
    /// The instance already reached an end node.
    InstanceCompleted,
    /// The instance was terminated.
    InstanceCancelled,
    /// A field template failed to render (e.g. a missing variable).
    TemplateError,
    /// A rendered value breaks the API contract (limit, enum, date, required).
    InvalidField,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::MalformedEvent,
        Reason::UnknownWorkflow,
        Reason::UnknownNode,
        Reason::InvalidTransition,
        Reason::InstanceCompleted,
        Reason::InstanceCancelled,
        Reason::TemplateError,
        Reason::InvalidField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedEvent => "malformed_event",
            Reason::UnknownWorkflow => "unknown_workflow",
            Reason::UnknownNode => "unknown_node",
            Reason::InvalidTransition => "invalid_transition",
            Reason::InstanceCompleted => "instance_completed",
            Reason::InstanceCancelled => "instance_cancelled",
            Reason::TemplateError => "template_error",
            Reason::InvalidField => "invalid_field",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected event: a reason and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

/// Whether a todo opens its transaction, joins one, or is an AICC task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TodoKind {
    First,
    Chained,
    Task,
}

impl TodoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TodoKind::First => "first",
            TodoKind::Chained => "chained",
            TodoKind::Task => "task",
        }
    }
}

/// A POA todo to create: one `addTransaction` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoaTodo {
    /// The task node that creates it.
    pub node: String,
    pub kind: TodoKind,
    /// The item as it will be sent; `task_id` and `previous_task_id` are the
    /// chain.
    pub item: PoaItem,
}

/// An AICC task to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiccCreate {
    pub node: String,
    /// Deterministic id of this create, recorded as a pending intent in the
    /// next state; resolved with the id AICC returns.
    pub intent_id: String,
    pub task_info: AiccTaskInfo,
}

/// Something a sink must do.
// A decision holds a handful of actions that live for one event; boxing the
// POA variant would only add an allocation and change the public shape.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Poa(PoaTodo),
    Aicc(AiccCreate),
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state to store once the actions are done; `None` = unchanged.
    pub next_state: Option<InstanceState>,
    /// Todos to create, in order.
    pub actions: Vec<Action>,
    /// Set when the event cannot be applied; then `next_state` is `None` and
    /// `actions` is empty.
    pub rejection: Option<Rejection>,
    /// The event was applied before; nothing to do.
    pub duplicate: bool,
}

impl Decision {
    fn reject(reason: Reason, message: String) -> Decision {
        Decision {
            next_state: None,
            actions: Vec::new(),
            rejection: Some(Rejection { reason, message }),
            duplicate: false,
        }
    }

    fn duplicate() -> Decision {
        Decision {
            next_state: None,
            actions: Vec::new(),
            rejection: None,
            duplicate: true,
        }
    }

    fn applied(next: InstanceState, actions: Vec<Action>) -> Decision {
        Decision {
            next_state: Some(next),
            actions,
            rejection: None,
            duplicate: false,
        }
    }
}

/// The deterministic id of the todo created by the `visit`-th entry of
/// `node` by instance `serial` of `workflow`: `fb-` and 32 hex digits of a
/// SHA-256 over the length-prefixed parts (35 bytes, unique across
/// workflows, stable across releases).
pub fn task_id(workflow: &str, serial: &str, node: &str, visit: u32) -> String {
    let mut h = Sha256::new();
    for part in [workflow, serial, node] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(visit.to_le_bytes());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(35);
    out.push_str("fb-");
    for b in &digest[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Decides what `event` means for the instance whose current state is
/// `state` (`None` = never seen).
pub fn decide(workflows: &Registry, state: Option<&InstanceState>, event: &Event) -> Decision {
    let Some(wf) = workflows.get(&event.workflow) else {
        return Decision::reject(
            Reason::UnknownWorkflow,
            format!("no workflow `{}` is loaded", event.workflow),
        );
    };
    decide_in(wf, state, event)
}

/// [`decide`] for an already looked-up workflow.
pub fn decide_in(wf: &Workflow, state: Option<&InstanceState>, event: &Event) -> Decision {
    if let Some(s) = state {
        if s.has_applied(&event.event_id) {
            return Decision::duplicate();
        }
        match s.status {
            Status::Active => {}
            Status::Completed => {
                return Decision::reject(
                    Reason::InstanceCompleted,
                    format!(
                        "instance {} of `{}` already completed; event {} arrived after its end",
                        s.serial_number, wf.id, event.event_id
                    ),
                );
            }
            Status::Cancelled => {
                return Decision::reject(
                    Reason::InstanceCancelled,
                    format!(
                        "instance {} of `{}` was terminated; event {} arrived after that",
                        s.serial_number, wf.id, event.event_id
                    ),
                );
            }
        }
    }
    let mut next = state
        .cloned()
        .unwrap_or_else(|| InstanceState::new(&wf.id, &event.serial_number));

    if event.kind == EventKind::Terminate {
        next.status = Status::Cancelled;
        next.positions.clear();
        next.remember(&event.event_id);
        return Decision::applied(next, Vec::new());
    }

    // Event::decode guarantees `to` on transition events, but an adapter may
    // build an Event by hand: reject rather than panic.
    let Some(to_id) = event.to.as_deref() else {
        return Decision::reject(
            Reason::MalformedEvent,
            "`to` is missing: a transition event needs the node the instance entered".into(),
        );
    };
    let Some(to) = wf.node(to_id) else {
        return Decision::reject(
            Reason::UnknownNode,
            format!(
                "`to` names node `{to_id}`, which workflow `{}` does not have",
                wf.id
            ),
        );
    };
    let from = match event.from.as_deref() {
        None => None,
        Some(f) => match wf.node(f) {
            Some(i) => Some(i),
            None => {
                return Decision::reject(
                    Reason::UnknownNode,
                    format!(
                        "`from` names node `{f}`, which workflow `{}` does not have",
                        wf.id
                    ),
                );
            }
        },
    };
    let tracked = state.is_some_and(|s| !s.positions.is_empty());

    // The node the instance leaves (for a start event: the start node, unless
    // `to` is the start node itself).
    let leaving: Option<NodeIndex> = match from {
        Some(f) => {
            if !wf.has_edge(f, to) {
                return Decision::reject(
                    Reason::InvalidTransition,
                    format!(
                        "`{}` → `{to_id}` is not a transition of workflow `{}`",
                        wf.graph[f].id, wf.id
                    ),
                );
            }
            if tracked && !next.positions.contains_key(&wf.graph[f].id) {
                return Decision::reject(
                    Reason::InvalidTransition,
                    format!(
                        "instance {} is at {}, not at `{}`",
                        next.serial_number,
                        positions_list(&next),
                        wf.graph[f].id
                    ),
                );
            }
            Some(f)
        }
        None if to == wf.start => None,
        None => {
            if !wf.has_edge(wf.start, to) {
                return Decision::reject(
                    Reason::InvalidTransition,
                    format!(
                        "an event without `from` starts the instance: `to` must be the start node `{}` or a node right after it, not `{to_id}`",
                        wf.graph[wf.start].id
                    ),
                );
            }
            Some(wf.start)
        }
    };
    if from.is_none() && tracked {
        return Decision::reject(
            Reason::InvalidTransition,
            format!(
                "instance {} already started (it is at {}); only its first event may omit `from`",
                next.serial_number,
                positions_list(&next)
            ),
        );
    }

    // Leave.
    let incoming_anchor = leaving.and_then(|l| {
        let id = &wf.graph[l].id;
        if let Some(left) = next.positions.get_mut(id) {
            *left -= 1;
            if *left == 0 {
                next.positions.remove(id);
            }
        }
        next.nodes.get(id).and_then(|n| n.anchor.clone())
    });

    // Enter.
    let node = &wf.graph[to];
    let ns = next.nodes.entry(node.id.clone()).or_default();
    ns.anchor = incoming_anchor.clone();
    if node.kind == NodeKind::ParallelJoin {
        ns.arrived += 1;
        if ns.arrived < wf.in_degree(to) {
            next.remember(&event.event_id);
            return Decision::applied(next, Vec::new());
        }
        ns.arrived = 0;
    }
    ns.visits += 1;
    let visit = ns.visits;
    let departures = match node.kind {
        NodeKind::ParallelSplit => wf.out_degree(to),
        NodeKind::End => 0,
        _ => 1,
    };
    if departures > 0 {
        next.positions.insert(node.id.clone(), departures);
    }

    let mut actions = Vec::new();
    match (&node.kind, &node.todo) {
        (NodeKind::Task, Some(todo)) => {
            match todo_action(wf, &next, node, todo, visit, incoming_anchor, event) {
                Ok(action) => {
                    let ns = next.nodes.get_mut(&node.id).expect("entered above");
                    match &action {
                        Action::Poa(t) => {
                            ns.latest_task = Some(t.item.task_id.clone());
                            ns.anchor = Some(t.item.task_id.clone());
                            next.latest_todo = Some(t.item.task_id.clone());
                        }
                        Action::Aicc(a) => {
                            ns.latest_task = None;
                            next.pending_aicc.push(AiccIntent {
                                intent_id: a.intent_id.clone(),
                                node: node.id.clone(),
                                visit,
                                title: a.task_info.title.clone(),
                                creator_id: a.task_info.creator_id.clone(),
                                owner_id: a.task_info.owner_id.clone(),
                                relate_id: a.task_info.relate_id.clone(),
                            });
                        }
                    }
                    actions.push(action);
                }
                Err(r) => return Decision::reject(r.reason, r.message),
            }
        }
        (NodeKind::End, _) => {
            next.status = Status::Completed;
            next.positions.clear();
        }
        _ => {}
    }
    next.remember(&event.event_id);
    Decision::applied(next, actions)
}

fn positions_list(s: &InstanceState) -> String {
    let list: Vec<String> = s.positions.keys().map(|k| format!("`{k}`")).collect();
    format!("[{}]", list.join(", "))
}

fn todo_action(
    wf: &Workflow,
    state: &InstanceState,
    node: &Node,
    todo: &Todo,
    visit: u32,
    incoming_anchor: Option<String>,
    event: &Event,
) -> Result<Action, Rejection> {
    let default_id = task_id(&wf.id, &event.serial_number, &node.id, visit);
    let scope = scope(event, state, node, visit, &default_id);
    let reject = |e: RenderError| match e {
        RenderError::Template { field, message } => Rejection {
            reason: Reason::TemplateError,
            message: format!("node `{}`: `{field}` template failed: {message}", node.id),
        },
        RenderError::Invalid(p) => Rejection {
            reason: Reason::InvalidField,
            message: format!("node `{}`: {p}", node.id),
        },
    };
    match todo {
        Todo::Poa { .. } => {
            let base = PoaItem {
                node_id: node.id.clone(),
                node_name: node.name.clone(),
                task_id: default_id.clone(),
                serial_number: Some(event.serial_number.clone()),
                initiator: event.initiator.clone(),
                initiator_name: event.initiator_name.clone(),
                ..PoaItem::default()
            };
            let mut item = wf.render_poa(todo, base, &scope).map_err(reject)?;
            let previous = state
                .latest_todo
                .as_ref()
                .map(|latest| incoming_anchor.unwrap_or_else(|| latest.clone()));
            let kind = if previous.is_some() {
                TodoKind::Chained
            } else {
                TodoKind::First
            };
            item.previous_task_id = previous;
            Ok(Action::Poa(PoaTodo {
                node: node.id.clone(),
                kind,
                item,
            }))
        }
        Todo::Aicc { .. } => {
            let task_info = wf.render_aicc(todo, &scope).map_err(reject)?;
            Ok(Action::Aicc(AiccCreate {
                node: node.id.clone(),
                intent_id: default_id,
                task_info,
            }))
        }
    }
}

/// What a todo's templates see: `event` (every field, including unknown
/// ones), `variables`, `instance`, `node` and `task`.
pub fn scope<'a>(
    event: &'a Event,
    state: &'a InstanceState,
    node: &'a Node,
    visit: u32,
    task_id: &'a str,
) -> Scope<'a> {
    Scope::new(
        event,
        &state.workflow,
        &state.serial_number,
        state.latest_todo.as_deref().unwrap_or(""),
        &node.id,
        &node.name,
        visit,
        task_id,
    )
}

/// The minijinja form of [`scope`], as a template that is not rendered
/// directly sees it. Public for the template-rendering micro-benchmark.
pub fn context(event: &Event, state: &InstanceState, node: &Node, visit: u32, task_id: &str) -> Value {
    scope(event, state, node, visit, task_id).value().clone()
}
