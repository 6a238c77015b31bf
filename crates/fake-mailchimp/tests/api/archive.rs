//! Archive by DELETE, permanent delete and the forgotten set.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{Behaviour, MemberSeed};
use serde_json::json;

const JANE: &str = "jane@forum.dev";

fn forgotten_detail(email: &str) -> String {
    format!(
        "{email} was permanently deleted and cannot be re-imported. The contact must \
         re-subscribe to get back on the list."
    )
}

#[tokio::test]
async fn delete_archives_member() {
    let api = Api::start().await;
    api.fake.seed_member(LIST, MemberSeed::new(JANE, "pending"));
    let reply = api.delete(&member_path(JANE)).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.text, "");

    let get = api.get(&member_path(JANE)).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body["status"], "archived");
    let member = api.fake.member(LIST, JANE).unwrap();
    assert_eq!(member.archived_from.as_deref(), Some("pending"));
}

#[tokio::test]
async fn repeat_delete_gives_204_or_404() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    assert_eq!(api.delete(&member_path(JANE)).await.status, 204);
    assert_eq!(api.delete(&member_path(JANE)).await.status, 204);
    assert_eq!(
        api.fake
            .member(LIST, JANE)
            .unwrap()
            .archived_from
            .as_deref(),
        Some("subscribed")
    );

    api.fake.set_behaviour(Behaviour {
        archived_delete_not_found: true,
        ..Behaviour::default()
    });
    let reply = api.delete(&member_path(JANE)).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.title(), "Resource Not Found");
}

#[tokio::test]
async fn delete_missing_member_gives_404() {
    let api = Api::start().await;
    let reply = api.delete(&member_path("nobody@forum.dev")).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn delete_cleaned_changes_nothing() {
    let api = Api::start().await;
    api.fake.seed_member(LIST, MemberSeed::new(JANE, "cleaned"));
    assert_eq!(api.delete(&member_path(JANE)).await.status, 204);
    assert_eq!(api.status_of(JANE).as_deref(), Some("cleaned"));

    api.fake.set_behaviour(Behaviour {
        cleaned_delete_ignored: false,
        ..Behaviour::default()
    });
    assert_eq!(api.delete(&member_path(JANE)).await.status, 204);
    assert_eq!(api.status_of(JANE).as_deref(), Some("archived"));
}

#[tokio::test]
async fn delete_permanent_forgets_address() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    let path = format!("{}/actions/delete-permanent", member_path(JANE));
    let reply = api.post(&path, json!({})).await;
    assert_eq!(reply.status, 204);
    assert_eq!(api.get(&member_path(JANE)).await.status, 404);
    assert_eq!(api.fake.member(LIST, JANE), None);

    for status in ["pending", "subscribed", "unsubscribed"] {
        let put = api
            .put(
                &member_path(JANE),
                json!({"email_address": JANE, "status_if_new": status}),
            )
            .await;
        assert_eq!(put.status, 400, "PUT with {status}");
        assert_eq!(put.title(), "Forgotten Email Not Subscribed");
        assert_eq!(put.detail(), forgotten_detail(JANE));
    }
    let post = api
        .post(
            &format!("/lists/{LIST}/members"),
            json!({"email_address": "Jane@Forum.dev", "status": "pending"}),
        )
        .await;
    assert_eq!(post.status, 400);
    assert_eq!(post.title(), "Forgotten Email Not Subscribed");
}

#[tokio::test]
async fn delete_permanent_unknown_gives_404() {
    let api = Api::start().await;
    let path = format!(
        "{}/actions/delete-permanent",
        member_path("nobody@forum.dev")
    );
    assert_eq!(api.post(&path, json!({})).await.status, 404);
}

#[tokio::test]
async fn admin_delete_and_forgotten_seed() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    api.fake.admin_delete_permanent(LIST, JANE);
    api.fake
        .seed_member(LIST, MemberSeed::new("gone@forum.dev", "forgotten"));
    for email in [JANE, "gone@forum.dev"] {
        let reply = api
            .put(
                &member_path(email),
                json!({"email_address": email, "status_if_new": "subscribed"}),
            )
            .await;
        assert_eq!(reply.title(), "Forgotten Email Not Subscribed", "{email}");
    }
}

#[tokio::test]
async fn list_counts_are_live() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new("a@forum.dev", "subscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::new("b@forum.dev", "subscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::new("c@forum.dev", "unsubscribed"));
    let before = api.get(&format!("/lists/{LIST}")).await;
    assert_eq!(before.body["stats"]["member_count"], 2);
    assert_eq!(before.body["stats"]["unsubscribe_count"], 1);

    api.delete(&member_path("a@forum.dev")).await;
    api.patch(
        &member_path("b@forum.dev"),
        json!({"status": "unsubscribed"}),
    )
    .await;
    let after = api
        .get(&format!("/lists/{LIST}?include_total_contacts=true"))
        .await;
    assert_eq!(after.body["stats"]["member_count"], 0);
    assert_eq!(after.body["stats"]["unsubscribe_count"], 2);
    assert_eq!(after.body["stats"]["total_contacts"], 3);
}
