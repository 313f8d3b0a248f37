//! The integration tests: one binary, one module per area.

mod bench_quick;
mod compose;
mod engine_rules;
mod kafka_e2e;
mod kafka_runtime;
mod operations;
mod replay_samples;
mod sim_support;
mod simulators;
mod sinks;
mod state_cli;
mod state_crash;
mod state_store;
mod support;
mod validation;
