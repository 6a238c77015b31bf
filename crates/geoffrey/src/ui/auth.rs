//! Signing in and out, and the embedded mode's one-time setup of the administrator.
//!
//! Sign-in attempts are limited per client address and per name (token buckets, see
//! [`SIGN_INS_PER_ADDRESS`]), so that guessing passwords is slow even from many addresses.

use super::accounts::{self, SignInError};
use super::session::{self, COOKIE, SIGN_IN_COOKIE, Session, Viewer};
use super::{ApiFailure, Ui, UiError, render};
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Sign-in attempts one address may make: a burst of this many, then one every six seconds.
pub const SIGN_INS_PER_ADDRESS: f64 = 10.0;

/// Sign-in attempts for one name, from all addresses together: a burst of this many, then
/// one every two seconds.
pub const SIGN_INS_PER_NAME: f64 = 30.0;

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn sign_in_page(
    State(ui): State<Arc<Ui>>,
    Query(query): Query<SignInQuery>,
) -> Result<Response, UiError> {
    let info = ui
        .setup_link()
        .map(|_| "No administrator exists yet: open the setup link that `geoffrey run` printed.");
    sign_in_form(&ui, &query.next, "", None, info, axum::http::StatusCode::OK)
}

/// Renders the sign-in form with a new CSRF token in a short-lived cookie.
fn sign_in_form(
    ui: &Ui,
    next: &str,
    user: &str,
    notice: Option<&str>,
    info: Option<&str>,
    status: axum::http::StatusCode,
) -> Result<Response, UiError> {
    let token = session::random_token();
    let (user_label, hint) = match ui.accounts {
        accounts::Accounts::Couch(_) => (
            "CouchDB user name",
            "Sign in with your CouchDB account: you see the instances whose databases it can read.",
        ),
        accounts::Accounts::Embedded(_) => (
            "User name",
            "Lost the password? Stop Geoffrey, delete ui-admin.json in its data folder and \
             start it again.",
        ),
    };
    let html = render::render(
        "sign_in.html",
        &json!({
            "title": "Sign in", "csrf": token, "next": safe_next(next), "user": user,
            "notice": notice, "info": info, "user_label": user_label, "hint": hint,
        }),
    )?;
    let cookie = ui.cookie(SIGN_IN_COOKIE, &token, Some(3600));
    Ok((status, [(header::SET_COOKIE, cookie)], Html(html)).into_response())
}

/// Keeps a redirect after signing in on this site's UI. Only visible ASCII passes, as in
/// the path and query that [`super::signed_out`] sends here, because a `Location` header
/// cannot contain other bytes and the redirect would fail with 500.
fn safe_next(next: &str) -> &str {
    let inside = next.starts_with("/ui/")
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|byte| byte.is_ascii_graphic());
    if inside { next } else { "/ui/instances" }
}

pub async fn sign_in(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(form): Form<SignInForm>,
) -> Result<Response, UiError> {
    let expected = session::find_cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    let token_matches: bool =
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), form.csrf.as_bytes()).into();
    if expected.is_empty() || !token_matches {
        return sign_in_form(
            &ui,
            &form.next,
            &form.user,
            Some("The sign-in form expired. Enter your password again."),
            None,
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    let address = crate::api::forms::client_address(&ui.services, &headers, &extensions);
    match start_session(&ui, &address, &form.user, &form.password).await {
        Ok(sealed) => {
            let cookie = ui.cookie(COOKIE, &sealed, None);
            let clear = ui.cookie(SIGN_IN_COOKIE, "", Some(0));
            let mut response = Redirect::to(safe_next(&form.next)).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response.headers_mut().append(header::SET_COOKIE, clear);
            Ok(response)
        }
        Err(UiError::Forbidden(message)) => sign_in_form(
            &ui,
            &form.next,
            &form.user,
            Some(&message),
            None,
            axum::http::StatusCode::UNAUTHORIZED,
        ),
        Err(err) => Err(err),
    }
}

#[derive(Deserialize)]
pub struct SessionRequest {
    user: String,
    password: String,
}

/// `POST /api/v1/session` with `{"user", "password"}`: signs in a script. The response sets
/// the session cookie and contains the CSRF token to send in `X-CSRF-Token`. A JSON body cannot
/// be sent across sites without the browser asking first, so it needs no CSRF token.
pub async fn sign_in_json(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    extensions: Extensions,
    Json(request): Json<SessionRequest>,
) -> Result<Response, ApiFailure> {
    let address = crate::api::forms::client_address(&ui.services, &headers, &extensions);
    let sealed = start_session(&ui, &address, &request.user, &request.password)
        .await
        .map_err(|err| match err {
            UiError::Forbidden(message) => UiError::BadRequest(message),
            other => other,
        })?;
    let session = Session::open(&sealed, &ui.services.keyring)
        .ok_or_else(|| UiError::Internal("a new session does not open".into()))?;
    let cookie = ui.cookie(COOKIE, &sealed, None);
    let body = json!({ "user": session.user, "admin": session.admin, "csrf": session.csrf });
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Checks the limits and the password, and returns the sealed session. A wrong name or
/// password is `Forbidden` with the message to show.
async fn start_session(
    ui: &Ui,
    address: &str,
    user: &str,
    password: &str,
) -> Result<String, UiError> {
    let now = Instant::now();
    let limited = |wait: std::time::Duration| UiError::TooManyRequests {
        message: format!(
            "too many sign-in attempts; wait {} seconds and try again",
            wait.as_secs() + 1
        ),
        retry_after: wait.as_secs() + 1,
    };
    ui.sign_ins
        .take(
            &format!("address:{address}"),
            SIGN_INS_PER_ADDRESS / 60.0,
            SIGN_INS_PER_ADDRESS,
            now,
        )
        .map_err(limited)?;
    ui.sign_ins
        .take(
            &name_bucket(user),
            SIGN_INS_PER_NAME / 60.0,
            SIGN_INS_PER_NAME,
            now,
        )
        .map_err(limited)?;
    let signed_in = match ui.accounts.sign_in(user, password).await {
        Ok(signed_in) => signed_in,
        Err(SignInError::Unavailable(cause)) => return Err(UiError::Unavailable(cause)),
        Err(err) => {
            // As `&str` values, not `%` displays, the log quotes and escapes them, so a line
            // break in a typed name cannot start a forged line.
            tracing::info!(user, address, "a sign-in to the web UI failed");
            return Err(UiError::Forbidden(err.to_string()));
        }
    };
    tracing::info!(user = %signed_in.user, "signed in to the web UI");
    let lifetime = ui.services.settings.ui.session_lifetime.as_secs() as i64;
    let session = Session {
        user: signed_in.user,
        admin: signed_in.admin,
        couch: signed_in.couch,
        csrf: session::random_token(),
        expires: ui.now() + lifetime,
        generation: signed_in.generation,
    };
    Ok(session.seal(&ui.services.keyring))
}

/// Returns the key of a name's sign-in bucket. The name is hashed so that each key stays 69
/// bytes long, because a request may send a name up to the 2 MiB body limit and the limiter
/// keeps thousands of buckets.
fn name_bucket(user: &str) -> String {
    use sha2::Digest;
    format!(
        "name:{}",
        hex::encode(sha2::Sha256::digest(user.as_bytes()))
    )
}

pub async fn sign_out(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Arc<Viewer>>,
) -> Response {
    tracing::info!(user = %viewer.session.user, "signed out of the web UI");
    let clear = ui.cookie(COOKIE, "", Some(0));
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

/// Checks a setup token in constant time; every token fails once the administrator exists.
fn setup_token_matches(ui: &Ui, token: &str) -> bool {
    let expected = ui
        .setup_token
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    expected.is_some_and(|expected| {
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), token.as_bytes()).into()
    })
}

fn setup_used() -> UiError {
    UiError::NotFound(
        "this setup link was used already or is not valid; sign in instead, or delete \
         ui-admin.json in the data folder and restart to get a new link"
            .to_string(),
    )
}

pub async fn setup_page(
    State(ui): State<Arc<Ui>>,
    Query(query): Query<SetupQuery>,
) -> Result<Html<String>, UiError> {
    if !setup_token_matches(&ui, &query.token) {
        return Err(setup_used());
    }
    setup_form(&ui, &query.token, None)
}

fn setup_form(ui: &Ui, token: &str, notice: Option<&str>) -> Result<Html<String>, UiError> {
    render::render(
        "setup.html",
        &json!({
            "title": "Create the administrator", "token": token, "notice": notice,
            "user": ui.services.settings.ui.admin_user, "min_length": accounts::MIN_PASSWORD_LEN,
        }),
    )
    .map(Html)
}

/// `POST /ui/setup`: creates the administrator with the chosen password and signs them in,
/// so that the setup link leads straight to the instances.
pub async fn setup(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    extensions: Extensions,
    Form(form): Form<SetupForm>,
) -> Result<Response, UiError> {
    if !setup_token_matches(&ui, &form.token) {
        return Err(setup_used());
    }
    let problem = if form.password != form.repeat {
        Some("the two passwords differ; type the same password twice".to_string())
    } else {
        accounts::check_password(&form.password).err()
    };
    if let Some(message) = problem {
        let page = setup_form(&ui, &form.token, Some(&message))?;
        return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let accounts::Accounts::Embedded(file) = &ui.accounts else {
        return Err(setup_used());
    };
    let password = crate::secret::Secret::new(form.password);
    file.create(&ui.services.settings.ui.admin_user, &password)
        .await
        .map_err(|err| UiError::Internal(err.to_string()))?;
    *ui.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let user = &ui.services.settings.ui.admin_user;
    tracing::info!(user = %user, "created the web UI's administrator through the setup link");
    let address = crate::api::forms::client_address(&ui.services, &headers, &extensions);
    match start_session(&ui, &address, user, password.expose()).await {
        Ok(sealed) => {
            let mut response = Redirect::to("/ui/instances").into_response();
            let cookie = ui.cookie(COOKIE, &sealed, None);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        // The account exists, so the sign-in form still works when the session could not
        // start, for example because the sign-in limit of this address was reached.
        Err(err) => {
            tracing::warn!(user = %user, error = %err, "signing in after the setup failed");
            Ok(Redirect::to("/ui/sign-in").into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_buckets_are_short_and_distinct() {
        let long = name_bucket(&"a".repeat(2 * 1024 * 1024));
        assert_eq!(long.len(), 69, "{long}");
        assert_ne!(name_bucket("admin"), name_bucket("Admin"));
        assert_eq!(name_bucket("admin"), name_bucket("admin"));
    }

    #[test]
    fn next_stays_in_the_ui() {
        for next in ["/ui/instances?x=1", "/ui/../.."] {
            assert_eq!(safe_next(next), next);
        }
        for next in [
            "//evil.example",
            "https://evil.example/ui/",
            "/ui/\\evil.example",
            "/ui/\r\nSet-Cookie: x=1",
            "/ui/caf\u{e9}",
            "/ui/a b",
        ] {
            assert_eq!(safe_next(next), "/ui/instances", "{next:?}");
        }
    }
}
