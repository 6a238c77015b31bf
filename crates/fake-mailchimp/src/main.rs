//! The `fake-mailchimp` command: runs a fake Marketing API server until Ctrl-C (or SIGTERM),
//! for manual tries and the README walk-through.

use anyhow::Context;
use clap::Parser;
use fake_mailchimp::{ApiKey, DEFAULT_API_KEY, FakeConfig, FakeMailchimp, ListConfig};
use std::net::SocketAddr;

/// Run a fake Mailchimp Marketing API v3 server. It keeps its state in memory, so a restart
/// starts empty. The test controls are under /_fake/ and need no key.
#[derive(Debug, Parser)]
#[command(name = "fake-mailchimp", version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:4010")]
    listen: SocketAddr,

    /// API key to accept, in the form <32 hex digits>-<data centre>. The data centre of the
    /// fake is taken from it.
    #[arg(long, default_value = DEFAULT_API_KEY)]
    key: String,

    /// Id of a list (audience) to create, with merge fields FNAME and LNAME. Repeat for more
    /// lists.
    #[arg(long = "list", default_value = "aud1")]
    lists: Vec<String>,

    /// Maximum API requests in flight per account before 429.
    #[arg(long, default_value_t = 10)]
    concurrency_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FAKE_MAILCHIMP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "listening on a non-loopback address; the control API has no authentication"
        );
    }
    let config = config_from(&args);
    let fake = FakeMailchimp::bind(args.listen, config)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;

    let base_url = fake.base_url();
    println!("base URL: {base_url}");
    println!("API:      {base_url}/3.0");
    println!("controls: {base_url}/_fake/");
    println!("API key:  {}", fake.api_key());
    println!("lists:    {}", args.lists.join(", "));

    wait_for_stop_signal().await?;
    tracing::info!("fake Mailchimp server stopping");
    Ok(())
}

/// Waits for Ctrl-C, or on Unix also for SIGTERM.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate =
            signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("failed to wait for Ctrl-C"),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("failed to wait for Ctrl-C")
    }
}

fn config_from(args: &Args) -> FakeConfig {
    let defaults = FakeConfig::default();
    let dc = match args.key.rsplit_once('-') {
        Some((_, dc)) => dc.to_string(),
        None => defaults.dc.clone(),
    };
    FakeConfig {
        dc,
        keys: vec![ApiKey::valid(args.key.clone())],
        lists: args
            .lists
            .iter()
            .map(|id| ListConfig::new(id.clone(), "Forum members"))
            .collect(),
        concurrency_limit: args.concurrency_limit,
        ..defaults
    }
}
