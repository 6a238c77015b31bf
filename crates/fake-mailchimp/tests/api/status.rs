//! Status transitions: compliance state, re-subscribing, pending and unsubscribing.

use crate::common::{Api, LIST, member_path};
use fake_mailchimp::{Behaviour, FakeEvent, MemberSeed};
use serde_json::json;

const JANE: &str = "jane@forum.dev";

fn compliance_detail(email: &str) -> String {
    format!(
        "{email} is in a compliance state due to unsubscribe, bounce, or compliance review and \
         cannot be subscribed."
    )
}

#[tokio::test]
async fn self_unsubscribed_resubscribe_rejected() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed(JANE));

    let put = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status": "subscribed"}),
        )
        .await;
    assert_eq!(put.status, 400);
    assert_eq!(put.title(), "Member In Compliance State");
    assert_eq!(put.detail(), compliance_detail(JANE));

    let patch = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(patch.status, 400);
    assert_eq!(patch.title(), "Member In Compliance State");

    let member = api.fake.member(LIST, JANE).unwrap();
    assert_eq!(member.status, "unsubscribed");
    assert_eq!(member.unsubscribed_by.as_deref(), Some("self"));
}

#[tokio::test]
async fn rejected_write_changes_nothing() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed(JANE));
    let reply = api
        .patch(
            &member_path(JANE),
            json!({"status": "subscribed", "merge_fields": {"FNAME": "Jane"}}),
        )
        .await;
    assert_eq!(reply.status, 400);
    let member = api.fake.member(LIST, JANE).unwrap();
    assert_eq!(member.merge_fields["FNAME"], "");
}

#[tokio::test]
async fn unsubscribe_event_then_resubscribe_rejected() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    api.fake.unsubscribe_by_self(LIST, JANE);
    let reply = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(reply.title(), "Member In Compliance State");
}

#[tokio::test]
async fn cleaned_resubscribe_rejected() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    api.fake.bounce(LIST, JANE);
    assert_eq!(api.status_of(JANE).as_deref(), Some("cleaned"));
    let reply = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Member In Compliance State");
}

#[tokio::test]
async fn compliance_block_rejects_subscribe() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "transactional"));
    api.fake.set_compliance_block(LIST, JANE, true);
    let blocked = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(blocked.title(), "Member In Compliance State");

    api.fake.set_compliance_block(LIST, JANE, false);
    let allowed = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.body["status"], "subscribed");
}

#[tokio::test]
async fn api_unsubscribed_resubscribe_allowed() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    let unsubscribe = api
        .patch(&member_path(JANE), json!({"status": "unsubscribed"}))
        .await;
    assert_eq!(unsubscribe.status, 200);
    assert_eq!(unsubscribe.body["status"], "unsubscribed");
    let member = api.fake.member(LIST, JANE).unwrap();
    assert_eq!(member.unsubscribed_by.as_deref(), Some("api"));

    let resubscribe = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(resubscribe.status, 200);
    assert_eq!(resubscribe.body["status"], "subscribed");
    assert_eq!(api.fake.member(LIST, JANE).unwrap().unsubscribed_by, None);
}

#[tokio::test]
async fn strict_switch_rejects_api_unsubscribed() {
    let api = Api::start().await;
    api.fake.set_behaviour(Behaviour {
        strict_resubscribe: true,
        ..Behaviour::default()
    });
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    api.fake.unsubscribe_by_admin(LIST, JANE);
    let reply = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.title(), "Member In Compliance State");
}

#[tokio::test]
async fn unsubscribe_keeps_self_origin() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed(JANE));
    let reply = api
        .patch(&member_path(JANE), json!({"status": "unsubscribed"}))
        .await;
    assert_eq!(reply.status, 200);
    let member = api.fake.member(LIST, JANE).unwrap();
    assert_eq!(member.unsubscribed_by.as_deref(), Some("self"));
}

#[tokio::test]
async fn pending_on_subscribed_sends_confirmation() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    let reply = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status": "pending"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(
        api.fake.events(),
        [FakeEvent::ConfirmationEmailSent {
            list_id: LIST.to_string(),
            email: JANE.to_string(),
        }]
    );
}

#[tokio::test]
async fn pending_reopts_in_self_unsubscribed() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed(JANE));
    let reply = api
        .patch(&member_path(JANE), json!({"status": "pending"}))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(api.fake.events().len(), 1);

    api.fake.confirm(LIST, JANE);
    assert_eq!(api.status_of(JANE).as_deref(), Some("subscribed"));
}

#[tokio::test]
async fn archived_resubscribe_follows_prior_status() {
    let api = Api::start().await;
    let other = "john@forum.dev";
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "subscribed"));
    api.fake
        .seed_member(LIST, MemberSeed::self_unsubscribed(other));
    api.fake.archive(LIST, JANE);
    api.fake.archive(LIST, other);

    let allowed = api
        .patch(&member_path(JANE), json!({"status": "subscribed"}))
        .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.body["status"], "subscribed");

    let rejected = api
        .patch(&member_path(other), json!({"status": "subscribed"}))
        .await;
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.title(), "Member In Compliance State");
    assert_eq!(api.status_of(other).as_deref(), Some("archived"));
}

#[tokio::test]
async fn archived_stays_archived_without_status() {
    let api = Api::start().await;
    api.fake
        .seed_member(LIST, MemberSeed::new(JANE, "archived"));
    let reply = api
        .put(
            &member_path(JANE),
            json!({"email_address": JANE, "status_if_new": "subscribed"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "archived");
}
