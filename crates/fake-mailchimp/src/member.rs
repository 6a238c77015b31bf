//! Members: the stored record with its hidden compliance state, the member resource it renders
//! to, and the public views ([`Member`], [`MemberSeed`]) that tests read and write.

use crate::ids::MemberIds;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Tags listed in a member resource, as on the real API. `tags_count` has the full count.
const MAX_LISTED_TAGS: usize = 50;

/// Member status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Subscribed,
    Unsubscribed,
    Cleaned,
    Pending,
    Transactional,
    /// Set by DELETE only. Writes cannot send it.
    Archived,
}

impl Status {
    /// Accepted values of `status` and `status_if_new` in writes, as listed in errors.
    pub(crate) const WRITABLE: &str = "subscribed, unsubscribed, cleaned, pending, transactional";

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Subscribed => "subscribed",
            Self::Unsubscribed => "unsubscribed",
            Self::Cleaned => "cleaned",
            Self::Pending => "pending",
            Self::Transactional => "transactional",
            Self::Archived => "archived",
        }
    }

    /// Parses any status, including `archived`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "archived" => Some(Self::Archived),
            other => Self::parse_writable(other),
        }
    }

    /// Parses a status that a write may send, so not `archived`.
    pub(crate) fn parse_writable(text: &str) -> Option<Self> {
        match text {
            "subscribed" => Some(Self::Subscribed),
            "unsubscribed" => Some(Self::Unsubscribed),
            "cleaned" => Some(Self::Cleaned),
            "pending" => Some(Self::Pending),
            "transactional" => Some(Self::Transactional),
            _ => None,
        }
    }
}

/// Origin of an unsubscribe. It decides whether the API may subscribe the member again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnsubscribedBy {
    /// The contact clicked an unsubscribe link. Only a confirmed opt-in (`pending`) brings
    /// them back.
    Contact,
    Api,
    Admin,
}

impl UnsubscribedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "self",
            Self::Api => "api",
            Self::Admin => "admin",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "self" => Some(Self::Contact),
            "api" => Some(Self::Api),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// One tag on a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagEntry {
    pub id: u64,
    pub name: String,
    pub date_added: String,
}

/// A stored member, including the state the real API keeps but does not return.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Creation order, for listing.
    pub seq: u64,
    /// The address as the client sent it, trimmed. Its hash is the record's key.
    pub email: String,
    pub status: Status,
    /// Status before DELETE archived the member.
    pub archived_from: Option<Status>,
    pub unsubscribed_by: Option<UnsubscribedBy>,
    /// Blocks `subscribed` whatever the status, as a compliance review does.
    pub compliance_block: bool,
    pub merge_fields: Map<String, Value>,
    pub tags: Vec<TagEntry>,
    pub ids: MemberIds,
    /// Fields the fake stores and echoes without rules of its own.
    pub echoed: Map<String, Value>,
    pub timestamp_opt: String,
    pub last_changed: String,
}

/// Fields a write may set that the fake only stores and returns, with their defaults.
pub(crate) fn echoed_defaults() -> Map<String, Value> {
    let defaults = json!({
        "email_type": "html",
        "language": "",
        "vip": false,
        "interests": {},
        "marketing_permissions": [],
        "ip_signup": "",
        "timestamp_signup": "",
        "ip_opt": "",
        "location": {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0,
                     "country_code": "", "timezone": ""},
    });
    match defaults {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

impl Record {
    fn full_name(&self) -> String {
        let part = |tag: &str| {
            self.merge_fields
                .get(tag)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let names = [part("FNAME"), part("LNAME")];
        names
            .iter()
            .filter(|name| !name.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn tag_names(&self) -> Vec<String> {
        self.tags.iter().map(|tag| tag.name.clone()).collect()
    }

    /// Renders the member resource the API returns.
    pub(crate) fn to_json(&self, hash: &str, list_id: &str) -> Value {
        let listed_tags: Vec<Value> = self
            .tags
            .iter()
            .take(MAX_LISTED_TAGS)
            .map(|tag| json!({"id": tag.id, "name": tag.name}))
            .collect();
        let mut member = json!({
            "id": hash,
            "email_address": self.email,
            "unique_email_id": self.ids.unique_email_id,
            "contact_id": self.ids.contact_id,
            "full_name": self.full_name(),
            "web_id": self.ids.web_id,
            "status": self.status.as_str(),
            "consents_to_one_to_one_messaging": true,
            "merge_fields": self.merge_fields,
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "timestamp_opt": self.timestamp_opt,
            "member_rating": 2,
            "last_changed": self.last_changed,
            "email_client": "",
            "source": "API - Generic",
            "tags_count": self.tags.len(),
            "tags": listed_tags,
            "list_id": list_id,
            "_links": [],
        });
        if let Value::Object(fields) = &mut member {
            for (key, value) in &self.echoed {
                fields.insert(key.clone(), value.clone());
            }
            if self.status == Status::Unsubscribed {
                fields.insert("unsubscribe_reason".to_string(), json!(""));
            }
        }
        member
    }

    /// Returns the public view of this record.
    pub(crate) fn to_member(&self, hash: &str, list_id: &str) -> Member {
        Member {
            id: hash.to_string(),
            list_id: list_id.to_string(),
            email: self.email.clone(),
            status: self.status.as_str().to_string(),
            merge_fields: self.merge_fields.clone(),
            tags: self.tag_names(),
            unsubscribed_by: self.unsubscribed_by.map(|by| by.as_str().to_string()),
            compliance_block: self.compliance_block,
            archived_from: self.archived_from.map(|status| status.as_str().to_string()),
            contact_id: self.ids.contact_id.clone(),
            unique_email_id: self.ids.unique_email_id.clone(),
            web_id: self.ids.web_id,
            extra: self.echoed.clone(),
        }
    }
}

/// A member as tests see it, including the state the API does not return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// Subscriber hash.
    pub id: String,
    pub list_id: String,
    /// The address as the client sent it. Only the hash is derived from the lower-cased form.
    pub email: String,
    /// `subscribed`, `unsubscribed`, `cleaned`, `pending`, `transactional` or `archived`.
    pub status: String,
    pub merge_fields: Map<String, Value>,
    /// Tag names in the order they were added.
    pub tags: Vec<String>,
    /// `self`, `api` or `admin` while the member is unsubscribed, and after it was archived
    /// from that state.
    pub unsubscribed_by: Option<String>,
    pub compliance_block: bool,
    /// Status before the member was archived.
    pub archived_from: Option<String>,
    pub contact_id: String,
    pub unique_email_id: String,
    pub web_id: u64,
    /// Stored fields without rules of their own: `email_type`, `language`, `vip`,
    /// `interests`, `marketing_permissions`, `ip_signup`, `timestamp_signup`, `ip_opt`,
    /// `location`.
    pub extra: Map<String, Value>,
}

/// A member placed directly into a list, past all API rules.
///
/// `status` may be any member status, plus `forgotten`, which puts the address on the list's
/// forgotten set as a permanent delete does. An `archived` seed counts as archived from
/// `subscribed`. An `unsubscribed` seed without `unsubscribed_by` counts as unsubscribed by
/// the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberSeed {
    pub email: String,
    pub status: String,
    /// `self`, `api` or `admin`.
    pub unsubscribed_by: Option<String>,
    pub merge_fields: Map<String, Value>,
    pub tags: Vec<String>,
}

impl MemberSeed {
    /// Creates a seed without merge fields or tags.
    pub fn new(email: impl Into<String>, status: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            status: status.into(),
            ..Self::default()
        }
    }

    /// Creates a seed of a member who unsubscribed themselves.
    pub fn self_unsubscribed(email: impl Into<String>) -> Self {
        Self {
            unsubscribed_by: Some("self".to_string()),
            ..Self::new(email, "unsubscribed")
        }
    }
}
