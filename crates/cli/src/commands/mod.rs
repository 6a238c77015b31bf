//! The subcommands. Each opens only what it needs: `run` starts everything, the others open
//! the embedded store and queue and work on them directly, which is safe while `geoffrey run`
//! uses the same files.

mod backfill;
mod config;
mod debug;
mod failed;
mod forms;
mod instance;
mod logs;
mod run;
mod secrets;

use crate::args::{Cli, Command, InstanceCommand};
use geoffrey::clock::SystemClock;
use geoffrey::config::Settings;
use geoffrey::run::Roles;
use geoffrey::secret::Secret;
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    if let Some(url) = cli.store {
        settings.store.url = Some(Secret::new(url));
    }
    if let Some(url) = cli.queue {
        settings.queue.url = Some(Secret::new(url));
    }
    settings.validate()?;
    let reads_existing_data = !matches!(
        cli.command,
        Command::Run(_)
            | Command::Serve(_)
            | Command::Work
            | Command::Debug(_)
            | Command::Secrets(crate::args::SecretsCommand::NewKey)
            | Command::Instance(InstanceCommand::Create { .. })
    );
    if reads_existing_data && settings.store.url.is_none() && !settings.data_dir.exists() {
        anyhow::bail!(
            "no data folder at {}; run the command where `geoffrey run` keeps its data, or pass --data-dir",
            settings.data_dir.display()
        );
    }
    match cli.command {
        Command::Run(args) => run::run(settings, Some(args), Roles::ALL).await,
        Command::Serve(args) => {
            run::run(
                settings,
                Some(args),
                Roles {
                    server: true,
                    worker: false,
                },
            )
            .await
        }
        Command::Work => {
            run::run(
                settings,
                None,
                Roles {
                    server: false,
                    worker: true,
                },
            )
            .await
        }
        Command::Instance(command) => instance::run(open(&settings).await?, command).await,
        Command::Config(command) => config::run(open(&settings).await?, command).await,
        Command::Logs(args) => logs::run(open(&settings).await?, args).await,
        Command::Failed(command) => failed::run(open(&settings).await?, command).await,
        Command::Backfill(command) => backfill::run(open(&settings).await?, command).await,
        Command::Forms(command) => forms::run(open(&settings).await?, command).await,
        Command::Secrets(command) => secrets::run(&settings, command).await,
        Command::Debug(command) => debug::run(command).await,
    }
}

async fn open(settings: &Settings) -> anyhow::Result<Arc<Services>> {
    geoffrey::run::open_services(settings, Arc::new(SystemClock)).await
}
