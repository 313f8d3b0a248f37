//! The `flowbridge` binary: parses arguments and calls the library.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flowbridge::commands::{self, GraphFormat};

/// jemalloc rather than glibc malloc: the bridge allocates many small,
/// short-lived objects on several threads, where glibc spent about a third
/// of the CPU (fastbin consolidation, arena contention) and fragmented the
/// heap (see the Performance section of the README).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// flowbridge: workflow node-transition events from Kafka → POA todos and
/// Huawei AICC tasks, first or chained as the workflow graph says.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every workflow file of DIR; prints each problem as
    /// `file:line:col: message` and exits 1, or one summary line per workflow.
    Validate {
        /// Directory of workflow files (*.yaml, *.yml).
        #[arg(default_value = "workflows")]
        dir: PathBuf,
    },
    /// Run a JSONL file of events through the decision engine with in-memory
    /// state. Prints one JSON line per todo and per rejected event on stdout
    /// and a summary on stderr.
    Replay {
        /// Directory of workflow files.
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// JSONL file with one event per line.
        #[arg(long)]
        events: PathBuf,
        /// Decide only; send nothing (required: replay has no live mode).
        #[arg(long, required = true)]
        dry_run: bool,
    },
    /// Consume node-transition events from Kafka and create the todos: the
    /// bridge's main job. Every config value can be overridden with
    /// FLOWBRIDGE_* environment variables (e.g. FLOWBRIDGE_KAFKA__BROKERS);
    /// SIGINT/SIGTERM stop it gracefully, a second signal at once.
    Run {
        /// The configuration file (see deploy/flowbridge.example.yaml).
        #[arg(long, short, env = "FLOWBRIDGE_CONFIG")]
        config: PathBuf,
        /// Serve /metrics, /healthz and /readyz here (overrides metrics_addr).
        #[arg(long, env = "FLOWBRIDGE_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run the main job on embedded defaults, in one process with no set-up:
    /// an embedded Kafka-protocol broker, the POA and AICC simulators, the
    /// sample workflows, a scripted stream (loops, branches, parallel
    /// reviews, AICC flows, a few bad events, a short POA outage) and the real
    /// run loop; then a report checked against what the simulators recorded.
    /// Exits 0 when the stream is fully processed and consistent.
    Demo {
        /// Workflow instances in the scripted stream.
        #[arg(long, default_value_t = 400)]
        instances: usize,
        /// Partitions of the events topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Seed of the scripted stream.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Length of the injected POA outage in ms (0: none).
        #[arg(long, default_value_t = 1500)]
        outage_ms: u64,
        /// Serve /metrics, /healthz and /readyz here (e.g. 127.0.0.1:9464).
        #[arg(long, env = "FLOWBRIDGE_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// After the report, keep running (with the metrics endpoint) until
        /// SIGINT/SIGTERM.
        #[arg(long)]
        keep_running: bool,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run a POA or AICC simulator that enforces the API contract
    /// (`simulate poa --listen 127.0.0.1:8091`).
    Simulate(commands::SimulateArgs),
    /// Print a workflow as a Graphviz DOT digraph or a Mermaid flowchart.
    Graph {
        /// One workflow file.
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Inspect and maintain the instance-state store: get, list, purge.
    State(flowbridge::state::cli::StateArgs),
    /// End-to-end benchmark on one broker: bare consume vs flowbridge vs a
    /// naive bridge; events/s, latency, memory, CPU (a table, or --json).
    Bench(flowbridge::bench::BenchArgs),
}

/// Logging options.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text", env = "FLOWBRIDGE_LOG_FORMAT")]
    log_format: flowbridge::commands::LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { dir } => {
            commands::validate(&dir, &mut io::stdout().lock(), &mut io::stderr().lock())
                .map_err(anyhow::Error::from)
        }
        Command::Replay {
            workflows,
            events,
            dry_run: _,
        } => commands::replay(
            &workflows,
            &events,
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Run {
            config,
            metrics_addr,
            log,
        } => {
            flowbridge::commands::init_logging(log.log_format, "info");
            flowbridge::commands::run(&config, metrics_addr).map(|()| ExitCode::SUCCESS)
        }
        Command::Demo {
            instances,
            partitions,
            seed,
            outage_ms,
            metrics_addr,
            keep_running,
            log,
        } => {
            // The demo prints its own progress and report; RUST_LOG=warn
            // shows the sinks' retries during the outage.
            flowbridge::commands::init_logging(log.log_format, "error");
            let opts = flowbridge::demo::DemoOptions {
                instances,
                partitions,
                seed,
                outage_ms,
                metrics_addr,
                keep_running,
                ..Default::default()
            };
            commands::demo(&opts)
        }
        Command::Simulate(args) => {
            commands::simulate(args, &mut io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }
        Command::Graph { file, format } => {
            commands::graph(&file, format, &mut io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(args) => flowbridge::bench::main(&args, &mut io::stdout().lock(), &mut io::stderr())
            .map(|()| ExitCode::SUCCESS),
        Command::State(args) => {
            flowbridge::state::cli::run(args, &mut io::stdout().lock(), &mut io::stderr().lock())
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
