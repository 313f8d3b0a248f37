//! Shutdown on SIGINT/SIGTERM: the first signal starts a graceful stop, a
//! second one exits at once.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT or SIGTERM. From then on, a second signal
/// exits the process immediately with status 130.
pub async fn signalled() {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: stopping gracefully (again to exit now)"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping gracefully (again to exit now)"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}
