//! The member tags endpoint.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{Behaviour, FakeEvent, MemberSeed};
use serde_json::{Value, json};

const JANE: &str = "jane@forum.dev";

fn tags_path() -> String {
    format!("{}/tags", member_path(JANE))
}

async fn seeded(tags: &[&str]) -> Api {
    let api = Api::start().await;
    let seed = MemberSeed {
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..MemberSeed::new(JANE, "subscribed")
    };
    api.fake.seed_member(LIST, seed);
    api
}

fn tags_of(api: &Api) -> Vec<String> {
    api.fake.member(LIST, JANE).unwrap().tags
}

#[tokio::test]
async fn tags_add_and_remove() {
    let api = seeded(&["keep", "drop"]).await;
    let reply = api
        .post(
            &tags_path(),
            json!({"tags": [
                {"name": "group-foo", "status": "active"},
                {"name": "drop", "status": "inactive"},
                {"name": "never-had", "status": "inactive"},
            ]}),
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.text, "");
    assert_eq!(tags_of(&api), ["keep", "group-foo"]);

    let listed = api.get(&tags_path()).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["total_items"], 2);
    let names: Vec<&str> = listed.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "group-foo"]);
    assert!(listed.body["tags"][1]["id"].as_u64().is_some());
}

#[tokio::test]
async fn tags_are_case_sensitive() {
    let api = seeded(&["Forum"]).await;
    api.post(
        &tags_path(),
        json!({"tags": [{"name": "forum", "status": "active"}]}),
    )
    .await;
    assert_eq!(tags_of(&api), ["Forum", "forum"]);
}

#[tokio::test]
async fn tags_missing_member_gives_404() {
    let api = Api::start().await;
    let reply = api
        .post(
            &tags_path(),
            json!({"tags": [{"name": "a", "status": "active"}]}),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.title(), "Resource Not Found");
    assert_eq!(api.get(&tags_path()).await.status, 404);
}

fn malformed_bodies() -> Vec<Value> {
    vec![
        json!({"name": "a", "status": "active"}),
        json!({"tags": {"name": "a", "status": "active"}}),
        json!({"tags": ["a"]}),
        json!({"tags": [{"name": "a", "status": "enabled"}]}),
        json!({"tags": [{"name": "a", "status": "active"}], "is_syncing": "yes"}),
    ]
}

#[tokio::test]
async fn malformed_body_accepted_without_change() {
    let api = seeded(&["keep"]).await;
    for body in malformed_bodies() {
        let reply = api.post(&tags_path(), body.clone()).await;
        assert_eq!(reply.status, 204, "body {body}");
        assert_eq!(tags_of(&api), ["keep"], "body {body}");
    }
}

#[tokio::test]
async fn strict_switch_rejects_malformed_body() {
    let api = seeded(&["keep"]).await;
    api.fake.set_behaviour(Behaviour {
        strict_tags: true,
        ..Behaviour::default()
    });
    for body in malformed_bodies() {
        let reply = api.post(&tags_path(), body.clone()).await;
        assert_eq!(reply.status, 400, "body {body}");
        assert_eq!(reply.title(), "Invalid Resource", "body {body}");
        assert_eq!(reply.errors().len(), 1, "body {body}");
    }
    assert_eq!(tags_of(&api), ["keep"]);
}

#[tokio::test]
async fn tag_automation_honours_is_syncing() {
    let api = seeded(&[]).await;
    let add = |name: &str, syncing: bool| json!({"tags": [{"name": name, "status": "active"}], "is_syncing": syncing});
    api.post(&tags_path(), add("quiet", true)).await;
    api.post(&tags_path(), add("loud", false)).await;
    api.post(&tags_path(), add("loud", false)).await;
    assert_eq!(tags_of(&api), ["quiet", "loud"]);
    assert_eq!(
        api.fake.events(),
        [FakeEvent::TagAutomationTriggered {
            list_id: LIST.to_string(),
            email: JANE.to_string(),
            tag: "loud".to_string(),
        }]
    );
}

#[tokio::test]
async fn tags_reject_update_methods() {
    let api = seeded(&[]).await;
    let body = json!({"tags": [{"name": "a", "status": "active"}]});
    for reply in [
        api.patch(&tags_path(), body.clone()).await,
        api.put(&tags_path(), body.clone()).await,
    ] {
        assert_eq!(reply.status, 405);
        assert_eq!(reply.title(), "Method Not Allowed");
        let allow = reply.headers["allow"].to_str().unwrap();
        assert!(allow.contains("POST"), "Allow: {allow}");
    }
}
