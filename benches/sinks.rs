//! Throughput of the sinks against the in-process simulators over
//! 127.0.0.1: POA items/s for batch sizes 1, 10, 100 × in-flight 1, 8, and
//! AICC creates/s at 1 and 8 concurrent callers.
//!
//! Run: `cargo bench --bench sinks` (each case runs for
//! `FB_BENCH_SECS` seconds, default 2). Not a timed test: it prints a table
//! and asserts nothing about speed; every outcome must be `Done`.
//!
//! Callers outnumber what can be in flight (2 × batch × in-flight, at least
//! 16), each sending distinct instances one after another, so batches fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowbridge::contract::aicc::AiccTaskInfo;
use flowbridge::contract::poa::PoaItem;
use flowbridge::sim::{self, SimOptions};
use flowbridge::sink::{
    AiccApi, AiccConfig, AiccSink, AuthConfig, OAuthConfig, Outcome, PoaApi, PoaConfig, PoaSink,
};
use secrecy::ExposeSecret;

fn item(caller: usize, n: u64, run: &str) -> PoaItem {
    PoaItem {
        app_id: "bench-app".into(),
        node_id: "node-1".into(),
        node_name: "审批".into(),
        task_id: format!("{run}-{caller}-{n}"),
        task_name: "bench todo".into(),
        trans_type_code: "BENCH".into(),
        trans_type_name: Some("压测".into()),
        auto_create_trans_type: Some(true),
        handlers: Some("t001".into()),
        initiator: Some("bench".into()),
        serial_number: Some(format!("{run}-{caller}-{n}")),
        ..PoaItem::default()
    }
}

fn task(caller: usize, n: u64) -> AiccTaskInfo {
    AiccTaskInfo {
        title: format!("bench {caller}-{n}"),
        owner_id: "owner-1".into(),
        creator_id: "creator-1".into(),
        priority: Some("Medium".into()),
        ..AiccTaskInfo::default()
    }
}

/// Runs `callers` loops of `op` for `secs`; returns completions per second.
async fn drive<F, Fut>(callers: usize, secs: f64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    match op(c, n).await {
                        Outcome::Done { .. } => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("bench op failed: {other:?}"),
                    }
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a bench caller panicked");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn oauth(creds: (String, secrecy::SecretString)) -> AuthConfig {
    AuthConfig::Oauth(OAuthConfig::new(creds.0, creds.1.expose_secret()))
}

async fn bench(secs: f64) -> anyhow::Result<()> {
    let poa = sim::poa::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SimOptions::default(),
    )
    .await?;
    println!("POA addTransaction through PoaSink ({secs} s per case)");
    println!(
        "{:>6} {:>10} {:>8} {:>12}",
        "batch", "in-flight", "callers", "items/s"
    );
    for batch in [1usize, 10, 100] {
        for in_flight in [1usize, 8] {
            let mut cfg = PoaConfig::new(poa.base_url(), oauth(poa.credentials()));
            cfg.max_batch = batch;
            cfg.max_in_flight = in_flight;
            cfg.linger_ms = 2;
            let sink = PoaSink::new(cfg)?;
            let callers = (2 * batch * in_flight).max(16);
            let run = format!("b{batch}f{in_flight}");
            let rate = drive(callers, secs, move |c, n| {
                let sink = sink.clone();
                let item = item(c, n, &run);
                async move { sink.send(&item.task_id.clone(), item).await }
            })
            .await;
            println!("{batch:>6} {in_flight:>10} {callers:>8} {rate:>12.0}");
        }
    }
    println!("(simulator accepted {} todos)", poa.todos().len());
    poa.shutdown().await;

    let aicc = sim::aicc::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SimOptions::default(),
    )
    .await?;
    println!("\nAICC create task through AiccSink ({secs} s per case)");
    println!("{:>8} {:>12}", "callers", "creates/s");
    let sink = AiccSink::new(AiccConfig::new(aicc.base_url(), oauth(aicc.credentials())))?;
    for callers in [1usize, 8] {
        let sink = sink.clone();
        let rate = drive(callers, secs, move |c, n| {
            let sink = sink.clone();
            async move { sink.create(task(c, n)).await }
        })
        .await;
        println!("{callers:>8} {rate:>12.0}");
    }
    println!("(simulator created {} tasks)", aicc.tasks().len());
    aicc.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let secs: f64 = std::env::var("FB_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(bench(secs))
}
