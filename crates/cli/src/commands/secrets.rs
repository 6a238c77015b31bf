//! `geoffrey secrets new-key|rotate`.

use crate::args::SecretsCommand;
use geoffrey::config::Settings;
use geoffrey::instance;

pub async fn run(settings: &Settings, command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::NewKey => {
            let key = geoffrey::keyring::new_key();
            crate::output::out!("{}", key.expose());
        }
        SecretsCommand::Rotate => {
            let services = super::open(settings).await?;
            let (store, apps, keyring) =
                (services.store.as_ref(), &services.apps, &services.keyring);
            let mut failed = 0;
            for name in store.list_databases().await? {
                match instance::reseal(store, apps, keyring, &name).await {
                    Ok(0) => crate::output::out!("{name}: already encrypted with the current key"),
                    Ok(count) => crate::output::out!("{name}: encrypted {count} secret(s) again"),
                    Err(err) => {
                        failed += 1;
                        eprintln!("{name}: {err}");
                    }
                }
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} instance(s) could not be encrypted again; fix the errors above and run \
                 the command again"
            );
            eprintln!(
                "Every instance is encrypted with key {}. Remove GEOFFREY_PREVIOUS_SECRET_KEY \
                 once every process runs with the new key.",
                keyring.current_id()
            );
        }
    }
    Ok(())
}
