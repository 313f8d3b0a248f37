//! Workflows: YAML files compiled into petgraph graphs with their todo
//! mappings, validated at load.
//!
//! [`compile`] turns one file into a [`Workflow`] or every problem found in
//! it, each with its `file:line:col`; [`Registry`] holds the workflows of a
//! directory by id. The schema is documented in `docs/workflows.md`.

pub mod diagram;
pub mod fast;
pub mod fields;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed, Walker};
use serde_saphyr::Spanned;

use crate::contract::{self, aicc::AiccTaskInfo, poa::PoaAction, poa::PoaItem};
use fast::Scope;
use fields::{Body, Compiled, Compiler, FieldSpec, RenderError};
pub use spec::{NodeKind, Pos, Target};
use spec::{RawAicc, RawPoa, RawTodo, RawValue, RawWorkflow};

/// A problem in a workflow file, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )
    }
}

/// The problems of a set of workflow files, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// What a task node creates.
#[derive(Debug, Clone)]
pub enum Todo {
    Poa {
        fields: Vec<FieldSpec>,
        /// `actions[]`, each a list of mappings.
        actions: Option<Vec<Vec<FieldSpec>>>,
    },
    Aicc {
        fields: Vec<FieldSpec>,
    },
}

impl Todo {
    pub fn target(&self) -> Target {
        match self {
            Todo::Poa { .. } => Target::Poa,
            Todo::Aicc { .. } => Target::Aicc,
        }
    }
}

/// A node of the compiled graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
    pub pos: Pos,
    /// For a parallel split: its join.
    pub join: Option<NodeIndex>,
    /// For a task node: what it creates.
    pub todo: Option<Todo>,
}

/// A compiled, validated workflow.
#[derive(Debug)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    /// The file it was loaded from (for messages).
    pub file: String,
    /// Nodes and transitions; an edge weight is the transition's label.
    pub graph: DiGraph<Node, Option<String>>,
    pub start: NodeIndex,
    index: HashMap<String, NodeIndex>,
    env: Environment<'static>,
}

impl Workflow {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<NodeIndex> {
        self.index.get(id).copied()
    }

    pub fn has_edge(&self, from: NodeIndex, to: NodeIndex) -> bool {
        self.graph.find_edge(from, to).is_some()
    }

    pub fn out_degree(&self, n: NodeIndex) -> u32 {
        self.graph.neighbors_directed(n, Direction::Outgoing).count() as u32
    }

    pub fn in_degree(&self, n: NodeIndex) -> u32 {
        self.graph.neighbors_directed(n, Direction::Incoming).count() as u32
    }

    /// Task nodes per target.
    pub fn task_counts(&self) -> (usize, usize) {
        self.graph
            .node_weights()
            .filter_map(|n| n.todo.as_ref())
            .fold((0, 0), |(p, a), t| match t.target() {
                Target::Poa => (p + 1, a),
                Target::Aicc => (p, a + 1),
            })
    }

    /// Renders a POA item: `base` holds the engine's values (ids, node,
    /// serialNumber, initiator), the node's mappings override them, and the
    /// result is checked against the contract.
    pub fn render_poa(
        &self,
        todo: &Todo,
        mut item: PoaItem,
        scope: &Scope<'_>,
    ) -> Result<PoaItem, RenderError> {
        let Todo::Poa {
            fields: specs,
            actions,
        } = todo
        else {
            unreachable!("render_poa is called for POA todos")
        };
        for spec in specs {
            let v = fields::render(&self.env, Body::Poa, spec, scope)?;
            fields::set_poa(&mut item, spec.name, v);
        }
        if let Some(actions) = actions {
            let mut out = Vec::with_capacity(actions.len());
            for specs in actions {
                let mut action = PoaAction::default();
                for spec in specs {
                    let v = fields::render(&self.env, Body::PoaAction, spec, scope)?;
                    fields::set_poa_action(&mut action, spec.name, v);
                }
                out.push(action);
            }
            item.actions = Some(out);
        }
        if let Some(p) = contract::poa::check_item(&item).into_iter().next() {
            return Err(RenderError::Invalid(p));
        }
        Ok(item)
    }

    /// Renders an AICC `taskInfo` and checks it against the contract.
    pub fn render_aicc(&self, todo: &Todo, scope: &Scope<'_>) -> Result<AiccTaskInfo, RenderError> {
        let Todo::Aicc { fields: specs } = todo else {
            unreachable!("render_aicc is called for AICC todos")
        };
        let mut info = AiccTaskInfo::default();
        for spec in specs {
            let v = fields::render(&self.env, Body::Aicc, spec, scope)?;
            fields::set_aicc(&mut info, spec.name, v);
        }
        if let Some(p) = contract::aicc::check_task_info(&info).into_iter().next() {
            return Err(RenderError::Invalid(p));
        }
        Ok(info)
    }
}

/// Compiles one workflow file, or returns every problem found in it.
pub fn compile(file: &str, text: &str) -> Result<Workflow, Vec<Problem>> {
    let mut problems: Vec<(Pos, String)> = Vec::new();
    let raw = match spec::parse(text) {
        Ok(raw) => raw,
        Err((pos, message)) => {
            return Err(vec![Problem {
                file: file.to_owned(),
                pos,
                message,
            }]);
        }
    };
    let wf = build(&raw, file, &mut problems);
    if problems.is_empty()
        && let Some(wf) = wf
    {
        return Ok(wf);
    }
    let mut out: Vec<Problem> = problems
        .into_iter()
        .map(|(pos, message)| Problem {
            file: file.to_owned(),
            pos,
            message,
        })
        .collect();
    out.sort();
    out.dedup();
    Err(out)
}

fn build(raw: &RawWorkflow, file: &str, problems: &mut Vec<(Pos, String)>) -> Option<Workflow> {
    let wf_pos = Pos::from(&raw.workflow);
    if raw.workflow.value.trim().is_empty() {
        problems.push((wf_pos, "`workflow` (the id events name) is empty".into()));
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);

    // Nodes.
    let mut graph: DiGraph<Node, Option<String>> = DiGraph::new();
    let mut index: HashMap<String, NodeIndex> = HashMap::new();
    for n in &raw.nodes {
        let id = n.id.value.clone();
        let pos = Pos::from(&n.id);
        if id.trim().is_empty() {
            problems.push((pos, "node id is empty".into()));
            continue;
        }
        if id.len() > crate::event::MAX_ID_BYTES {
            problems.push((
                pos,
                format!(
                    "node id is {} bytes, over {}",
                    id.len(),
                    crate::event::MAX_ID_BYTES
                ),
            ));
        }
        if let Some(&first) = index.get(&id) {
            let first_pos = graph[first].pos;
            problems.push((
                pos,
                format!(
                    "duplicate node id `{id}` (first defined at line {})",
                    first_pos.line
                ),
            ));
            continue;
        }
        let kind = n.kind.value;
        let idx = graph.add_node(Node {
            name: n.name.clone().unwrap_or_else(|| id.clone()),
            id: id.clone(),
            kind,
            pos,
            join: None,
            todo: None,
        });
        index.insert(id, idx);
    }

    // Transitions.
    let mut seen_edges = HashSet::new();
    for t in &raw.transitions {
        let from = lookup(&index, &t.from, "transition from", problems);
        let to = lookup(&index, &t.to, "transition to", problems);
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if !seen_edges.insert((from, to)) {
            problems.push((
                Pos::from(&t.from),
                format!("duplicate transition `{}` → `{}`", t.from.value, t.to.value),
            ));
            continue;
        }
        graph.add_edge(from, to, t.label.clone());
    }

    // Start and end nodes.
    let starts: Vec<NodeIndex> = graph
        .node_indices()
        .filter(|&i| graph[i].kind == NodeKind::Start)
        .collect();
    match starts.as_slice() {
        [] => problems.push((
            wf_pos,
            "workflow has no start node (a node with `kind: start`)".into(),
        )),
        [_] => {}
        [first, rest @ ..] => {
            for &s in rest {
                problems.push((
                    graph[s].pos,
                    format!(
                        "second start node `{}`: a workflow has exactly one (first: `{}`)",
                        graph[s].id, graph[*first].id
                    ),
                ));
            }
        }
    }
    for i in graph.node_indices() {
        let n = &graph[i];
        let ins = graph.neighbors_directed(i, Direction::Incoming).count();
        let outs = graph.neighbors_directed(i, Direction::Outgoing).count();
        match n.kind {
            NodeKind::Start if ins > 0 => {
                problems.push((n.pos, format!("start node `{}` has incoming transitions", n.id)))
            }
            NodeKind::End if outs > 0 => {
                problems.push((n.pos, format!("end node `{}` has outgoing transitions", n.id)))
            }
            NodeKind::ParallelSplit if outs < 2 => problems.push((
                n.pos,
                format!(
                    "parallel split `{}` has {outs} outgoing transition(s); it needs at least 2",
                    n.id
                ),
            )),
            NodeKind::ParallelJoin if ins < 2 => problems.push((
                n.pos,
                format!(
                    "parallel join `{}` has {ins} incoming transition(s); it needs at least 2",
                    n.id
                ),
            )),
            _ => {}
        }
    }

    // Reachability: from the start, and to an end.
    if let [start] = starts.as_slice() {
        let reached: HashSet<NodeIndex> = Dfs::new(&graph, *start).iter(&graph).collect();
        for i in graph.node_indices() {
            if !reached.contains(&i) {
                problems.push((
                    graph[i].pos,
                    format!("node `{}` is unreachable from the start node", graph[i].id),
                ));
            }
        }
    }
    let reversed = Reversed(&graph);
    let mut reaches_end = HashSet::new();
    for e in graph.node_indices().filter(|&i| graph[i].kind == NodeKind::End) {
        reaches_end.extend(Dfs::new(reversed, e).iter(reversed));
    }
    for i in graph.node_indices() {
        if !reaches_end.contains(&i) {
            problems.push((
                graph[i].pos,
                format!("no end node is reachable from node `{}`", graph[i].id),
            ));
        }
    }

    // Parallel splits and their joins.
    let mut joined: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    for n in &raw.nodes {
        let Some(&idx) = index.get(&n.id.value) else {
            continue;
        };
        if graph[idx].pos != Pos::from(&n.id) {
            continue; // a duplicate id, reported above
        }
        match (n.kind.value, &n.join) {
            (NodeKind::ParallelSplit, None) => problems.push((
                Pos::from(&n.id),
                format!(
                    "parallel split `{}` has no matching join: name its `parallel_join` node in `join`",
                    n.id.value
                ),
            )),
            (NodeKind::ParallelSplit, Some(j)) => {
                let Some(jidx) = lookup(&index, j, "join", problems) else {
                    continue;
                };
                if graph[jidx].kind != NodeKind::ParallelJoin {
                    problems.push((
                        Pos::from(j),
                        format!(
                            "`join` of `{}` names `{}`, which is {} node, not a parallel_join",
                            n.id.value,
                            j.value,
                            a_kind(graph[jidx].kind)
                        ),
                    ));
                    continue;
                }
                if let Some(other) = joined.insert(jidx, idx) {
                    problems.push((
                        Pos::from(j),
                        format!(
                            "parallel join `{}` is already the join of split `{}`",
                            j.value, graph[other].id
                        ),
                    ));
                }
                let branches: Vec<NodeIndex> = graph.neighbors_directed(idx, Direction::Outgoing).collect();
                for b in &branches {
                    if !petgraph::algo::has_path_connecting(&graph, *b, jidx, None) {
                        problems.push((
                            Pos::from(j),
                            format!(
                                "branch `{}` of parallel split `{}` never reaches its join `{}`",
                                graph[*b].id, n.id.value, j.value
                            ),
                        ));
                    }
                }
                let ins = graph.neighbors_directed(jidx, Direction::Incoming).count();
                if ins != branches.len() {
                    problems.push((
                        Pos::from(j),
                        format!("parallel split `{}` opens {} branches but its join `{}` has {ins} incoming transitions", n.id.value, branches.len(), j.value),
                    ));
                }
                graph[idx].join = Some(jidx);
            }
            (_, Some(j)) => problems.push((
                Pos::from(j),
                format!(
                    "`join` is only for parallel_split nodes; `{}` is {} node",
                    n.id.value,
                    a_kind(n.kind.value)
                ),
            )),
            (_, None) => {}
        }
    }
    for i in graph.node_indices() {
        if graph[i].kind == NodeKind::ParallelJoin && !joined.contains_key(&i) {
            problems.push((
                graph[i].pos,
                format!(
                    "parallel join `{}` is not the `join` of any parallel_split",
                    graph[i].id
                ),
            ));
        }
    }

    // Todos.
    for n in &raw.nodes {
        let Some(&idx) = index.get(&n.id.value) else {
            continue;
        };
        if graph[idx].pos != Pos::from(&n.id) {
            continue;
        }
        let pos = Pos::from(&n.id);
        if n.kind.value != NodeKind::Task {
            if n.todo.is_some() {
                problems.push((
                    pos,
                    format!(
                        "`todo` is only for task nodes; `{}` is {} node",
                        n.id.value,
                        a_kind(n.kind.value)
                    ),
                ));
            }
            continue;
        }
        let mut c = Compiler {
            env: &mut env,
            problems,
            scope: format!("node `{}`", n.id.value),
        };
        graph[idx].todo = compile_todo(&mut c, &raw.defaults, n.todo.as_ref(), pos);
    }

    let start = *starts.first()?;
    Some(Workflow {
        id: raw.workflow.value.clone(),
        name: raw.name.clone().unwrap_or_else(|| raw.workflow.value.clone()),
        file: file.to_owned(),
        graph,
        start,
        index,
        env,
    })
}

/// "a task", "an exclusive", … for messages.
fn a_kind(kind: NodeKind) -> String {
    let k = kind.as_str();
    let article = if matches!(k.as_bytes()[0], b'a' | b'e' | b'i' | b'o' | b'u') {
        "an"
    } else {
        "a"
    };
    format!("{article} {k}")
}

fn lookup(
    index: &HashMap<String, NodeIndex>,
    id: &Spanned<String>,
    what: &str,
    problems: &mut Vec<(Pos, String)>,
) -> Option<NodeIndex> {
    let found = index.get(&id.value).copied();
    if found.is_none() {
        problems.push((Pos::from(id), format!("{what} unknown node `{}`", id.value)));
    }
    found
}

/// The scope of messages (and template names) for a value from `defaults`:
/// the same for every task node that uses it, so its problems are reported
/// once rather than once per node.
const DEFAULTS_SCOPE: &str = "defaults";

/// `defaults` when `raw` is one of the defaults' values, else the node's scope.
fn origin(
    defaults: &[(&'static str, &Spanned<RawValue>)],
    raw: &Spanned<RawValue>,
    node_scope: &str,
) -> String {
    if defaults.iter().any(|(_, d)| std::ptr::eq(*d, raw)) {
        DEFAULTS_SCOPE.to_owned()
    } else {
        node_scope.to_owned()
    }
}

/// Whether a merged mapping sets `name`: an empty literal does not, since an
/// empty value leaves the field out of the body.
fn is_set(entries: &[(&'static str, &Spanned<RawValue>)], name: &str) -> bool {
    entries
        .iter()
        .any(|(n, v)| *n == name && !matches!(&v.value, RawValue::Str(s) if s.is_empty()))
}

/// Node mappings override the defaults field by field.
fn merged<'a>(
    defaults: Vec<(&'static str, &'a Spanned<RawValue>)>,
    node: Vec<(&'static str, &'a Spanned<RawValue>)>,
) -> Vec<(&'static str, &'a Spanned<RawValue>)> {
    let mut out = defaults;
    for (name, v) in node {
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = v,
            None => out.push((name, v)),
        }
    }
    out
}

fn compile_todo(c: &mut Compiler<'_>, defaults: &RawTodo, node: Option<&RawTodo>, pos: Pos) -> Option<Todo> {
    let target = node
        .and_then(|t| t.target.as_ref())
        .or(defaults.target.as_ref())
        .map(|t| t.value);
    let Some(target) = target else {
        c.problems.push((
            pos,
            format!(
                "{}: task node has no target: set `defaults.target` or `todo.target` (poa or aicc)",
                c.scope
            ),
        ));
        return None;
    };
    let scope = c.scope.clone();
    match target {
        Target::Poa => {
            if node.and_then(|t| t.aicc.as_ref()).is_some() {
                c.problems
                    .push((pos, format!("{scope}: has `aicc` mappings but its target is poa")));
            }
            let d = defaults.poa.as_ref();
            let nd = node.and_then(|t| t.poa.as_ref());
            let default_entries = d.map(RawPoa::entries).unwrap_or_default();
            let entries = merged(
                default_entries.clone(),
                nd.map(RawPoa::entries).unwrap_or_default(),
            );
            let has = |name: &str| is_set(&entries, name);
            let mut missing = Vec::new();
            for required in ["appId", "taskName", "transTypeCode"] {
                if !has(required) {
                    missing.push(format!("`{required}`"));
                }
            }
            if !has("handlers") && !has("handlingGroup") {
                missing.push("`handlers` or `handlingGroup`".into());
            }
            if !missing.is_empty() {
                c.problems.push((
                    pos,
                    format!("{scope}: POA todo is missing {}", missing.join(", ")),
                ));
            }
            let auto = entries
                .iter()
                .find(|(n, _)| *n == "autoCreateTransType")
                .map(|(_, v)| &v.value);
            if auto == Some(&RawValue::Bool(true)) && !has("transTypeName") {
                c.problems.push((
                    pos,
                    format!("{scope}: `transTypeName` is required when `autoCreateTransType` is true"),
                ));
            }
            let mut specs = Vec::new();
            for (name, raw) in &entries {
                let at = origin(&default_entries, raw, &scope);
                c.scope = at.clone();
                match *name {
                    "previousTaskId" => c.problems.push((
                        Pos::from(*raw),
                        format!("{at}: `previousTaskId` cannot be mapped: flowbridge sets it (absent on the first todo, the todo it follows on a chained one)"),
                    )),
                    "taskId" if !matches!(&raw.value, RawValue::Str(s) if fields::is_template(s)) => c.problems.push((
                        Pos::from(*raw),
                        format!("{at}: `taskId` must be a template unique per instance and visit, such as \"{{{{ task.id }}}}\" (the default); a literal would give every instance the same id"),
                    )),
                    _ => specs.extend(c.compile(Body::Poa, name, raw)),
                }
            }
            c.scope = scope.clone();
            let node_actions = nd.and_then(|p| p.actions.as_ref());
            let actions_scope = if node_actions.is_some() {
                scope.clone()
            } else {
                DEFAULTS_SCOPE.to_owned()
            };
            let actions = node_actions.or(d.and_then(|p| p.actions.as_ref())).map(|list| {
                let actions = list
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        // The index keeps each action's templates apart
                        // in the environment (they are named by scope).
                        c.scope = format!("{actions_scope}, actions[{i}]");
                        let entries = a.entries();
                        let api = entries
                            .iter()
                            .find(|(n, v)| *n == "optType" && v.value == RawValue::Int(0));
                        if let Some((_, opt)) = api
                            && !is_set(&entries, "method")
                        {
                            c.problems.push((
                                Pos::from(*opt),
                                format!("{}: `method` is required when `optType` is 0 (api)", c.scope),
                            ));
                        }
                        entries
                            .into_iter()
                            .filter_map(|(name, raw)| c.compile(Body::PoaAction, name, raw))
                            .collect()
                    })
                    .collect();
                c.scope = scope.clone();
                actions
            });
            Some(Todo::Poa {
                fields: specs,
                actions,
            })
        }
        Target::Aicc => {
            if node.and_then(|t| t.poa.as_ref()).is_some() {
                c.problems
                    .push((pos, format!("{scope}: has `poa` mappings but its target is aicc")));
            }
            let default_entries = defaults.aicc.as_ref().map(RawAicc::entries).unwrap_or_default();
            let entries = merged(
                default_entries.clone(),
                node.and_then(|t| t.aicc.as_ref())
                    .map(RawAicc::entries)
                    .unwrap_or_default(),
            );
            let has = |name: &str| is_set(&entries, name);
            let missing: Vec<String> = ["title", "ownerId", "creatorId"]
                .into_iter()
                .filter(|f| !has(f))
                .map(|f| format!("`{f}`"))
                .collect();
            if !missing.is_empty() {
                c.problems.push((
                    pos,
                    format!("{scope}: AICC task is missing {}", missing.join(", ")),
                ));
            }
            if has("type") && !has("relateId") {
                c.problems.push((
                    pos,
                    format!("{scope}: AICC `relateId` is required when `type` is set"),
                ));
            }
            let specs = entries
                .iter()
                .filter_map(|(name, raw)| {
                    c.scope = origin(&default_entries, raw, &scope);
                    c.compile(Body::Aicc, name, raw)
                })
                .collect();
            c.scope = scope;
            Some(Todo::Aicc { fields: specs })
        }
    }
}

/// The loaded workflows, by id.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    by_id: HashMap<String, Arc<Workflow>>,
}

impl Registry {
    /// Loads every `*.yaml` / `*.yml` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Registry, Problems> {
        let read_err = |message: String| {
            Problems(vec![Problem {
                file: dir.display().to_string(),
                pos: Pos { line: 0, col: 0 },
                message,
            }])
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| read_err(format!("cannot read workflow directory: {e}")))?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(read_err(
                "no workflow files (*.yaml, *.yml) in this directory".into(),
            ));
        }
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| read_err(format!("cannot read {}: {e}", p.display())))?;
            sources.push((p.display().to_string(), text));
        }
        Registry::from_sources(sources)
    }

    /// Compiles (file name, text) pairs; every problem of every file is
    /// returned, sorted by file and position.
    pub fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Registry, Problems> {
        let mut by_id: HashMap<String, Arc<Workflow>> = HashMap::new();
        let mut problems = Vec::new();
        for (file, text) in sources {
            match compile(&file, &text) {
                Ok(wf) => {
                    if let Some(other) = by_id.get(&wf.id) {
                        problems.push(Problem {
                            file: file.clone(),
                            pos: Pos { line: 1, col: 1 },
                            message: format!("workflow id `{}` is already defined in {}", wf.id, other.file),
                        });
                        continue;
                    }
                    by_id.insert(wf.id.clone(), Arc::new(wf));
                }
                Err(p) => problems.extend(p),
            }
        }
        if problems.is_empty() {
            Ok(Registry { by_id })
        } else {
            problems.sort();
            Err(Problems(problems))
        }
    }

    /// The sample workflows compiled into the binary (`workflows/`).
    pub fn embedded() -> Registry {
        Registry::from_sources(
            crate::samples::WORKFLOWS
                .iter()
                .map(|(name, text)| (format!("workflows/{name}"), (*text).to_owned())),
        )
        .expect("the embedded sample workflows are valid (tested by samples_are_valid)")
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Workflow>> {
        self.by_id.get(id)
    }

    /// Workflows sorted by id.
    pub fn workflows(&self) -> Vec<&Arc<Workflow>> {
        let mut v: Vec<_> = self.by_id.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// One summary line per workflow, as `validate` prints it.
pub fn summary(wf: &Workflow) -> String {
    let (poa, aicc) = wf.task_counts();
    let mut targets = Vec::new();
    if poa > 0 {
        targets.push(format!("poa×{poa}"));
    }
    if aicc > 0 {
        targets.push(format!("aicc×{aicc}"));
    }
    format!(
        "{}: ok — {} ({}): {} nodes, {} transitions, {} task nodes, targets: {}",
        wf.file,
        wf.id,
        wf.name,
        wf.graph.node_count(),
        wf.graph.edge_count(),
        poa + aicc,
        if targets.is_empty() {
            "none".into()
        } else {
            targets.join(", ")
        }
    )
}

impl Compiled {
    /// Whether the value is a template (for docs and diagrams).
    pub fn is_template(&self) -> bool {
        matches!(self, Compiled::Template { .. })
    }
}
