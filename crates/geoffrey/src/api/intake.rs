//! Webhook intake: from raw request to durably queued jobs.
//!
//! The steps run in an order that keeps bad input from changing anything. The intake finds the
//! instance, authenticates the raw bytes, parses them, checks the event headers against the
//! body and routes the event. Only then does it record the delivery and its jobs in one queue
//! transaction. The caller responds
//! 2xx only if that transaction committed.

use super::error::ApiError;
use super::signature;
use crate::event::{Event, payload_type_of};
use crate::instance::{CONFIG_ID, InstanceError, StoredConfig, validate_name};
use crate::queue::{Admission, Delivery, NewJob};
use crate::services::Services;
use crate::store::StoreError;
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How to write the original route's key, for error messages.
pub const KEY_FORMAT: &str = "use key=<user>:<password>@<instance>, where the password is the \
    instance's webhook secret with the embedded store, and a CouchDB user's password with CouchDB";

/// The request headers Discourse sets, read case-insensitively.
#[derive(Debug, Default)]
pub struct DiscourseHeaders {
    pub event: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub signature: Option<String>,
}

impl DiscourseHeaders {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // A value that is not visible ASCII is kept (lossily decoded), so the checks below
        // reject it instead of treating the header as absent.
        let get = |name: &str| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_string())
                .filter(|value| !value.is_empty())
        };
        Self {
            event: get("x-discourse-event"),
            event_type: get("x-discourse-event-type"),
            event_id: get("x-discourse-event-id"),
            signature: get("x-discourse-event-signature"),
        }
    }
}

/// Proof that a delivery comes from the instance's forum.
pub enum Credentials<'a> {
    /// `X-Discourse-Event-Signature`, checked against the webhook secret.
    Signature,
    /// The original route's `key=user:password@instance`. With a store that has accounts
    /// (CouchDB) they are the credentials of a user who may read the instance's database.
    /// With the embedded store the password is the webhook secret and the user is ignored.
    Key { user: &'a str, password: &'a str },
}

/// One webhook request, before any check.
pub struct Incoming<'a> {
    pub instance: &'a str,
    pub headers: DiscourseHeaders,
    pub body: &'a [u8],
    pub credentials: Credentials<'a>,
    /// Event named by the original route's path, used when the headers name none.
    pub route_event: Option<String>,
}

/// The JSON body of a successful intake response.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub status: &'static str,
    pub event: String,
    pub jobs: usize,
}

pub async fn accept(services: &Services, incoming: Incoming<'_>) -> Result<Receipt, ApiError> {
    let instance = incoming.instance;
    services.limits.check_body(instance, incoming.body.len())?;
    let config = match incoming.credentials {
        Credentials::Key { user, password } if services.store.has_accounts() => {
            read_as_member(services, instance, user, password).await?
        }
        _ => {
            let config = find_instance(services, instance).await?;
            authenticate(&config, &incoming)?;
            config
        }
    };

    services
        .limits
        .take_delivery(instance, std::time::Instant::now())?;

    let parsed: Value = serde_json::from_slice(incoming.body)
        .map_err(|err| ApiError::BadRequest(format!("body is not valid JSON: {err}")))?;
    let event = identify(&incoming, parsed)?;
    if event.name == "ping" {
        return Ok(Receipt {
            status: "pong",
            event: event.name,
            jobs: 0,
        });
    }

    let jobs: Vec<NewJob> = services
        .apps
        .route(&config.config, &event)
        .into_iter()
        .map(|(app, subscription)| NewJob {
            instance: instance.to_string(),
            app: app.to_string(),
            feature: subscription.feature,
            target: subscription.target,
            config_rev: config.rev.clone(),
            event: event.clone(),
        })
        .collect();
    let delivery = Delivery {
        instance: instance.to_string(),
        event_id: event.id.clone(),
        content_key: format!("{}:{}", event.name, event.body_sha256),
    };
    if !jobs.is_empty() {
        services
            .limits
            .check_queue(instance, services.queue.as_ref())
            .await?;
    }
    let admission = services
        .queue
        .admit(&delivery, jobs)
        .await
        .map_err(|err| ApiError::Unavailable(err.to_string()))?;
    if let Admission::Accepted { jobs } = admission {
        services.limits.admitted(instance, jobs);
    }
    Ok(match admission {
        Admission::Accepted { jobs } => Receipt {
            status: "accepted",
            event: event.name,
            jobs,
        },
        Admission::Duplicate => Receipt {
            status: "duplicate",
            event: event.name,
            jobs: 0,
        },
    })
}

async fn find_instance(
    services: &Services,
    name: &str,
) -> Result<std::sync::Arc<StoredConfig>, ApiError> {
    let unknown = || {
        ApiError::NotFound(format!(
            "unknown instance {name:?}; create it with `geoffrey instance create {name}`"
        ))
    };
    if let Err(err) = validate_name(name) {
        return Err(ApiError::NotFound(format!("unknown instance: {err}")));
    }
    services.configs.get(name).await.map_err(|err| match err {
        InstanceError::NotFound(_) => unknown(),
        other => ApiError::Unavailable(other.to_string()),
    })
}

/// Reads `CONFIG` with the credentials of the original route's key. Every failure to read it,
/// including a database that does not exist, is the same 401, so the key cannot be used to
/// probe for instances.
async fn read_as_member(
    services: &Services,
    instance: &str,
    user: &str,
    password: &str,
) -> Result<std::sync::Arc<StoredConfig>, ApiError> {
    let rejected = || ApiError::Unauthorized(format!("invalid key; {KEY_FORMAT}"));
    if validate_name(instance).is_err() {
        return Err(rejected());
    }
    let document = match services
        .store
        .get_as(instance, CONFIG_ID, user, password)
        .await
    {
        Ok(Some(document)) => document,
        Ok(None) | Err(StoreError::Unauthorized | StoreError::DatabaseNotFound(_)) => {
            return Err(rejected());
        }
        Err(err) => return Err(ApiError::Unavailable(err.to_string())),
    };
    let config =
        crate::instance::decode(document.body, instance, &services.apps, &services.keyring)
            .map_err(|err| ApiError::Unavailable(err.to_string()))?;
    Ok(std::sync::Arc::new(StoredConfig {
        rev: document.rev,
        config,
    }))
}

fn authenticate(config: &StoredConfig, incoming: &Incoming<'_>) -> Result<(), ApiError> {
    let secret = config.config.webhook_secret.expose().as_bytes();
    match incoming.credentials {
        Credentials::Key { password, .. } => {
            if !secret.is_empty() && bool::from(password.as_bytes().ct_eq(secret)) {
                return Ok(());
            }
            Err(ApiError::Unauthorized(format!("invalid key; {KEY_FORMAT}")))
        }
        Credentials::Signature => {
            let header = incoming.headers.signature.as_deref();
            if header.is_none() && config.config.accept_unsigned {
                return Ok(());
            }
            signature::verify(secret, incoming.body, header)
                .map_err(|err| ApiError::Unauthorized(err.to_string()))
        }
    }
}

/// Works out the event name and payload type from the headers, the route and the body, and
/// rejects combinations that disagree.
fn identify(incoming: &Incoming<'_>, mut body: Value) -> Result<Event, ApiError> {
    let headers = &incoming.headers;
    let name = headers
        .event
        .clone()
        .or_else(|| incoming.route_event.clone())
        .or_else(|| headers.event_type.clone())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "missing X-Discourse-Event header; is this a Discourse webhook?".into(),
            )
        })?;
    check_identifier("X-Discourse-Event", &name)?;

    let expected = payload_type_of(&name);
    let kind = match (&headers.event_type, expected) {
        (Some(kind), Some(expected)) if kind != expected => {
            return Err(ApiError::BadRequest(format!(
                "event {name:?} carries a {expected:?} payload, but X-Discourse-Event-Type is {kind:?}"
            )));
        }
        (Some(kind), _) => kind.clone(),
        (None, Some(expected)) => expected.to_string(),
        (None, None) => single_key(&body).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "cannot tell the payload type of event {name:?}; send X-Discourse-Event-Type"
            ))
        })?,
    };
    check_identifier("X-Discourse-Event-Type", &kind)?;

    let Some(object) = body.as_object() else {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    };
    if !object.contains_key(&kind) {
        // The original route predates Discourse's envelope: wrap a bare payload.
        if incoming.route_event.is_some() && headers.event.is_none() {
            body = Value::Object(Map::from_iter([(kind.clone(), body)]));
        } else {
            let keys: Vec<&String> = object.keys().collect();
            return Err(ApiError::BadRequest(format!(
                "event {name:?} needs the body key {kind:?}, but the body has {keys:?}"
            )));
        }
    }

    Ok(Event {
        id: headers.event_id.clone(),
        name,
        kind,
        body,
        body_sha256: hex::encode(Sha256::digest(incoming.body)),
    })
}

fn single_key(body: &Value) -> Option<String> {
    let object = body.as_object()?;
    (object.len() == 1)
        .then(|| object.keys().next().cloned())
        .flatten()
}

/// Event names and types are short snake_case words; anything else is not from Discourse.
fn check_identifier(header: &str, value: &str) -> Result<(), ApiError> {
    let valid = !value.is_empty()
        && value.len() <= 100
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid {header} {value:?}; expected a snake_case name such as \"post_created\""
        )))
    }
}
