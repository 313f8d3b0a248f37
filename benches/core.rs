//! Micro-benchmarks of the core, with criterion: `decide` per event, loading
//! 1,000 workflows, rendering a todo's templates, and encoding/decoding a
//! POA batch of 100 items and its response.
//!
//! `cargo bench --bench core` (add a filter, e.g. `-- decide`, to run one).
//! The end-to-end figures come from `flowbridge bench`; these show where a
//! change in the core moves them.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flowbridge::contract::poa::{PoaItem, PoaResponse};
use flowbridge::engine::{self, Action};
use flowbridge::event::{Event, Source};
use flowbridge::scenario;
use flowbridge::state::{InstanceKey, InstanceState};
use flowbridge::workflow::{Registry, Todo, Workflow};

/// (state before, event) pairs of a generated stream over the POA samples,
/// and the POA items the stream creates.
fn stream(reg: &Registry, instances: usize) -> (Vec<(Option<InstanceState>, Event)>, Vec<PoaItem>) {
    let wfs: Vec<&Workflow> = ["leave-approval", "thesis-review"]
        .iter()
        .map(|id| reg.get(id).expect("sample workflow").as_ref())
        .collect();
    let mut states: HashMap<InstanceKey, InstanceState> = HashMap::new();
    let mut pairs = Vec::new();
    let mut items = Vec::new();
    for (i, v) in scenario::stream(&wfs, instances, "M", 11).into_iter().enumerate() {
        let bytes = v.to_string();
        let event = Event::decode(
            bytes.as_bytes(),
            Source::File {
                file: "m",
                line: i + 1,
            },
        )
        .expect("valid");
        let key = InstanceKey::new(&event.workflow, &event.serial_number);
        let before = states.get(&key).cloned();
        let d = engine::decide(reg, before.as_ref(), &event);
        assert!(d.rejection.is_none(), "generated events are valid");
        for a in d.actions {
            if let Action::Poa(t) = a {
                items.push(t.item);
            }
        }
        if let Some(next) = d.next_state {
            states.insert(key, next);
        }
        pairs.push((before, event));
    }
    (pairs, items)
}

fn decide(c: &mut Criterion) {
    let reg = Registry::embedded();
    let (pairs, _) = stream(&reg, 200);
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(pairs.len() as u64));
    g.bench_function(format!("{}_events", pairs.len()), |b| {
        b.iter(|| {
            for (state, event) in &pairs {
                black_box(engine::decide(&reg, state.as_ref(), event));
            }
        })
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    // 1,000 workflows: the four samples under 250 ids each.
    let sources: Vec<(String, String)> = (0..1000)
        .map(|i| {
            let (name, text) = flowbridge::samples::WORKFLOWS[i % flowbridge::samples::WORKFLOWS.len()];
            let id = name.trim_end_matches(".yaml");
            let text = text.replacen(&format!("workflow: {id}"), &format!("workflow: {id}-{i:04}"), 1);
            (format!("workflows/{id}-{i:04}.yaml"), text)
        })
        .collect();
    let mut g = c.benchmark_group("workflow_load");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sources.len() as u64));
    g.bench_function("1000_workflows", |b| {
        b.iter_batched(
            || sources.clone(),
            |s| {
                let reg = Registry::from_sources(s).expect("valid workflows");
                assert_eq!(reg.len(), 1000);
                reg
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn render(c: &mut Criterion) {
    let reg = Registry::embedded();
    let wf = reg.get("leave-approval").expect("sample").clone();
    let (pairs, _) = stream(&reg, 50);
    // A chained todo at the dean: the richest template set of the samples.
    let (state, event) = pairs
        .iter()
        .find(|(s, e)| s.is_some() && e.to.as_deref() == Some("dean"))
        .expect("the stream visits the dean");
    let state = state.as_ref().expect("checked");
    let node = &wf.graph[wf.node("dean").expect("node")];
    let Some(todo @ Todo::Poa { .. }) = &node.todo else {
        panic!("dean creates a POA todo")
    };
    let task = engine::task_id(&wf.id, &event.serial_number, &node.id, 1);
    let base = PoaItem {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        task_id: task.clone(),
        serial_number: Some(event.serial_number.clone()),
        ..PoaItem::default()
    };
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Elements(1));
    g.bench_function("context", |b| {
        b.iter(|| black_box(engine::context(event, state, node, 1, &task)))
    });
    // What a todo costs: its scope, then every field (direct where the
    // template allows, minijinja otherwise).
    g.bench_function("render_poa_todo", |b| {
        b.iter(|| {
            let scope = engine::scope(event, state, node, 1, &task);
            black_box(wf.render_poa(todo, base.clone(), &scope).expect("renders"))
        })
    });
    g.finish();
}

fn poa_batch(c: &mut Criterion) {
    let reg = Registry::embedded();
    let (_, items) = stream(&reg, 100);
    let batch: Vec<PoaItem> = items.into_iter().take(100).collect();
    assert_eq!(batch.len(), 100);
    let body = serde_json::to_vec(&batch).expect("encodes");
    let response = serde_json::to_vec(&serde_json::json!({
        "took": 12, "timestamp": 1_763_700_000_000i64, "code": 0, "message": "创建中有异常数据",
        "data": {"errorIds": [
            {"code": 2003, "taskId": batch[3].task_id, "message": "the task already exists"},
            {"code": 2004, "taskId": batch[7].task_id, "message": "this task is not exist"}
        ]}
    }))
    .expect("encodes");
    let mut g = c.benchmark_group("poa_batch_100");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&batch)).expect("encodes")))
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Vec<PoaItem>>(black_box(&body)).expect("decodes")))
    });
    g.throughput(Throughput::Bytes(response.len() as u64));
    g.bench_function("decode_response", |b| {
        b.iter(|| black_box(serde_json::from_slice::<PoaResponse>(black_box(&response)).expect("decodes")))
    });
    g.finish();
}

criterion_group!(benches, decide, load, render, poa_batch);
criterion_main!(benches);
