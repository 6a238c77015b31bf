//! Batch subscribe: `POST /3.0/lists/{id}`.

use crate::common::{Api, LIST, Reply};
use fake_mailchimp::{FakeConfig, ListConfig, MemberSeed, MergeField};
use serde_json::{Value, json};

async fn batch(api: &Api, query: &str, body: Value) -> Reply {
    api.post(&format!("/lists/{LIST}{query}"), body).await
}

fn item(email: &str) -> Value {
    json!({"email_address": email, "status": "subscribed"})
}

/// Returns `(email_address, error, error_code)` of each item error.
fn item_errors(reply: &Reply) -> Vec<(String, String, String)> {
    reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["email_address"].as_str().unwrap().to_string(),
                error["error"].as_str().unwrap().to_string(),
                error["error_code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn batch_creates_members() {
    let api = Api::start().await;
    let reply = batch(
        &api,
        "",
        json!({"members": [
            item("a@forum.dev"),
            {"email_address": "b@forum.dev", "status": "pending", "tags": ["forum"]},
        ]}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total_created"], 2);
    assert_eq!(reply.body["total_updated"], 0);
    assert_eq!(reply.body["error_count"], 0);
    assert_eq!(reply.body["new_members"][1]["email_address"], "b@forum.dev");
    assert_eq!(api.status_of("b@forum.dev").as_deref(), Some("pending"));
    assert_eq!(
        api.fake.member(LIST, "b@forum.dev").unwrap().tags,
        ["forum"]
    );
    assert_eq!(api.fake.events().len(), 1);
}

#[tokio::test]
async fn batch_over_500_rejected() {
    let api = Api::start().await;
    let members: Vec<Value> = (0..501).map(|n| item(&format!("m{n}@forum.dev"))).collect();
    let reply = batch(&api, "", json!({"members": members})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Invalid Resource");
    assert_eq!(reply.errors()[0].0, "members");
    assert_eq!(api.fake.members(LIST).len(), 0);

    let members: Vec<Value> = (0..500).map(|n| item(&format!("m{n}@forum.dev"))).collect();
    let reply = batch(&api, "", json!({"members": members})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total_created"], 500);
}

#[tokio::test]
async fn batch_existing_needs_update_existing() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("a@forum.dev", "subscribed"));
    let reply = batch(&api, "", json!({"members": [item("a@forum.dev")]})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["error_count"], 1);
    assert_eq!(
        item_errors(&reply),
        [(
            "a@forum.dev".to_string(),
            "a@forum.dev is already a list member, do you want to update? please provide \
             update_existing:true in the request body"
                .to_string(),
            "ERROR_CONTACT_EXISTS".to_string(),
        )]
    );
}

#[tokio::test]
async fn batch_update_existing_updates() {
    let api = Api::start().await;
    let seed = MemberSeed {
        tags: vec!["old".to_string()],
        ..MemberSeed::new("a@forum.dev", "subscribed")
    };
    api.fake.seed_member(LIST, seed);
    let reply = batch(
        &api,
        "",
        json!({
            "members": [{"email_address": "a@forum.dev", "merge_fields": {"FNAME": "Ann"},
                         "tags": ["new"], "status_if_new": "pending"}],
            "update_existing": true,
        }),
    )
    .await;
    assert_eq!(reply.body["total_updated"], 1);
    assert_eq!(reply.body["total_created"], 0);
    assert_eq!(reply.body["updated_members"][0]["status"], "subscribed");
    let member = api.fake.member(LIST, "a@forum.dev").unwrap();
    assert_eq!(member.merge_fields["FNAME"], "Ann");
    assert_eq!(member.tags, ["old", "new"]);
}

#[tokio::test]
async fn batch_sync_tags_replaces() {
    let api = Api::start().await;
    let seed = MemberSeed {
        tags: vec!["old".to_string(), "both".to_string()],
        ..MemberSeed::new("a@forum.dev", "subscribed")
    };
    api.fake.seed_member(LIST, seed);
    let reply = batch(
        &api,
        "",
        json!({
            "members": [{"email_address": "a@forum.dev", "tags": ["both", "new"]}],
            "update_existing": true,
            "sync_tags": true,
        }),
    )
    .await;
    assert_eq!(reply.body["total_updated"], 1);
    assert_eq!(
        api.fake.member(LIST, "a@forum.dev").unwrap().tags,
        ["both", "new"]
    );
}

#[tokio::test]
async fn batch_duplicates_give_item_error() {
    let api = Api::start().await;
    let body = json!({"members": [
        item("a@forum.dev"),
        {"email_address": "A@forum.dev", "status": "unsubscribed"},
    ]});
    let reply = batch(&api, "", body.clone()).await;
    assert_eq!(reply.body["total_created"], 1);
    assert_eq!(reply.body["error_count"], 1);
    assert_eq!(item_errors(&reply)[0].0, "A@forum.dev");
    assert_eq!(item_errors(&reply)[0].2, "ERROR_GENERIC");

    api.fake.reset();
    let skipped = batch(&api, "?skip_duplicate_check=true", body).await;
    assert_eq!(skipped.body["total_created"], 1);
    assert_eq!(skipped.body["error_count"], 0);
    assert_eq!(api.status_of("a@forum.dev").as_deref(), Some("subscribed"));
}

#[tokio::test]
async fn batch_reports_item_errors() {
    let config = FakeConfig {
        lists: vec![ListConfig {
            merge_fields: vec![
                MergeField::text("FNAME"),
                MergeField::required("LNAME", "text"),
            ],
            ..ListConfig::default()
        }],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed("gone@forum.dev"));
    api.fake.admin_delete_permanent(LIST, "erased@forum.dev");
    let with_name = |email: &str| json!({"email_address": email, "status": "subscribed", "merge_fields": {"LNAME": "X"}});
    let reply = batch(
        &api,
        "",
        json!({
            "members": [
                with_name("ok@forum.dev"),
                item("noname@forum.dev"),
                with_name("john.doe@example.com"),
                with_name("not-an-address"),
                with_name("gone@forum.dev"),
                with_name("erased@forum.dev"),
                {"email_address": "bad@forum.dev", "status": "archived"},
                [],
            ],
            "update_existing": true,
        }),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total_created"], 1);
    assert_eq!(reply.body["error_count"], 7);

    let errors = item_errors(&reply);
    let messages: Vec<&str> = errors.iter().map(|(_, error, _)| error.as_str()).collect();
    assert_eq!(messages[0], "Your merge fields were invalid.");
    assert_eq!(
        messages[1],
        "john.doe@example.com looks fake or invalid, please enter a real email address."
    );
    assert_eq!(messages[2], "Please provide a valid email address.");
    assert_eq!(
        messages[3],
        "gone@forum.dev is in a compliance state due to unsubscribe, bounce, or compliance \
         review and cannot be subscribed."
    );
    assert!(messages[4].starts_with("erased@forum.dev was permanently deleted"));
    assert!(messages[5].starts_with("Data presented is not one of the accepted values"));
    assert_eq!(messages[6], "Schema describes object, array found instead");
    assert!(errors.iter().all(|(_, _, code)| code == "ERROR_GENERIC"));

    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields[0], "LNAME");
    assert_eq!(fields[5], "members.item:6.status");
    assert_eq!(fields[6], "members.item:7");
}

#[tokio::test]
async fn batch_skip_merge_validation() {
    let config = FakeConfig {
        lists: vec![ListConfig {
            merge_fields: vec![MergeField::required("LNAME", "text")],
            ..ListConfig::default()
        }],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    let reply = batch(
        &api,
        "?skip_merge_validation=true",
        json!({"members": [item("a@forum.dev")]}),
    )
    .await;
    assert_eq!(reply.body["total_created"], 1);
}

#[tokio::test]
async fn batch_malformed_body_rejected() {
    let api = Api::start().await;
    for body in [
        json!({}),
        json!({"members": {}}),
        json!({"members": [], "sync_tags": 1}),
    ] {
        let reply = batch(&api, "", body.clone()).await;
        assert_eq!(reply.status, 400, "body {body}");
        assert_eq!(reply.title(), "Invalid Resource", "body {body}");
    }
    let unknown = api.post("/lists/nope", json!({"members": []})).await;
    assert_eq!(unknown.status, 404);
}
