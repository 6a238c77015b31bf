//! `geoffrey config show|set|schema`.

use crate::args::ConfigCommand;
use anyhow::Context;
use geoffrey::audit::Actor;
use geoffrey::services::Services;
use geoffrey::{config_edit, instance};
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show { name } => {
            let shown = config_edit::show(&services, &name).await?;
            for err in &shown.unreadable {
                eprintln!("warning: {err}; it is shown as null");
            }
            let mut document = shown.document;
            document["_rev"] = Value::from(shown.rev);
            crate::output::out!("{}", serde_json::to_string_pretty(&document)?);
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
            let rev = config_edit::save(&services, &name, &rev, document, &Actor::cli()).await?;
            eprintln!("Saved the configuration of {name:?} (revision {rev}).");
        }
        ConfigCommand::Check { name } => {
            let shown = config_edit::show(&services, &name).await?;
            let app_names: Vec<String> = shown.document["apps"]
                .as_object()
                .map(|apps| apps.keys().cloned().collect())
                .unwrap_or_default();
            let mut failed = 0;
            for app_name in app_names {
                if services.apps.get(&app_name).is_none() {
                    continue;
                }
                for check in config_edit::check_app(&services, &name, &app_name, None).await? {
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
