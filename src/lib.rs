//! flowbridge: workflow node-transition events from Kafka → POA
//! transaction-center todos and Huawei AICC tasks.
//!
//! An event says an instance (`serialNumber`) of workflow W moved from node
//! A to node B. flowbridge matches it against the workflow's graph
//! ([`workflow`]), decides with the instance's state which todos to create
//! and whether each is the first of its transaction or chained to an earlier
//! one ([`engine::decide`], pure), and sends them to the APIs whose
//! contracts live in [`contract`]. See `docs/architecture.md`.

pub mod bench;
pub mod commands;
pub mod config;
pub mod contract;
pub mod demo;
pub mod engine;
pub mod event;
pub mod kafka;
pub mod observe;
pub mod pipeline;
pub mod replay;
pub mod runtime;
pub mod samples;
pub mod scenario;
pub mod shutdown;
pub mod sim;
pub mod sink;
pub mod state;
pub mod workflow;
