//! `geoffrey forms list`.

use crate::args::FormsCommand;
use geoffrey::apps::forms::config::FormsConfig;
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: FormsCommand) -> anyhow::Result<()> {
    let FormsCommand::List { name } = command;
    let stored = services.configs.get(&name).await?;
    let Some(section) = stored.config.apps.get("forms") else {
        anyhow::bail!(
            "instance {name:?} has no forms; add an apps.forms section with `geoffrey config set {name}`"
        );
    };
    let config = FormsConfig::parse(section)
        .map_err(|err| anyhow::anyhow!("apps.forms.{} is invalid: {}", err.path, err.message))?;
    let base = services.settings.public_url();
    for form in &config.forms {
        let url = format!("{base}/forms/{name}/{}", form.name);
        let title = html_attribute(&form.title);
        crate::output::out!("{}\t{url}", form.name);
        crate::output::out!(
            "  <iframe src=\"{url}\" title=\"{title}\" loading=\"lazy\" \
             style=\"width: 100%; height: 48rem; border: 0\"></iframe>"
        );
    }
    Ok(())
}

/// Escapes text for a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
