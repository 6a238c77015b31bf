//! The web UI under `/ui/`, and the JSON API it shares its handlers' logic with under
//! `/api/v1/`.
//!
//! Pages are rendered on the server (see [`render`]) and work without JavaScript. htmx, kept
//! in `assets/` so that nothing loads from elsewhere, swaps parts of a page where that helps,
//! such as new log entries.
//!
//! Every route except signing in, the setup link and the assets passes [`session_layer`]. It
//! opens the sealed session cookie (see [`session`]) and sends people without one to the
//! sign-in page, or returns 401 under `/api/v1/`. It also checks the CSRF token of every
//! request that is not a GET or HEAD. Which instances a person sees is decided by
//! [`accounts`], and routes of one instance take an [`Authorized`] argument that checks it.

pub mod accounts;
mod activity;
mod auth;
mod backfill;
mod config;
mod dashboard;
mod failed;
mod instances;
mod logs;
pub mod render;
pub mod session;

use crate::api::limits::Buckets;
use crate::services::Services;
use accounts::{Access, Accounts};
use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use session::{COOKIE, Session, Viewer};
use std::sync::{Arc, Mutex};

/// Largest form body a UI page accepts.
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

/// Header that carries the CSRF token of requests sent by htmx or by scripts.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The web UI's shared state.
pub struct Ui {
    pub services: Arc<Services>,
    pub accounts: Accounts,
    /// Sign-in attempts, by client address and by name.
    sign_ins: Buckets,
    /// The one-time setup token, while the embedded mode has no administrator.
    setup_token: Mutex<Option<String>>,
    secure_cookies: bool,
}

impl Ui {
    /// Prepares the UI. In the embedded mode it creates the administrator from
    /// `ui.admin_password` when none exists, or else makes a setup token.
    pub async fn new(services: Arc<Services>) -> anyhow::Result<Arc<Self>> {
        let settings = &services.settings;
        let accounts = Accounts::from_settings(settings)?;
        let mut setup_token = None;
        if let Accounts::Embedded(file) = &accounts {
            if !file.exists() {
                match &settings.ui.admin_password {
                    Some(password) => {
                        file.create(&settings.ui.admin_user, password)
                            .await
                            .map_err(|err| anyhow::anyhow!("ui.admin_password: {err}"))?;
                        tracing::info!(user = %settings.ui.admin_user, "created the web UI's administrator");
                    }
                    None => setup_token = Some(session::random_token()),
                }
            }
        }
        let secure_cookies = settings
            .ui
            .secure_cookies
            .unwrap_or_else(|| settings.public_url().starts_with("https://"));
        Ok(Arc::new(Self {
            services,
            accounts,
            sign_ins: Buckets::default(),
            setup_token: Mutex::new(setup_token),
            secure_cookies,
        }))
    }

    /// Returns the one-time link that creates the administrator, while none exists.
    pub fn setup_link(&self) -> Option<String> {
        let token = self
            .setup_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(format!(
            "{}/ui/setup?token={token}",
            self.services.settings.public_url()
        ))
    }

    /// Checks that `viewer` may see `instance` and that it exists.
    pub async fn authorize(&self, viewer: &Viewer, instance: &str) -> Result<(), UiError> {
        let not_found = || {
            UiError::NotFound(format!(
                "no instance {instance:?} that your account can read"
            ))
        };
        if crate::instance::validate_name(instance).is_err() {
            return Err(not_found());
        }
        match self
            .accounts
            .access(viewer, instance)
            .await
            .map_err(UiError::Unavailable)?
        {
            Access::Allowed => {}
            Access::Denied => return Err(not_found()),
            Access::Expired => return Err(UiError::SessionEnded),
        }
        match self
            .services
            .store
            .get(instance, crate::instance::CONFIG_ID)
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(crate::store::StoreError::DatabaseNotFound(_)) => Err(not_found()),
            Err(err) => Err(UiError::Unavailable(err.to_string())),
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let text = session::set_cookie(name, value, self.secure_cookies, max_age);
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn now(&self) -> i64 {
        self.services.clock.now().unix_timestamp()
    }
}

/// An instance the signed-in person may see, named by the route's `{name}`. A handler that
/// takes it as an argument runs only after [`Ui::authorize`] allowed the access: the person
/// gets 404 for an instance they cannot read, as for one that does not exist.
pub struct Authorized {
    pub ui: Arc<Ui>,
    pub viewer: Arc<Viewer>,
    pub name: String,
}

impl FromRequestParts<Arc<Ui>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Self, Response> {
        let api = parts.uri.path().starts_with("/api/");
        let viewer = parts
            .extensions
            .get::<Arc<Viewer>>()
            .cloned()
            .ok_or_else(|| UiError::SessionEnded.respond(api))?;
        let params = RawPathParams::from_request_parts(parts, ui)
            .await
            .map_err(|rejection| UiError::BadRequest(rejection.body_text()).respond(api))?;
        let name = params
            .iter()
            .find(|(key, _)| *key == "name")
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| {
                UiError::Internal("a route of an instance has no {name}".into()).respond(api)
            })?;
        ui.authorize(&viewer, &name)
            .await
            .map_err(|err| err.respond(api))?;
        Ok(Self {
            ui: ui.clone(),
            viewer,
            name,
        })
    }
}

/// Builds the UI's routes, with their state applied.
pub fn router(ui: Arc<Ui>) -> Router {
    let signed_in = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/instances") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/instances") }))
        .route(
            "/ui/instances",
            get(instances::list_page).post(instances::create_page),
        )
        .route("/ui/sign-out", axum::routing::post(auth::sign_out))
        .route(
            "/api/v1/instances",
            get(instances::list_json).post(instances::create_json),
        )
        .merge(config::routes())
        .merge(activity::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            ui.clone(),
            session_layer,
        ));
    Router::new()
        .route("/ui/sign-in", get(auth::sign_in_page).post(auth::sign_in))
        .route("/ui/setup", get(auth::setup_page).post(auth::setup))
        .route("/api/v1/session", axum::routing::post(auth::sign_in_json))
        .route("/ui/assets/{file}", get(asset))
        .merge(signed_in)
        .layer(axum::middleware::from_fn(api_errors_as_json))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(ui)
}

/// Opens the session, checks the CSRF token, and seals a refreshed CouchDB session into the
/// response's cookie.
async fn session_layer(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let session = session::find_cookie(request.headers(), COOKIE)
        .and_then(|value| Session::open(&value, &ui.services.keyring))
        .filter(|session| session.expires > ui.now() && ui.accounts.is_current(session));
    let Some(session) = session else {
        return signed_out(api, request.headers(), request.uri());
    };

    // Only requests that may change something carry a token; GET and HEAD bodies stay unread.
    let mut request = request;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let (read, token) = match csrf_token(request).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        let token_matches = token.is_some_and(|token| {
            subtle::ConstantTimeEq::ct_eq(token.as_bytes(), session.csrf.as_bytes()).into()
        });
        if !token_matches {
            return UiError::Forbidden(
                "the form's security token does not match your session; reload the page and \
                 send it again"
                    .to_string(),
            )
            .respond(api);
        }
        request = read;
    }

    let viewer = Arc::new(Viewer::new(session));
    let (headers, uri) = (request.headers().clone(), request.uri().clone());
    request.extensions_mut().insert(viewer.clone());
    let mut response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED && !api {
        return signed_out(false, &headers, &uri);
    }

    let refreshed = viewer
        .refreshed_couch
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(couch) = refreshed {
        let mut session = viewer.session.clone();
        session.couch = Some(couch);
        let value = session.seal(&ui.services.keyring);
        response
            .headers_mut()
            .append(header::SET_COOKIE, ui.cookie(COOKIE, &value, None));
    }
    response
}

/// Finds the CSRF token of a request: the header, or the `csrf` field of a form body. The
/// body is read and put back.
async fn csrf_token(request: Request) -> Result<(Request, Option<String>), Response> {
    if let Some(token) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        let token = token.to_string();
        return Ok((request, Some(token)));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            UiError::BadRequest(format!(
                "the form is larger than {MAX_FORM_BYTES} bytes; send less text"
            ))
            .respond(false)
        })?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

/// Sends a request without a valid session to the sign-in page, which returns to `uri`.
/// htmx gets the address in `HX-Redirect`, so that it loads the whole page instead of
/// swapping the sign-in form into a part of one.
fn signed_out(api: bool, headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Response {
    if api {
        return UiError::SessionEnded.respond(true);
    }
    let next = uri
        .path_and_query()
        .map(|path| path.as_str())
        .unwrap_or("/ui/instances");
    let target = format!(
        "/ui/sign-in?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    if headers.contains_key("hx-request") {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) = HeaderValue::from_str(&target) {
            response.headers_mut().insert("hx-redirect", value);
        }
        return response;
    }
    Redirect::to(&target).into_response()
}

/// Turns the plain-text errors axum writes when it rejects a request under `/api/v1/` (a
/// body that is not JSON, an invalid query) into the `{"error": ...}` every API error has.
async fn api_errors_as_json(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("text/plain"));
    if !api || !response.status().is_client_error() || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("invalid request")
            .to_lowercase()
    } else {
        text
    };
    let mut json = (parts.status, Json(json!({ "error": message }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// Headers of every UI response: no framing by other sites, scripts from this server only,
/// and no caching of pages that show an instance's data.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

const STYLESHEET: &[u8] = include_bytes!("assets/ui.css");
const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");

/// Returns a hash of the compiled assets. Pages add it to the assets' URLs, so that browsers
/// fetch the new assets after an upgrade instead of a copy cached under the same URL.
pub fn asset_version() -> String {
    use std::hash::{Hash, Hasher};
    // `DefaultHasher::new` uses fixed keys, so every process of one build gets one value.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    STYLESHEET.hash(&mut hasher);
    HTMX.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Serves the stylesheet and htmx, which are compiled into the binary. The query string,
/// which carries [`asset_version`], is ignored.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "ui.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Failure of a UI request. Pages show it as an HTML page, `/api/v1/` as JSON.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("your session ended; sign in again")]
    SessionEnded,
    /// The store, the queue or CouchDB failed; the text is for the log only.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug, such as a template that does not render; the text is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            UiError::SessionEnded => StatusCode::UNAUTHORIZED,
            UiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the message a person may see; causes that may name internal hosts stay in
    /// the log.
    fn public_message(&self) -> String {
        match self {
            UiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "a UI request failed because a backend is unavailable");
                "the store or the queue is unavailable; nothing was changed, try again in a moment"
                    .to_string()
            }
            UiError::Internal(cause) => {
                tracing::error!(error = %cause, "a UI request failed");
                "something went wrong on the server; the log has the details".to_string()
            }
            other => other.to_string(),
        }
    }

    /// Renders the error as JSON (`api`) or as a page.
    pub fn respond(self, api: bool) -> Response {
        let status = self.status();
        let message = self.public_message();
        let mut response = if api {
            (status, Json(json!({ "error": message }))).into_response()
        } else {
            let title = status.canonical_reason().unwrap_or("Error");
            let html = render::render("error.html", &json!({ "title": title, "message": message }))
                .unwrap_or_else(|_| format!("<!doctype html><title>{title}</title><p>{title}</p>"));
            (status, axum::response::Html(html)).into_response()
        };
        if let UiError::TooManyRequests { retry_after, .. } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        response
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        self.respond(false)
    }
}

/// A [`UiError`] sent as JSON, for the handlers under `/api/v1/`.
#[derive(Debug)]
pub struct ApiFailure(pub UiError);

impl From<UiError> for ApiFailure {
    fn from(err: UiError) -> Self {
        Self(err)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        self.0.respond(true)
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Conflict { .. } => UiError::Conflict(err.to_string()),
            other => UiError::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::queue::QueueError> for UiError {
    fn from(err: crate::queue::QueueError) -> Self {
        match err {
            crate::queue::QueueError::FailedJobNotFound { .. } => {
                UiError::NotFound(err.to_string())
            }
            other => UiError::Unavailable(other.to_string()),
        }
    }
}
