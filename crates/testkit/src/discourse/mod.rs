//! A local fake of the parts of Discourse's REST API that Geoffrey uses: the admin user list,
//! `POST /posts.json` for topics and private messages, `POST /invites.json`, and the category
//! and group lists.
//!
//! It checks `Api-Key` and `Api-Username` and applies the validations and limits that
//! `docs/discourse-api.md` describes: minimum and maximum lengths, unknown categories and
//! recipients, duplicate titles, repeated bodies from users who are not staff, the replay of
//! an identical post request within 120 seconds, existing users and renewed invites, and a
//! rate limit of requests per window, which responds with 429, `Retry-After` and
//! `extras.wait_seconds`. Its error bodies have Discourse's shape and its English messages,
//! so tests can match them. Tests read what was created ([`FakeDiscourse::topics`],
//! [`FakeDiscourse::private_messages`], [`FakeDiscourse::invites`]) and inject failures
//! ([`FakeDiscourse::fail_next`]).
//!
//! It accepts JSON request bodies only, where Discourse also takes form fields, and it does
//! not check titles and bodies for entropy or censored words.

// The handlers' helpers return a finished response as their error, which keeps each check a
// single early return. Its size does not matter in a test server.
#![allow(clippy::result_large_err)]

mod connection;
mod gate;
mod posts;
mod routes;

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Users per page of the admin user list, as in Discourse.
pub const PAGE_SIZE: usize = 100;

/// The API key that [`Forum::default`] accepts.
pub const API_KEY: &str = "discourse-api-key";

/// Site settings that the fake's validations use, with Discourse's defaults.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    pub min_topic_title_length: usize,
    pub max_topic_title_length: usize,
    pub min_first_post_length: usize,
    pub min_personal_message_title_length: usize,
    pub min_personal_message_post_length: usize,
    pub max_post_length: usize,
    pub allow_duplicate_topic_titles: bool,
    /// Minutes during which a user who is not staff may not post the same body again.
    pub unique_posts_mins: u64,
    /// Groups per page of `/groups.json` (36 in Discourse's desktop view).
    pub groups_per_page: usize,
}

impl Default for SiteSettings {
    fn default() -> Self {
        Self {
            min_topic_title_length: 15,
            max_topic_title_length: 255,
            min_first_post_length: 20,
            min_personal_message_title_length: 2,
            min_personal_message_post_length: 10,
            max_post_length: 32_000,
            allow_duplicate_topic_titles: false,
            unique_posts_mins: 5,
            groups_per_page: 36,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCategory {
    pub id: u64,
    pub name: String,
    pub slug: String,
    pub parent_category_id: Option<u64>,
    pub read_restricted: bool,
}

impl FakeCategory {
    pub fn new(id: u64, name: &str, slug: &str) -> Self {
        Self {
            id,
            name: name.to_string(),
            slug: slug.to_string(),
            parent_category_id: None,
            read_restricted: false,
        }
    }

    pub fn child_of(mut self, parent: u64) -> Self {
        self.parent_category_id = Some(parent);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGroup {
    pub id: u64,
    pub name: String,
    pub automatic: bool,
    pub user_count: u64,
    /// Whether the API user may send the group a private message. A group it may not message
    /// is taken for a username, as Discourse does, and so is not found.
    pub messageable: bool,
}

impl FakeGroup {
    pub fn new(id: u64, name: &str) -> Self {
        Self {
            id,
            name: name.to_string(),
            automatic: false,
            user_count: 0,
            messageable: true,
        }
    }

    pub fn automatic(mut self) -> Self {
        self.automatic = true;
        self
    }
}

/// The forum the fake serves.
#[derive(Debug, Clone)]
pub struct Forum {
    pub api_key: String,
    /// Users as the admin list returns them, oldest first. A user needs `username` to act as
    /// `Api-Username` or receive messages. An invite to a user's `email` fails. With
    /// `"admin": true` or `"moderator": true` the user is staff. The admin `system` always
    /// exists.
    pub users: Vec<Value>,
    pub categories: Vec<FakeCategory>,
    pub groups: Vec<FakeGroup>,
    pub settings: SiteSettings,
}

impl Default for Forum {
    /// Builds a forum with [`API_KEY`], no users besides `system`, the categories
    /// Uncategorized (1), General (4), Support (5) with Bugs (6) below it, and the groups
    /// `admins` (1), `moderators` (2), `staff` (3), `trust_level_0` (10) and `volunteers` (41).
    fn default() -> Self {
        Self {
            api_key: API_KEY.to_string(),
            users: Vec::new(),
            categories: vec![
                FakeCategory::new(1, "Uncategorized", "uncategorized"),
                FakeCategory::new(4, "General", "general"),
                FakeCategory::new(5, "Support", "support"),
                FakeCategory::new(6, "Bugs", "bugs").child_of(5),
            ],
            groups: vec![
                FakeGroup::new(1, "admins").automatic(),
                FakeGroup::new(2, "moderators").automatic(),
                FakeGroup::new(3, "staff").automatic(),
                FakeGroup::new(10, "trust_level_0").automatic(),
                FakeGroup::new(41, "volunteers"),
            ],
            settings: SiteSettings::default(),
        }
    }
}

/// A failure to inject into the next request for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Responds with this status and a plain-text body.
    Status(u16),
    /// Closes the connection after reading the request, without a response.
    DropConnection,
}

/// A topic created through `POST /posts.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FakeTopic {
    pub topic_id: u64,
    pub post_id: u64,
    pub title: String,
    pub raw: String,
    pub category_id: Option<u64>,
    /// The `Api-Username` that created it.
    pub username: String,
}

/// A private message created through `POST /posts.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FakePrivateMessage {
    pub topic_id: u64,
    pub post_id: u64,
    pub title: String,
    pub raw: String,
    pub usernames: Vec<String>,
    pub group_names: Vec<String>,
    pub username: String,
}

/// An invite created through `POST /invites.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FakeInvite {
    pub id: u64,
    pub email: String,
    pub group_names: Vec<String>,
    pub topic_id: Option<u64>,
    pub custom_message: Option<String>,
    /// How many times the invitation email was sent: one per request without `skip_email`.
    pub emails_sent: u32,
    pub invited_by: String,
}

/// A response kept for replay, because Discourse responds to an identical post request from
/// the same user within 120 seconds with the first response.
struct Replay {
    signature: String,
    at: Instant,
    status: u16,
    body: Value,
}

struct State {
    /// The fake's base URL, for the invite links it returns.
    url: String,
    forum: Forum,
    /// Number of coming requests that get 429 with a one-second wait.
    forced_rate_limits: usize,
    /// Maximum requests per window, like Discourse's limit of admin API requests.
    limit: Option<(usize, Duration)>,
    /// Times of the requests that counted against `limit`, oldest first.
    counted: VecDeque<Instant>,
    failures: Vec<(String, Failure)>,
    pages: Vec<usize>,
    topics: Vec<FakeTopic>,
    private_messages: Vec<FakePrivateMessage>,
    invites: Vec<FakeInvite>,
    replays: Vec<Replay>,
    /// Bodies posted by users who are not staff, with the time, for the repeated-body check.
    recent_bodies: Vec<(String, String, Instant)>,
    next_id: u64,
}

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

type Shared = Arc<Mutex<State>>;

#[derive(Clone)]
pub struct FakeDiscourse {
    pub url: String,
    shared: Shared,
}

impl FakeDiscourse {
    /// Starts the fake on 127.0.0.1 with these users, oldest first, accepting `api_key`, and
    /// the categories and groups of [`Forum::default`].
    pub async fn start(users: Vec<Value>, api_key: &str) -> Self {
        let forum = Forum {
            api_key: api_key.to_string(),
            users,
            ..Forum::default()
        };
        Self::start_with(forum).await
    }

    /// Starts the fake on 127.0.0.1 serving `forum`.
    pub async fn start_with(forum: Forum) -> Self {
        Self::start_on(forum, "127.0.0.1:0").await
    }

    /// Starts the fake on `address` serving `forum`.
    pub async fn start_on(forum: Forum, address: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(State {
            url: url.clone(),
            forum,
            forced_rate_limits: 0,
            limit: None,
            counted: VecDeque::new(),
            failures: Vec::new(),
            pages: Vec::new(),
            topics: Vec::new(),
            private_messages: Vec::new(),
            invites: Vec::new(),
            replays: Vec::new(),
            recent_bodies: Vec::new(),
            next_id: 100,
        }));
        let app = routes::router(shared.clone())
            .into_make_service_with_connect_info::<connection::Connection>();
        let listener = connection::CuttableListener(listener);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap()
    }

    /// Rejects the next `count` requests with 429 and a one-second wait.
    pub fn rate_limit(&self, count: usize) {
        self.state().forced_rate_limits = count;
    }

    /// Allows at most `max` authenticated requests in any `window`, as Discourse limits
    /// admin API keys (60 a minute by default). A request over the limit gets 429 with the
    /// seconds until the oldest counted request leaves the window, and does not count.
    pub fn limit_requests(&self, max: usize, window: Duration) {
        let mut state = self.state();
        state.limit = Some((max, window));
        state.counted.clear();
    }

    /// Makes the next request whose path is `path` (such as `/posts.json`) fail with
    /// `failure`, before any check. Several failures for one path apply in order.
    pub fn fail_next(&self, path: &str, failure: Failure) {
        self.state().failures.push((path.to_string(), failure));
    }

    /// Returns the admin user list pages requested so far, in order.
    pub fn pages(&self) -> Vec<usize> {
        self.state().pages.clone()
    }

    pub fn topics(&self) -> Vec<FakeTopic> {
        self.state().topics.clone()
    }

    pub fn private_messages(&self) -> Vec<FakePrivateMessage> {
        self.state().private_messages.clone()
    }

    pub fn invites(&self) -> Vec<FakeInvite> {
        self.state().invites.clone()
    }
}
