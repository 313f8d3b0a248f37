//! Field mappings: compiled at load, rendered per event.
//!
//! A mapping is a literal (string, boolean, integer, list of strings) or a
//! minijinja template (a string containing `{{` or `{%`), rendered with
//! strict undefined over `event`, `variables`, `instance`, `node` and `task`.
//! Everything that can be checked at load is: template syntax, literal types,
//! limits and enums, and templates that use no variable (rendered once).

use minijinja::Environment;
use serde_saphyr::Spanned;

use super::fast::{Fast, Scope};
use super::spec::{Pos, RawValue, Target};
use crate::contract::{self, FieldProblem, aicc::AiccTaskInfo, poa::PoaAction, poa::PoaItem};

/// The JSON type a field has in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    StrList,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::StrList => "a list of strings",
        }
    }
}

/// Which body a field belongs to; decides its type and its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Poa,
    PoaAction,
    Aicc,
}

impl Body {
    pub fn kind(self, field: &str) -> Kind {
        match (self, field) {
            (Body::Poa, "autoCreateTransType") => Kind::Bool,
            (Body::Poa, "canDelegate" | "timeOut") => Kind::Int,
            (Body::Poa, "taskSummary") => Kind::StrList,
            (Body::PoaAction, "optType" | "allowMerge") => Kind::Int,
            _ => Kind::Str,
        }
    }

    pub fn target(self) -> Target {
        match self {
            Body::Poa | Body::PoaAction => Target::Poa,
            Body::Aicc => Target::Aicc,
        }
    }
}

/// A compiled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Compiled {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<Compiled>),
    /// A template: its name in the workflow's environment, and its direct
    /// form when it has one ([`Fast`]).
    Template {
        name: String,
        fast: Option<Fast>,
    },
}

/// One compiled mapping.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: &'static str,
    pub value: Compiled,
    pub pos: Pos,
}

/// A rendered value.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
}

/// Why a field could not be rendered for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The template failed (e.g. a variable the event does not carry).
    Template { field: String, message: String },
    /// The rendered value breaks the API contract.
    Invalid(FieldProblem),
}

pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Compiles mappings into [`FieldSpec`]s, collecting problems with positions.
pub struct Compiler<'a> {
    pub env: &'a mut Environment<'static>,
    /// Problems found, as (position, message).
    pub problems: &'a mut Vec<(Pos, String)>,
    /// Prefix for template names and messages, e.g. `node \`dean\``.
    pub scope: String,
}

impl Compiler<'_> {
    pub fn compile(&mut self, body: Body, name: &'static str, raw: &Spanned<RawValue>) -> Option<FieldSpec> {
        let pos = Pos::from(raw);
        let kind = body.kind(name);
        let value = self.compile_value(body, name, kind, &raw.value, pos)?;
        self.check_constant(body, name, &value, pos);
        Some(FieldSpec { name, value, pos })
    }

    fn compile_value(
        &mut self,
        body: Body,
        name: &str,
        kind: Kind,
        raw: &RawValue,
        pos: Pos,
    ) -> Option<Compiled> {
        let wrong = |this: &mut Self| {
            this.problems.push((
                pos,
                format!(
                    "{}: `{name}` must be {}{}, not {}",
                    this.scope,
                    kind.describe(),
                    if kind == Kind::StrList {
                        ""
                    } else {
                        " or a template"
                    },
                    raw.describe()
                ),
            ));
            None
        };
        match (kind, raw) {
            (_, RawValue::Str(s)) if is_template(s) && kind != Kind::StrList => {
                self.template(body, name, s, pos)
            }
            (Kind::Str, RawValue::Str(s)) => Some(Compiled::Str(s.clone())),
            // Unquoted numeric ids (`ownerId: 10001`) are strings to the API.
            (Kind::Str, RawValue::Int(i)) => Some(Compiled::Str(i.to_string())),
            (Kind::Bool, RawValue::Bool(b)) => Some(Compiled::Bool(*b)),
            (Kind::Int, RawValue::Int(i)) => Some(Compiled::Int(*i)),
            (Kind::StrList, RawValue::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_name = format!("{name}[{i}]");
                    out.push(self.compile_value(body, &item_name, Kind::Str, item, pos)?);
                }
                Some(Compiled::List(out))
            }
            _ => wrong(self),
        }
    }

    fn template(&mut self, body: Body, name: &str, source: &str, pos: Pos) -> Option<Compiled> {
        let tname = format!("{}/{}.{name}", self.scope, body.target().as_str());
        match self.env.add_template_owned(tname.clone(), source.to_owned()) {
            Ok(()) => Some(Compiled::Template {
                name: tname,
                fast: Fast::parse(source),
            }),
            Err(e) => {
                self.problems.push((
                    pos,
                    format!(
                        "{}: `{name}` template does not compile: {}",
                        self.scope,
                        template_message(&e)
                    ),
                ));
                None
            }
        }
    }

    /// Checks a literal, or a template that uses no variable (so renders the
    /// same for every event), against the contract now rather than per event.
    fn check_constant(&mut self, body: Body, name: &str, value: &Compiled, pos: Pos) {
        let rendered = match value {
            Compiled::Template { name: t, .. } => {
                let Ok(tmpl) = self.env.get_template(t) else {
                    return;
                };
                if !tmpl.undeclared_variables(false).is_empty() {
                    return;
                }
                match tmpl.render(()) {
                    Ok(s) => convert(body.kind(name), name, s),
                    Err(e) => Err(RenderError::Template {
                        field: name.to_owned(),
                        message: template_message(&e),
                    }),
                }
            }
            Compiled::List(items) => items
                .iter()
                .map(|i| match i {
                    Compiled::Str(s) => Ok(s.clone()),
                    _ => Err(()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Rendered::List)
                .map_err(|()| RenderError::Template {
                    field: name.to_owned(),
                    message: String::new(),
                }),
            Compiled::Str(s) => Ok(Rendered::Str(s.clone())),
            Compiled::Bool(b) => Ok(Rendered::Bool(*b)),
            Compiled::Int(i) => Ok(Rendered::Int(*i)),
        };
        let problem = match rendered {
            Ok(v) => check_field(body, name, &v).err().map(|p| p.to_string()),
            Err(RenderError::Template { message, .. }) if message.is_empty() => None,
            Err(RenderError::Template { field, message }) => Some(format!("`{field}` {message}")),
            Err(RenderError::Invalid(p)) => Some(p.to_string()),
        };
        if let Some(p) = problem {
            self.problems.push((pos, format!("{}: {p}", self.scope)));
        }
    }
}

/// A template error as one line: kind, detail and the line inside the template.
pub fn template_message(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(d) = e.detail() {
        msg.push_str(": ");
        msg.push_str(d);
    }
    msg
}

fn convert(kind: Kind, name: &str, s: String) -> Result<Rendered, RenderError> {
    let invalid = |what: &str| {
        RenderError::Invalid(FieldProblem::new(
            name,
            format!("rendered \"{s}\", which is not {what}"),
        ))
    };
    match kind {
        Kind::Str => Ok(Rendered::Str(s)),
        // An empty render leaves an optional integer or boolean field out,
        // as it does a string field (the setters skip a non-number).
        Kind::Bool | Kind::Int if s.trim().is_empty() => Ok(Rendered::Str(String::new())),
        Kind::Bool => match s.trim() {
            "true" => Ok(Rendered::Bool(true)),
            "false" => Ok(Rendered::Bool(false)),
            _ => Err(invalid("true or false")),
        },
        Kind::Int => s
            .trim()
            .parse()
            .map(Rendered::Int)
            .map_err(|_| invalid("an integer")),
        Kind::StrList => Ok(Rendered::List(vec![s])),
    }
}

/// Field-level contract checks that can be made on one value.
///
/// An empty string is not checked: it leaves the field absent (see
/// [`set_poa`]), and a required field left absent is caught by the whole-body
/// checks (`check_item`, `check_task_info`).
pub fn check_field(body: Body, name: &str, v: &Rendered) -> Result<(), FieldProblem> {
    match (body, v) {
        (_, Rendered::Str(s)) if s.is_empty() => Ok(()),
        (Body::Aicc, Rendered::Str(s)) => contract::aicc::check_field(name, s),
        (Body::Poa, Rendered::Str(s)) if name == "taskId" => {
            contract::check_bytes(name, s, contract::poa::TASK_ID_MAX_BYTES)
        }
        (Body::Poa, Rendered::Int(i)) if name == "canDelegate" && !matches!(i, 0 | 1) => {
            Err(FieldProblem::new(name, format!("is {i}, not 0 or 1")))
        }
        (Body::PoaAction, Rendered::Int(i))
            if matches!(name, "optType" | "allowMerge") && !matches!(i, 0 | 1) =>
        {
            Err(FieldProblem::new(name, format!("is {i}, not 0 or 1")))
        }
        (Body::PoaAction, Rendered::Str(s))
            if name == "type" && !contract::poa::ACTION_TYPES.contains(&s.as_str()) =>
        {
            Err(FieldProblem::new(
                name,
                format!(
                    "is \"{s}\", not one of {}",
                    contract::poa::ACTION_TYPES.join(", ")
                ),
            ))
        }
        (Body::PoaAction, Rendered::Str(s))
            if name == "method" && !contract::poa::ACTION_METHODS.contains(&s.as_str()) =>
        {
            Err(FieldProblem::new(
                name,
                format!("is \"{s}\", not one of get, post, put"),
            ))
        }
        _ => Ok(()),
    }
}

/// Renders one mapping.
pub fn render(
    env: &Environment<'static>,
    body: Body,
    spec: &FieldSpec,
    scope: &Scope<'_>,
) -> Result<Rendered, RenderError> {
    let value = render_value(env, body.kind(spec.name), spec.name, &spec.value, scope)?;
    check_field(body, spec.name, &value).map_err(RenderError::Invalid)?;
    Ok(value)
}

fn render_value(
    env: &Environment<'static>,
    kind: Kind,
    name: &str,
    value: &Compiled,
    scope: &Scope<'_>,
) -> Result<Rendered, RenderError> {
    Ok(match value {
        Compiled::Str(s) => Rendered::Str(s.clone()),
        Compiled::Bool(b) => Rendered::Bool(*b),
        Compiled::Int(i) => Rendered::Int(*i),
        Compiled::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match render_value(env, Kind::Str, name, item, scope)? {
                    Rendered::Str(s) => out.push(s),
                    _ => unreachable!("list items compile to strings"),
                }
            }
            Rendered::List(out)
        }
        Compiled::Template { name: t, fast } => {
            if let Some(fast) = fast {
                let mut s = String::new();
                if fast.render(scope, &mut s) {
                    return convert(kind, name, s);
                }
            }
            let tmpl = env.get_template(t).map_err(|e| RenderError::Template {
                field: name.to_owned(),
                message: template_message(&e),
            })?;
            let s = tmpl.render(scope.value()).map_err(|e| RenderError::Template {
                field: name.to_owned(),
                message: template_message(&e),
            })?;
            convert(kind, name, s)?
        }
    })
}

fn opt_str(v: Rendered) -> Option<String> {
    match v {
        Rendered::Str(s) if s.is_empty() => None,
        Rendered::Str(s) => Some(s),
        Rendered::Int(i) => Some(i.to_string()),
        Rendered::Bool(b) => Some(b.to_string()),
        Rendered::List(l) => Some(l.join(",")),
    }
}

fn opt_int(v: Rendered) -> Option<i64> {
    match v {
        Rendered::Int(i) => Some(i),
        _ => None,
    }
}

/// Sets one rendered field on a POA item. Empty strings leave optional
/// fields absent (an empty `initiatorName` is not sent as "").
pub fn set_poa(item: &mut PoaItem, name: &str, v: Rendered) {
    let required = |v: Rendered| opt_str(v).unwrap_or_default();
    match name {
        "appId" => item.app_id = required(v),
        "nodeId" => item.node_id = required(v),
        "nodeName" => item.node_name = required(v),
        "taskId" => item.task_id = required(v),
        "taskName" => item.task_name = required(v),
        "transTypeCode" => item.trans_type_code = required(v),
        "transTypeName" => item.trans_type_name = opt_str(v),
        "autoCreateTransType" => {
            item.auto_create_trans_type = match v {
                Rendered::Bool(b) => Some(b),
                _ => None,
            }
        }
        "handlers" => item.handlers = opt_str(v),
        "handlingGroup" => item.handling_group = opt_str(v),
        "canDelegate" => item.can_delegate = opt_int(v),
        "initiator" => item.initiator = opt_str(v),
        "initiatorName" => item.initiator_name = opt_str(v),
        "serialNumber" => item.serial_number = opt_str(v),
        "taskSummary" => {
            item.task_summary = match v {
                Rendered::List(l) => Some(l),
                other => opt_str(other).map(|s| vec![s]),
            }
        }
        "timeOut" => item.time_out = opt_int(v),
        "transactionName" => item.transaction_name = opt_str(v),
        "viewUrl" => item.view_url = opt_str(v),
        "handleUrl" => item.handle_url = opt_str(v),
        "mHandleUrl" => item.m_handle_url = opt_str(v),
        "mViewUrl" => item.m_view_url = opt_str(v),
        // previousTaskId is the engine's; the loader rejects a mapping for it.
        _ => {}
    }
}

/// Sets one rendered field on a POA action.
pub fn set_poa_action(action: &mut PoaAction, name: &str, v: Rendered) {
    match name {
        "method" => action.method = opt_str(v),
        "name" => action.name = opt_str(v),
        "optType" => action.opt_type = opt_int(v),
        "type" => action.kind = opt_str(v),
        "url" => action.url = opt_str(v),
        "nextNodeKey" => action.next_node_key = opt_str(v),
        "allowMerge" => action.allow_merge = opt_int(v),
        _ => {}
    }
}

/// Sets one rendered field on an AICC taskInfo.
pub fn set_aicc(info: &mut AiccTaskInfo, name: &str, v: Rendered) {
    let s = opt_str(v);
    match name {
        "title" => info.title = s.unwrap_or_default(),
        "description" => info.description = s,
        "type" => info.kind = s,
        "relateId" => info.relate_id = s,
        "ownerId" => info.owner_id = s.unwrap_or_default(),
        "contactId" => info.contact_id = s,
        "creatorId" => info.creator_id = s.unwrap_or_default(),
        "priority" => info.priority = s,
        "dueDate" => info.due_date = s,
        "attachment" => info.attachment = s,
        _ => {}
    }
}
