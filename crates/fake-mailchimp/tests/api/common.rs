//! A client for the fake over real HTTP on 127.0.0.1.

use fake_mailchimp::{FakeConfig, FakeMailchimp, subscriber_hash};
use reqwest::Method;
use serde_json::Value;

pub const LIST: &str = "aud1";

pub struct Api {
    pub fake: FakeMailchimp,
    pub http: reqwest::Client,
}

/// A response with its body parsed as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn title(&self) -> &str {
        self.body["title"].as_str().unwrap_or_default()
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }

    /// Returns the `(field, message)` pairs of the problem's `errors`.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| {
                        (
                            error["field"].as_str().unwrap_or_default().to_string(),
                            error["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Returns the member path for an address, hashed the way a correct client hashes it.
pub fn member_path(email: &str) -> String {
    format!("/lists/{LIST}/members/{}", subscriber_hash(email))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

impl Api {
    pub async fn start() -> Self {
        Self::with(FakeConfig::default()).await
    }

    pub async fn with(config: FakeConfig) -> Self {
        Self {
            fake: FakeMailchimp::start(config).await,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/3.0{path}", self.fake.base_url())
    }

    /// Starts a request with Basic auth and the fake's key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth("user", Some(self.fake.api_key()))
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request to the fake")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Returns the stored status of a member, or `None` when it does not exist.
    pub fn status_of(&self, email: &str) -> Option<String> {
        self.fake.member(LIST, email).map(|member| member.status)
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
    };
    Reply {
        status,
        content_type,
        headers,
        text,
        body,
    }
}
