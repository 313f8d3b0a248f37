//! Helpers shared by the integration tests: compiling inline workflows,
//! building events, and driving one instance through `engine::decide`.

use std::path::PathBuf;

use flowbridge::engine::{self, Action, AiccCreate, Decision, PoaTodo, Reason};
use flowbridge::event::{Event, Source};
use flowbridge::state::InstanceState;
use flowbridge::workflow::{Problem, Registry};
use serde_json::{Value, json};

/// The sample workflows of `workflows/`.
#[allow(dead_code)]
pub fn samples() -> Registry {
    Registry::embedded()
}

/// The crate root (for `workflows/` and the sample streams).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles one inline workflow named `test.yaml`; panics with its problems.
pub fn registry(yaml: &str) -> Registry {
    Registry::from_sources([("test.yaml".to_owned(), yaml.to_owned())])
        .unwrap_or_else(|p| panic!("the test workflow does not compile:\n{p}"))
}

/// The problems of one inline workflow named `test.yaml` (panics if it is valid).
pub fn problems(yaml: &str) -> Vec<Problem> {
    match flowbridge::workflow::compile("test.yaml", yaml) {
        Ok(_) => panic!("the workflow compiled, but problems were expected"),
        Err(p) => p,
    }
}

/// Decodes an event from JSON, as the sources do.
pub fn event(json: Value) -> Event {
    let bytes = serde_json::to_vec(&json).expect("json serializes");
    Event::decode(
        &bytes,
        Source::File {
            file: "test.jsonl",
            line: 1,
        },
    )
    .unwrap_or_else(|e| panic!("test event does not decode: {e}"))
}

/// The todo of a decision that created exactly one POA todo.
pub fn the_poa(d: &Decision) -> &PoaTodo {
    assert!(d.rejection.is_none(), "rejected: {:?}", d.rejection);
    match d.actions.as_slice() {
        [Action::Poa(t)] => t,
        other => panic!("expected exactly one POA action, got {other:?}"),
    }
}

/// The create of a decision that created exactly one AICC task.
pub fn the_aicc(d: &Decision) -> &AiccCreate {
    assert!(d.rejection.is_none(), "rejected: {:?}", d.rejection);
    match d.actions.as_slice() {
        [Action::Aicc(a)] => a,
        other => panic!("expected exactly one AICC action, got {other:?}"),
    }
}

/// Asserts a decision is a rejection for `reason` that changes nothing, and
/// returns its message.
pub fn rejected(d: &Decision, reason: Reason) -> String {
    let r = d
        .rejection
        .as_ref()
        .unwrap_or_else(|| panic!("expected a {reason} rejection, got {d:?}"));
    assert_eq!(r.reason, reason, "message: {}", r.message);
    assert!(d.next_state.is_none(), "a rejection must not change state");
    assert!(d.actions.is_empty(), "a rejection must not create todos");
    assert!(!d.duplicate);
    r.message.clone()
}

/// One workflow instance driven event by event: each applied decision's
/// `next_state` becomes the state the next event sees (as the pipeline does);
/// rejections and duplicates leave it as it was.
pub struct Instance<'a> {
    pub registry: &'a Registry,
    pub workflow: String,
    pub serial: String,
    pub state: Option<InstanceState>,
    /// `variables` of every event sent by [`Instance::go`].
    pub variables: Value,
    /// `assignees` of every event sent by [`Instance::go`].
    pub assignees: Vec<String>,
    sent: usize,
}

impl<'a> Instance<'a> {
    pub fn new(registry: &'a Registry, workflow: &str, serial: &str) -> Self {
        Self {
            registry,
            workflow: workflow.to_owned(),
            serial: serial.to_owned(),
            state: None,
            variables: json!({}),
            assignees: vec!["u001".to_owned()],
            sent: 0,
        }
    }

    pub fn with_variables(mut self, variables: Value) -> Self {
        self.variables = variables;
        self
    }

    /// The JSON of a transition event of this instance with a fresh eventId.
    pub fn transition(&mut self, from: Option<&str>, to: &str) -> Value {
        self.sent += 1;
        json!({
            "eventId": format!("{}-{}", self.serial, self.sent),
            "workflow": self.workflow,
            "serialNumber": self.serial,
            "from": from,
            "to": to,
            "initiator": "smartadmin",
            "initiatorName": "智慧校园管理员",
            "assignees": self.assignees,
            "variables": self.variables,
        })
    }

    /// Sends `from → to` (`from` = None starts the instance).
    pub fn go(&mut self, from: Option<&str>, to: &str) -> Decision {
        let json = self.transition(from, to);
        self.send(json)
    }

    /// Like [`Instance::go`] but panics unless the event was applied.
    pub fn ok(&mut self, from: Option<&str>, to: &str) -> Decision {
        let d = self.go(from, to);
        assert!(
            d.rejection.is_none() && !d.duplicate,
            "{from:?} → {to} was not applied: {d:?}"
        );
        d
    }

    /// Walks a path of nodes (the first is entered by a start event),
    /// asserting every step is applied; returns the last decision.
    pub fn walk(&mut self, path: &[&str]) -> Decision {
        let mut last = self.ok(None, path[0]);
        for pair in path.windows(2) {
            last = self.ok(Some(pair[0]), pair[1]);
        }
        last
    }

    /// Decides one event given as JSON, and keeps the next state if any.
    pub fn send(&mut self, json: Value) -> Decision {
        let d = engine::decide(self.registry, self.state.as_ref(), &event(json));
        if let Some(next) = &d.next_state {
            self.state = Some(next.clone());
        }
        d
    }

    /// The deterministic taskId of `node`'s `visit`-th todo of this instance.
    pub fn task(&self, node: &str, visit: u32) -> String {
        engine::task_id(&self.workflow, &self.serial, node, visit)
    }
}

/// The path of a file of the crate (`workflows/…`).
pub fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

/// Writes `files` into a fresh temporary directory.
pub fn temp_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write a temporary file");
    }
    dir
}

/// Runs the `flowbridge` binary in the crate root.
pub fn flowbridge<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    std::process::Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the flowbridge binary runs")
}

/// The lines of a byte buffer.
pub fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}
