//! A direct renderer for the templates most mappings are: text around
//! `{{ path }}`, `{{ path | default('…') }}` and `{{ path | join('…') }}`.
//!
//! Rendering a minijinja template needs the whole context as minijinja
//! values: the event serialized field by field (and its `variables` once
//! more), plus the instance, node and task maps — about thirty allocations
//! before the first field is rendered, then a VM run per field. Profiling
//! the end-to-end bench put that at over half of `decide`'s time. Mappings
//! like `{{ variables.studentName }}` need none of it: they read one value
//! from the event.
//!
//! So a template of that shape is also compiled into [`Fast`] at load, which
//! reads from the [`Scope`] directly. It only ever answers what minijinja
//! would: whenever the value is not a plain string or integer (a boolean,
//! null, float, map, a missing value without `default`, a list element
//! that is not a string, …) it declines and the field is rendered by
//! minijinja itself, errors included. A differential test checks this
//! against minijinja over the sample workflows and a table of edge cases.

use std::cell::OnceCell;
use std::fmt::Write as _;

use minijinja::Value;
use serde_json::{Map, Value as Json};

use crate::event::{Event, EventKind};

/// What a todo's templates see: the event, the instance, the node and the
/// task. The minijinja form is built only when a template needs it.
pub struct Scope<'a> {
    pub event: &'a Event,
    pub workflow: &'a str,
    pub serial_number: &'a str,
    /// The instance's latest POA todo; empty before the first.
    pub latest_todo: &'a str,
    pub node_id: &'a str,
    pub node_name: &'a str,
    pub visit: u32,
    pub task_id: &'a str,
    value: OnceCell<Value>,
}

impl<'a> Scope<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        event: &'a Event,
        workflow: &'a str,
        serial_number: &'a str,
        latest_todo: &'a str,
        node_id: &'a str,
        node_name: &'a str,
        visit: u32,
        task_id: &'a str,
    ) -> Self {
        Self {
            event,
            workflow,
            serial_number,
            latest_todo,
            node_id,
            node_name,
            visit,
            task_id,
            value: OnceCell::new(),
        }
    }

    /// The template context: `event` (every field, including unknown
    /// ones), `variables`, `instance`, `node` and `task`; built on first use.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            minijinja::context! {
                event => Value::from_serialize(self.event),
                variables => Value::from_serialize(&self.event.variables),
                instance => minijinja::context! {
                    workflow => self.workflow,
                    serialNumber => self.serial_number,
                    // Empty, not none, before the first todo: none renders
                    // as "none", and an empty value leaves an optional field
                    // out.
                    latestTodo => self.latest_todo,
                },
                node => minijinja::context! {
                    id => self.node_id,
                    name => self.node_name,
                    visit => self.visit,
                },
                task => minijinja::context! {
                    id => self.task_id,
                    visit => self.visit,
                },
            }
        })
    }
}

/// A template compiled for direct rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct Fast {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
struct Expr {
    root: Root,
    steps: Vec<Step>,
    filter: Option<Filter>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Event,
    Variables,
    Instance,
    Node,
    Task,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Attr(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Default(String),
    Join(String),
}

/// A value found in the scope, borrowed.
enum Found<'s> {
    Str(&'s str),
    Int(i64),
    Strings(&'s [String]),
    Map(&'s Map<String, Json>),
    Json(&'s Json),
    /// Not there: undefined to minijinja.
    Missing,
}

impl Fast {
    /// Compiles `source` when it has the supported shape; `None` otherwise
    /// (minijinja then renders it every time).
    pub fn parse(source: &str) -> Option<Fast> {
        let mut parts = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(0) => {
                    let end = rest.find("}}")?;
                    parts.push(Part::Expr(parse_expr(&rest[2..end])?));
                    rest = &rest[end + 2..];
                }
                Some(i) => {
                    parts.push(Part::Text(plain_text(&rest[..i])?));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Text(plain_text(rest)?));
                    rest = "";
                }
            }
        }
        // minijinja drops one trailing newline of a template.
        if let Some(Part::Text(t)) = parts.last()
            && t.ends_with('\n')
        {
            return None;
        }
        Some(Fast { parts })
    }

    /// Renders into `out`; `false` when minijinja must render it instead
    /// (`out` is then left in an unspecified state).
    pub fn render(&self, scope: &Scope<'_>, out: &mut String) -> bool {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    if !e.render(scope, out) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Text outside expressions, when it holds no other template syntax.
fn plain_text(s: &str) -> Option<String> {
    if s.contains("{%") || s.contains("{#") || s.contains("}}") || s.contains("{{") {
        return None;
    }
    Some(s.to_owned())
}

fn parse_expr(s: &str) -> Option<Expr> {
    // `{{-`/`-}}` trim whitespace around the tag: left to minijinja.
    if s.starts_with('-') || s.ends_with('-') || s.starts_with('+') || s.ends_with('+') {
        return None;
    }
    let (path, filter) = match s.split_once('|') {
        Some((p, f)) => (p.trim(), Some(parse_filter(f.trim())?)),
        None => (s.trim(), None),
    };
    let (root_name, mut rest) = ident(path)?;
    let root = match root_name {
        "event" => Root::Event,
        "variables" => Root::Variables,
        "instance" => Root::Instance,
        "node" => Root::Node,
        "task" => Root::Task,
        _ => return None,
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let (name, r) = ident(r)?;
            steps.push(Step::Attr(name.to_owned()));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let digits = &r[..close];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            steps.push(Step::Index(digits.parse().ok()?));
            rest = &r[close + 1..];
        } else {
            return None;
        }
    }
    Some(Expr { root, steps, filter })
}

/// An identifier at the start of `s`, and what follows it.
fn ident(s: &str) -> Option<(&str, &str)> {
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    (end > 0).then(|| s.split_at(end))
}

/// `default('…')` or `join('…')` with one plain quoted argument.
fn parse_filter(s: &str) -> Option<Filter> {
    let (name, arg) = s.split_once('(')?;
    let arg = arg.strip_suffix(')')?.trim();
    let quote = arg.chars().next()?;
    if !matches!(quote, '\'' | '"') || arg.len() < 2 || !arg.ends_with(quote) {
        return None;
    }
    let text = &arg[1..arg.len() - 1];
    if text.contains(['\\', '\'', '"']) {
        return None;
    }
    match name.trim() {
        "default" => Some(Filter::Default(text.to_owned())),
        "join" => Some(Filter::Join(text.to_owned())),
        _ => None,
    }
}

impl Expr {
    fn render(&self, scope: &Scope<'_>, out: &mut String) -> bool {
        let Some(found) = self.lookup(scope) else {
            return false;
        };
        match (&self.filter, found) {
            (Some(Filter::Default(text)), Found::Missing) => {
                out.push_str(text);
                true
            }
            (None | Some(Filter::Default(_)), found) => scalar(found, out),
            (Some(Filter::Join(sep)), Found::Strings(items)) => {
                join(items.iter().map(String::as_str), sep, out);
                true
            }
            (Some(Filter::Join(sep)), Found::Json(Json::Array(items))) => {
                let mut strs = Vec::with_capacity(items.len());
                for i in items {
                    match i {
                        Json::String(s) => strs.push(s.as_str()),
                        _ => return false,
                    }
                }
                join(strs.into_iter(), sep, out);
                true
            }
            (Some(Filter::Join(_)), _) => false,
        }
    }

    /// Follows the path; `None` when minijinja must decide (a step into
    /// something that is not a map or list, or past a missing value).
    fn lookup<'s>(&self, scope: &Scope<'s>) -> Option<Found<'s>> {
        let e = scope.event;
        let mut steps = self.steps.iter();
        let first = match self.root {
            Root::Variables => Found::Map(&e.variables),
            root => {
                let Some(Step::Attr(name)) = steps.next() else {
                    // A root map itself, or indexed: minijinja.
                    return None;
                };
                match root {
                    Root::Event => event_field(e, name),
                    Root::Instance => match name.as_str() {
                        "workflow" => Found::Str(scope.workflow),
                        "serialNumber" => Found::Str(scope.serial_number),
                        "latestTodo" => Found::Str(scope.latest_todo),
                        _ => Found::Missing,
                    },
                    Root::Node => match name.as_str() {
                        "id" => Found::Str(scope.node_id),
                        "name" => Found::Str(scope.node_name),
                        "visit" => Found::Int(i64::from(scope.visit)),
                        _ => Found::Missing,
                    },
                    Root::Task => match name.as_str() {
                        "id" => Found::Str(scope.task_id),
                        "visit" => Found::Int(i64::from(scope.visit)),
                        _ => Found::Missing,
                    },
                    Root::Variables => unreachable!("handled above"),
                }
            }
        };
        let mut found = first;
        for step in steps {
            found = match (found, step) {
                (Found::Map(m) | Found::Json(Json::Object(m)), Step::Attr(k)) => {
                    m.get(k).map_or(Found::Missing, Found::Json)
                }
                (Found::Json(Json::Array(a)), Step::Index(i)) => {
                    a.get(*i).map_or(Found::Missing, Found::Json)
                }
                (Found::Strings(a), Step::Index(i)) => a.get(*i).map_or(Found::Missing, |s| Found::Str(s)),
                _ => return None,
            };
        }
        Some(found)
    }
}

/// A top-level event field as the serialized event shows it.
fn event_field<'s>(e: &'s Event, name: &str) -> Found<'s> {
    let opt = |v: &'s Option<String>| v.as_deref().map_or(Found::Missing, Found::Str);
    match name {
        "eventId" => Found::Str(&e.event_id),
        "workflow" => Found::Str(&e.workflow),
        "serialNumber" => Found::Str(&e.serial_number),
        "kind" => Found::Str(match e.kind {
            EventKind::Transition => "transition",
            EventKind::Terminate => "terminate",
        }),
        "from" => opt(&e.from),
        "to" => opt(&e.to),
        "initiator" => opt(&e.initiator),
        "initiatorName" => opt(&e.initiator_name),
        "occurredAt" => opt(&e.occurred_at),
        "assignees" => Found::Strings(&e.assignees),
        "variables" => Found::Map(&e.variables),
        other => e.extra.get(other).map_or(Found::Missing, Found::Json),
    }
}

/// Writes a string or integer as minijinja prints it; `false` for anything
/// else (booleans print as `True`/`False`: left to minijinja).
fn scalar(found: Found<'_>, out: &mut String) -> bool {
    match found {
        Found::Str(s) => out.push_str(s),
        Found::Json(Json::String(s)) => out.push_str(s),
        Found::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Found::Json(Json::Number(n)) => match n.as_i64() {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            None => return false,
        },
        _ => return false,
    }
    true
}

fn join<'s>(items: impl Iterator<Item = &'s str>, sep: &str, out: &mut String) {
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use minijinja::{Environment, UndefinedBehavior};
    use serde_json::json;

    use super::*;
    use crate::event::Source;
    use crate::workflow::fields::{Compiled, FieldSpec};
    use crate::workflow::{Registry, Todo};

    fn event(json: serde_json::Value) -> Event {
        Event::decode(json.to_string().as_bytes(), Source::File { file: "t", line: 1 })
            .expect("test event decodes")
    }

    fn events() -> Vec<Event> {
        vec![
            event(json!({
                "eventId": "e-1", "workflow": "w", "serialNumber": "NUM0001",
                "from": "counselor", "to": "dean", "initiator": "smartadmin",
                "initiatorName": "智慧校园管理员", "assignees": ["t001", "t002"],
                "occurredAt": "2026-11-21T08:00:00Z", "region": "north", "count": 3,
                "variables": {
                    "studentName": "李雷", "days": 5, "neg": -3, "ratio": 1.5,
                    "big": 18446744073709551615u64, "flag": true, "nil": null,
                    "list": ["a", "b"], "nums": [1, 2], "obj": {"a": "x", "n": 7},
                    "html": "<b>&\"'</b>", "empty": ""
                }
            })),
            event(json!({
                "workflow": "w", "serialNumber": "NUM0002", "to": "start",
                "assignees": [], "variables": {}
            })),
        ]
    }

    const TEMPLATES: &[&str] = &[
        "{{ event.serialNumber }}",
        "{{event.eventId}}",
        "{{ variables.studentName }}",
        "请假：{{ variables.studentName }}，{{ variables.days }} 天",
        "{{ variables.days }}",
        "{{ variables.neg }}",
        "{{ variables.ratio }}",
        "{{ variables.big }}",
        "{{ variables.flag }}",
        "{{ variables.nil }}",
        "{{ variables.empty }}",
        "{{ variables.html }}",
        "{{ variables.missing }}",
        "{{ variables.missing | default('x') }}",
        "{{ variables.missing|default(\"y z\") }}",
        "{{ variables.nil | default('x') }}",
        "{{ variables.studentName | default('x') }}",
        "{{ variables.days | default('7') }}",
        "{{ variables.list | join(',') }}",
        "{{ variables.nums | join(',') }}",
        "{{ variables.studentName | join(',') }}",
        "{{ variables.missing | join(',') }}",
        "{{ event.assignees | join(',') }}",
        "{{ event.assignees|join(\"; \") }}",
        "{{ event.assignees[0] }}",
        "{{ event.assignees[1] }}",
        "{{ event.assignees[5] }}",
        "{{ event.assignees }}",
        "{{ variables.list[1] }}",
        "{{ variables.nums[0] }}",
        "{{ variables.studentName[0] }}",
        "{{ variables.obj.a }}",
        "{{ variables.obj.n }}",
        "{{ variables.obj.b }}",
        "{{ variables.obj.b | default('d') }}",
        "{{ variables.missing.b }}",
        "{{ variables.missing.b | default('d') }}",
        "{{ variables.obj }}",
        "{{ variables }}",
        "{{ event }}",
        "{{ event.from }}",
        "{{ event.from | default('start') }}",
        "{{ event.to }}",
        "{{ event.kind }}",
        "{{ event.initiatorName }}",
        "{{ event.occurredAt }}",
        "{{ event.region }}",
        "{{ event.count }}",
        "{{ event.nothing }}",
        "{{ event.nothing | default('n/a') }}",
        "{{ event.variables.days }}",
        "{{ event.variables.studentName }}",
        "{{ event.serialNumber.x }}",
        "{{ instance.latestTodo }}",
        "{{ instance.workflow }}/{{ instance.serialNumber }}",
        "{{ instance.other }}",
        "{{ node.visit }}",
        "{{ node.name }}{{ node.id }}",
        "{{ task.id }}",
        "{{ task.visit }}",
        "{{ task }}",
        "text only",
        "a\n",
        "{{ event.eventId }}\n",
        "{{- event.eventId }}",
        "{{ event.eventId -}} x",
        "{{ variables.studentName | upper }}",
        "{% if variables.days %}y{% endif %}",
        "{# note #}{{ event.eventId }}",
        "{{ unknown.x }}",
        "{{ variables['days'] }}",
    ];

    fn minijinja_render(source: &str, scope: &Scope<'_>) -> Result<String, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Named as the workflow compiler names templates.
        env.add_template_owned("node `dean`/poa.taskName", source.to_owned())
            .map_err(|e| e.to_string())?;
        env.get_template("node `dean`/poa.taskName")
            .and_then(|t| t.render(scope.value()))
            .map_err(|e| e.to_string())
    }

    /// Fast answers exactly what minijinja answers, or declines.
    fn check(source: &str, scope: &Scope<'_>) -> bool {
        let Some(fast) = Fast::parse(source) else {
            return false;
        };
        let mut out = String::new();
        if !fast.render(scope, &mut out) {
            return false;
        }
        assert_eq!(
            Ok(out.clone()),
            minijinja_render(source, scope),
            "template {source:?} for {:?}",
            scope.event.serial_number
        );
        true
    }

    #[test]
    fn agrees_with_minijinja_or_declines() {
        let evs = events();
        let mut direct = std::collections::BTreeSet::new();
        for (i, e) in evs.iter().enumerate() {
            let latest = if i == 0 { "fb-0123" } else { "" };
            let scope = Scope::new(e, "w", &e.serial_number, latest, "dean", "院系审批", 2, "fb-9");
            for t in TEMPLATES {
                if check(t, &scope) {
                    direct.insert(*t);
                }
            }
        }
        // The shapes the samples use are rendered directly.
        for t in [
            "{{ event.serialNumber }}",
            "请假：{{ variables.studentName }}，{{ variables.days }} 天",
            "{{ variables.missing | default('x') }}",
            "{{ event.assignees | join(',') }}",
            "{{ event.assignees[0] }}",
            "{{ variables.obj.n }}",
            "{{ event.from | default('start') }}",
            "{{ node.visit }}",
            "{{ instance.latestTodo }}",
            "text only",
        ] {
            assert!(direct.contains(t), "{t} should render directly");
        }
        // And what it cannot answer is left to minijinja.
        for t in [
            "{{ variables.nil }}",
            "{{ variables.ratio }}",
            "{{ variables.missing }}",
            "{{ event.assignees[5] }}",
            "{{ variables.nums | join(',') }}",
            "{{ variables.missing.b | default('d') }}",
            "{{ event }}",
            "a\n",
            "{{- event.eventId }}",
            "{{ variables.studentName | upper }}",
        ] {
            assert!(!direct.contains(t), "{t} must go to minijinja");
        }
    }

    #[test]
    fn agrees_with_minijinja_on_every_sample_template() {
        let reg = Registry::embedded();
        let mut checked = 0;
        for wf in reg.workflows() {
            let stream = crate::scenario::stream(&[&**wf], 20, "FAST", 11);
            let events: Vec<Event> = stream.iter().map(|v| event(v.clone())).collect();
            for n in wf.graph.node_weights() {
                let specs: Vec<&FieldSpec> = match &n.todo {
                    Some(Todo::Poa { fields, actions }) => {
                        fields.iter().chain(actions.iter().flatten().flatten()).collect()
                    }
                    Some(Todo::Aicc { fields }) => fields.iter().collect(),
                    None => continue,
                };
                for spec in specs {
                    let Compiled::Template { name, fast } = &spec.value else {
                        continue;
                    };
                    let source = wf.env.get_template(name).expect("compiled").source().to_owned();
                    assert_eq!(fast.is_some(), Fast::parse(&source).is_some());
                    for (i, e) in events.iter().enumerate() {
                        let latest = if i % 2 == 0 { "fb-1" } else { "" };
                        let scope =
                            Scope::new(e, &wf.id, &e.serial_number, latest, &n.id, &n.name, 1, "fb-2");
                        if check(&source, &scope) {
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "only {checked} direct renders compared");
    }
}
