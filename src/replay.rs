//! `replay`: a JSONL file of events through decode → decide with in-memory
//! state, printing one JSON line per action and per rejected event.
//!
//! The same decode → decide path serves the Kafka runtime; only the source
//! and the sinks differ. In dry-run mode AICC creates are taken as done
//! with their intent id, so later events see consistent state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::Serialize;

use crate::engine::{self, Action, Reason, TodoKind};
use crate::event::{Event, Source};
use crate::state::InstanceState;
use crate::workflow::{Registry, Target};

/// One created todo, as `replay` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionLine<'a> {
    pub event_id: &'a str,
    pub workflow: &'a str,
    pub serial_number: &'a str,
    pub target: Target,
    pub kind: TodoKind,
    /// POA: the todo's taskId; AICC: the create's intent id (AICC assigns
    /// its own task id).
    pub task_id: &'a str,
    pub previous_task_id: Option<&'a str>,
    /// Exactly what would be sent: the `addTransaction` array item, or the
    /// AICC `taskInfo` object.
    pub body: serde_json::Value,
}

/// One rejected event, as `replay` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionLine<'a> {
    pub event_id: &'a str,
    pub rejected: Reason,
    pub message: &'a str,
}

/// Counts of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub events: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: BTreeMap<&'static str, usize>,
    pub first: usize,
    pub chained: usize,
    pub aicc: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected: usize = self.rejected.values().sum();
        write!(
            f,
            "{} events: {} applied, {} duplicates, {} rejected",
            self.events, self.applied, self.duplicates, rejected
        )?;
        if rejected > 0 {
            let by: Vec<String> = self.rejected.iter().map(|(r, n)| format!("{r}={n}")).collect();
            write!(f, " ({})", by.join(", "))?;
        }
        write!(
            f,
            "; todos: {} first, {} chained, {} AICC tasks",
            self.first, self.chained, self.aicc
        )
    }
}

/// In-memory replay state: instance states by (workflow, serialNumber).
#[derive(Debug, Default)]
pub struct Replayer {
    pub states: HashMap<(String, String), InstanceState>,
    pub stats: Stats,
}

impl Replayer {
    /// Replays every line of `input` (named `file` in derived eventIds),
    /// writing result lines to `out`. Blank lines are skipped; a malformed
    /// line is a rejection, not the end of the run.
    pub fn run(
        &mut self,
        registry: &Registry,
        file: &str,
        input: impl BufRead,
        out: &mut impl Write,
    ) -> io::Result<()> {
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            self.line(registry, Source::File { file, line: i + 1 }, line.as_bytes(), out)?;
        }
        Ok(())
    }

    /// Processes one event line.
    pub fn line(
        &mut self,
        registry: &Registry,
        source: Source<'_>,
        bytes: &[u8],
        out: &mut impl Write,
    ) -> io::Result<()> {
        self.stats.events += 1;
        let event = match Event::decode(bytes, source) {
            Ok(e) => e,
            Err(e) => {
                return self.rejected(out, &source.to_string(), Reason::MalformedEvent, &e.to_string());
            }
        };
        let key = (event.workflow.clone(), event.serial_number.clone());
        let decision = engine::decide(registry, self.states.get(&key), &event);
        if let Some(r) = &decision.rejection {
            return self.rejected(out, &event.event_id, r.reason, &r.message);
        }
        if decision.duplicate {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.stats.applied += 1;
        let Some(mut next) = decision.next_state else {
            return Ok(());
        };
        for action in &decision.actions {
            let line = match action {
                Action::Poa(t) => {
                    match t.kind {
                        TodoKind::First => self.stats.first += 1,
                        _ => self.stats.chained += 1,
                    }
                    ActionLine {
                        event_id: &event.event_id,
                        workflow: &event.workflow,
                        serial_number: &event.serial_number,
                        target: Target::Poa,
                        kind: t.kind,
                        task_id: &t.item.task_id,
                        previous_task_id: t.item.previous_task_id.as_deref(),
                        body: serde_json::to_value(&t.item).expect("PoaItem serializes"),
                    }
                }
                Action::Aicc(a) => {
                    self.stats.aicc += 1;
                    next.resolve_aicc(&a.intent_id, &a.intent_id);
                    ActionLine {
                        event_id: &event.event_id,
                        workflow: &event.workflow,
                        serial_number: &event.serial_number,
                        target: Target::Aicc,
                        kind: TodoKind::Task,
                        task_id: &a.intent_id,
                        previous_task_id: None,
                        body: serde_json::to_value(&a.task_info).expect("AiccTaskInfo serializes"),
                    }
                }
            };
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        self.states.insert(key, next);
        Ok(())
    }

    fn rejected(
        &mut self,
        out: &mut impl Write,
        event_id: &str,
        reason: Reason,
        message: &str,
    ) -> io::Result<()> {
        *self.stats.rejected.entry(reason.as_str()).or_default() += 1;
        serde_json::to_writer(
            &mut *out,
            &RejectionLine {
                event_id,
                rejected: reason,
                message,
            },
        )?;
        out.write_all(b"\n")
    }
}
