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
    // The handlers are installed before the server listens: a SIGTERM that arrives as soon as
    // the port accepts connections must stop Geoffrey gracefully, not kill it.
    let signals = Signals::install();
    let running = start(settings, None, roles).await?;
    if let Some(addr) = running.addr {
        crate::output::line(format_args!(
            "Web UI: {}/ui/ (listening on {addr})",
            running.services.settings.public_url()
        ));
    }
    if let Some(link) = &running.setup_link {
        // On stdout, not in the log: the link contains a one-time token.
        crate::output::line(format_args!(
            "No administrator exists yet. Open this link once to choose the password:\n  {link}"
        ));
        tracing::warn!(
            "the web UI has no administrator yet; open the setup link printed on stdout"
        );
    }
    let shutdown = running.shutdown_token();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
    running.wait().await;
    tracing::info!("Geoffrey stopped");
    Ok(())
}

/// SIGTERM's handler, installed when created, and Ctrl-C.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let terminate = signal(SignalKind::terminate())
                .map_err(|err| {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops Geoffrey");
                })
                .ok();
            Self { terminate }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for SIGTERM or Ctrl-C.
    async fn wait(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut terminate) = self.terminate {
            tokio::select! {
                _ = ctrl_c => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}
