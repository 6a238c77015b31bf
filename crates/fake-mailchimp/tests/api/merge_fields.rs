//! Merge-field validation through the API.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{FakeConfig, ListConfig, MemberSeed, MergeField};
use serde_json::json;

const JANE: &str = "jane@forum.dev";

async fn api_with_required_lname() -> Api {
    let config = FakeConfig {
        lists: vec![ListConfig {
            merge_fields: vec![
                MergeField::text("FNAME"),
                MergeField::required("LNAME", "text"),
                MergeField {
                    tag: "KARMA".to_string(),
                    kind: "number".to_string(),
                    required: false,
                },
            ],
            ..ListConfig::default()
        }],
        ..FakeConfig::default()
    };
    Api::with(config).await
}

#[tokio::test]
async fn missing_required_field_rejected() {
    let api = api_with_required_lname().await;
    let reply = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status_if_new": "subscribed",
                   "merge_fields": {"FNAME": "Jane"}}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Invalid Resource");
    assert_eq!(reply.detail(), "Your merge fields were invalid.");
    assert_eq!(
        reply.errors(),
        [("LNAME".to_string(), "Please enter a value".to_string())]
    );
    assert_eq!(api.status_of(JANE), None);
}

#[tokio::test]
async fn skip_merge_validation_accepts() {
    let api = api_with_required_lname().await;
    let reply = api
        .put(
            &format!("{}?skip_merge_validation=true", member_path(JANE)),
            json!({"email_address": JANE, "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["merge_fields"]["LNAME"], "");
}

#[tokio::test]
async fn update_checks_only_sent_fields() {
    let api = api_with_required_lname().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    let omitted = api
        .patch(
            &member_path(JANE),
            json!({"merge_fields": {"FNAME": "Jane"}}),
        )
        .await;
    assert_eq!(omitted.status, 200);

    let emptied = api
        .patch(&member_path(JANE), json!({"merge_fields": {"LNAME": ""}}))
        .await;
    assert_eq!(emptied.status, 400);
    assert_eq!(emptied.errors()[0].0, "LNAME");
}

#[tokio::test]
async fn wrong_type_rejected() {
    let api = api_with_required_lname().await;
    let reply = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status_if_new": "subscribed",
                   "merge_fields": {"LNAME": "Doe", "KARMA": "lots", "FNAME": null}}),
        )
        .await;
    assert_eq!(reply.status, 400);
    let fields: Vec<String> = reply.errors().into_iter().map(|(field, _)| field).collect();
    assert_eq!(fields, ["merge_fields.FNAME", "merge_fields.KARMA"]);
    assert_eq!(
        reply.errors()[0].1,
        "Data did not match any of the schemas described in anyOf."
    );
}

#[tokio::test]
async fn unknown_tags_ignored() {
    let api = api_with_required_lname().await;
    let reply = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status_if_new": "subscribed",
                   "merge_fields": {"LNAME": "Doe", "KARMA": 12, "EMAIL": JANE}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["merge_fields"]["KARMA"], 12);
    assert!(reply.body["merge_fields"].get("EMAIL").is_none());
}

#[tokio::test]
async fn merge_fields_endpoint_lists_config() {
    let api = api_with_required_lname().await;
    let reply = api.get(&format!("/lists/{LIST}/merge-fields")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["total_items"], 3);
    let fields = reply.body["merge_fields"].as_array().unwrap();
    assert_eq!(fields[1]["tag"], "LNAME");
    assert_eq!(fields[1]["required"], true);
    assert_eq!(fields[2]["type"], "number");
    assert_eq!(fields[0]["merge_id"], 1);
}
