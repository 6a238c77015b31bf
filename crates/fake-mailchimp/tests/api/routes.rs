//! Routing: ping, the list object, unknown routes, wrong methods and malformed JSON.

use crate::common::{Api, LIST, member_path, read};
use serde_json::json;

#[tokio::test]
async fn ping_reports_health() {
    let api = Api::start().await;
    let reply = api.get("/ping").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    assert_eq!(reply.body, json!({"health_status": "Everything's Chimpy!"}));
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn list_object_and_unknown_list() {
    let api = Api::start().await;
    let reply = api.get(&format!("/lists/{LIST}")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], LIST);
    assert_eq!(reply.body["name"], "Forum members");
    assert_eq!(reply.body["double_optin"], false);
    assert_eq!(reply.body["stats"]["member_count"], 0);

    for path in [
        "/lists/nope",
        "/lists/nope/members",
        "/lists/nope/merge-fields",
    ] {
        let missing = api.get(path).await;
        assert_eq!(missing.status, 404, "{path}");
        assert_eq!(missing.title(), "Resource Not Found", "{path}");
    }
}

#[tokio::test]
async fn unknown_route_gives_404_problem() {
    let api = Api::start().await;
    for path in ["/campaigns", "/batches", "/lists/aud1/segments"] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.title(), "Resource Not Found", "{path}");
        assert_eq!(
            reply.content_type,
            "application/problem+json; charset=utf-8"
        );
    }
    let outside = read(
        api.http
            .get(format!("{}/nothing-here", api.fake.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(outside.status, 404);
    assert_eq!(outside.title(), "Resource Not Found");
}

#[tokio::test]
async fn unknown_route_still_needs_key() {
    let api = Api::start().await;
    let response = api.http.get(api.url("/campaigns")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn wrong_method_gives_405() {
    let api = Api::start().await;
    let body = json!({"email_address": "jane@forum.dev", "status": "subscribed"});
    let cases = [
        api.put(&format!("/lists/{LIST}/members"), body.clone())
            .await,
        api.delete(&format!("/lists/{LIST}")).await,
        api.post("/ping", json!({})).await,
        api.post(&member_path("jane@forum.dev"), body).await,
    ];
    for reply in cases {
        assert_eq!(reply.status, 405);
        assert_eq!(reply.title(), "Method Not Allowed");
        assert!(reply.headers.contains_key("allow"));
    }
    assert_eq!(api.fake.members(LIST).len(), 0);
}

#[tokio::test]
async fn malformed_json_gives_parse_error() {
    let api = Api::start().await;
    let reply = read(
        api.request(reqwest::Method::PUT, &member_path("jane@forum.dev"))
            .header("Content-Type", "application/json")
            .body("{\"email_address\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "JSON Parse Error");
}
