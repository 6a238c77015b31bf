//! The request log, reset, and the HTTP control API under `/_fake`.

use crate::common::{Api, LIST, member_path, read};
use fake_mailchimp::MemberSeed;
use serde_json::{Value, json};

impl Api {
    fn control_url(&self, path: &str) -> String {
        format!("{}/_fake{path}", self.fake.base_url())
    }

    async fn control_get(&self, path: &str) -> Value {
        let response = self.http.get(self.control_url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "GET /_fake{path}");
        response.json().await.unwrap()
    }

    async fn control_post(&self, path: &str, body: Value) -> u16 {
        let response = self
            .http
            .post(self.control_url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }
}

#[tokio::test]
async fn request_log_records_body_and_status() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane@forum.dev", "subscribed"));
    api.put(
        &format!(
            "{}?skip_merge_validation=true",
            member_path("jane@forum.dev")
        ),
        json!({"email_address": "jane@forum.dev", "status_if_new": "subscribed"}),
    )
    .await;
    api.get("/nope").await;

    let logged = api.fake.requests();
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].method, "PUT");
    assert_eq!(
        logged[0].path,
        format!("/3.0{}", member_path("jane@forum.dev"))
    );
    assert_eq!(logged[0].query, "skip_merge_validation=true");
    assert_eq!(logged[0].status, 200);
    let body = logged[0].body.as_ref().unwrap();
    assert!(body.get("status").is_none(), "no status was sent: {body}");
    assert_eq!(logged[1].status, 404);
    assert_eq!(logged[1].body, None);
}

#[tokio::test]
async fn reset_clears_state() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane@forum.dev", "pending"));
    api.patch(&member_path("jane@forum.dev"), json!({"status": "pending"}))
        .await;
    api.fake.allow_address("x@example.com");
    assert_eq!(api.fake.events().len(), 1);

    api.fake.reset();
    assert_eq!(api.fake.members(LIST), []);
    assert_eq!(api.fake.requests(), []);
    assert_eq!(api.fake.events(), []);
    assert_eq!(api.fake.max_in_flight(), 0);
    let fake = api
        .put(
            &member_path("x@example.com"),
            json!({"email_address": "x@example.com", "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(fake.status, 400);
}

#[tokio::test]
async fn http_seed_and_read_member() {
    let api = Api::start().await;
    let status = api
        .control_post(
            &format!("/lists/{LIST}/members"),
            json!({"email": "jane@forum.dev", "status": "unsubscribed", "unsubscribed_by": "self"}),
        )
        .await;
    assert_eq!(status, 204);
    let member = api
        .control_get(&format!("/lists/{LIST}/members/jane@forum.dev"))
        .await;
    assert_eq!(member["status"], "unsubscribed");
    assert_eq!(member["unsubscribed_by"], "self");

    let all = api.control_get(&format!("/lists/{LIST}/members")).await;
    assert_eq!(all.as_array().unwrap().len(), 1);

    let unknown = api
        .control_post(
            "/lists/nope/members",
            json!({"email": "a@forum.dev", "status": "subscribed"}),
        )
        .await;
    assert_eq!(unknown, 404);
    let invalid = api
        .control_post(
            &format!("/lists/{LIST}/members"),
            json!({"email": "a@forum.dev", "status": "gone"}),
        )
        .await;
    assert_eq!(invalid, 400);
}

#[tokio::test]
async fn http_actions_simulate_events() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane@forum.dev", "pending"));
    let action = |name: &str| format!("/lists/{LIST}/members/jane@forum.dev/{name}");

    assert_eq!(api.control_post(&action("confirm"), json!({})).await, 204);
    assert_eq!(
        api.status_of("jane@forum.dev").as_deref(),
        Some("subscribed")
    );
    assert_eq!(api.control_post(&action("confirm"), json!({})).await, 400);

    assert_eq!(
        api.control_post(&action("unsubscribe-by-contact"), json!({}))
            .await,
        204
    );
    let member = api.fake.member(LIST, "jane@forum.dev").unwrap();
    assert_eq!(member.unsubscribed_by.as_deref(), Some("self"));

    assert_eq!(api.control_post(&action("bounce"), json!({})).await, 204);
    assert_eq!(api.status_of("jane@forum.dev").as_deref(), Some("cleaned"));

    assert_eq!(
        api.control_post(&action("delete-permanent"), json!({}))
            .await,
        204
    );
    assert_eq!(api.status_of("jane@forum.dev"), None);
    assert_eq!(api.control_post(&action("bounce"), json!({})).await, 404);
    assert_eq!(api.control_post(&action("explode"), json!({})).await, 404);
}

#[tokio::test]
async fn http_injection_and_logs() {
    let api = Api::start().await;
    let status = api
        .control_post(
            "/injections",
            json!({"method": "GET", "path_contains": "/ping", "nth": 1,
                   "failure": {"status": 503}}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(api.get("/ping").await.status, 503);

    api.control_post("/injections", json!({"failure": "bare_forbidden"}))
        .await;
    let cleared = api
        .http
        .delete(api.control_url("/injections"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    assert_eq!(api.get("/ping").await.status, 200);

    let requests = api.control_get("/requests").await;
    let statuses: Vec<u64> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|request| request["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200]);
    let max = api.control_get("/max-in-flight").await;
    assert_eq!(max["max_in_flight"], 1);
}

#[tokio::test]
async fn http_behaviour_and_addresses() {
    let api = Api::start().await;
    let response = api
        .http
        .put(api.control_url("/behaviour"))
        .json(&json!({"strict_tags": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let behaviour = api.control_get("/behaviour").await;
    assert_eq!(behaviour["strict_tags"], true);
    assert_eq!(behaviour["over_limit"], "problem");
    assert!(api.fake.behaviour().strict_tags);

    let allowed = api
        .control_post("/allowed-addresses", json!({"email": "x@example.com"}))
        .await;
    assert_eq!(allowed, 204);
    let throttled = api
        .control_post("/throttled-addresses", json!({"email": "busy@forum.dev"}))
        .await;
    assert_eq!(throttled, 204);
    let body = |email: &str| json!({"email_address": email, "status_if_new": "subscribed"});
    let ok = api
        .put(&member_path("x@example.com"), body("x@example.com"))
        .await;
    assert_eq!(ok.status, 200);
    let busy = api
        .put(&member_path("busy+1@forum.dev"), body("busy+1@forum.dev"))
        .await;
    assert_eq!(busy.status, 400);

    let events = read(
        api.http
            .get(api.control_url("/events"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.body, json!([]));
}
