//! Member creation and update: hashing, POST, PUT upsert rules, PATCH, path forms and the
//! address predicates.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{FakeConfig, FakeEvent, MemberSeed, subscriber_hash};
use serde_json::json;

#[tokio::test]
async fn hash_normalises_case_and_spaces() {
    let api = Api::start().await;
    let reply = api
        .put(
            &member_path("Jane.Doe@Forum.dev"),
            json!({"email_address": "  Jane.Doe@Forum.dev ", "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let hash = subscriber_hash("jane.doe@forum.dev");
    assert_eq!(reply.body["id"], hash.as_str());
    assert_eq!(reply.body["email_address"], "Jane.Doe@Forum.dev");

    let again = api
        .get(&format!("/lists/{LIST}/members/{}", hash.to_uppercase()))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], hash.as_str());
}

#[tokio::test]
async fn plus_address_is_separate_member() {
    let api = Api::start().await;
    for email in ["jane@forum.dev", "jane+discourse@forum.dev"] {
        let reply = api
            .put(
                &member_path(email),
                json!({"email_address": email, "status_if_new": "subscribed"}),
            )
            .await;
        assert_eq!(reply.status, 200, "{email}");
    }
    let members = api.fake.members(LIST);
    assert_eq!(members.len(), 2);
    assert_ne!(members[0].id, members[1].id);
    assert_eq!(members[1].id, subscriber_hash("jane+discourse@forum.dev"));
}

#[tokio::test]
async fn unlowered_hash_gives_member_exists() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("John@Forum.dev", "subscribed"));
    // MD5 of "John@Forum.dev" as sent, without lower-casing.
    let raw_hash = "59a4ea1d7ee5c1fef23d68cfc1aa2c94";
    let reply = api
        .put(
            &format!("/lists/{LIST}/members/{raw_hash}"),
            json!({"email_address": "John@Forum.dev", "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Member Exists");
    assert_eq!(
        reply.detail(),
        "John@Forum.dev is already a list member. Use PUT to insert or update list members."
    );
}

#[tokio::test]
async fn put_mismatched_hash_creates_at_body_hash() {
    let api = Api::start().await;
    let reply = api
        .put(
            &format!("/lists/{LIST}/members/{}", "0".repeat(32)),
            json!({"email_address": "new@forum.dev", "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], subscriber_hash("new@forum.dev").as_str());
}

#[tokio::test]
async fn put_creates_with_status_if_new() {
    let api = Api::start().await;
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({
                "email_address": "jane@forum.dev",
                "status_if_new": "transactional",
                "merge_fields": {"FNAME": "Jane", "LNAME": "Doe"},
                "tags": ["forum", "new"],
            }),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "transactional");
    assert_eq!(reply.body["full_name"], "Jane Doe");
    assert_eq!(reply.body["tags_count"], 2);
    assert_eq!(reply.body["list_id"], LIST);
    assert_eq!(reply.body["contact_id"].as_str().unwrap().len(), 32);
    assert_eq!(reply.body["unique_email_id"].as_str().unwrap().len(), 10);
    let member = api.fake.member(LIST, "jane@forum.dev").unwrap();
    assert_eq!(member.tags, ["forum", "new"]);
    assert_eq!(member.merge_fields["LNAME"], "Doe");
}

#[tokio::test]
async fn put_falls_back_to_status() {
    let api = Api::start().await;
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({"email_address": "jane@forum.dev", "status": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "subscribed");
}

#[tokio::test]
async fn put_without_status_rejected() {
    let api = Api::start().await;
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({"email_address": "jane@forum.dev"}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Invalid Resource");
    let fields: Vec<String> = reply.errors().into_iter().map(|(field, _)| field).collect();
    assert_eq!(fields, ["status_if_new"]);
    assert_eq!(api.status_of("jane@forum.dev"), None);
}

#[tokio::test]
async fn put_existing_ignores_status_if_new() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane@forum.dev", "unsubscribed"));
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({
                "email_address": "jane@forum.dev",
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": "Jane"},
            }),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "unsubscribed");
    assert_eq!(reply.body["merge_fields"]["FNAME"], "Jane");
}

#[tokio::test]
async fn put_existing_ignores_tags() {
    let api = Api::start().await;
    let seed = MemberSeed {
        tags: vec!["old".to_string()],
        ..MemberSeed::new("jane@forum.dev", "subscribed")
    };
    api.fake.seed_member(LIST, seed);
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({"email_address": "jane@forum.dev", "tags": ["new"]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        api.fake.member(LIST, "jane@forum.dev").unwrap().tags,
        ["old"]
    );
}

#[tokio::test]
async fn update_keeps_omitted_fields() {
    let api = Api::start().await;
    let mut seed = MemberSeed::new("jane@forum.dev", "subscribed");
    seed.merge_fields.insert("FNAME".into(), json!("Jane"));
    seed.merge_fields.insert("LNAME".into(), json!("Doe"));
    api.fake.seed_member(LIST, seed);
    let reply = api
        .patch(
            &member_path("jane@forum.dev"),
            json!({"merge_fields": {"LNAME": "Roe"}, "language": "de"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["merge_fields"]["FNAME"], "Jane");
    assert_eq!(reply.body["merge_fields"]["LNAME"], "Roe");
    assert_eq!(reply.body["language"], "de");
    assert_eq!(reply.body["status"], "subscribed");
}

#[tokio::test]
async fn patch_missing_member_gives_404() {
    let api = Api::start().await;
    let reply = api
        .patch(
            &member_path("nobody@forum.dev"),
            json!({"status": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.title(), "Resource Not Found");
    assert_eq!(api.fake.members(LIST).len(), 0);
}

#[tokio::test]
async fn get_missing_member_gives_404() {
    let api = Api::start().await;
    let reply = api.get(&member_path("nobody@forum.dev")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.content_type,
        "application/problem+json; charset=utf-8"
    );
}

#[tokio::test]
async fn member_path_accepts_email_and_contact_id() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane+x@forum.dev", "subscribed"));
    let contact_id = api
        .fake
        .member(LIST, "jane+x@forum.dev")
        .unwrap()
        .contact_id;
    let hash = subscriber_hash("jane+x@forum.dev");
    for segment in [
        "Jane+X@Forum.dev",
        "jane%2Bx@forum.dev",
        contact_id.as_str(),
    ] {
        let reply = api.get(&format!("/lists/{LIST}/members/{segment}")).await;
        assert_eq!(reply.status, 200, "segment {segment}");
        assert_eq!(reply.body["id"], hash.as_str(), "segment {segment}");
    }
}

#[tokio::test]
async fn post_creates_then_member_exists() {
    let api = Api::start().await;
    let body = json!({"email_address": "jane@forum.dev", "status": "subscribed", "tags": ["a"]});
    let first = api
        .post(&format!("/lists/{LIST}/members"), body.clone())
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["status"], "subscribed");
    assert_eq!(first.body["tags"][0]["name"], "a");

    let second = api.post(&format!("/lists/{LIST}/members"), body).await;
    assert_eq!(second.status, 400);
    assert_eq!(second.title(), "Member Exists");
}

#[tokio::test]
async fn post_archived_member_exists() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("jane@forum.dev", "archived"));
    let reply = api
        .post(
            &format!("/lists/{LIST}/members"),
            json!({"email_address": "jane@forum.dev", "status": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Member Exists");
}

#[tokio::test]
async fn post_requires_email_and_status() {
    let api = Api::start().await;
    let path = format!("/lists/{LIST}/members");
    let missing_email = api.post(&path, json!({"status": "subscribed"})).await;
    assert_eq!(missing_email.status, 400);
    assert_eq!(
        missing_email.errors(),
        [(
            String::new(),
            "Required fields were not provided: email_address".to_string()
        )]
    );

    let missing_status = api
        .post(&path, json!({"email_address": "jane@forum.dev"}))
        .await;
    assert_eq!(missing_status.status, 400);
    assert_eq!(missing_status.errors()[0].0, "status");

    let invalid = api
        .post(
            &path,
            json!({"email_address": "jane@", "status": "subscribed"}),
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.detail(), "Please provide a valid email address.");
}

#[tokio::test]
async fn invalid_status_values_rejected() {
    let api = Api::start().await;
    for status in [json!("archived"), json!(""), json!("active"), json!(true)] {
        let reply = api
            .put(
                &member_path("jane@forum.dev"),
                json!({"email_address": "jane@forum.dev", "status": status}),
            )
            .await;
        assert_eq!(reply.status, 400, "status {status}");
        assert_eq!(reply.title(), "Invalid Resource");
        let errors = reply.errors();
        assert_eq!(errors[0].0, "status");
        assert!(
            errors[0]
                .1
                .starts_with("Data presented is not one of the accepted values"),
            "message {:?}",
            errors[0].1
        );
    }
    assert_eq!(api.fake.members(LIST).len(), 0);
}

#[tokio::test]
async fn fake_address_rejected_unless_allowed() {
    let api = Api::start().await;
    let body = |email: &str| json!({"email_address": email, "status_if_new": "subscribed"});
    for email in [
        "john.doe@example.com",
        "someone@EXAMPLE.org",
        "test+1@gmail.com",
    ] {
        let reply = api.put(&member_path(email), body(email)).await;
        assert_eq!(reply.status, 400, "{email}");
        assert_eq!(reply.title(), "Invalid Resource");
        assert_eq!(
            reply.detail(),
            format!("{email} looks fake or invalid, please enter a real email address.")
        );
    }

    api.fake.allow_address("John.Doe@example.com");
    let allowed = api
        .put(
            &member_path("john.doe@example.com"),
            body("john.doe@example.com"),
        )
        .await;
    assert_eq!(allowed.status, 200);
}

#[tokio::test]
async fn throttle_matches_plus_variants() {
    let config = FakeConfig {
        throttled_addresses: vec!["busy@forum.dev".to_string()],
        ..FakeConfig::default()
    };
    let api = Api::with(config).await;
    let reply = api
        .put(
            &member_path("Busy+5@forum.dev"),
            json!({"email_address": "Busy+5@forum.dev", "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Invalid Resource");
    assert_eq!(
        reply.detail(),
        "Busy+5@forum.dev has signed up to a lot of lists very recently; \
         we're not allowing more signups for now"
    );

    api.fake.throttle_address("calm@forum.dev");
    let later = api
        .post(
            &format!("/lists/{LIST}/members"),
            json!({"email_address": "calm@forum.dev", "status": "pending"}),
        )
        .await;
    assert_eq!(later.status, 400);
    assert!(later.detail().contains("signed up to a lot of lists"));
}

#[tokio::test]
async fn pending_create_sends_confirmation() {
    let api = Api::start().await;
    let reply = api
        .put(
            &member_path("jane@forum.dev"),
            json!({"email_address": "jane@forum.dev", "status_if_new": "pending"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        api.fake.events(),
        [FakeEvent::ConfirmationEmailSent {
            list_id: LIST.to_string(),
            email: "jane@forum.dev".to_string(),
        }]
    );
}

#[tokio::test]
async fn ids_repeat_with_same_seed() {
    let first = Api::start().await;
    let second = Api::start().await;
    let mut ids = Vec::new();
    for api in [&first, &second] {
        let reply = api
            .put(
                &member_path("jane@forum.dev"),
                json!({"email_address": "jane@forum.dev", "status_if_new": "subscribed"}),
            )
            .await;
        ids.push((
            reply.body["contact_id"].clone(),
            reply.body["unique_email_id"].clone(),
            reply.body["web_id"].clone(),
        ));
    }
    assert_eq!(ids[0], ids[1]);

    let other = Api::with(FakeConfig {
        id_seed: 99,
        ..FakeConfig::default()
    })
    .await;
    let reply = other
        .put(
            &member_path("jane@forum.dev"),
            json!({"email_address": "jane@forum.dev", "status_if_new": "subscribed"}),
        )
        .await;
    assert_ne!(reply.body["contact_id"], ids[0].0);
}

#[tokio::test]
async fn member_collection_lists_and_filters() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("a@forum.dev", "subscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::new("b@forum.dev", "unsubscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::new("c@forum.dev", "subscribed"));

    let all = api.get(&format!("/lists/{LIST}/members?count=2")).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.body["total_items"], 3);
    assert_eq!(all.body["members"].as_array().unwrap().len(), 2);

    let subscribed = api
        .get(&format!("/lists/{LIST}/members?status=subscribed&offset=1"))
        .await;
    assert_eq!(subscribed.body["total_items"], 2);
    assert_eq!(
        subscribed.body["members"][0]["email_address"],
        "c@forum.dev"
    );
}
