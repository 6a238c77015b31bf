//! Hosted forms: `GET /forms/{instance}/{form}` serves the page and `POST` to the same URL
//! takes a submission, from the page (`application/x-www-form-urlencoded`) or from another
//! service as JSON with the form's `json_secret` as a bearer token.
//!
//! A page submission passes these checks in order before it is queued:
//! - the body size;
//! - the hidden field that people leave empty;
//! - the signed time the page was served, because robots send faster than
//!   `min_fill_seconds`;
//! - the per-form and per-address rates;
//! - the fields themselves.
//!
//! A rejected submission is counted in the metrics and not stored.

use super::limits::Buckets;
use crate::apps::forms::config::{Form, FormsConfig};
use crate::apps::forms::submission::{self, Input};
use crate::apps::forms::{EVENT, EVENT_TYPE, HONEYPOT, STARTED, page};
use crate::event::Event;
use crate::instance::validate_name;
use crate::queue::{Admission, Delivery, NewJob};
use crate::services::Services;
use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Largest accepted submission body. A field holds up to 10,000 characters by default, and
/// a character of a non-Latin script takes up to 12 bytes once percent-encoded.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Notices shown with the form again when its hidden time field does not pass.
const STALE_NOTICE: &str =
    "This page was changed or has expired. Please check your answers and send the form again.";
const QUICK_NOTICE: &str =
    "That was very quick. Please check your answers and send the form again.";

/// Age after which a served page must be loaded again before it is accepted.
const MAX_PAGE_AGE: Duration = Duration::from_secs(24 * 3600);

/// The form an URL names, with its instance's configuration revision.
struct Found {
    form: Form,
    config_rev: String,
}

fn page_response(status: StatusCode, html: String) -> Response {
    (status, Html(html)).into_response()
}

fn not_found() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        page::message(
            "Form not found",
            "There is no form at this address. Check the link you followed.",
        ),
    )
}

async fn find(services: &Services, instance: &str, name: &str) -> Result<Found, Response> {
    if validate_name(instance).is_err() {
        return Err(not_found());
    }
    let stored = match services.configs.get(instance).await {
        Ok(stored) => stored,
        Err(crate::instance::InstanceError::NotFound(_)) => return Err(not_found()),
        Err(err) => {
            tracing::error!(%instance, error = %err, "reading the configuration for a form failed");
            return Err(page_response(
                StatusCode::SERVICE_UNAVAILABLE,
                page::message(
                    "Please try again",
                    "This form is not available just now. Please try again in a few minutes.",
                ),
            ));
        }
    };
    let Some(section) = stored.config.apps.get("forms") else {
        return Err(not_found());
    };
    let form = FormsConfig::parse(section)
        .ok()
        .and_then(|config| config.form(name).cloned());
    match form {
        Some(form) => Ok(Found {
            form,
            config_rev: stored.rev.clone(),
        }),
        None => Err(not_found()),
    }
}

fn unavailable() -> Response {
    page_response(
        StatusCode::SERVICE_UNAVAILABLE,
        page::message(
            "Please try again",
            "Your submission could not be saved just now. Please send it again in a minute.",
        ),
    )
}

/// Returns the value of the hidden time field: the time in milliseconds and its MAC.
fn started_token(services: &Services, instance: &str, form: &str) -> String {
    let now = services.clock.now_ms();
    let mac = services
        .keyring
        .sign(&format!("form\0{instance}\0{form}\0{now}"));
    format!("{now}.{mac}")
}

/// Returns the time a page was served, if the token is one this deployment signed.
fn started_at(services: &Services, instance: &str, form: &str, token: &str) -> Option<i64> {
    let (time, mac) = token.split_once('.')?;
    let millis: i64 = time.parse().ok()?;
    services
        .keyring
        .verify(&format!("form\0{instance}\0{form}\0{millis}"), mac)
        .then_some(millis)
}

pub async fn show(
    State(services): State<Arc<Services>>,
    Path((instance, name)): Path<(String, String)>,
) -> Response {
    let found = match find(&services, &instance, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let started = started_token(&services, &instance, &name);
    let action = format!("/forms/{instance}/{name}");
    let html = page::form(&found.form, &action, &started, &page::FormState::default());
    page_response(StatusCode::OK, html)
}

/// Returns the submitter's address: the peer, or with `server.client_ip_header` the last
/// address in that header, which the reverse proxy in front added.
pub(crate) fn client_address(
    services: &Services,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> String {
    if let Some(name) = &services.settings.server.client_ip_header {
        let forwarded = headers
            .get(name.as_str())
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        if let Some(address) = forwarded {
            return address.to_string();
        }
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default()
}

pub async fn submit(
    State(services): State<Arc<Services>>,
    Path((instance, name)): Path<(String, String)>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    let found = match find(&services, &instance, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let body = match super::read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            services.metrics.submission("too_large");
            if json {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Json(json!({ "error": format!(
                    "the submission is larger than {MAX_BODY_BYTES} bytes; send shorter values"
                ) })),
                )
                    .into_response();
            }
            tracing::debug!(error = %err, "a form submission was too large");
            let text = "Your answers are too long to send. Please shorten them and try again.";
            let html = page::message(&found.form.title, text);
            return page_response(StatusCode::PAYLOAD_TOO_LARGE, html);
        }
    };
    let address = client_address(&services, &headers, &extensions);
    let submission = Submission {
        services: &services,
        instance: &instance,
        found: &found,
        address: &address,
    };
    if json {
        submission.take_json(&headers, &body).await
    } else {
        submission.take_page(&body).await
    }
}

struct Submission<'a> {
    services: &'a Services,
    instance: &'a str,
    found: &'a Found,
    address: &'a str,
}

impl Submission<'_> {
    fn form(&self) -> &Form {
        &self.found.form
    }

    fn action(&self) -> String {
        format!("/forms/{}/{}", self.instance, self.form().name)
    }

    /// Shows the form again with the input kept, a fresh time field and `state`'s messages.
    fn again(&self, status: StatusCode, state: &page::FormState<'_>) -> Response {
        let started = started_token(self.services, self.instance, &self.form().name);
        page_response(
            status,
            page::form(self.form(), &self.action(), &started, state),
        )
    }

    /// Takes a token from the per-form bucket and, for page submissions, the per-address
    /// bucket, or returns the wait. JSON submissions come from a service that has the
    /// form's secret, often from one address, so only the per-form limit applies to them.
    fn take_rate(&self, per_address: bool) -> Result<(), Duration> {
        let form = self.form();
        let buckets: &Buckets = &self.services.limits.submissions;
        let now = Instant::now();
        let per_minute = f64::from(form.submissions_per_minute.max(1));
        let per_hour = f64::from(form.submissions_per_hour_per_address.max(1));
        let form_key = format!("{}/{}", self.instance, form.name);
        buckets.take(&form_key, per_minute / 60.0, per_minute, now)?;
        if !per_address {
            return Ok(());
        }
        let address_key = format!("{form_key}/{}", self.address);
        buckets.take(&address_key, per_hour / 3600.0, per_hour, now)
    }

    async fn take_page(&self, body: &[u8]) -> Response {
        let values: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        if let Some(rejection) = self.reject_robot(&values) {
            return rejection;
        }
        if let Err(wait) = self.take_rate(true) {
            return self.rate_limited(wait);
        }

        let fields = match submission::check(self.form(), &Input::Page(&values)) {
            Ok(fields) => fields,
            Err(errors) => {
                self.services.metrics.submission("invalid");
                let state = page::FormState {
                    values: Some(&values),
                    errors: Some(&errors),
                    notice: None,
                };
                return self.again(StatusCode::UNPROCESSABLE_ENTITY, &state);
            }
        };
        match self.queue(fields, "page").await {
            Ok(admission) => {
                let accepted = matches!(admission, Admission::Accepted { .. });
                let outcome = if accepted { "accepted" } else { "duplicate" };
                self.services.metrics.submission(outcome);
                self.thanks()
            }
            Err(()) => unavailable(),
        }
    }

    /// Returns the response to what a robot sends: a filled hidden field, or a time field
    /// that is forged, expired or too recent. A person gets the form again with a notice and
    /// their input.
    fn reject_robot(&self, values: &HashMap<String, String>) -> Option<Response> {
        let services = self.services;
        let form = self.form();
        if values.get(HONEYPOT).is_some_and(|value| !value.is_empty()) {
            // Robots get the same page as people, so that they learn nothing.
            services.metrics.submission("spam");
            return Some(self.thanks());
        }
        let started = values
            .get(STARTED)
            .and_then(|token| started_at(services, self.instance, &form.name, token));
        let elapsed_ms = started.map(|at| services.clock.now_ms() - at);
        let min_fill_ms =
            i64::try_from(form.min_fill_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let max_age_ms = i64::try_from(MAX_PAGE_AGE.as_millis()).unwrap_or(i64::MAX);
        let (outcome, notice) = match elapsed_ms {
            None => ("stale_form", STALE_NOTICE),
            Some(elapsed) if elapsed > max_age_ms => ("stale_form", STALE_NOTICE),
            Some(elapsed) if elapsed < min_fill_ms => ("too_fast", QUICK_NOTICE),
            Some(_) => return None,
        };
        services.metrics.submission(outcome);
        let state = page::FormState {
            values: Some(values),
            errors: None,
            notice: Some(notice),
        };
        Some(self.again(StatusCode::OK, &state))
    }

    fn rate_limited(&self, wait: Duration) -> Response {
        self.services.metrics.submission("rate_limited");
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let message = format!(
            "This form received many submissions. Please try again in {minutes} minute(s)."
        );
        let html = page::message(&self.form().title, &message);
        let mut response = page_response(StatusCode::TOO_MANY_REQUESTS, html);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        response
    }

    /// Returns the page after a submission: the thanks, or the form's redirect.
    fn thanks(&self) -> Response {
        let form = self.form();
        match &form.redirect_url {
            Some(url) => Redirect::to(url).into_response(),
            None => page_response(
                StatusCode::OK,
                page::message(&form.title, &form.success_message),
            ),
        }
    }

    async fn take_json(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        if let Some(rejection) = self.reject_bearer(headers) {
            return rejection;
        }
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            let message = "the body is not a JSON object".to_string();
            return self.json_error(StatusCode::BAD_REQUEST, "invalid", message);
        };
        if let Err(wait) = self.take_rate(false) {
            let seconds = wait.as_secs().max(1);
            let message = format!(
                "too many submissions to form {:?}; send again in {seconds} seconds",
                self.form().name
            );
            let mut response =
                self.json_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            return response;
        }

        let mapped = self.map_json_fields(object);
        let fields = match submission::check(self.form(), &Input::Json(&mapped)) {
            Ok(fields) => fields,
            Err(errors) => {
                self.services.metrics.submission("invalid");
                let body = json!({ "error": "invalid fields", "fields": errors });
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
        };
        let (outcome, jobs) = match self.queue(fields, "json").await {
            Ok(Admission::Accepted { jobs }) => ("accepted", jobs),
            Ok(Admission::Duplicate) => ("duplicate", 0),
            Err(()) => {
                let message = "temporarily unavailable; nothing was stored, send the request again";
                let status = StatusCode::SERVICE_UNAVAILABLE;
                return (status, Json(json!({ "error": message }))).into_response();
            }
        };
        self.services.metrics.submission(outcome);
        Json(json!({ "status": outcome, "jobs": jobs })).into_response()
    }

    /// Returns a 401 response unless the bearer token of a JSON submission is the form's
    /// `json_secret`.
    fn reject_bearer(&self, headers: &HeaderMap) -> Option<Response> {
        let form = self.form();
        let Some(secret) = &form.json_secret else {
            let message = format!(
                "form {:?} takes no JSON submissions; set its json_secret to enable them",
                form.name
            );
            return Some(self.json_error(StatusCode::UNAUTHORIZED, "unauthorized", message));
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        let matches = bool::from(token.as_bytes().ct_eq(secret.expose().as_bytes()));
        if token.is_empty() || !matches {
            let message = "missing or wrong bearer token; send the form's json_secret as \
                           Authorization: Bearer <secret>";
            return Some(self.json_error(StatusCode::UNAUTHORIZED, "unauthorized", message.into()));
        }
        None
    }

    /// Renames the fields of a JSON submission with the form's `json_fields`.
    fn map_json_fields(&self, object: Map<String, Value>) -> Map<String, Value> {
        let names = &self.form().json_fields;
        object
            .into_iter()
            .map(|(key, value)| {
                let name = names.get(&key).and_then(Value::as_str);
                (name.map_or(key, str::to_string), value)
            })
            .collect()
    }

    /// Counts a rejected JSON submission and returns its error response.
    fn json_error(&self, status: StatusCode, outcome: &str, message: String) -> Response {
        self.services.metrics.submission(outcome);
        (status, Json(json!({ "error": message }))).into_response()
    }

    /// Queues a checked submission: one job per feature of the form. The same fields sent
    /// again within the duplicate window, such as by a double click, queue nothing.
    async fn queue(&self, fields: Map<String, Value>, source: &str) -> Result<Admission, ()> {
        let services = self.services;
        let form = self.form();
        let mut digest = Sha256::new();
        digest.update(form.name.as_bytes());
        digest.update([0]);
        digest.update(serde_json::to_vec(&fields).unwrap_or_default());
        let content_sha256 = hex::encode(digest.finalize());

        let submitted_at = services.clock.now();
        let payload = json!({
            "form": form.name,
            "submission_id": crate::store::log_id(submitted_at),
            "submitted_at": crate::store::timestamp::format(submitted_at),
            "source": source,
            "fields": fields,
        });
        let event = Event {
            id: None,
            name: EVENT.to_string(),
            kind: EVENT_TYPE.to_string(),
            body: json!({ EVENT_TYPE: payload }),
            body_sha256: content_sha256.clone(),
        };
        let jobs = form
            .features()
            .into_iter()
            .map(|feature| NewJob {
                instance: self.instance.to_string(),
                app: "forms".to_string(),
                feature: feature.to_string(),
                target: Some(form.name.clone()),
                config_rev: self.found.config_rev.clone(),
                event: event.clone(),
            })
            .collect();

        let delivery = Delivery {
            instance: self.instance.to_string(),
            event_id: None,
            content_key: format!("{EVENT}:{content_sha256}"),
        };
        services.queue.admit(&delivery, jobs).await.map_err(|err| {
            services.metrics.submission("unavailable");
            tracing::error!(
                instance = %self.instance, form = %form.name, error = %err,
                "queueing a form submission failed"
            );
        })
    }
}
