//! `geoffrey debug receiver`: a stand-in for a chat service's incoming webhook.

use crate::args::DebugCommand;
use axum::Router;
use axum::routing::post;

pub async fn run(command: DebugCommand) -> anyhow::Result<()> {
    let DebugCommand::Receiver { listen } = command;
    let app = Router::new().fallback(post(print_message));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|err| {
        anyhow::anyhow!("cannot listen on {listen}: {err}; pick another --listen")
    })?;
    eprintln!("Receiving chat messages on http://{listen}/ (any path); Ctrl-C stops.");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn print_message(body: String) -> &'static str {
    let text = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|message| {
            message
                .get("text")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        });
    match text {
        Some(text) => crate::output::out!("message: {text}"),
        None => crate::output::out!("body: {body}"),
    }
    "ok"
}
