//! Email changes by PUT or PATCH to the old hash with a new `email_address`.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{MemberSeed, subscriber_hash};
use serde_json::json;

const OLD: &str = "old@forum.dev";
const NEW: &str = "New@Forum.dev";

#[tokio::test]
async fn change_rekeys_member() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(OLD, "subscribed"));
    let contact_id = api.fake.member(LIST, OLD).unwrap().contact_id;

    let reply = api
        .patch(&member_path(OLD), json!({"email_address": NEW}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], subscriber_hash(NEW).as_str());
    assert_eq!(reply.body["email_address"], NEW);
    assert_eq!(reply.body["contact_id"], contact_id.as_str());

    assert_eq!(api.get(&member_path(OLD)).await.status, 404);
    assert_eq!(api.get(&member_path(NEW)).await.status, 200);
    assert_eq!(api.fake.members(LIST).len(), 1);
}

#[tokio::test]
async fn change_by_put_rekeys_member() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(OLD, "subscribed"));
    let reply = api
        .put(
            &member_path(OLD),
            json!({"email_address": NEW, "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], subscriber_hash(NEW).as_str());
    assert_eq!(api.fake.member(LIST, OLD), None);
}

#[tokio::test]
async fn change_refused_unless_subscribed() {
    let api = Api::start().await;
    for status in ["cleaned", "unsubscribed", "pending", "archived"] {
        api.fake.reset();
        api.fake.seed_member(LIST, MemberSeed::new(OLD, status));
        let reply = api
            .patch(&member_path(OLD), json!({"email_address": NEW}))
            .await;
        assert_eq!(reply.status, 400, "status {status}");
        assert_eq!(reply.title(), "Invalid Resource");
        assert_eq!(
            reply.errors(),
            [(
                "email address".to_string(),
                format!(
                    "This member's status is \"{status}.\" You can only update email addresses \
                     for members with a status of \"subscribed.\""
                )
            )],
        );
        assert_eq!(api.fake.member(LIST, OLD).unwrap().email, OLD);
    }
}

#[tokio::test]
async fn change_refused_when_address_taken() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(OLD, "subscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::new("new@forum.dev", "archived"));
    let reply = api
        .patch(&member_path(OLD), json!({"email_address": NEW}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Invalid Resource");
    assert_eq!(
        reply.errors()[0].1,
        "\"New@Forum.dev\" is already in this list with a status of \"archived\"."
    );
    assert_eq!(api.status_of(OLD).as_deref(), Some("subscribed"));
}

#[tokio::test]
async fn change_to_forgotten_address_refused() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(OLD, "subscribed"));
    api.fake.admin_delete_permanent(LIST, NEW);
    let reply = api
        .patch(&member_path(OLD), json!({"email_address": NEW}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Forgotten Email Not Subscribed");
}

#[tokio::test]
async fn case_only_change_keeps_hash() {
    let api = Api::start().await;
    api.fake.seed_member(LIST, MemberSeed::new(OLD, "cleaned"));
    let reply = api
        .patch(&member_path(OLD), json!({"email_address": "OLD@forum.dev"}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["id"], subscriber_hash(OLD).as_str());
    assert_eq!(reply.body["email_address"], "OLD@forum.dev");
}
