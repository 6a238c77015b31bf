//! Injected failures, one test per kind, plus request counting.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{Failure, Injection};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn injected_status_has_problem_body() {
    let api = Api::start().await;
    let cases = [
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (429, "Too Many Requests"),
        (404, "Resource Not Found"),
    ];
    for (status, title) in cases {
        api.fake
            .inject(Injection::next("/ping", Failure::Status(status)));
        let reply = api.get("/ping").await;
        assert_eq!(reply.status, status);
        assert_eq!(
            reply.content_type,
            "application/problem+json; charset=utf-8"
        );
        assert_eq!(reply.title(), title);
        assert_eq!(reply.body["status"], status);
    }
    assert_eq!(api.get("/ping").await.status, 200);
}

#[tokio::test]
async fn bad_gateway_is_not_json() {
    let api = Api::start().await;
    api.fake
        .inject(Injection::next("/members/", Failure::BadGatewayWithoutJson));
    let reply = api.get(&member_path("jane@forum.dev")).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.content_type.starts_with("text/html"),
        "{}",
        reply.content_type
    );
    assert!(serde_json::from_str::<serde_json::Value>(&reply.text).is_err());
}

#[tokio::test]
async fn bare_forbidden_has_empty_body() {
    let api = Api::start().await;
    api.fake.inject(Injection::next("", Failure::BareForbidden));
    let reply = api.get("/ping").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.text, "");
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let api = Api::start().await;
    let delay = Duration::from_millis(300);
    api.fake
        .inject(Injection::next("/ping", Failure::Delay(delay)));
    let started = Instant::now();
    let reply = api.get("/ping").await;
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["health_status"], "Everything's Chimpy!");
}

#[tokio::test]
async fn dropped_connection_gives_client_error() {
    let api = Api::start().await;
    api.fake
        .inject(Injection::next("/members/", Failure::DropConnection));
    let result = api
        .request(reqwest::Method::PUT, &member_path("jane@forum.dev"))
        .json(&json!({"email_address": "jane@forum.dev", "status_if_new": "subscribed"}))
        .send()
        .await;
    let error = result.expect_err("the connection should close without a response");
    assert!(!error.is_status(), "{error:?}");
    assert_eq!(api.fake.member(LIST, "jane@forum.dev"), None);

    let logged = api.fake.requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].status, 0);
    assert_eq!(api.get("/ping").await.status, 200);
}

#[tokio::test]
async fn nth_matching_request_fails() {
    let api = Api::start().await;
    api.fake.inject(Injection {
        method: "PUT".to_string(),
        path_contains: "/members/".to_string(),
        nth: 2,
        failure: Failure::Status(500),
    });
    let put = |email: &'static str| {
        let api = &api;
        async move {
            api.put(
                &member_path(email),
                json!({"email_address": email, "status_if_new": "subscribed"}),
            )
            .await
            .status
        }
    };
    assert_eq!(put("a@forum.dev").await, 200);
    assert_eq!(api.get(&member_path("a@forum.dev")).await.status, 200);
    assert_eq!(put("b@forum.dev").await, 500);
    assert_eq!(put("c@forum.dev").await, 200);
    assert_eq!(api.fake.member(LIST, "b@forum.dev"), None);
}
