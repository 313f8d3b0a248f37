//! Graphviz DOT and Mermaid renderings of a workflow (`flowbridge graph`).

use std::fmt::Write as _;

use super::{NodeKind, Target, Workflow};

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The workflow as a Graphviz digraph.
pub fn dot(wf: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&wf.id));
    let _ = writeln!(out, "  label=\"{}\";\n  rankdir=LR;", dot_escape(&wf.name));
    for i in wf.graph.node_indices() {
        let n = &wf.graph[i];
        let (shape, extra) = match n.kind {
            NodeKind::Start => ("circle", String::new()),
            NodeKind::End => ("doublecircle", String::new()),
            NodeKind::Exclusive => ("diamond", " ×".to_owned()),
            NodeKind::ParallelSplit | NodeKind::ParallelJoin => ("diamond", " +".to_owned()),
            NodeKind::Task => (
                "box",
                match n.todo.as_ref().map(|t| t.target()) {
                    Some(Target::Aicc) => "\\n[AICC]".to_owned(),
                    Some(Target::Poa) => "\\n[POA]".to_owned(),
                    None => String::new(),
                },
            ),
        };
        let _ = writeln!(
            out,
            "  \"{}\" [shape={shape}, label=\"{}{extra}\"];",
            dot_escape(&n.id),
            dot_escape(&n.name)
        );
    }
    for e in wf.graph.edge_indices() {
        let (a, b) = wf.graph.edge_endpoints(e).expect("edge index from this graph");
        let label = wf.graph[e]
            .as_deref()
            .map(|l| format!(" [label=\"{}\"]", dot_escape(l)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\"{label};",
            dot_escape(&wf.graph[a].id),
            dot_escape(&wf.graph[b].id)
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// The workflow as a Mermaid flowchart.
pub fn mermaid(wf: &Workflow) -> String {
    let mut out = String::from("flowchart LR\n");
    // Mermaid ids must be simple; use the node index.
    for i in wf.graph.node_indices() {
        let n = &wf.graph[i];
        let label = mermaid_text(&n.name);
        let id = i.index();
        let _ = match n.kind {
            NodeKind::Start => writeln!(out, "  n{id}((\"{label}\"))"),
            NodeKind::End => writeln!(out, "  n{id}(((\"{label}\")))"),
            NodeKind::Exclusive => writeln!(out, "  n{id}{{\"× {label}\"}}"),
            NodeKind::ParallelSplit | NodeKind::ParallelJoin => writeln!(out, "  n{id}{{\"+ {label}\"}}"),
            NodeKind::Task => {
                let target = match n.todo.as_ref().map(|t| t.target()) {
                    Some(Target::Aicc) => " [AICC]",
                    Some(Target::Poa) => " [POA]",
                    None => "",
                };
                writeln!(out, "  n{id}[\"{label}{target}\"]")
            }
        };
    }
    for e in wf.graph.edge_indices() {
        let (a, b) = wf.graph.edge_endpoints(e).expect("edge index from this graph");
        let _ = match wf.graph[e].as_deref() {
            Some(l) => writeln!(
                out,
                "  n{} -->|\"{}\"| n{}",
                a.index(),
                mermaid_text(l),
                b.index()
            ),
            None => writeln!(out, "  n{} --> n{}", a.index(), b.index()),
        };
    }
    out
}
