//! One test per load-time validation problem: its message and its exact
//! `line:col`, then `validate` as a command (every problem, exit codes).
//!
//! Each workflow is written out in full so that the expected position can be
//! read off the text: line 1 is the line right after `r#"`.

use flowbridge::workflow::Problem;
use rstest::rstest;

use crate::support::{flowbridge, lines, path, problems, registry, temp_dir_with};

/// The one problem of `yaml` whose message contains `needle`.
fn the_problem(yaml: &str, needle: &str) -> Problem {
    let all = problems(yaml);
    let listing = all.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let matching: Vec<&Problem> = all.iter().filter(|p| p.message.contains(needle)).collect();
    match matching.as_slice() {
        [p] => (*p).clone(),
        [] => panic!("no problem contains {needle:?}; problems:\n{listing}"),
        _ => panic!("several problems contain {needle:?}:\n{listing}"),
    }
}

#[rstest]
#[case::yaml_syntax_error(
    r#"workflow: w
nodes:
  - { id: start, kind: start
  - { id: end, kind: end }
"#,
    (3, 5),
    "unclosed bracket"
)]
#[case::unknown_key_in_a_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end, colour: red }
transitions:
  - { from: start, to: end }
"#,
    (4, 27),
    "unknown field `colour`, expected one of id, kind, name, join, todo"
)]
#[case::unknown_key_in_a_mapping(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCod: TT
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
"#,
    (6, 5),
    "unknown field `transTypeCod`"
)]
#[case::unknown_top_level_key(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transition:
  - { from: start, to: end }
"#,
    (5, 1),
    "unknown field `transition`"
)]
#[case::unknown_node_kind(
    r#"workflow: w
nodes:
  - { id: start, kind: begin }
  - { id: end, kind: end }
"#,
    (3, 24),
    "unknown variant `begin`"
)]
#[case::duplicate_yaml_key(
    r#"workflow: w
nodes:
  - { id: start, kind: start, kind: task }
  - { id: end, kind: end }
"#,
    (3, 31),
    "duplicate"
)]
fn yaml_problems(#[case] yaml: &str, #[case] at: (u64, u64), #[case] needle: &str) {
    let p = the_problem(yaml, needle);
    assert_eq!((p.pos.line, p.pos.col), at, "{p}");
    assert_eq!(p.file, "test.yaml");
    // The position is printed once, in front (`file:line:col: message`).
    assert!(!p.message.contains(" at line "), "{p}");
}

#[rstest]
#[case::duplicate_node_id(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: a, kind: exclusive }
  - { id: a, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (5, 11),
    "duplicate node id `a` (first defined at line 4)"
)]
#[case::transition_from_unknown_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
  - { from: ghost, to: end }
"#,
    (7, 13),
    "transition from unknown node `ghost`"
)]
#[case::transition_to_unknown_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
  - { from: start, to: ghost }
"#,
    (7, 24),
    "transition to unknown node `ghost`"
)]
#[case::no_start_node(
    r#"workflow: w
nodes:
  - { id: gw, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: gw, to: end }
"#,
    (1, 11),
    "workflow has no start node"
)]
#[case::two_start_nodes(
    r#"workflow: w
nodes:
  - { id: s1, kind: start }
  - { id: s2, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: s1, to: end }
  - { from: s2, to: end }
"#,
    (4, 11),
    "second start node `s2`: a workflow has exactly one (first: `s1`)"
)]
#[case::unreachable_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: orphan, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
  - { from: orphan, to: end }
"#,
    (4, 11),
    "node `orphan` is unreachable from the start node"
)]
#[case::no_end_reachable(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: gw, kind: exclusive }
  - { id: trap, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: gw }
  - { from: gw, to: end }
  - { from: gw, to: trap }
"#,
    (5, 11),
    "no end node is reachable from node `trap`"
)]
#[case::parallel_split_without_join(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split }
  - { id: x, kind: exclusive }
  - { id: y, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: split, to: y }
  - { from: x, to: end }
  - { from: y, to: end }
"#,
    (4, 11),
    "parallel split `split` has no matching join"
)]
#[case::join_is_not_a_parallel_join(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: x }
  - { id: x, kind: exclusive }
  - { id: y, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: split, to: y }
  - { from: x, to: end }
  - { from: y, to: end }
"#,
    (4, 46),
    "`join` of `split` names `x`, which is an exclusive node, not a parallel_join"
)]
#[case::join_names_an_unknown_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: nowhere }
  - { id: x, kind: exclusive }
  - { id: y, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: split, to: y }
  - { from: x, to: end }
  - { from: y, to: end }
"#,
    (4, 46),
    "join unknown node `nowhere`"
)]
#[case::branch_never_reaches_its_join(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: join }
  - { id: x, kind: exclusive }
  - { id: y, kind: exclusive }
  - { id: z, kind: exclusive }
  - { id: join, kind: parallel_join }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: split, to: y }
  - { from: x, to: join }
  - { from: y, to: end }
  - { from: start, to: z }
  - { from: z, to: join }
  - { from: join, to: end }
"#,
    (4, 46),
    "branch `y` of parallel split `split` never reaches its join `join`"
)]
#[case::join_of_no_split(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: x, kind: exclusive }
  - { id: join, kind: parallel_join }
  - { id: end, kind: end }
transitions:
  - { from: start, to: x }
  - { from: start, to: join }
  - { from: x, to: join }
  - { from: join, to: end }
"#,
    (5, 11),
    "parallel join `join` is not the `join` of any parallel_split"
)]
#[case::join_key_on_a_node_that_is_no_split(
    r#"workflow: w
nodes:
  - { id: start, kind: start, join: end }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
"#,
    (3, 37),
    "`join` is only for parallel_split nodes; `start` is a start node"
)]
#[case::todo_on_a_gateway(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: gw, kind: exclusive, todo: { target: poa } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: gw }
  - { from: gw, to: end }
"#,
    (4, 11),
    "`todo` is only for task nodes; `gw` is an exclusive node"
)]
#[case::duplicate_transition(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
  - { from: start, to: end, label: again }
"#,
    (7, 13),
    "duplicate transition `start` → `end`"
)]
#[case::transition_into_the_start_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: gw, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: gw }
  - { from: gw, to: start }
  - { from: gw, to: end }
"#,
    (3, 11),
    "start node `start` has incoming transitions"
)]
#[case::transition_out_of_an_end_node(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: gw, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
  - { from: end, to: gw }
"#,
    (5, 11),
    "end node `end` has outgoing transitions"
)]
#[case::split_with_one_branch(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: join }
  - { id: x, kind: exclusive }
  - { id: join, kind: parallel_join }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: x, to: join }
  - { from: start, to: join }
  - { from: join, to: end }
"#,
    (4, 11),
    "parallel split `split` has 1 outgoing transition(s); it needs at least 2"
)]
#[case::join_with_fewer_incoming_than_branches(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: split, kind: parallel_split, join: join }
  - { id: x, kind: exclusive }
  - { id: y, kind: exclusive }
  - { id: z, kind: exclusive }
  - { id: join, kind: parallel_join }
  - { id: end, kind: end }
transitions:
  - { from: start, to: split }
  - { from: split, to: x }
  - { from: split, to: y }
  - { from: split, to: z }
  - { from: x, to: join }
  - { from: y, to: join }
  - { from: z, to: y }
  - { from: join, to: end }
"#,
    (4, 46),
    "parallel split `split` opens 3 branches but its join `join` has 2 incoming transitions"
)]
#[case::empty_workflow_id(
    r#"workflow: " "
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
"#,
    (1, 11),
    "`workflow` (the id events name) is empty"
)]
#[case::empty_node_id(
    r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: "", kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
"#,
    (4, 11),
    "node id is empty"
)]
fn graph_problems(#[case] yaml: &str, #[case] at: (u64, u64), #[case] needle: &str) {
    let p = the_problem(yaml, needle);
    assert_eq!((p.pos.line, p.pos.col), at, "{p}");
}

#[rstest]
#[case::template_does_not_compile(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: "{{ variables.name }"
    handlers: u1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (7, 15),
    "`taskName` template does not compile: syntax error"
)]
#[case::poa_without_handlers_or_group(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 11),
    "node `a`: POA todo is missing `handlers` or `handlingGroup`"
)]
#[case::poa_without_required_fields(
    r#"workflow: w
defaults:
  target: poa
  poa:
    handlingGroup: g1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (8, 11),
    "node `a`: POA todo is missing `appId`, `taskName`, `transTypeCode`"
)]
#[case::auto_create_without_trans_type_name(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    autoCreateTransType: true
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (12, 11),
    "node `a`: `transTypeName` is required when `autoCreateTransType` is true"
)]
#[case::previous_task_id_mapped(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
nodes:
  - { id: start, kind: start }
  - id: a
    kind: task
    todo:
      poa:
        previousTaskId: "{{ instance.latestTodo }}"
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (15, 25),
    "node `a`: `previousTaskId` cannot be mapped: flowbridge sets it"
)]
#[case::literal_task_id(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task, todo: { poa: { taskId: TASK0001 } } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (11, 49),
    "node `a`: `taskId` must be a template unique per instance and visit"
)]
#[case::task_node_without_target(
    r#"workflow: w
defaults:
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 11),
    "node `a`: task node has no target: set `defaults.target` or `todo.target` (poa or aicc)"
)]
#[case::can_delegate_is_a_string(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    canDelegate: "yes"
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (9, 18),
    "`canDelegate` must be an integer or a template, not a string"
)]
#[case::can_delegate_out_of_range(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    canDelegate: 2
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (9, 18),
    "`canDelegate` is 2, not 0 or 1"
)]
#[case::auto_create_is_not_a_boolean(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    transTypeName: T
    taskName: t
    handlers: u1
    autoCreateTransType: yes
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 26),
    "`autoCreateTransType` must be true or false or a template, not a string"
)]
#[case::task_summary_is_not_a_list(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    taskSummary: "天数|{{ variables.days }}"
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (9, 18),
    "`taskSummary` must be a list of strings, not a string"
)]
#[case::action_type_not_documented(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    actions:
      - { name: 撤回, type: UNDO, optType: 1 }
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 27),
    "defaults, actions[0]: `type` is \"UNDO\", not one of"
)]
#[case::api_action_without_method(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
    actions:
      - { name: 撤回, type: REVOKE, optType: 0, url: "https://x" }
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 44),
    "defaults, actions[0]: `method` is required when `optType` is 0 (api)"
)]
fn poa_problems(#[case] yaml: &str, #[case] at: (u64, u64), #[case] needle: &str) {
    let p = the_problem(yaml, needle);
    assert_eq!((p.pos.line, p.pos.col), at, "{p}");
}

#[rstest]
#[case::literal_over_byte_limit(
    // 7 Chinese characters: 7 chars but 21 UTF-8 bytes, over ownerId's 20.
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: 智慧校园管理员
    creatorId: c1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (6, 14),
    "`taskInfo.ownerId` is 21 UTF-8 bytes, over the limit of 20 (\"智慧校园管理员\")"
)]
#[case::type_is_not_case(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    type: Ticket
    relateId: r1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (8, 11),
    "`taskInfo.type` is \"Ticket\"; the only documented value is \"Case\""
)]
#[case::type_without_relate_id(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    type: Case
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (11, 11),
    "node `a`: AICC `relateId` is required when `type` is set"
)]
#[case::bad_priority_literal(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    priority: Urgent
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (8, 15),
    "`taskInfo.priority` is \"Urgent\", not one of Critical, High, Medium, Low"
)]
#[case::due_date_literal_not_a_date_time(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    dueDate: 2026-11-28
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (8, 14),
    "`taskInfo.dueDate` is \"2026-11-28\", not a date-time in the form YYYY-MM-DD HH:mm:ss"
)]
#[case::constant_template_renders_a_bad_due_date(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
nodes:
  - { id: start, kind: start }
  - id: a
    kind: task
    todo:
      aicc:
        dueDate: "{{ '2026-02-30' ~ ' 00:00:00' }}"
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (14, 18),
    "`taskInfo.dueDate` is \"2026-02-30 00:00:00\", not a date-time"
)]
#[case::aicc_without_required_fields(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    description: d
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (8, 11),
    "node `a`: AICC task is missing `title`, `ownerId`, `creatorId`"
)]
#[case::title_is_a_list(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: [a, b]
    ownerId: o1
    creatorId: c1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (5, 12),
    "`title` must be a string or a template, not a list"
)]
#[case::poa_mappings_on_an_aicc_node(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task, todo: { poa: { taskName: x } } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 11),
    "node `a`: has `poa` mappings but its target is aicc"
)]
fn aicc_problems(#[case] yaml: &str, #[case] at: (u64, u64), #[case] needle: &str) {
    let p = the_problem(yaml, needle);
    assert_eq!((p.pos.line, p.pos.col), at, "{p}");
}

/// The same rules hold for a constant template as for a literal: the template
/// uses no variable, so it is rendered once at load.
#[test]
fn a_template_using_variables_is_checked_per_event_not_at_load() {
    registry(
        r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    dueDate: "{{ variables.due }}"
    priority: "{{ variables.priority | default('Low') }}"
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    );
}

const SEVERAL: &str = r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    priority: Urgent
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: a, kind: task }
  - { id: orphan, kind: exclusive }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
  - { from: a, to: ghost }
  - { from: orphan, to: end }
"#;

#[test]
fn every_problem_of_a_file_is_reported_not_just_the_first() {
    let got: Vec<String> = problems(SEVERAL).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "test.yaml:8:15: defaults: `taskInfo.priority` is \"Urgent\", not one of Critical, High, Medium, Low",
            "test.yaml:12:11: duplicate node id `a` (first defined at line 11)",
            "test.yaml:13:11: node `orphan` is unreachable from the start node",
            "test.yaml:18:20: transition to unknown node `ghost`",
        ]
    );
}

#[test]
fn validate_cli_prints_every_problem_as_file_line_col_and_fails() {
    let dir = temp_dir_with(&[
        ("broken.yaml", SEVERAL),
        ("syntax.yml", "workflow: [w\n"),
        ("notes.txt", "not a workflow"),
    ]);
    let out = flowbridge(["validate".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout when invalid");
    let err = lines(&out.stderr);
    let (summary, problem_lines) = err.split_last().expect("some stderr");
    assert_eq!(summary, "5 problem(s) found");
    let broken = dir.path().join("broken.yaml").display().to_string();
    let syntax = dir.path().join("syntax.yml").display().to_string();
    let mut positions = Vec::new();
    for line in problem_lines {
        // file:line:col: message
        let (file, rest) = line
            .rsplit_once(".yaml:")
            .map(|(f, r)| (format!("{f}.yaml"), r))
            .or_else(|| line.rsplit_once(".yml:").map(|(f, r)| (format!("{f}.yml"), r)))
            .unwrap_or_else(|| panic!("no file in {line:?}"));
        assert!(file == broken || file == syntax, "{line}");
        let mut parts = rest.splitn(3, ':');
        let l: u64 = parts.next().unwrap().parse().expect("a line number");
        let c: u64 = parts.next().unwrap().parse().expect("a column number");
        let message = parts.next().expect("a message");
        assert!(message.starts_with(' ') && message.len() > 1, "{line}");
        positions.push((file, l, c));
    }
    assert_eq!(
        positions,
        [
            (broken.clone(), 8, 15),
            (broken.clone(), 12, 11),
            (broken.clone(), 13, 11),
            (broken, 18, 20),
            (syntax, 1, 11),
        ]
    );
}

#[test]
fn validate_cli_on_the_samples_prints_one_summary_line_per_workflow() {
    let out = flowbridge(["validate", "workflows/"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = lines(&out.stdout);
    let mut files: Vec<String> = std::fs::read_dir(path("workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(got.len(), files.len(), "{got:#?}");
    for (line, file) in got.iter().zip(&files) {
        assert!(line.starts_with(&format!("workflows/{file}: ok — ")), "{line}");
        assert!(
            line.contains(" nodes, ") && line.contains(" task nodes, targets: "),
            "{line}"
        );
    }
    assert!(
        got.iter()
            .any(|l| l
                .contains("thesis-review (论文评审): 8 nodes, 9 transitions, 4 task nodes, targets: poa×4")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|l| l.contains(
            "equipment-repair (设备报修): 6 nodes, 6 transitions, 4 task nodes, targets: poa×3, aicc×1"
        )),
        "{got:#?}"
    );
}

#[test]
fn every_sample_workflow_is_valid() {
    let reg = crate::support::samples();
    let ids: Vec<&str> = reg.workflows().iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "customer-case",
            "equipment-repair",
            "leave-approval",
            "thesis-review"
        ]
    );
}

#[test]
fn two_files_with_the_same_workflow_id_are_a_problem() {
    let wf = r#"workflow: w
nodes:
  - { id: start, kind: start }
  - { id: end, kind: end }
transitions:
  - { from: start, to: end }
"#;
    let err = flowbridge::workflow::Registry::from_sources([
        ("a.yaml".to_owned(), wf.to_owned()),
        ("b.yaml".to_owned(), wf.to_owned()),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.yaml:1:1: workflow id `w` is already defined in a.yaml"
    );
}

/// An empty literal leaves the field out of the body, so it does not count
/// as setting a required field: a node that blanks the default `handlers`
/// without a `handlingGroup` would fail on every event.
#[rstest]
#[case::poa_handlers_blanked(
    r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: t
    handlers: u1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task, todo: { poa: { handlers: "" } } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (11, 11),
    "node `a`: POA todo is missing `handlers` or `handlingGroup`"
)]
#[case::aicc_title_empty(
    r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: ""
    ownerId: o1
    creatorId: c1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    (10, 11),
    "node `a`: AICC task is missing `title`"
)]
fn empty_literal_does_not_satisfy_a_required_field(
    #[case] yaml: &str,
    #[case] at: (u64, u64),
    #[case] needle: &str,
) {
    let p = the_problem(yaml, needle);
    assert_eq!((p.pos.line, p.pos.col), at, "{p}");
}

#[test]
fn empty_literal_type_does_not_require_relate_id() {
    registry(
        r#"workflow: w
defaults:
  target: aicc
  aicc:
    title: t
    ownerId: o1
    creatorId: c1
    type: ""
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: end }
"#,
    );
}

/// A bad value in `defaults` is one problem, not one per task node using it;
/// the same value overridden per node is reported under the node.
#[test]
fn a_problem_in_defaults_is_reported_once() {
    let got: Vec<String> = problems(
        r#"workflow: w
defaults:
  target: poa
  poa:
    appId: app
    transTypeCode: TT
    taskName: "{{ variables.name }"
    handlers: u1
nodes:
  - { id: start, kind: start }
  - { id: a, kind: task }
  - { id: b, kind: task }
  - { id: c, kind: task, todo: { poa: { taskName: "{% if %}" } } }
  - { id: end, kind: end }
transitions:
  - { from: start, to: a }
  - { from: a, to: b }
  - { from: b, to: c }
  - { from: c, to: end }
"#,
    )
    .iter()
    .map(|p| {
        format!(
            "{}:{}: {}",
            p.pos.line,
            p.pos.col,
            p.message.split(':').next().unwrap()
        )
    })
    .collect();
    assert_eq!(got, ["7:15: defaults", "13:51: node `c`"]);
}

/// The commented example of docs/workflows.md is a valid workflow, and it
/// creates the same todos as the sample it annotates.
#[test]
fn the_documented_example_is_valid_and_matches_the_sample() {
    let doc = std::fs::read_to_string(path("docs/workflows.md")).unwrap();
    let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let example = registry(&doc[start..end]);
    let sample = crate::support::samples();
    let office_todo = |reg: &flowbridge::workflow::Registry| {
        let mut i = crate::support::Instance::new(reg, "leave-approval", "N1")
            .with_variables(serde_json::json!({"studentName": "李雷", "days": 5}));
        let d = i.walk(&["counselor", "days_check", "dean", "office"]);
        crate::support::the_poa(&d).item.clone()
    };
    assert_eq!(office_todo(&example), office_todo(&sample));
}
