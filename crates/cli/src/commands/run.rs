//! `geoffrey run`, `serve` and `work`: the server, the workers or both, until SIGTERM or
//! Ctrl-C.

use crate::args::RunArgs;
use geoffrey::config::Settings;
use geoffrey::run::{Roles, start};

pub async fn run(
    mut settings: Settings,
    args: Option<RunArgs>,
    roles: Roles,
) -> anyhow::Result<()> {
    if let Some(listen) = args.and_then(|args| args.listen) {
        settings.server.listen = listen;
    }
    tracing::info!(
        server = roles.server,
        worker = roles.worker,
        "starting Geoffrey"
    );
    let running = start(settings, None, roles).await?;
    let shutdown = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
    running.wait().await;
    tracing::info!("Geoffrey stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops Geoffrey");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
