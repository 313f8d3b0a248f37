//! The CLI's commands as library functions: `main.rs` parses arguments and
//! calls these, so tests can run them in-process.

use std::io::{self, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::replay::Replayer;
use crate::workflow::{self, Registry, diagram};

/// `flowbridge validate DIR`: every problem as `file:line:col: message`
/// (exit 1), or one summary line per workflow (exit 0).
pub fn validate(dir: &Path, out: &mut impl Write, err: &mut impl Write) -> io::Result<ExitCode> {
    match Registry::load_dir(dir) {
        Ok(reg) => {
            for wf in reg.workflows() {
                writeln!(out, "{}", workflow::summary(wf))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems.0 {
                writeln!(err, "{p}")?;
            }
            writeln!(err, "{} problem(s) found", problems.0.len())?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Output format of `graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// `flowbridge graph FILE`: the workflow as DOT or Mermaid.
pub fn graph(file: &Path, format: GraphFormat, out: &mut impl Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let wf = workflow::compile(&file.display().to_string(), &text).map_err(workflow::Problems)?;
    let text = match format {
        GraphFormat::Dot => diagram::dot(&wf),
        GraphFormat::Mermaid => diagram::mermaid(&wf),
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// `flowbridge replay --dry-run`: decode → decide over a JSONL file.
pub fn replay(
    workflows: &Path,
    events: &Path,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let reg = Registry::load_dir(workflows).context("the workflows do not load")?;
    let file = std::fs::File::open(events).with_context(|| format!("cannot open {}", events.display()))?;
    let mut r = Replayer::default();
    let name = events.display().to_string();
    r.run(&reg, &name, BufReader::new(file), out)?;
    writeln!(err, "{name}: {}", r.stats)?;
    Ok(())
}

/// `flowbridge demo`: exit 0 when the stream was fully processed and the
/// report is consistent, 1 otherwise.
pub fn demo(opts: &crate::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(crate::demo::run(opts, &mut io::stdout()))?;
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Which simulator `flowbridge simulate` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKind {
    Poa,
    Aicc,
}

/// Options of `flowbridge simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// poa or aicc.
    #[arg(value_enum)]
    pub kind: SimKind,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// The client id the token endpoint accepts.
    #[arg(long, env = "FLOWBRIDGE_SIM_CLIENT_ID", default_value = "flowbridge")]
    pub client_id: String,
    /// The client secret the token endpoint accepts.
    #[arg(
        long,
        env = "FLOWBRIDGE_SIM_CLIENT_SECRET",
        default_value = "flowbridge-sim-secret",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub client_secret: String,
    /// POA: a scope token requests must include.
    #[arg(long)]
    pub required_scope: Option<String>,
    /// POA: what precedes the token in `Authorization`.
    #[arg(long, default_value = "Bearer ")]
    pub authorization_prefix: String,
    /// POA: a transaction type that exists without autoCreateTransType
    /// (repeatable).
    #[arg(long = "trans-type")]
    pub trans_types: Vec<String>,
    /// Lifetime of issued tokens, in milliseconds.
    #[arg(long, default_value_t = 3_600_000)]
    pub token_lifetime_ms: u64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of an injected HTTP 500 per API request.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Probability of an injected garbage (HTML) 200 per API request.
    #[arg(long, default_value_t = 0.0)]
    pub garbage_rate: f64,
}

/// `flowbridge simulate poa|aicc`: runs a simulator until SIGINT/SIGTERM. Faults
/// can be changed while it runs with `POST /_sim/faults`.
pub fn simulate(args: SimulateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    use crate::sim::{self, Faults, SimOptions};
    use futures::FutureExt as _;

    let opts = SimOptions {
        client_id: args.client_id,
        client_secret: secrecy::SecretString::from(args.client_secret),
        required_scope: args.required_scope,
        authorization_prefix: args.authorization_prefix,
        known_trans_types: args.trans_types,
        faults: Faults {
            token_lifetime_ms: args.token_lifetime_ms,
            latency_ms: args.latency_ms,
            failure_rate: args.failure_rate,
            garbage_rate: args.garbage_rate,
            ..Faults::default()
        },
        ..SimOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let (name, base_url, stop) = match args.kind {
            SimKind::Poa => {
                let h = sim::poa::spawn(listener, opts).await?;
                ("POA", h.base_url(), h.shutdown().boxed())
            }
            SimKind::Aicc => {
                let h = sim::aicc::spawn(listener, opts).await?;
                ("AICC", h.base_url(), h.shutdown().boxed())
            }
        };
        writeln!(out, "{name} simulator listening on {base_url} (Ctrl-C to stop)")?;
        writeln!(
            out,
            "control: GET {base_url}/_sim/todos, GET {base_url}/_sim/stats, POST {base_url}/_sim/faults"
        )?;
        out.flush()?;
        crate::shutdown::signalled().await;
        stop.await;
        Ok(())
    })
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default
/// `default_level`), text or JSON lines on stderr.
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default_level},librdkafka=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `flowbridge run --config FILE`.
pub fn run(config: &Path, metrics_addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut cfg: crate::runtime::BridgeConfig = crate::config::load(config)?;
    if metrics_addr.is_some() {
        cfg.metrics_addr = metrics_addr;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(crate::runtime::run(cfg, crate::shutdown::signalled()))
}
