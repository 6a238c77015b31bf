//! A local fake of the Mailchimp Marketing API v3, for Geoffrey's tests and README
//! walk-through. It serves plain HTTP on loopback, keeps its state in memory, and reproduces
//! the rules and error responses that clients of the real API trip over.
//!
//! ```no_run
//! # async fn example() {
//! use fake_mailchimp::{FakeConfig, FakeMailchimp, MemberSeed};
//!
//! let fake = FakeMailchimp::start(FakeConfig::default()).await;
//! fake.seed_member("aud1", MemberSeed::self_unsubscribed("jane@forum.dev"));
//! // Point the client at fake.base_url() with fake.api_key(), then assert on
//! // fake.member("aud1", "jane@forum.dev"), fake.requests() and fake.events().
//! # }
//! ```
//!
//! # What is modelled
//!
//! - Authentication by Basic with any user and the key as password, `apikey <key>`, or
//!   `Bearer <key or token>`. Failures give API Key Missing, API Key Invalid (also for a key
//!   of another data centre) or User Disabled.
//! - A per-account limit on requests in flight (default 10). A request over it gets 429 at
//!   once, or a bare 429 or 403 (see [`Behaviour`]).
//! - `GET /3.0/ping`, `GET /3.0/lists/{id}` with live member counts, `GET …/merge-fields`.
//! - Members: GET, POST, PUT (upsert with `status_if_new`), PATCH, DELETE (archive),
//!   `actions/delete-permanent` with the list's forgotten set, the member collection, and the
//!   tags endpoint. A member path segment may be the subscriber hash, the address or the
//!   `contact_id`.
//! - Status rules with a hidden `unsubscribed_by` and compliance block, email changes, merge
//!   field validation, the fake-address denylist and the signup throttle.
//! - Batch subscribe (`POST /3.0/lists/{id}`) with per-item errors.
//! - Unknown routes give 404 Resource Not Found, a wrong method 405 with an `Allow` header.
//! - Failure injection, a request log, events and a control API under `/_fake`.
//!
//! Errors are `application/problem+json` bodies with `type`, `title`, `status`, `detail`,
//! `instance` and, for Invalid Resource, `errors`. Ids are deterministic for a given
//! [`FakeConfig::id_seed`].
//!
//! # What is not modelled
//!
//! - Batch operations (`/3.0/batches`): these paths get 404 like any unknown route.
//! - Interests, marketing permissions (only echoed), campaigns, webhooks, ecommerce, the
//!   accuracy of statistics, and `fields` / `exclude_fields` (accepted and ignored).
//! - A request whose client went away stops counting as in flight at once, but the real API
//!   may count such connections as open for a while.
//! - Tags sent in batch subscribe are applied, but only the tags endpoint records tag
//!   automation events.

mod address;
mod batch;
mod config;
mod control;
mod http;
mod ids;
mod inject;
mod input;
mod member;
mod merge_fields;
mod observe;
mod problem;
mod removal;
mod rules;
mod server;
mod state;
mod tags;

pub use config::{
    ApiKey, Behaviour, DEFAULT_API_KEY, FakeConfig, ListConfig, MergeField, OverLimitResponse,
};
pub use control::ControlError;
pub use ids::subscriber_hash;
pub use inject::{Failure, Injection};
pub use member::{Member, MemberSeed};
pub use observe::{FakeEvent, LoggedRequest};
pub use server::FakeMailchimp;
