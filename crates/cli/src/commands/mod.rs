//! The subcommands. Each opens only what it needs: `run` starts everything, the others open
//! the embedded store and queue and work on them directly, which is safe while `geoffrey run`
//! uses the same files.

mod config;
mod debug;
mod failed;
mod instance;
mod logs;
mod run;

use crate::args::{Cli, Command};
use geoffrey::clock::SystemClock;
use geoffrey::config::Settings;
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    match cli.command {
        Command::Run(args) => run::run(settings, args).await,
        Command::Instance(command) => instance::run(open(&settings).await?, command).await,
        Command::Config(command) => config::run(open(&settings).await?, command).await,
        Command::Logs(args) => logs::run(open(&settings).await?, args).await,
        Command::Failed(command) => failed::run(open(&settings).await?, command).await,
        Command::Debug(command) => debug::run(command).await,
    }
}

async fn open(settings: &Settings) -> anyhow::Result<Arc<Services>> {
    geoffrey::run::open_embedded(settings, Arc::new(SystemClock)).await
}
