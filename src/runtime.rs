//! `flowbridge run`: the bridge's main job, wired from its configuration.
//!
//! Loads the workflows, opens the state store, builds the POA and AICC
//! sinks and the dead-letter producer, starts the consumer, and on shutdown
//! stops fetching, drains, commits and exits within the grace period.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::{ConfigError, KafkaConfig};
use futures::future::BoxFuture;

use crate::kafka::consumer::{self, Probe, Running};
use crate::kafka::dlq::KafkaDeadLetters;
use crate::observe::Metrics;
use crate::observe::server::{ReadyCheck, serve, watch_ready};
use crate::pipeline::Pipeline;
use crate::sink::aicc::AiccSink;
use crate::sink::config::{AiccConfig, PoaConfig};
use crate::sink::poa::PoaSink;
use crate::sink::{AiccApi, PoaApi};
use crate::state::{self, StateStore, StoreConfig};
use crate::workflow::{Registry, Target};

/// The whole configuration file (see `deploy/flowbridge.example.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub kafka: KafkaConfig,
    /// Directory of workflow files.
    #[serde(default = "default_workflows")]
    pub workflows: PathBuf,
    #[serde(default)]
    pub state: StoreConfig,
    /// Required when a workflow has POA task nodes.
    #[serde(default)]
    pub poa: Option<PoaConfig>,
    /// Required when a workflow has AICC task nodes.
    #[serde(default)]
    pub aicc: Option<AiccConfig>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// How long a graceful stop may take before the process exits anyway.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
}

fn default_workflows() -> PathBuf {
    PathBuf::from("workflows")
}

fn default_grace() -> u64 {
    30_000
}

impl BridgeConfig {
    /// Checks the config against itself and the loaded workflows.
    pub fn check(&self, workflows: &Registry) -> Result<(), ConfigError> {
        self.kafka.check()?;
        for wf in workflows.workflows() {
            let (poa, aicc) = wf.task_counts();
            if poa > 0 && self.poa.is_none() {
                return Err(ConfigError(format!(
                    "key `poa`: workflow `{}` ({}) has POA task nodes but no `poa` section is configured",
                    wf.id, wf.file
                )));
            }
            if aicc > 0 && self.aicc.is_none() {
                return Err(ConfigError(format!(
                    "key `aicc`: workflow `{}` ({}) has AICC task nodes but no `aicc` section is configured",
                    wf.id, wf.file
                )));
            }
        }
        Ok(())
    }
}

/// A sink for a target no workflow uses: never called (the config check
/// guarantees it), and rejects if it were.
struct Unconfigured(Target);

impl PoaApi for Unconfigured {
    fn send(
        &self,
        _instance: &str,
        _item: crate::contract::poa::PoaItem,
    ) -> futures::future::BoxFuture<'_, crate::sink::Outcome> {
        let t = self.0;
        Box::pin(async move { unconfigured(t) })
    }
}

impl AiccApi for Unconfigured {
    fn create(
        &self,
        _info: crate::contract::aicc::AiccTaskInfo,
    ) -> futures::future::BoxFuture<'_, crate::sink::Outcome> {
        let t = self.0;
        Box::pin(async move { unconfigured(t) })
    }
    fn find(
        &self,
        _intent: crate::state::AiccIntent,
    ) -> futures::future::BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async { Ok(None) })
    }
}

fn unconfigured(t: Target) -> crate::sink::Outcome {
    crate::sink::Outcome::Reject {
        reason: crate::sink::SinkReason::ApiRejected,
        message: format!("no `{}` section is configured", t.as_str()),
        attempts: 0,
    }
}

/// How often readiness is checked for the `flowbridge_ready` gauge (also
/// on every `/readyz`).
pub const READY_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// `/readyz`: partitions assigned, state store reachable, tokens obtainable
/// (a cached unexpired token counts; a static token always does).
pub struct Readiness {
    /// Partitions assigned to the consumer.
    pub consumer: Probe,
    /// Pinged.
    pub store: Arc<dyn StateStore>,
    /// Asked for a token ([`PoaApi::ready`]).
    pub poa: Arc<dyn PoaApi>,
    /// Asked for a token ([`AiccApi::ready`]).
    pub aicc: Arc<dyn AiccApi>,
}

impl ReadyCheck for Readiness {
    fn not_ready(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut reasons = Vec::new();
            if self.consumer.partitions_assigned() == 0 {
                reasons.push("no partitions assigned".to_owned());
            }
            // Concurrently, so one slow dependency does not add up with the others.
            let (store, poa, aicc) = futures::join!(self.store.ping(), self.poa.ready(), self.aicc.ready());
            if let Err(e) = store {
                reasons.push(format!("state store: {e}"));
            }
            if let Err(e) = poa {
                reasons.push(format!("poa: {e}"));
            }
            if let Err(e) = aicc {
                reasons.push(format!("aicc: {e}"));
            }
            reasons
        })
    }
}

/// A running bridge.
pub struct Bridge {
    pub running: Running,
    pub pipeline: Arc<Pipeline>,
    pub store: Arc<dyn StateStore>,
    /// Where the operations endpoint listens, when it does.
    pub metrics_addr: Option<SocketAddr>,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

impl Bridge {
    /// Stops gracefully: stop fetching, drain, commit; then the sweeper and
    /// the operations endpoint.
    pub async fn stop(self) {
        self.running.stop().await;
        let _ = self.stop_tx.send(true);
    }

    /// Stops like a crash: no drain beyond what is already running, no final
    /// commit (for redelivery tests).
    pub async fn abandon(self) {
        self.running.abandon().await;
        let _ = self.stop_tx.send(true);
    }

    /// A future resolving when the bridge is told to stop.
    fn stopped(rx: &tokio::sync::watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = rx.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Starts the bridge from a checked config and loaded workflows.
pub async fn start(cfg: &BridgeConfig, workflows: Registry) -> anyhow::Result<Bridge> {
    cfg.check(&workflows)?;
    let store = state::open(&cfg.state).await.context("opening the state store")?;
    start_with_store(cfg, workflows, store).await
}

/// Starts the bridge on an already open store (tests share one store
/// between consumers; `cfg.state` is then only used for retention).
pub async fn start_with_store(
    cfg: &BridgeConfig,
    workflows: Registry,
    store: Arc<dyn StateStore>,
) -> anyhow::Result<Bridge> {
    cfg.check(&workflows)?;
    let metrics = Arc::new(Metrics::new());
    let poa: Arc<dyn PoaApi> = match &cfg.poa {
        Some(c) => Arc::new(PoaSink::with_metrics(c.clone(), metrics.clone()).context("key `poa`")?),
        None => Arc::new(Unconfigured(Target::Poa)),
    };
    let aicc: Arc<dyn AiccApi> = match &cfg.aicc {
        Some(c) => Arc::new(AiccSink::with_metrics(c.clone(), metrics.clone()).context("key `aicc`")?),
        None => Arc::new(Unconfigured(Target::Aicc)),
    };
    let dlq = Arc::new(
        KafkaDeadLetters::new(cfg.kafka.client_config(), cfg.kafka.dlq_topic.clone())
            .context("creating the dead-letter producer")?,
    );
    let pipeline = Arc::new(Pipeline {
        workflows: Arc::new(workflows),
        store: store.clone(),
        poa,
        aicc,
        dlq,
        metrics,
    });
    let running = consumer::start(
        &cfg.kafka.client_config(),
        &cfg.kafka.consumer_settings(),
        pipeline.clone(),
    )
    .context("starting the Kafka consumer")?;
    let (stop_tx, _) = tokio::sync::watch::channel(false);
    state::spawn_sweeper(
        store.clone(),
        cfg.state.retention(),
        cfg.state.sweep_interval(),
        Bridge::stopped(&stop_tx),
    );
    let mut metrics_addr = None;
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("key `metrics_addr`: cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        metrics_addr = Some(local);
        let ready: Arc<dyn ReadyCheck> = Arc::new(Readiness {
            consumer: running.probe(),
            store: store.clone(),
            poa: pipeline.poa.clone(),
            aicc: pipeline.aicc.clone(),
        });
        let metrics = pipeline.metrics.clone();
        tokio::spawn(watch_ready(
            ready.clone(),
            metrics.clone(),
            READY_CHECK_INTERVAL,
            Bridge::stopped(&stop_tx),
        ));
        let stopped = Bridge::stopped(&stop_tx);
        tokio::spawn(async move {
            if let Err(e) = serve(listener, metrics, ready, stopped).await {
                tracing::error!(error = %e, "operations endpoint failed");
            }
        });
        tracing::info!(addr = %local, "serving /metrics /healthz /readyz");
    }
    Ok(Bridge {
        running,
        pipeline,
        store,
        metrics_addr,
        stop_tx,
    })
}

/// Runs until `shutdown` resolves, then stops within the grace period.
pub async fn run(cfg: BridgeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let workflows = Registry::load_dir(&cfg.workflows)
        .map_err(|p| anyhow::anyhow!("{p}"))
        .with_context(|| format!("workflows in {} do not load", cfg.workflows.display()))?;
    tracing::info!(workflows = workflows.len(), brokers = %cfg.kafka.brokers, topics = ?cfg.kafka.topics, "starting");
    let bridge = start(&cfg, workflows).await?;
    shutdown.await;
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    match tokio::time::timeout(grace, bridge.stop()).await {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => anyhow::bail!("graceful stop took longer than shutdown_grace_ms ({grace:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_checks() {
        let text = include_str!("../deploy/flowbridge.example.yaml");
        let env = |k: &str| {
            k.ends_with("_ID")
                .then(|| "id".to_owned())
                .or_else(|| k.ends_with("_SECRET").then(|| "s".to_owned()))
        };
        let cfg: BridgeConfig = crate::config::parse(text, &env, []).unwrap();
        assert_eq!(cfg.kafka.topics, ["workflow-events"]);
        assert_eq!(cfg.poa.as_ref().unwrap().max_batch, 100);
        cfg.check(&Registry::embedded()).unwrap();
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains("client_secret: \"s\""),
            "secrets must not reach Debug: {debug}"
        );
    }

    #[test]
    fn a_workflow_target_without_its_section_is_a_config_error() {
        let text = "kafka: {brokers: 'a:9092', topics: [t]}\n";
        let cfg: BridgeConfig = crate::config::parse(text, &|_| None, []).unwrap();
        let err = cfg.check(&Registry::embedded()).unwrap_err();
        assert!(err.0.starts_with("key `"), "{err}");
    }
}
