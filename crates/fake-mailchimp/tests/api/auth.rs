//! Authentication: accepted schemes and the 401 and 403 problems.

use crate::common::{Api, client, read};
use fake_mailchimp::{ApiKey, FakeConfig};

const OTHER_DC_KEY: &str = "fedcba9876543210fedcba9876543210-us1";

async fn ping_with(api: &Api, authorization: Option<&str>) -> crate::common::Reply {
    let mut request = api.http.get(api.url("/ping"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn basic_auth_accepts_any_user() {
    let api = Api::start().await;
    for user in ["user", "anystring", ""] {
        let response = api
            .http
            .get(api.url("/ping"))
            .basic_auth(user, Some(api.fake.api_key()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "user {user:?}");
    }
}

#[tokio::test]
async fn apikey_and_bearer_schemes_accepted() {
    let api = Api::start().await;
    let key = api.fake.api_key();
    for header in [
        format!("apikey {key}"),
        format!("Bearer {key}"),
        format!("APIKEY {key}"),
    ] {
        let reply = ping_with(&api, Some(&header)).await;
        assert_eq!(reply.status, 200, "header {header:?}");
        assert_eq!(reply.body["health_status"], "Everything's Chimpy!");
    }
}

#[tokio::test]
async fn missing_key_gives_api_key_missing() {
    let api = Api::start().await;
    for header in [None, Some("apikey "), Some("Bearer")] {
        let reply = ping_with(&api, header).await;
        assert_eq!(reply.status, 401, "header {header:?}");
        assert_eq!(reply.title(), "API Key Missing", "header {header:?}");
        assert_eq!(reply.detail(), "Your request did not include an API key.");
    }
}

#[tokio::test]
async fn unknown_key_gives_api_key_invalid() {
    let api = Api::start().await;
    let reply = ping_with(&api, Some("apikey 00000000000000000000000000000000-us6")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.title(), "API Key Invalid");
    assert_eq!(
        reply.detail(),
        "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    );
}

#[tokio::test]
async fn wrong_datacenter_key_rejected() {
    let config = FakeConfig {
        keys: vec![ApiKey::valid(OTHER_DC_KEY)],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    let reply = ping_with(&api, Some(&format!("apikey {OTHER_DC_KEY}"))).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.title(), "API Key Invalid");
}

#[tokio::test]
async fn revoked_key_rejected() {
    let revoked = "11111111111111111111111111111111-us6";
    let config = FakeConfig {
        keys: vec![ApiKey::revoked(revoked)],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    let reply = ping_with(&api, Some(&format!("Bearer {revoked}"))).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.title(), "API Key Invalid");
}

#[tokio::test]
async fn disabled_account_gives_user_disabled() {
    let disabled = "22222222222222222222222222222222-us6";
    let config = FakeConfig {
        keys: vec![ApiKey::disabled(disabled)],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    let reply = ping_with(&api, Some(&format!("apikey {disabled}"))).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.title(), "User Disabled");
    assert_eq!(reply.detail(), "This account has been disabled.");
}

#[tokio::test]
async fn oauth_token_needs_bearer() {
    let token = "3f2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d";
    let config = FakeConfig {
        keys: vec![ApiKey::valid(token)],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    assert_eq!(
        ping_with(&api, Some(&format!("Bearer {token}")))
            .await
            .status,
        200
    );
    let basic = api
        .http
        .get(api.url("/ping"))
        .basic_auth("user", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
}

#[tokio::test]
async fn auth_problem_has_rfc7807_shape() {
    let api = Api::start().await;
    let reply = ping_with(&api, None).await;
    assert_eq!(
        reply.content_type,
        "application/problem+json; charset=utf-8"
    );
    assert_eq!(reply.body["status"], 401);
    assert_eq!(
        reply.body["type"],
        "https://mailchimp.com/developer/marketing/docs/errors/"
    );
    let instance = reply.body["instance"].as_str().unwrap();
    assert_eq!(
        instance.len(),
        36,
        "instance {instance:?} should be UUID-shaped"
    );
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(request_id, instance);
    assert!(reply.body.get("errors").is_none());
}

#[tokio::test]
async fn control_api_needs_no_key() {
    let api = Api::start().await;
    let response = client()
        .get(format!("{}/_fake/events", api.fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
