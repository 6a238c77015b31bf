//! Fuzz target for the webhook intake. Each input becomes a POST request that goes through the
//! real axum router, backed by the embedded SQLite store and queue, and the response is checked
//! against properties that hold for every request.
//!
//! An input is a request in a text form close to HTTP/1.1, so that seeds are readable and can
//! be written by hand:
//!
//! ```text
//! /hooks/discourse/forum
//! X-Discourse-Event: ping
//! X-Discourse-Event-Type: ping
//!
//! {"ping":"OK"}
//! ```
//!
//! The first line is the path and query. The harness percent-encodes the bytes a URI cannot
//! contain. Each following line up to the first empty one is a header, `name: value`, and a line
//! that is not a valid header is skipped. The rest of the input is the body, byte for byte.
//!
//! Each input is sent as it is. When it names one of the harness's instances, a copy with the
//! correct credentials for that instance (the signature header, or the password in the
//! original route's key) is sent too. [`check_response`] and [`check_copy`] list the
//! properties checked.

#![no_main]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use geoffrey::clock::SystemClock;
use geoffrey::config::Settings;
use geoffrey::secret::Secret;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

/// Body limit of the fuzzed server, small enough that inputs can reach the 413 response.
const MAX_BODY_BYTES: usize = 16 * 1024;

const SIGNATURE_HEADER: &str = "x-discourse-event-signature";

/// An instance the harness creates before the first input.
struct Instance {
    name: &'static str,
    secret: &'static str,
    accept_unsigned: bool,
}

/// `forum` uses the secret that signed the deliveries in `fixtures/discourse`, so the seeds made
/// from them are accepted.
const INSTANCES: [Instance; 2] = [
    Instance {
        name: "forum",
        secret: "fixture-secret",
        accept_unsigned: false,
    },
    Instance {
        name: "open",
        secret: "open-secret-1234",
        accept_unsigned: true,
    },
];

/// Statuses the README documents for the webhook routes. 503 is documented too, but the
/// embedded store and queue on a local disk have no reason to fail, so it counts as a finding.
const DOCUMENTED_STATUSES: [u16; 5] = [200, 400, 401, 404, 413];

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::start);

fuzz_target!(|data: &[u8]| {
    HARNESS.run(data);
});

impl Harness {
    /// Opens the embedded store and queue in a new folder under the temporary directory
    /// (`TMPDIR`), creates the instances and builds the router. No worker runs, so the relay
    /// URLs are never called and the accepted jobs stay in the queue.
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime can be built");
        let data_dir =
            std::env::temp_dir().join(format!("geoffrey-fuzz-intake-{}", std::process::id()));
        let mut settings = Settings {
            data_dir,
            ..Settings::default()
        };
        settings.server.max_body_bytes = MAX_BODY_BYTES;
        // The fuzzer sends thousands of deliveries a second to one instance, with no worker
        // to empty the queue, so the per-instance limits would reject them with 429.
        settings.limits.deliveries_per_second = 0;
        settings.limits.max_queued_jobs = 0;
        let router = runtime.block_on(async {
            let services = geoffrey::run::open_services(&settings, Arc::new(SystemClock))
                .await
                .expect("the embedded store and queue open in the temporary directory");
            for instance in &INSTANCES {
                create_instance(&services, instance).await;
            }
            geoffrey::api::router(services)
        });
        Self { runtime, router }
    }

    fn run(&self, data: &[u8]) {
        let Some(request) = FuzzRequest::parse(data) else {
            return;
        };
        let response = self.send(&request);
        check_response(data, &request, &response);
        if let Some(copy) = request.with_correct_credentials() {
            let copy_response = self.send(&copy);
            check_response(data, &copy, &copy_response);
            check_copy(&request, &response, &copy, &copy_response);
        }
    }

    fn send(&self, request: &FuzzRequest) -> Response {
        let mut builder = Request::post(request.uri.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(Body::from(request.body.clone()))
            .expect("a request from a parsed URI and headers is valid");
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(http_request)
                .await
                .expect("the router's error type is Infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("a response body in memory can be read");
            Response {
                status,
                body: body.to_vec(),
            }
        })
    }
}

async fn create_instance(services: &geoffrey::services::Services, instance: &Instance) {
    let store = services.store.as_ref();
    let (apps, keyring) = (&services.apps, &services.keyring);
    let secret = Some(Secret::new(instance.secret));
    geoffrey::instance::create(
        store,
        apps,
        keyring,
        instance.name,
        "https://forum.example.com",
        secret,
    )
    .await
    .expect("the fuzz instance can be created");
    let current = geoffrey::instance::load(store, apps, keyring, instance.name)
        .await
        .expect("the fuzz instance was just created");
    let mut document = serde_json::to_value(&current.config).expect("a config serializes");
    document["accept_unsigned"] = json!(instance.accept_unsigned);
    document["apps"] = apps_section();
    geoffrey::instance::save(store, apps, keyring, instance.name, &current.rev, document)
        .await
        .expect("the fuzz instance's apps section is valid");
}

/// Returns relay rules with every kind of filter and a Mailchimp section with group tags, so
/// that routing runs each filter on fuzzed payloads.
fn apps_section() -> Value {
    // Port 9 (discard) on the loopback address: never called, because no worker runs.
    let url = "http://127.0.0.1:9/hook";
    json!({
        "relay": { "rules": [
            { "name": "all", "url": url, "events": ["*"], "template": "{{event.name}}",
              "include_private_messages": true },
            { "name": "meetups", "url": url, "events": ["topic_created", "post_created", "post_liked"],
              "template": "{{topic.title}}{{post.raw}}", "category_ids": [5], "tags": ["meetup"] },
            { "name": "volunteers", "url": url, "events": ["user_added_to_group"],
              "template": "{{group_user.user_id}}", "group_ids": [45] },
        ] },
        "mailchimp": {
            "api_key": "0123456789abcdef0123456789abcdef-us6",
            "base_url": url,
            "list_id": "aud1",
            "group_tags": { "45": "Volunteers" },
        },
    })
}

/// A request decoded from fuzz input.
#[derive(Clone)]
struct FuzzRequest {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

struct Response {
    status: StatusCode,
    body: Vec<u8>,
}

/// The route a request path matches, worked out here independently of the router.
enum Route {
    /// `/hooks/discourse/{instance}`. The instance is `None` when its segment does not
    /// percent-decode to UTF-8.
    Hook { instance: Option<String> },
    /// `/api/{resource}/{action}`, with every `key` query parameter.
    Original { keys: Vec<String> },
    /// Any other path, which the router rejects with 404 or 405.
    Other,
}

impl FuzzRequest {
    /// Decodes an input, or returns `None` when the first line cannot become a URI even after
    /// percent-encoding (such as a path with an invalid percent sequence).
    fn parse(data: &[u8]) -> Option<Self> {
        let mut lines = data.split_inclusive(|&byte| byte == b'\n');
        let mut consumed = 0;
        let mut next_line = || {
            lines.next().map(|line| {
                consumed += line.len();
                trim_line_end(line)
            })
        };
        let uri = encode_uri(next_line().unwrap_or_default())?;
        let mut headers = Vec::new();
        while let Some(line) = next_line() {
            if line.is_empty() {
                break;
            }
            if let Some(header) = parse_header(line) {
                headers.push(header);
            }
        }
        let body = data[consumed.min(data.len())..].to_vec();
        Some(Self { uri, headers, body })
    }

    fn route(&self) -> Route {
        let segments: Vec<&str> = self.uri.path().split('/').collect();
        match segments.as_slice() {
            // The router (matchit 0.8) lets a parameter be empty in the middle of a path, as
            // in `/api//new`, but not at its end.
            ["", "hooks", "discourse", instance] if !instance.is_empty() => Route::Hook {
                instance: String::from_utf8(percent_decode(instance.as_bytes())).ok(),
            },
            ["", "api", _resource, action] if !action.is_empty() => {
                let query = self.uri.query().unwrap_or_default();
                let keys = form_urlencoded::parse(query.as_bytes())
                    .filter(|(name, _)| name == "key")
                    .map(|(_, value)| value.into_owned())
                    .collect();
                Route::Original { keys }
            }
            _ => Route::Other,
        }
    }

    fn header_values(&self, name: &str) -> impl Iterator<Item = &HeaderValue> {
        self.headers
            .iter()
            .filter(move |(header, _)| header.as_str() == name)
            .map(|(_, value)| value)
    }

    /// Returns the first value of a header as the intake reads it: lossily decoded and trimmed,
    /// with an empty value counted as absent.
    fn header_text(&self, name: &str) -> Option<String> {
        let value = self.header_values(name).next()?;
        let text = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// Returns a copy with the correct credentials for the instance the request names, or
    /// `None` when it names none of the harness's instances. On the hook route the copy also
    /// drops `Content-Type`, which the intake must ignore.
    fn with_correct_credentials(&self) -> Option<Self> {
        match self.route() {
            Route::Hook { instance } => {
                let instance = find_instance(instance.as_deref()?)?;
                let mut copy = self.clone();
                copy.headers.retain(|(name, _)| {
                    name.as_str() != SIGNATURE_HEADER && name != axum::http::header::CONTENT_TYPE
                });
                let signature = format!("sha256={}", hmac_hex(instance.secret, &self.body));
                let value = HeaderValue::from_str(&signature).expect("hex is a valid header");
                copy.headers
                    .push((HeaderName::from_static(SIGNATURE_HEADER), value));
                Some(copy)
            }
            Route::Original { keys } => {
                let instance = keys
                    .iter()
                    .find_map(|key| find_instance(split_key(key)?.2))?;
                let key = format!("fuzzer:{}@{}", instance.secret, instance.name);
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("key", &key)
                    .finish();
                let uri = format!("{}?{query}", self.uri.path());
                let mut copy = self.clone();
                copy.uri = Uri::try_from(uri).ok()?;
                Some(copy)
            }
            Route::Other => None,
        }
    }

    /// Tells whether the request carries what lets its instance accept it: the correct HMAC
    /// in a signature header, no signature on an instance that accepts unsigned deliveries,
    /// or the instance's secret as the password of the original route's key.
    fn has_valid_credentials(&self) -> bool {
        match self.route() {
            Route::Hook { instance } => {
                let Some(instance) = instance.as_deref().and_then(find_instance) else {
                    return false;
                };
                if instance.accept_unsigned && self.header_text(SIGNATURE_HEADER).is_none() {
                    return true;
                }
                let expected = hmac_hex(instance.secret, &self.body);
                self.header_values(SIGNATURE_HEADER).any(|value| {
                    String::from_utf8_lossy(value.as_bytes())
                        .to_ascii_lowercase()
                        .contains(&expected)
                })
            }
            Route::Original { keys } => keys.iter().any(|key| {
                split_key(key).is_some_and(|(_, password, name)| {
                    find_instance(name).is_some_and(|instance| password == instance.secret)
                })
            }),
            Route::Other => false,
        }
    }
}

/// Checks the properties every response has:
/// - The router rejects paths outside the webhook routes with 404 or 405 only.
/// - A webhook route responds with a documented status and a JSON body of the documented shape.
/// - A delivery is accepted only with valid credentials, as
///   [`FuzzRequest::has_valid_credentials`] defines them.
/// - An accepted delivery names a snake_case event, the one in `X-Discourse-Event` if set.
/// - No response contains an instance's secret or the expected signature of the body, unless
///   the input already did.
fn check_response(data: &[u8], request: &FuzzRequest, response: &Response) {
    let status = response.status.as_u16();
    let route = request.route();
    if matches!(route, Route::Other) {
        assert!(
            status == 404 || status == 405,
            "a path outside the webhook routes got {status}"
        );
        return;
    }
    assert_ne!(
        status,
        503,
        "the embedded store or queue failed: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        DOCUMENTED_STATUSES.contains(&status),
        "undocumented status {status}"
    );
    let body: Value =
        serde_json::from_slice(&response.body).expect("a webhook response body is JSON");
    if status == 200 {
        assert!(
            request.has_valid_credentials(),
            "a delivery without valid credentials was accepted: {body}"
        );
        check_receipt(request, &body);
    } else {
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            !error.is_empty(),
            "a {status} response has no error message: {body}"
        );
    }
    check_no_leak(data, request, &response.body);
}

/// Checks the JSON body of a 200 response.
fn check_receipt(request: &FuzzRequest, body: &Value) {
    let outcome = body["status"].as_str().unwrap_or_default();
    assert!(
        ["accepted", "duplicate", "pong"].contains(&outcome),
        "unknown receipt status: {body}"
    );
    assert!(
        body["jobs"].is_u64(),
        "the receipt has no job count: {body}"
    );
    let event = body["event"].as_str().unwrap_or_default();
    let snake_case = !event.is_empty()
        && event.len() <= 100
        && event
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    assert!(
        snake_case,
        "an accepted event name is not snake_case: {body}"
    );
    if let Some(header) = request.header_text("x-discourse-event") {
        assert_eq!(
            event, header,
            "the receipt names another event than the header"
        );
    }
    // The harness's relay rule `all` subscribes to every event but ping, without a filter.
    if outcome == "accepted" {
        assert!(
            body["jobs"].as_u64() >= Some(1),
            "an accepted event made no job: {body}"
        );
    }
    if outcome == "pong" {
        assert_eq!(event, "ping", "a pong for an event other than ping");
        assert_eq!(body["jobs"], 0, "a ping made jobs");
    }
}

/// Checks that a response reveals no secret and no expected signature that the input did not
/// contain already.
fn check_no_leak(data: &[u8], request: &FuzzRequest, response_body: &[u8]) {
    let input = String::from_utf8_lossy(data).to_ascii_lowercase();
    let response = String::from_utf8_lossy(response_body).to_ascii_lowercase();
    for instance in &INSTANCES {
        let secret = instance.secret.to_ascii_lowercase();
        assert!(
            input.contains(&secret) || !response.contains(&secret),
            "a response contains the secret of {}",
            instance.name
        );
        let signature = hmac_hex(instance.secret, &request.body);
        assert!(
            input.contains(&signature) || !response.contains(&signature),
            "a response contains the expected signature for {}",
            instance.name
        );
    }
}

/// Checks the copy with the correct credentials:
/// - It is not rejected with 401.
/// - On the hook route the copy differs from the request only in its signature header and in
///   having no `Content-Type`. So when the request already had valid credentials and was not
///   rejected for them, the copy gets the same status. This shows that the body is read the
///   same whatever the `Content-Type`, as the README states.
fn check_copy(
    request: &FuzzRequest,
    response: &Response,
    copy: &FuzzRequest,
    copy_response: &Response,
) {
    assert!(
        copy.has_valid_credentials(),
        "the harness built a copy without valid credentials"
    );
    assert_ne!(
        copy_response.status,
        StatusCode::UNAUTHORIZED,
        "a delivery with the correct credentials was rejected: {}",
        String::from_utf8_lossy(&copy_response.body)
    );
    let comparable = matches!(request.route(), Route::Hook { .. })
        && response.status != StatusCode::UNAUTHORIZED
        && request.has_valid_credentials();
    if comparable {
        assert_eq!(
            copy_response.status,
            response.status,
            "the correctly signed copy without Content-Type got another status: {}",
            String::from_utf8_lossy(&copy_response.body)
        );
    }
}

fn find_instance(name: &str) -> Option<&'static Instance> {
    INSTANCES.iter().find(|instance| instance.name == name)
}

/// Splits the original route's key `user:password@instance` the way its documentation states:
/// the instance after the last `@`, the password after the first `:`.
fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let (credentials, instance) = key.rsplit_once('@')?;
    let (user, password) = credentials.split_once(':')?;
    Some((user, password, instance))
}

/// Returns the lowercase hex HMAC-SHA256 of `body`, computed here rather than with
/// `geoffrey::api::signature::sign`, so a bug there cannot hide from this check.
fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses `name: value`, trimming spaces and tabs around the value as HTTP/1.1 servers do.
fn parse_header(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&byte| byte == b':')?;
    let name = HeaderName::from_bytes(&line[..colon]).ok()?;
    let value = line[colon + 1..].trim_ascii();
    let value = HeaderValue::from_bytes(value).ok()?;
    Some((name, value))
}

/// Builds a request URI from the first line, percent-encoding the bytes a URI cannot contain.
fn encode_uri(line: &[u8]) -> Option<Uri> {
    let mut text = String::with_capacity(line.len() + 1);
    if line.first() != Some(&b'/') {
        text.push('/');
    }
    for &byte in line {
        let allowed = byte.is_ascii_graphic() && !b"\"#<>\\^`{|}".contains(&byte);
        if allowed {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    Uri::try_from(text).ok()
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        // Only `%` and two hex digits is an escape; `u8::from_str_radix` alone would also
        // take a sign, such as `%+1`.
        let escaped = input
            .get(index + 1..index + 3)
            .filter(|digits| input[index] == b'%' && digits.iter().all(u8::is_ascii_hexdigit))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 16).ok());
        match escaped {
            Some(byte) => {
                output.push(byte);
                index += 3;
            }
            None => {
                output.push(input[index]);
                index += 1;
            }
        }
    }
    output
}
