//! Scripted event streams: random valid walks over workflow graphs.
//!
//! Used by `demo` (a stream through loops, branches, parallel reviews and
//! AICC nodes) and by the benchmark. Deterministic for a seed. Each instance
//! walks its workflow from the start node: exclusive choices and loop-backs
//! are random (a node is re-entered at most `max_visits` times), parallel
//! branches interleave randomly, and a join is left only when all its
//! branches arrived. Instances are interleaved, but each instance's events
//! keep their order.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::workflow::{NodeKind, Workflow};
use petgraph::Direction;
use petgraph::graph::NodeIndex;

const PRIORITIES: [&str; 3] = ["Low", "Medium", "High"];

/// Variables the sample workflows' templates need, for instance `i`.
pub fn sample_variables(workflow: &str, i: usize) -> Value {
    match workflow {
        "leave-approval" => {
            json!({"studentName": format!("学生{i:05}"), "days": (i % 7) + 1, "reason": "事假"})
        }
        "thesis-review" => json!({"title": format!("论文{i:05}")}),
        "customer-case" => json!({
            "customerName": format!("客户{i:05}"),
            "caseId": format!("c6m8{i:016}"),
            "priority": PRIORITIES[i % 3],
            "dueDate": "2026-12-31 18:00:00",
            "summary": "宽带无法连接"
        }),
        "equipment-repair" => json!({"device": format!("设备{i:05}"), "fault": "无法开机"}),
        _ => json!({}),
    }
}

/// One instance's walk: the events in order, as JSON values.
pub fn walk(wf: &Workflow, serial: &str, variables: &Value, rng: &mut StdRng, max_visits: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut visits = vec![0u32; wf.graph.node_count()];
    let mut arrived = vec![0u32; wf.graph.node_count()];
    // Positions: (node, branches not yet taken).
    let mut positions: Vec<(NodeIndex, Vec<NodeIndex>)> = Vec::new();
    let mut n = 0usize;
    let mut emit = |from: Option<NodeIndex>, to: NodeIndex, events: &mut Vec<Value>| {
        n += 1;
        let mut e = json!({
            "eventId": format!("{serial}-{n}"),
            "workflow": wf.id,
            "serialNumber": serial,
            "to": wf.graph[to].id,
            "initiator": "smartadmin",
            "initiatorName": "智慧校园管理员",
            "assignees": [format!("u{:03}", to.index() + 1)],
            "variables": variables,
        });
        if let Some(f) = from {
            e["from"] = json!(wf.graph[f].id);
        }
        events.push(e);
    };
    let enter = |to: NodeIndex, visits: &mut Vec<u32>, positions: &mut Vec<(NodeIndex, Vec<NodeIndex>)>| {
        visits[to.index()] += 1;
        let outs: Vec<NodeIndex> = wf.graph.neighbors_directed(to, Direction::Outgoing).collect();
        if !outs.is_empty() {
            positions.push((to, outs));
        }
    };
    // Start: the first event enters the node after the start node.
    let first = wf
        .graph
        .neighbors_directed(wf.start, Direction::Outgoing)
        .next()
        .expect("a valid workflow's start node has a transition");
    emit(None, first, &mut events);
    enter(first, &mut visits, &mut positions);
    let mut guard = 0;
    while !positions.is_empty() && guard < 1000 {
        guard += 1;
        let pi = rng.random_range(0..positions.len());
        let (at, outs) = positions[pi].clone();
        let to = if wf.graph[at].kind == NodeKind::ParallelSplit {
            let bi = rng.random_range(0..outs.len());
            let b = outs[bi];
            positions[pi].1.remove(bi);
            if positions[pi].1.is_empty() {
                positions.remove(pi);
            }
            b
        } else {
            // Prefer nodes visited fewer than max_visits (bounded loops).
            let fresh: Vec<NodeIndex> = outs
                .iter()
                .copied()
                .filter(|o| visits[o.index()] < max_visits)
                .collect();
            let choices = if fresh.is_empty() { &outs } else { &fresh };
            let to = choices[rng.random_range(0..choices.len())];
            positions.remove(pi);
            to
        };
        emit(Some(at), to, &mut events);
        if wf.graph[to].kind == NodeKind::ParallelJoin {
            arrived[to.index()] += 1;
            let needed = wf.graph.neighbors_directed(to, Direction::Incoming).count() as u32;
            if arrived[to.index()] < needed {
                continue;
            }
            arrived[to.index()] = 0;
        }
        if wf.graph[to].kind == NodeKind::End {
            positions.clear();
        } else {
            enter(to, &mut visits, &mut positions);
        }
    }
    events
}

/// A stream of `instances` instances spread over `workflows` (round robin),
/// interleaved at random with each instance's order kept. Serial numbers
/// are `{prefix}{i:06}`.
pub fn stream(workflows: &[&Workflow], instances: usize, prefix: &str, seed: u64) -> Vec<Value> {
    stream_with_visits(workflows, instances, prefix, seed, 2)
}

/// [`stream`] with loops taken until a node was entered `max_visits` times
/// (longer walks: more events per instance).
pub fn stream_with_visits(
    workflows: &[&Workflow],
    instances: usize,
    prefix: &str,
    seed: u64,
    max_visits: u32,
) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut walks: Vec<std::collections::VecDeque<Value>> = (0..instances)
        .map(|i| {
            let wf = workflows[i % workflows.len()];
            let serial = format!("{prefix}{i:06}");
            walk(wf, &serial, &sample_variables(&wf.id, i), &mut rng, max_visits).into()
        })
        .collect();
    let total: usize = walks.iter().map(|w| w.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut live: Vec<usize> = (0..walks.len()).collect();
    while !live.is_empty() {
        let k = rng.random_range(0..live.len());
        let i = live[k];
        match walks[i].pop_front() {
            Some(e) => out.push(e),
            None => {
                live.swap_remove(k);
            }
        }
    }
    out
}

/// A few bad events, one per kind of rejection the runtime must
/// dead-letter, with the reason each must get. `completed_serial` must be
/// an instance of `leave-approval` whose walk ends before these are
/// consumed (they are appended after the stream).
pub fn bad_events(completed_serial: &str) -> Vec<(String, &'static str)> {
    let long_name = "很长的客户名称".repeat(10); // 210 UTF-8 bytes in the title
    vec![
        ("{\"workflow\": \"leave-approval\", \"serialNumber\": ".to_owned(), "malformed_event"),
        (
            json!({"eventId": "bad-1", "workflow": "no-such-workflow", "serialNumber": "X1", "to": "a"}).to_string(),
            "unknown_workflow",
        ),
        (
            json!({"eventId": "bad-2", "workflow": "leave-approval", "serialNumber": "X2", "to": "principal"})
                .to_string(),
            "unknown_node",
        ),
        (
            json!({"eventId": "bad-3", "workflow": "leave-approval", "serialNumber": "X3",
                   "from": "counselor", "to": "end"})
            .to_string(),
            "invalid_transition",
        ),
        (
            json!({"eventId": "bad-4", "workflow": "leave-approval", "serialNumber": completed_serial,
                   "from": "counselor", "to": "days_check", "variables": {"studentName": "x", "days": 1}})
            .to_string(),
            "instance_completed",
        ),
        (
            json!({"eventId": "bad-5", "workflow": "leave-approval", "serialNumber": "X5", "to": "counselor",
                   "assignees": ["t001"], "variables": {"days": 2}})
            .to_string(),
            "template_error",
        ),
        (
            json!({"eventId": "bad-6", "workflow": "customer-case", "serialNumber": "X6", "to": "register",
                   "assignees": ["10gg00000148QvgpaLAm"],
                   "variables": {"customerName": long_name, "caseId": "c1", "dueDate": "2026-12-31 18:00:00"}})
            .to_string(),
            "invalid_field",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Replayer;
    use crate::workflow::Registry;

    #[test]
    fn generated_streams_replay_without_rejection() {
        let reg = Registry::embedded();
        let wfs: Vec<&Workflow> = reg.workflows().into_iter().map(|w| w.as_ref()).collect();
        let events = stream(&wfs, 200, "S", 7);
        let mut jsonl = String::new();
        for e in &events {
            jsonl.push_str(&e.to_string());
            jsonl.push('\n');
        }
        let mut r = Replayer::default();
        let mut out = Vec::new();
        r.run(&reg, "gen", jsonl.as_bytes(), &mut out).unwrap();
        assert!(
            r.stats.rejected.is_empty(),
            "{}: {}",
            r.stats,
            String::from_utf8_lossy(&out)
        );
        assert_eq!(r.stats.applied, events.len());
        assert_eq!(
            r.stats.first, 150,
            "every POA instance opens exactly one transaction"
        );
    }

    #[test]
    fn each_bad_event_is_rejected_with_its_reason() {
        let reg = Registry::embedded();
        let wfs: Vec<&Workflow> = reg.workflows().into_iter().map(|w| w.as_ref()).collect();
        let completed = format!(
            "S{:06}",
            wfs.iter().position(|w| w.id == "leave-approval").unwrap()
        );
        let mut jsonl: String = stream(&wfs, 8, "S", 3).iter().map(|e| format!("{e}\n")).collect();
        let bad = bad_events(&completed);
        for (line, _) in &bad {
            jsonl.push_str(line);
            jsonl.push('\n');
        }
        let mut r = Replayer::default();
        let mut out = Vec::new();
        r.run(&reg, "bad", jsonl.as_bytes(), &mut out).unwrap();
        let reasons: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["rejected"].as_str().map(str::to_owned))
            .collect();
        let expected: Vec<&str> = bad.iter().map(|(_, reason)| *reason).collect();
        assert_eq!(reasons, expected);
    }
}
