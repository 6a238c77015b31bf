//! A signed-in client of the web UI and its JSON API, for route tests.

use crate::geoffrey::{Mode, TestGeoffrey};
use crate::servers::{COUCH_ADMIN, COUCH_PASSWORD};
use serde_json::{Value, json};

/// Password of the embedded administrator in tests (`ui.admin_password`).
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A person signed in to the UI: sends their session cookie, and their CSRF token with every
/// request that changes something.
pub struct UiClient {
    pub base_url: String,
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

/// A response's status, `Location` header and body.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// Returns the body with the character references minijinja writes decoded, to search
    /// for a value as the browser shows it.
    pub fn text(&self) -> String {
        self.body
            .replace("&#x2f;", "/")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

/// Returns a client that follows no redirects, so that tests can check them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl UiClient {
    /// Signs in through `POST /api/v1/session`.
    pub async fn sign_in(base_url: &str, user: &str, password: &str) -> Result<Self, Page> {
        let http = http_client();
        let response = http
            .post(format!("{base_url}/api/v1/session"))
            .json(&json!({ "user": user, "password": password }))
            .send()
            .await
            .unwrap();
        let cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("geoffrey_session="))
            .map(|value| value.split(';').next().unwrap().to_string());
        let page = read(response).await;
        match (page.status, cookie) {
            (200, Some(cookie)) => Ok(Self {
                base_url: base_url.to_string(),
                http,
                cookie,
                csrf: page.json()["csrf"].as_str().unwrap().to_string(),
            }),
            _ => Err(page),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Posts a form with the CSRF token added as the `csrf` field.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &self.csrf));
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Sends JSON with `method`, with the CSRF token in `X-CSRF-Token`.
    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Page {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .json(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap();
    Page {
        status,
        location,
        body,
    }
}

impl TestGeoffrey {
    /// Signs in as the administrator: the embedded one, or CouchDB's server admin.
    pub async fn admin_client(&self) -> UiClient {
        let (user, password) = match self.mode() {
            Mode::Embedded => ("admin", ADMIN_PASSWORD),
            Mode::Distributed => (COUCH_ADMIN, COUCH_PASSWORD),
        };
        UiClient::sign_in(&self.base_url, user, password)
            .await
            .unwrap_or_else(|page| panic!("the administrator cannot sign in: {page:?}"))
    }

    pub fn mode(&self) -> Mode {
        if self.couch.is_some() {
            Mode::Distributed
        } else {
            Mode::Embedded
        }
    }
}
