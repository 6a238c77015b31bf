//! `geoffrey config show|set|schema`.

use crate::args::ConfigCommand;
use anyhow::Context;
use geoffrey::instance;
use geoffrey::outbound::OutboundClient;
use geoffrey::services::Services;
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show { name } => {
            let editable = instance::load_for_edit(
                services.store.as_ref(),
                &services.apps,
                &services.keyring,
                &name,
            )
            .await?;
            for err in &editable.unreadable {
                eprintln!("warning: {err}; it is shown as null");
            }
            let mut shown = editable.document;
            instance::mask(&mut shown, &services.apps);
            shown["_rev"] = Value::from(editable.rev);
            crate::output::out!("{}", serde_json::to_string_pretty(&shown)?);
        }
        ConfigCommand::Set { name, file } => {
            let text = read_input(file.as_deref())?;
            let mut document: Value = serde_json::from_str(&text).context(
                "the configuration is not valid JSON; `geoffrey config show` prints an example",
            )?;
            let rev = match document.as_object_mut().and_then(|o| o.remove("_rev")) {
                Some(Value::String(rev)) => rev,
                _ => {
                    let store = services.store.as_ref();
                    instance::load_for_edit(store, &services.apps, &services.keyring, &name)
                        .await?
                        .rev
                }
            };
            let rev = instance::save(
                services.store.as_ref(),
                &services.apps,
                &services.keyring,
                &name,
                &rev,
                document,
            )
            .await?;
            eprintln!("Saved the configuration of {name:?} (revision {rev}).");
        }
        ConfigCommand::Check { name } => {
            let stored = services.configs.get(&name).await?;
            let settings = &services.settings;
            let http = OutboundClient::new(&settings.outbound, settings.worker.job_timeout)?;
            let mut failed = 0;
            for (app_name, section) in &stored.config.apps {
                let Some(app) = services.apps.get(app_name) else {
                    continue;
                };
                for check in app.check(section, &http).await {
                    let mark = if check.ok { "ok" } else { "FAILED" };
                    failed += usize::from(!check.ok);
                    crate::output::out!("{mark:<6} {app_name}.{}: {}", check.name, check.message);
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} check(s) failed");
            }
        }
        ConfigCommand::Schema { app } => {
            let Some(found) = services.apps.get(&app) else {
                anyhow::bail!(
                    "unknown app {app:?}; available apps: {}",
                    services.apps.names().join(", ")
                );
            };
            crate::output::out!("{}", serde_json::to_string_pretty(&found.schema())?);
        }
    }
    Ok(())
}

fn read_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
            Ok(text)
        }
    }
}
