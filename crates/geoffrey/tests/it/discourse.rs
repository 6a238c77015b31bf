//! The Discourse client against the local fake Discourse: each method, the errors it maps,
//! rate limits, injected failures and the outbound guard.

use geoffrey::apps::AttemptError;
use geoffrey::config::OutboundSettings;
use geoffrey::discourse::markdown::escape_markdown;
use geoffrey::discourse::{DiscourseClient, DiscourseError, InviteOptions, NewPost, Rejection};
use geoffrey::instance::InstanceConfig;
use geoffrey::outbound::OutboundClient;
use geoffrey::secret::Secret;
use serde_json::json;
use std::time::Duration;
use testkit::discourse::{API_KEY, Failure, FakeCategory, FakeDiscourse, FakeGroup, Forum};
use testkit::geoffrey::outbound_client;

const TITLE: &str = "Volunteer application";
const BODY: &str = "Ada would like to help with the spring event.";

/// Builds a forum with one member who is not staff, `ada`, and one admin, `grace`.
fn forum() -> Forum {
    Forum {
        users: vec![
            json!({ "id": 2, "username": "ada", "email": "ada@forum-mail.test", "active": true }),
            json!({ "id": 3, "username": "grace", "email": "grace@forum-mail.test", "active": true, "admin": true }),
        ],
        ..Forum::default()
    }
}

/// Builds an instance configuration for `url` with `key`, acting as `username` (`system` if
/// none).
fn config(url: &str, key: &str, username: Option<&str>) -> InstanceConfig {
    InstanceConfig {
        discourse_url: url.to_string(),
        webhook_secret: Secret::default(),
        accept_unsigned: false,
        discourse_api_key: Some(Secret::new(key)),
        discourse_api_username: username.map(str::to_string),
        apps: Default::default(),
    }
}

fn created(post: NewPost) -> geoffrey::discourse::CreatedPost {
    match post {
        NewPost::Created(post) => post,
        NewPost::Enqueued { .. } => panic!("the post was enqueued"),
    }
}

fn rejection(error: DiscourseError) -> Rejection {
    match error {
        DiscourseError::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other}"),
    }
}

#[tokio::test]
async fn topic_is_created_in_its_category() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let post = created(client.create_topic(TITLE, BODY, Some(4)).await.unwrap());

    let topics = fake.topics();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].title, TITLE);
    assert_eq!(topics[0].raw, BODY);
    assert_eq!(topics[0].category_id, Some(4));
    assert_eq!(topics[0].username, "system");
    assert_eq!(post.topic_id, topics[0].topic_id);
    assert_eq!(post.post_id, topics[0].post_id);
    assert_eq!(post.post_number, 1);
    assert_eq!(post.topic_slug, "volunteer-application");
}

#[tokio::test]
async fn topic_without_category_is_uncategorized() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    client.create_topic(TITLE, BODY, None).await.unwrap();

    assert_eq!(fake.topics()[0].category_id, None);
}

#[tokio::test]
async fn short_title_and_body_are_rejected() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client
        .create_topic("Help", BODY, Some(4))
        .await
        .unwrap_err();
    let rejected = rejection(error);
    assert_eq!(rejected.status, 422);
    assert_eq!(
        rejected.errors,
        ["Title is too short (minimum is 15 characters)"]
    );

    let error = client
        .create_topic(TITLE, "Too short", Some(4))
        .await
        .unwrap_err();
    let rejected = rejection(error);
    assert_eq!(rejected.status, 422);
    assert_eq!(
        rejected.errors,
        ["Body is too short (minimum is 20 characters)"]
    );
    assert!(fake.topics().is_empty());
}

#[tokio::test]
async fn unknown_category_is_an_invalid_parameter() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client
        .create_topic(TITLE, BODY, Some(999))
        .await
        .unwrap_err();

    let rejected = rejection(error);
    assert_eq!(rejected.status, 400);
    assert_eq!(rejected.error_type.as_deref(), Some("invalid_parameters"));
    assert!(fake.topics().is_empty());
}

#[tokio::test]
async fn duplicate_title_is_rejected() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    client.create_topic(TITLE, BODY, Some(4)).await.unwrap();
    let other_body = "Grace would like to help with the spring event too.";
    let error = client
        .create_topic(&TITLE.to_uppercase(), other_body, Some(4))
        .await
        .unwrap_err();

    assert_eq!(rejection(error).errors, ["Title has already been used"]);
    assert_eq!(fake.topics().len(), 1);
}

#[tokio::test]
async fn identical_request_replays_first_post() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let first = created(client.create_topic(TITLE, BODY, Some(4)).await.unwrap());
    let again = created(client.create_topic(TITLE, BODY, Some(4)).await.unwrap());

    assert_eq!(first, again);
    assert_eq!(fake.topics().len(), 1);
}

#[tokio::test]
async fn repeated_body_is_rejected_for_members_only() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let http = outbound_client();
    let member_config = config(&fake.url, API_KEY, Some("ada"));
    let member = DiscourseClient::new(&member_config, &http).unwrap();
    let admin_config = config(&fake.url, API_KEY, Some("grace"));
    let admin = DiscourseClient::new(&admin_config, &http).unwrap();

    member.create_topic(TITLE, BODY, Some(4)).await.unwrap();
    let error = member
        .create_topic("Another application", BODY, Some(4))
        .await
        .unwrap_err();
    assert_eq!(
        rejection(error).errors,
        ["Body is too similar to what you recently posted"]
    );

    admin
        .create_topic("First admin topic", BODY, Some(4))
        .await
        .unwrap();
    admin
        .create_topic("Second admin topic", BODY, Some(4))
        .await
        .unwrap();
    let authors: Vec<String> = fake.topics().into_iter().map(|t| t.username).collect();
    assert_eq!(authors, ["ada", "grace", "grace"]);
}

#[tokio::test]
async fn private_message_reaches_users_and_groups() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let post = client
        .create_private_message("New application", BODY, &["Ada", "grace"], &["volunteers"])
        .await
        .unwrap();

    let messages = fake.private_messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].usernames, ["ada", "grace"]);
    assert_eq!(messages[0].group_names, ["volunteers"]);
    assert_eq!(messages[0].title, "New application");
    assert_eq!(messages[0].raw, BODY);
    assert_eq!(created(post).topic_id, messages[0].topic_id);
    assert!(fake.topics().is_empty(), "a message is not a topic");
}

#[tokio::test]
async fn unknown_recipients_are_rejected() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    let not_found = "One of the users you are sending this message to could not be found.";

    let error = client
        .create_private_message("New application", BODY, &["nobody"], &[])
        .await
        .unwrap_err();
    assert_eq!(rejection(error).errors, [not_found]);

    let error = client
        .create_private_message("New application", BODY, &[], &["no-such-group"])
        .await
        .unwrap_err();
    assert_eq!(rejection(error).errors, [not_found]);

    let error = client
        .create_private_message("New application", BODY, &[], &[])
        .await
        .unwrap_err();
    assert_eq!(rejection(error).errors, ["You must select a valid user."]);
    assert!(fake.private_messages().is_empty());
}

#[tokio::test]
async fn invite_is_created_and_renewed() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    let options = InviteOptions {
        group_names: vec!["volunteers".into()],
        custom_message: Some("Welcome aboard".into()),
        ..InviteOptions::default()
    };

    let invite = client
        .invite("New.Person@example.com", &options)
        .await
        .unwrap();
    let again = client
        .invite("new.person@example.com", &options)
        .await
        .unwrap();

    assert_eq!(invite.id, again.id, "the pending invite is renewed");
    assert_eq!(invite.email.as_deref(), Some("new.person@example.com"));
    assert!(invite.emailed);
    assert!(invite.link.starts_with(&fake.url), "{}", invite.link);
    let invites = fake.invites();
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].emails_sent, 2);
    assert_eq!(invites[0].group_names, ["volunteers"]);
    assert_eq!(invites[0].custom_message.as_deref(), Some("Welcome aboard"));
}

#[tokio::test]
async fn invite_without_email_sends_nothing() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    let options = InviteOptions {
        skip_email: true,
        topic_id: Some(7),
        ..InviteOptions::default()
    };

    let invite = client.invite("quiet@example.com", &options).await.unwrap();

    assert!(!invite.emailed);
    assert_eq!(fake.invites()[0].emails_sent, 0);
    assert_eq!(fake.invites()[0].topic_id, Some(7));
}

#[tokio::test]
async fn invite_for_existing_user_is_rejected() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client
        .invite("ADA@forum-mail.test", &InviteOptions::default())
        .await
        .unwrap_err();

    let rejected = rejection(error);
    assert_eq!(rejected.status, 422);
    assert!(
        rejected.errors[0].contains("they already have an account"),
        "{rejected}"
    );
    assert!(fake.invites().is_empty());
}

#[tokio::test]
async fn categories_include_subcategories() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let categories = client.categories().await.unwrap();

    let ids: Vec<u64> = categories.iter().map(|c| c.id).collect();
    assert_eq!(ids, [1, 4, 5, 6]);
    assert_eq!(categories[3].name, "Bugs");
    assert_eq!(categories[3].parent_category_id, Some(5));
}

#[tokio::test]
async fn long_category_list_ends_on_an_empty_page() {
    let mut forum = forum();
    for id in 100..125 {
        let name = format!("Area {id}");
        forum
            .categories
            .push(FakeCategory::new(id, &name, &format!("area-{id}")));
    }
    let fake = FakeDiscourse::start_with(forum).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let categories = client.categories().await.unwrap();

    assert_eq!(categories.len(), 29);
    assert_eq!(categories.last().map(|c| c.id), Some(124));
}

#[tokio::test]
async fn groups_are_read_across_pages() {
    let mut forum = forum();
    forum.settings.groups_per_page = 2;
    forum.groups.push(FakeGroup::new(42, "editors"));
    let fake = FakeDiscourse::start_with(forum).await;
    let http = outbound_client();
    let admin_config = config(&fake.url, API_KEY, None);
    let admin = DiscourseClient::new(&admin_config, &http).unwrap();
    let member_config = config(&fake.url, API_KEY, Some("ada"));
    let member = DiscourseClient::new(&member_config, &http).unwrap();

    let names: Vec<String> = admin
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        names,
        [
            "admins",
            "editors",
            "moderators",
            "staff",
            "trust_level_0",
            "volunteers"
        ]
    );

    let names: Vec<String> = member
        .groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["editors", "moderators", "volunteers"]);
}

#[tokio::test]
async fn rate_limit_reports_the_wait() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    fake.limit_requests(2, Duration::from_secs(30));

    client.categories().await.unwrap();
    client.groups().await.unwrap();
    let error = client.create_topic(TITLE, BODY, Some(4)).await.unwrap_err();

    let DiscourseError::RateLimited(wait) = &error else {
        panic!("expected a rate limit, got {error}");
    };
    let wait = *wait;
    assert!(
        (Duration::from_secs(29)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
    assert!(matches!(error.attempt_error(), AttemptError::Transient(_)));
    assert!(fake.topics().is_empty());
}

#[tokio::test]
async fn forced_rate_limit_waits_one_second() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    fake.rate_limit(1);

    let error = client.groups().await.unwrap_err();
    assert!(
        matches!(error, DiscourseError::RateLimited(wait) if wait == Duration::from_secs(1)),
        "{error}"
    );
    client.groups().await.unwrap();
}

#[tokio::test]
async fn wrong_key_is_a_configuration_error() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, "wrong-key", None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client.create_topic(TITLE, BODY, Some(4)).await.unwrap_err();

    let DiscourseError::Configuration(message) = &error else {
        panic!("expected a configuration error, got {error}");
    };
    assert!(message.contains("invalid_access"), "{message}");
    assert!(message.contains("discourse_api_key"), "{message}");
    assert!(matches!(
        error.attempt_error(),
        AttemptError::Configuration(_)
    ));
    assert!(fake.topics().is_empty());
}

#[tokio::test]
async fn unknown_username_is_a_configuration_error() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (
        config(&fake.url, API_KEY, Some("nobody")),
        outbound_client(),
    );
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client.categories().await.unwrap_err();

    assert!(matches!(error, DiscourseError::Configuration(_)), "{error}");
}

#[tokio::test]
async fn wrong_base_path_is_a_configuration_error() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let url = format!("{}/forum", fake.url);
    let (config, http) = (config(&url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client.categories().await.unwrap_err();

    let DiscourseError::Configuration(message) = &error else {
        panic!("expected a configuration error, got {error}");
    };
    assert!(message.contains("discourse_url"), "{message}");
}

#[tokio::test]
async fn missing_key_is_reported_before_any_request() {
    let mut config = config("http://127.0.0.1:9", API_KEY, None);
    config.discourse_api_key = None;
    let http = outbound_client();

    let error = DiscourseClient::new(&config, &http).err().expect("no key");

    assert!(matches!(error, DiscourseError::MissingKey));
    assert!(matches!(
        error.attempt_error(),
        AttemptError::Configuration(_)
    ));
}

#[tokio::test]
async fn server_error_is_transient() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    fake.fail_next("/posts.json", Failure::Status(500));

    let error = client.create_topic(TITLE, BODY, Some(4)).await.unwrap_err();
    assert!(matches!(error, DiscourseError::Transient(_)), "{error}");
    assert!(fake.topics().is_empty());

    client.create_topic(TITLE, BODY, Some(4)).await.unwrap();
    assert_eq!(fake.topics().len(), 1, "the retry succeeds");
}

#[tokio::test]
async fn dropped_connection_is_transient() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    fake.fail_next("/posts.json", Failure::DropConnection);

    let error = client
        .create_private_message("New application", BODY, &["ada"], &[])
        .await
        .unwrap_err();
    assert!(matches!(error, DiscourseError::Transient(_)), "{error}");
    assert!(fake.private_messages().is_empty());

    client
        .create_private_message("New application", BODY, &["ada"], &[])
        .await
        .unwrap();
    assert_eq!(fake.private_messages().len(), 1, "the retry succeeds");
}

#[tokio::test]
async fn private_address_is_rejected_by_the_outbound_guard() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let config = config(&fake.url, API_KEY, None);
    let http = OutboundClient::new(&OutboundSettings::default(), Duration::from_secs(2)).unwrap();
    let client = DiscourseClient::new(&config, &http).unwrap();

    let error = client.create_topic(TITLE, BODY, Some(4)).await.unwrap_err();

    let DiscourseError::Configuration(message) = &error else {
        panic!("expected a configuration error, got {error}");
    };
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(message.contains("outbound.allowed_networks"), "{message}");
    assert!(fake.topics().is_empty());
}

#[tokio::test]
async fn escaped_value_is_posted_as_given() {
    let fake = FakeDiscourse::start_with(forum()).await;
    let (config, http) = (config(&fake.url, API_KEY, None), outbound_client());
    let client = DiscourseClient::new(&config, &http).unwrap();
    let answer = escape_markdown("@staff see [this](https://evil.example) #general");
    let raw = format!("**Answer:** {answer}");

    client.create_topic(TITLE, &raw, Some(4)).await.unwrap();

    assert_eq!(fake.topics()[0].raw, raw);
}
