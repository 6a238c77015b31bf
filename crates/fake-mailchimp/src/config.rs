//! Configuration of one fake server: API keys, lists, limits, address predicates and the
//! switches that choose between behaviours the real API has not pinned down.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// The key that [`FakeConfig::default`] accepts. Its suffix `us6` is the default data centre.
pub const DEFAULT_API_KEY: &str = "0123456789abcdef0123456789abcdef-us6";

/// Everything a fake server starts from. [`FakeMailchimp::reset`](crate::FakeMailchimp::reset)
/// returns the server to this state.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Data centre of this fake. A key whose suffix names another data centre is rejected with
    /// 401 API Key Invalid, as the real API does for a key sent to the wrong host.
    pub dc: String,
    /// Keys (and OAuth tokens) the fake accepts or, when marked so, rejects.
    pub keys: Vec<ApiKey>,
    /// Lists (audiences) that exist from the start.
    pub lists: Vec<ListConfig>,
    /// Maximum number of API requests in flight per account. The next one gets 429.
    pub concurrency_limit: usize,
    /// Delay added to every API request while it counts as in flight.
    pub response_delay: Duration,
    /// Account id of each key, for the concurrency limit. A key not listed here is an account
    /// of its own.
    pub key_accounts: HashMap<String, String>,
    /// Domains whose addresses are rejected as fake ("looks fake or invalid").
    pub fake_domains: Vec<String>,
    /// Local parts (before `@`, without a `+tag`) rejected as fake on any domain.
    pub fake_local_parts: Vec<String>,
    /// Addresses rejected with "signed up to a lot of lists very recently". An address also
    /// matches when only its `+tag` differs.
    pub throttled_addresses: Vec<String>,
    /// Seed for member ids, request ids and problem `instance` values. Two fakes with the same
    /// seed and the same requests hand out the same ids.
    pub id_seed: u64,
    /// Switches for behaviours that are uncertain on the real API.
    pub behaviour: Behaviour,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            dc: "us6".to_string(),
            keys: vec![ApiKey::valid(DEFAULT_API_KEY)],
            lists: vec![ListConfig::default()],
            concurrency_limit: 10,
            response_delay: Duration::ZERO,
            key_accounts: HashMap::new(),
            fake_domains: ["example.com", "example.org", "test.com"]
                .map(String::from)
                .to_vec(),
            fake_local_parts: ["test", "fake"].map(String::from).to_vec(),
            throttled_addresses: Vec::new(),
            id_seed: 1,
            behaviour: Behaviour::default(),
        }
    }
}

/// One API key or OAuth token.
///
/// A key of the form `<32 hex>-<dc>` works with every auth scheme. A key without a `-<dc>`
/// suffix is treated as an OAuth token and is accepted only as `Authorization: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key: String,
    /// `false` gives 401 API Key Invalid, as for a revoked key.
    pub valid: bool,
    /// `true` gives 403 User Disabled, as for a disabled account.
    pub disabled: bool,
}

impl ApiKey {
    /// Creates a key that authenticates.
    pub fn valid(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            valid: true,
            disabled: false,
        }
    }

    /// Creates a configured key that is rejected as invalid, like a revoked one.
    pub fn revoked(key: impl Into<String>) -> Self {
        Self {
            valid: false,
            ..Self::valid(key)
        }
    }

    /// Creates a key whose account is disabled.
    pub fn disabled(key: impl Into<String>) -> Self {
        Self {
            disabled: true,
            ..Self::valid(key)
        }
    }
}

/// One list (audience).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConfig {
    pub id: String,
    pub name: String,
    /// Reported in the list object only. API writes create members with the status they send,
    /// so a client that wants a confirmation email sends `pending`.
    pub double_optin: bool,
    pub merge_fields: Vec<MergeField>,
}

impl Default for ListConfig {
    fn default() -> Self {
        Self {
            id: "aud1".to_string(),
            name: "Forum members".to_string(),
            double_optin: false,
            merge_fields: vec![MergeField::text("FNAME"), MergeField::text("LNAME")],
        }
    }
}

impl ListConfig {
    /// Creates a list with the default merge fields FNAME and LNAME.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            ..Self::default()
        }
    }
}

/// One merge field of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeField {
    /// Merge tag, such as `FNAME`. Tags are matched case-sensitively.
    pub tag: String,
    /// Mailchimp field type: `text`, `number`, `address`, `phone`, `date`, `birthday`, `url`,
    /// `imageurl`, `zip`, `dropdown` or `radio`. `number` takes numbers, `address` takes an
    /// object, the others take strings. An unknown type takes any value.
    pub kind: String,
    pub required: bool,
}

impl MergeField {
    /// Creates an optional text field.
    pub fn text(tag: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            kind: "text".to_string(),
            required: false,
        }
    }

    /// Creates a required field of the given type.
    pub fn required(tag: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            kind: kind.into(),
            required: true,
        }
    }
}

/// Switches for cases where the real API's behaviour is uncertain or has changed over time,
/// so that clients can be tested against each variant. Tests can change them while the server
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// Response to a request over the concurrency limit.
    pub over_limit: OverLimitResponse,
    /// Also reject `subscribed` with Member In Compliance State for members that the API or an
    /// admin unsubscribed. By default only self-unsubscribed members are rejected.
    pub strict_resubscribe: bool,
    /// Return 404 for DELETE on an already archived member. By default it gets 204 again.
    pub archived_delete_not_found: bool,
    /// Return 204 for DELETE on a cleaned member but leave it unchanged, as reported for the
    /// real API. When `false`, cleaned members are archived like the others.
    pub cleaned_delete_ignored: bool,
    /// Reject a malformed tags body with 400 Invalid Resource. By default it gets 204 and
    /// nothing changes, as on the real API.
    pub strict_tags: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            over_limit: OverLimitResponse::Problem,
            strict_resubscribe: false,
            archived_delete_not_found: false,
            cleaned_delete_ignored: true,
            strict_tags: false,
        }
    }
}

/// Response to a request over the concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimitResponse {
    /// 429 Too Many Requests with a problem+json body.
    Problem,
    /// 429 with an empty body, as the limiter sends under heavy load.
    Bare429,
    /// 403 with an empty body, as the limiter sends under heavy load.
    Bare403,
}
