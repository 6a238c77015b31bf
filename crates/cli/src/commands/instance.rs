//! `geoffrey instance create|list`.

use crate::args::InstanceCommand;
use geoffrey::instance::{self, InstanceConfig};
use geoffrey::secret::Secret;
use geoffrey::services::Services;
use std::sync::Arc;

pub async fn run(services: Arc<Services>, command: InstanceCommand) -> anyhow::Result<()> {
    match command {
        InstanceCommand::Create {
            name,
            discourse_url,
            webhook_secret,
        } => {
            let secret = webhook_secret.map(Secret::new);
            let config = instance::create(
                services.store.as_ref(),
                &services.apps,
                &services.keyring,
                &name,
                &discourse_url,
                secret,
            )
            .await?;
            let actor = geoffrey::audit::Actor::cli();
            geoffrey::audit::record_creation(
                services.store.as_ref(),
                &services.apps,
                &name,
                &actor,
            )
            .await?;
            print_webhook_settings(&services, &name, &config);
        }
        InstanceCommand::List => {
            for name in services.store.list_databases().await? {
                let problems = problems_of(&services, &name).await;
                if problems.is_empty() {
                    crate::output::out!("{name}");
                } else {
                    crate::output::out!("{name}\t{}", problems.join("; "));
                }
            }
        }
    }
    Ok(())
}

/// Returns "app misconfigured: reason" for each app of the instance marked misconfigured.
async fn problems_of(services: &Services, name: &str) -> Vec<String> {
    let store = services.store.as_ref();
    let Ok(stored) = services.configs.get(name).await else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for app in stored.config.apps.keys() {
        if let Ok(Some(status)) = geoffrey::app_status::read(store, name, app).await {
            if let Some(reason) = status.misconfigured {
                problems.push(format!("{app} misconfigured: {reason}"));
            }
        }
    }
    problems
}

fn print_webhook_settings(services: &Services, name: &str, config: &InstanceConfig) {
    let url = format!("{}/hooks/discourse/{name}", services.settings.public_url());
    crate::output::out!("Created instance {name:?} for {}.", config.discourse_url);
    crate::output::out!("");
    crate::output::out!("In Discourse, open Admin > API > Webhooks > New Webhook and enter:");
    crate::output::out!("  Payload URL:   {url}");
    crate::output::out!("  Content type:  application/json");
    crate::output::out!("  Secret:        {}", config.webhook_secret.expose());
    crate::output::out!("  Events:        the events your apps use, or \"Send me everything\"");
    crate::output::out!("");
    crate::output::out!("The secret is printed only now; `geoffrey config show {name}` masks it.");
    crate::output::out!("Next: add apps with `geoffrey config set {name}`.");
}
