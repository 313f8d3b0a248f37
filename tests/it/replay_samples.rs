//! The sample streams replayed end to end (the full first/chained chain of
//! each), replay's handling of bad lines, the `replay --dry-run` and `graph`
//! commands, and a proptest of random valid walks over the sample graphs.

use std::collections::{BTreeSet, HashMap, HashSet};

use flowbridge::engine::{Action, TodoKind, task_id};
use flowbridge::replay::Replayer;
use flowbridge::workflow::{NodeKind, Registry, Workflow};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use proptest::prelude::*;
use rstest::rstest;
use serde_json::{Value, json};

use crate::support::{Instance, flowbridge, lines, path, samples, temp_dir_with};

/// One expected output line: the event, the instance, the todo's node and
/// visit, and the (node, visit) of the todo it chains to.
struct Expect {
    event: &'static str,
    serial: &'static str,
    kind: &'static str,
    node: &'static str,
    visit: u32,
    previous: Option<(&'static str, u32)>,
}

const fn first(event: &'static str, serial: &'static str, node: &'static str) -> Expect {
    Expect {
        event,
        serial,
        kind: "first",
        node,
        visit: 1,
        previous: None,
    }
}

const fn chained(
    event: &'static str,
    serial: &'static str,
    node: &'static str,
    visit: u32,
    previous: (&'static str, u32),
) -> Expect {
    Expect {
        event,
        serial,
        kind: "chained",
        node,
        visit,
        previous: Some(previous),
    }
}

const fn aicc(event: &'static str, serial: &'static str, node: &'static str, visit: u32) -> Expect {
    Expect {
        event,
        serial,
        kind: "task",
        node,
        visit,
        previous: None,
    }
}

/// Replays one sample stream in-process: (output lines, stats).
fn replay(file: &str) -> (Vec<Value>, flowbridge::replay::Stats) {
    let reg = Registry::load_dir(&path("workflows")).expect("the samples load");
    let text = std::fs::read_to_string(path(file)).expect("the sample stream");
    replay_text(&reg, file, &text)
}

fn replay_text(reg: &Registry, name: &str, text: &str) -> (Vec<Value>, flowbridge::replay::Stats) {
    let mut r = Replayer::default();
    let mut out = Vec::new();
    r.run(reg, name, text.as_bytes(), &mut out)
        .expect("replay writes");
    let values = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (values, r.stats)
}

#[rstest]
#[case::leave_approval("leave-approval", &[
    first("la-1", "NUM0001", "counselor"),
    first("la-2", "NUM0002", "counselor"),
    // NUM0001, 2 days: counselor → days_check → office.
    chained("la-5", "NUM0001", "office", 1, ("counselor", 1)),
    // NUM0002, 5 days: the dean, who rejects: counselor again (visit 2),
    // then the dean again (visit 2), then the office.
    chained("la-6", "NUM0002", "dean", 1, ("counselor", 1)),
    chained("la-7", "NUM0002", "counselor", 2, ("dean", 1)),
    chained("la-10", "NUM0002", "dean", 2, ("counselor", 2)),
    chained("la-11", "NUM0002", "office", 1, ("dean", 2)),
])]
#[case::thesis_review("thesis-review", &[
    first("tr-1", "T2026001", "advisor"),
    // Both reviewers chain to the advisor (the todo before the split).
    chained("tr-3", "T2026001", "reviewer_a", 1, ("advisor", 1)),
    chained("tr-4", "T2026001", "reviewer_b", 1, ("advisor", 1)),
    // reviewer_b reached the join first (tr-5), reviewer_a last (tr-6).
    chained("tr-7", "T2026001", "committee", 1, ("reviewer_a", 1)),
])]
#[case::customer_case("customer-case", &[
    aicc("cc-1", "CASE0001", "register", 1),
    aicc("cc-3", "CASE0001", "expert", 1),
    aicc("cc-4", "CASE0001", "resolve", 1),
])]
#[case::equipment_repair("equipment-repair", &[
    first("er-1", "R0001", "report"),
    chained("er-2", "R0001", "approve", 1, ("report", 1)),
    aicc("er-3", "R0001", "dispatch", 1),
    // Through the AICC task to the nearest POA todo upstream.
    chained("er-4", "R0001", "verify", 1, ("approve", 1)),
    // Not fixed: a second AICC visit, then verify visit 2 chains to visit 1.
    aicc("er-5", "R0001", "dispatch", 2),
    chained("er-6", "R0001", "verify", 2, ("verify", 1)),
])]
fn sample_stream_replays_with_the_full_chain(#[case] workflow: &str, #[case] expected: &[Expect]) {
    let (out, stats) = replay(&format!("workflows/events/{workflow}.jsonl"));
    assert!(stats.rejected.is_empty(), "{stats}");
    assert_eq!(stats.applied, stats.events, "{stats}");
    let got: Vec<(String, String, String, String, Option<String>)> = out
        .iter()
        .map(|v| {
            assert!(v.get("rejected").is_none(), "{v}");
            assert_eq!(v["workflow"], workflow);
            (
                v["eventId"].as_str().unwrap().to_owned(),
                v["serialNumber"].as_str().unwrap().to_owned(),
                v["kind"].as_str().unwrap().to_owned(),
                v["taskId"].as_str().unwrap().to_owned(),
                v["previousTaskId"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String, Option<String>)> = expected
        .iter()
        .map(|e| {
            (
                e.event.to_owned(),
                e.serial.to_owned(),
                e.kind.to_owned(),
                task_id(workflow, e.serial, e.node, e.visit),
                e.previous.map(|(n, v)| task_id(workflow, e.serial, n, v)),
            )
        })
        .collect();
    assert_eq!(got, want);
    // The body agrees with the line: the POA item carries the same ids and
    // the node; an AICC line's body is the taskInfo.
    for (v, e) in out.iter().zip(expected) {
        let body = &v["body"];
        if e.kind == "task" {
            assert_eq!(v["target"], "aicc");
            assert!(
                body.get("title").is_some() && body.get("taskId").is_none(),
                "{body}"
            );
        } else {
            assert_eq!(v["target"], "poa");
            assert_eq!(body["nodeId"], e.node);
            assert_eq!(body["taskId"], v["taskId"]);
            assert_eq!(
                body.get("previousTaskId"),
                v.get("previousTaskId").filter(|p| !p.is_null())
            );
        }
    }
}

#[test]
fn every_sample_stream_has_a_chain_test() {
    let mut streams: Vec<String> = std::fs::read_dir(path("workflows/events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    streams.sort();
    assert_eq!(
        streams,
        [
            "customer-case.jsonl",
            "equipment-repair.jsonl",
            "leave-approval.jsonl",
            "thesis-review.jsonl"
        ]
    );
}

#[test]
fn bad_lines_in_the_middle_of_a_stream_are_rejections_and_the_run_continues() {
    let reg = samples();
    let clean_text = std::fs::read_to_string(path("workflows/events/leave-approval.jsonl")).unwrap();
    let (clean, _) = replay_text(&reg, "la.jsonl", &clean_text);

    // After la-6 (the 6th line): a malformed line and an unknown workflow.
    let mut text_lines: Vec<&str> = clean_text.lines().collect();
    let unknown = r#"{"eventId": "x-1", "workflow": "no-such-flow", "serialNumber": "S1", "to": "a"}"#;
    text_lines.splice(6..6, ["{\"eventId\": \"broken", unknown]);
    let (out, stats) = replay_text(&reg, "la.jsonl", &text_lines.join("\n"));

    // la-1, la-2, la-5, la-6 created todos before the bad lines.
    let (before, after) = clean.split_at(4);
    assert_eq!(&out[..4], before);
    assert_eq!(out[4]["eventId"], "la.jsonl:7", "derived from the line");
    assert_eq!(out[4]["rejected"], "malformed_event");
    assert!(out[4]["message"].as_str().unwrap().contains("EOF"), "{}", out[4]);
    assert_eq!(
        out[5],
        json!({"eventId": "x-1", "rejected": "unknown_workflow", "message": "no workflow `no-such-flow` is loaded"})
    );
    assert_eq!(&out[6..], after);
    assert_eq!(stats.events, 14);
    assert_eq!(stats.applied, 12);
    assert_eq!(
        stats.to_string(),
        "14 events: 12 applied, 0 duplicates, 2 rejected (malformed_event=1, unknown_workflow=1); \
         todos: 2 first, 5 chained, 0 AICC tasks"
    );
}

#[test]
fn replay_dry_run_cli_prints_lines_with_exactly_the_documented_keys() {
    let sample = std::fs::read_to_string(path("workflows/events/thesis-review.jsonl")).unwrap();
    let first_line = sample.lines().next().unwrap();
    // The stream, one line resent (a duplicate) and a malformed line.
    let text = format!("{sample}{first_line}\nnot json\n");
    let dir = temp_dir_with(&[("events.jsonl", &text)]);
    let events = dir.path().join("events.jsonl");
    let out = flowbridge([
        "replay".as_ref(),
        "--workflows".as_ref(),
        path("workflows").as_os_str(),
        "--events".as_ref(),
        events.as_os_str(),
        "--dry-run".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let action_keys = BTreeSet::from([
        "eventId",
        "workflow",
        "serialNumber",
        "target",
        "kind",
        "taskId",
        "previousTaskId",
        "body",
    ]);
    let rejection_keys = BTreeSet::from(["eventId", "rejected", "message"]);
    let mut kinds = Vec::new();
    for line in lines(&out.stdout) {
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        if keys.contains("rejected") {
            assert_eq!(keys, rejection_keys, "{line}");
            kinds.push(v["rejected"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(keys, action_keys, "{line}");
            assert!(["first", "chained", "task"].contains(&v["kind"].as_str().unwrap()));
            assert!(["poa", "aicc"].contains(&v["target"].as_str().unwrap()));
            assert!(v["body"].is_object());
            kinds.push(v["kind"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        kinds,
        ["first", "chained", "chained", "chained", "malformed_event"]
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end(),
        format!(
            "{}: 10 events: 8 applied, 1 duplicates, 1 rejected (malformed_event=1); \
             todos: 1 first, 3 chained, 0 AICC tasks",
            events.display()
        )
    );
}

#[test]
fn replay_requires_dry_run() {
    let out = flowbridge(["replay", "--events", "workflows/events/thesis-review.jsonl"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
}

#[rstest]
#[case::leave_approval("leave-approval")]
#[case::thesis_review("thesis-review")]
#[case::customer_case("customer-case")]
#[case::equipment_repair("equipment-repair")]
fn graph_emits_dot_and_mermaid_with_every_node_and_transition(#[case] workflow: &str) {
    let reg = samples();
    let wf = reg.get(workflow).unwrap();
    let file = format!("workflows/{workflow}.yaml");

    let dot = flowbridge(["graph", &file]);
    assert_eq!(dot.status.code(), Some(0), "{dot:?}");
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with(&format!("digraph \"{workflow}\" {{\n")), "{dot}");
    assert!(dot.ends_with("}\n"));
    for i in wf.graph.node_indices() {
        let n = &wf.graph[i];
        assert!(
            dot.contains(&format!("  \"{}\" [shape=", n.id)),
            "{} missing:\n{dot}",
            n.id
        );
    }
    for e in wf.graph.edge_indices() {
        let (a, b) = wf.graph.edge_endpoints(e).unwrap();
        let edge = format!("  \"{}\" -> \"{}\"", wf.graph[a].id, wf.graph[b].id);
        assert!(dot.contains(&edge), "{edge} missing:\n{dot}");
    }

    let mermaid = flowbridge(["graph", &file, "--format", "mermaid"]);
    assert_eq!(mermaid.status.code(), Some(0), "{mermaid:?}");
    let mermaid = String::from_utf8(mermaid.stdout).unwrap();
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    for i in wf.graph.node_indices() {
        let n = &wf.graph[i];
        let declared = mermaid.lines().any(|l| {
            l.starts_with(&format!("  n{}", i.index())) && l.contains(&n.name) && !l.contains("-->")
        });
        assert!(declared, "{} ({}) missing:\n{mermaid}", n.id, n.name);
    }
    let edges = mermaid.lines().filter(|l| l.contains("-->")).count();
    assert_eq!(edges, wf.graph.edge_count());
    for e in wf.graph.edge_indices() {
        let (a, b) = wf.graph.edge_endpoints(e).unwrap();
        let (a, b) = (a.index(), b.index());
        assert!(
            mermaid
                .lines()
                .any(|l| l.starts_with(&format!("  n{a} -->")) && l.ends_with(&format!(" n{b}"))),
            "n{a} → n{b} missing:\n{mermaid}"
        );
    }
}

#[test]
fn graph_of_an_invalid_workflow_fails_with_its_problems() {
    let dir = temp_dir_with(&[("bad.yaml", "workflow: w\nnodes: []\n")]);
    let file = dir.path().join("bad.yaml");
    let out = flowbridge(["graph".as_ref(), file.as_os_str()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{}:1:11: workflow has no start node", file.display())),
        "{err}"
    );
}

// --- Random valid walks over the sample graphs. ---------------------------

/// Variables every sample's templates need.
fn walk_variables() -> Value {
    json!({
        "studentName": "李雷", "days": 5, "reason": "r",
        "title": "流式计算",
        "customerName": "张三", "caseId": "c6m80000014iXKHqDw3c", "dueDate": "2026-11-28 18:00:00",
        "device": "投影仪", "fault": "无法开机",
    })
}

/// Where one instance's tokens are, as a valid upstream engine would move
/// them: a token per position, a split's token holding the branches not
/// taken yet, a join counting arrivals.
struct Walker<'a> {
    wf: &'a Workflow,
    tokens: Vec<(NodeIndex, Vec<NodeIndex>)>,
    arrivals: HashMap<NodeIndex, u32>,
    started: bool,
    ended: bool,
}

impl<'a> Walker<'a> {
    fn new(wf: &'a Workflow) -> Self {
        Self {
            wf,
            tokens: Vec::new(),
            arrivals: HashMap::new(),
            started: false,
            ended: false,
        }
    }

    fn successors(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.wf.graph.neighbors_directed(n, Direction::Outgoing).collect();
        v.sort();
        v
    }

    /// Enters `n`, updating the tokens.
    fn enter(&mut self, n: NodeIndex) {
        let succ = self.successors(n);
        match self.wf.graph[n].kind {
            NodeKind::End => {
                self.ended = true;
                self.tokens.clear();
            }
            NodeKind::ParallelJoin => {
                let arrived = self.arrivals.entry(n).or_default();
                *arrived += 1;
                if *arrived == self.wf.in_degree(n) {
                    *arrived = 0;
                    self.tokens.push((n, succ));
                }
            }
            _ => self.tokens.push((n, succ)),
        }
    }

    /// The next event, `(from, to)`, chosen with `a` and `b`.
    fn step(&mut self, a: usize, b: usize) -> (Option<String>, String) {
        let id = |n: NodeIndex| self.wf.graph[n].id.clone();
        if !self.started {
            self.started = true;
            let start = self.wf.start;
            if a.is_multiple_of(2) {
                // Enter the start node itself, then leave it.
                self.enter(start);
                return (None, id(start));
            }
            let succ = self.successors(start);
            let to = succ[b % succ.len()];
            self.enter(to);
            return (None, id(to));
        }
        let t = a % self.tokens.len();
        let from = self.tokens[t].0;
        let to = if self.wf.graph[from].kind == NodeKind::ParallelSplit {
            let remaining = &mut self.tokens[t].1;
            let to = remaining.remove(b % remaining.len());
            if remaining.is_empty() {
                self.tokens.remove(t);
            }
            to
        } else {
            let (_, succ) = self.tokens.remove(t);
            succ[b % succ.len()]
        };
        let (from_id, to_id) = (id(from), id(to));
        self.enter(to);
        (Some(from_id), to_id)
    }
}

/// What one instance emitted, checked as it goes.
#[derive(Default)]
struct Emitted {
    poa: HashSet<String>,
    firsts: usize,
}

fn check_walk(workflow: &str, choices: &[(u8, u8, u8)]) -> Result<(), TestCaseError> {
    let reg = samples();
    let wf = reg.get(workflow).unwrap();
    let serials = ["W1", "W2"];
    let mut instances: Vec<Instance> = serials
        .iter()
        .map(|s| Instance::new(&reg, workflow, s).with_variables(walk_variables()))
        .collect();
    let mut walkers: Vec<Walker> = serials.iter().map(|_| Walker::new(wf)).collect();
    let mut emitted: Vec<Emitted> = serials.iter().map(|_| Emitted::default()).collect();
    let mut last: Vec<Option<Value>> = vec![None, None];

    for &(who, a, b) in choices {
        let k = usize::from(who) % serials.len();
        if walkers[k].ended {
            continue;
        }
        // Now and then the upstream resends the last event: a duplicate.
        if who % 8 == 7
            && let Some(ev) = last[k].clone()
        {
            let d = instances[k].send(ev);
            prop_assert!(d.duplicate && d.actions.is_empty(), "{d:?}");
            continue;
        }
        let (from, to) = walkers[k].step(usize::from(a), usize::from(b));
        let ev = instances[k].transition(from.as_deref(), &to);
        last[k] = Some(ev.clone());
        let d = instances[k].send(ev);
        prop_assert!(d.rejection.is_none(), "{from:?} → {to}: {:?}", d.rejection);
        prop_assert!(!d.duplicate);
        for action in &d.actions {
            let Action::Poa(t) = action else { continue };
            let e = &mut emitted[k];
            match (t.kind, &t.item.previous_task_id) {
                (TodoKind::First, None) => {
                    e.firsts += 1;
                    prop_assert_eq!(e.firsts, 1, "a second first todo for {}", serials[k]);
                }
                (TodoKind::Chained, Some(prev)) => {
                    prop_assert!(
                        e.poa.contains(prev),
                        "{} at {} chains to {prev}, which {} never emitted",
                        t.item.task_id,
                        t.node,
                        serials[k]
                    );
                }
                other => prop_assert!(false, "inconsistent kind/previous: {other:?}"),
            }
            prop_assert!(
                e.poa.insert(t.item.task_id.clone()),
                "taskId {} emitted twice",
                t.item.task_id
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_valid_walks_only_chain_to_todos_emitted_before(
        workflow in prop::sample::select(vec!["leave-approval", "thesis-review", "customer-case", "equipment-repair"]),
        choices in prop::collection::vec(any::<(u8, u8, u8)>(), 1..80),
    ) {
        check_walk(workflow, &choices)?;
    }
}

/// The walker reaches the interesting places, so the proptest is not
/// vacuous: the thesis loop goes through the split and the join twice, and
/// the engine accepts every step of it.
#[test]
fn the_walker_goes_through_loops_and_parallel_branches() {
    let reg = samples();
    let wf = reg.get("thesis-review").unwrap();
    // a = 1: a start event right to the advisor, then the second token when
    // there are two; b = 0: the first branch / successor (at the committee
    // that is the revise loop back to the advisor), b = 1 at the end.
    let mut choices = vec![(0u8, 1u8, 0u8); 14];
    choices.push((0, 1, 1));
    let mut w = Walker::new(wf);
    let visited: Vec<String> = choices
        .iter()
        .map(|&(_, a, b)| w.step(a.into(), b.into()).1)
        .collect();
    let review = [
        "review_split",
        "reviewer_a",
        "review_join",
        "reviewer_b",
        "review_join",
        "committee",
    ];
    let mut expected = vec!["advisor"];
    expected.extend(review);
    expected.push("advisor");
    expected.extend(review);
    expected.push("end");
    assert_eq!(visited, expected);
    assert!(w.ended);
    check_walk("thesis-review", &choices).unwrap();
}
