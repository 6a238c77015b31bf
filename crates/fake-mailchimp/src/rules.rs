//! The rules of member writes: creation checks, partial updates, status transitions and
//! email changes. POST, PUT, PATCH and batch subscribe all go through [`Writer`].
//!
//! Status rules, which keep a hidden `unsubscribed_by` and `compliance_block` per member:
//! - `subscribed` is rejected with 400 Member In Compliance State for a member who
//!   unsubscribed themselves, a cleaned member, or one under a compliance block. A member the
//!   API or an admin unsubscribed may be subscribed again unless
//!   [`Behaviour::strict_resubscribe`](crate::Behaviour::strict_resubscribe) is set. An
//!   archived member is judged by its status before archiving.
//! - `pending` is always accepted and records a confirmation email, also for a member who is
//!   already subscribed (the real API demotes them the same way).
//! - `unsubscribed` is always accepted and records `unsubscribed_by = api`, unless the member
//!   was already unsubscribed, in which case the original origin is kept.

use crate::address;
use crate::config::FakeConfig;
use crate::ids::{now_timestamp, subscriber_hash};
use crate::input::MemberInput;
use crate::member::{Record, Status, TagEntry, UnsubscribedBy, echoed_defaults};
use crate::merge_fields::{self, WriteKind};
use crate::problem::{FieldError, Problem};
use crate::state::{ListState, State};

/// Source of a new member's status in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateStatus {
    /// POST: `status` is required.
    Status,
    /// PUT and batch subscribe: `status_if_new`, falling back to `status`.
    StatusIfNew,
}

/// Treatment of the body's `tags` in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagUpdate {
    /// PUT and PATCH ignore tags for existing members, as the real API has done.
    Ignore,
    /// Batch subscribe with `update_existing` adds the tags.
    Add,
    /// Batch subscribe with `sync_tags` replaces the tag set with the tags sent.
    Replace,
}

/// Applies member writes to one list.
pub(crate) struct Writer<'a> {
    pub config: &'a FakeConfig,
    pub state: &'a mut State,
    pub list_id: &'a str,
    pub skip_merge_validation: bool,
}

impl Writer<'_> {
    fn list(&self) -> Result<&ListState, Problem> {
        self.state
            .lists
            .get(self.list_id)
            .ok_or_else(Problem::not_found)
    }

    fn list_mut(&mut self) -> Result<&mut ListState, Problem> {
        self.state
            .lists
            .get_mut(self.list_id)
            .ok_or_else(Problem::not_found)
    }

    fn looks_fake(&self, email: &str) -> bool {
        !self.state.allowed.contains(&email.to_lowercase())
            && address::looks_fake(
                email,
                &self.config.fake_domains,
                &self.config.fake_local_parts,
            )
    }

    /// Creates a member from `input` and returns its hash. Checks run in this order: schema,
    /// forgotten address, existing member, fake address, signup throttle, merge fields.
    pub(crate) fn create(
        &mut self,
        input: &MemberInput,
        rule: CreateStatus,
    ) -> Result<String, Problem> {
        let email = valid_email(input)?;
        let status = creation_status(input, rule)?;
        let hash = subscriber_hash(email);

        let list = self.list()?;
        if list.forgotten.contains(&hash) {
            return Err(Problem::forgotten(email));
        }
        if list.members.contains_key(&hash) {
            return Err(Problem::member_exists(email));
        }
        if self.looks_fake(email) {
            return Err(Problem::invalid_field(
                "email_address",
                address::looks_fake_message(email),
            ));
        }
        if self.state.throttled.contains(&address::base_address(email)) {
            return Err(Problem::invalid_field(
                "email_address",
                address::throttled_message(email),
            ));
        }
        let merge_values = merge_fields::validate(
            &list.config.merge_fields,
            input.merge_fields.as_ref(),
            WriteKind::Create,
            self.skip_merge_validation,
        )?;

        let mut all_values = serde_json::Map::new();
        for field in &list.config.merge_fields {
            all_values.insert(field.tag.clone(), merge_fields::blank_value());
        }
        all_values.extend(merge_values);
        let mut echoed = echoed_defaults();
        echoed.extend(input.echoed.clone());
        let now = now_timestamp();
        let record = Record {
            seq: self.state.next_member_seq(),
            email: email.to_string(),
            status,
            archived_from: None,
            unsubscribed_by: (status == Status::Unsubscribed).then_some(UnsubscribedBy::Api),
            compliance_block: false,
            merge_fields: all_values,
            tags: Vec::new(),
            ids: self.state.ids.next_member(),
            echoed,
            timestamp_opt: now.clone(),
            last_changed: now,
        };

        let list = self.list_mut()?;
        list.members.insert(hash.clone(), record);
        add_tags(list, &hash, input.tags.as_deref().unwrap_or_default());
        if status == Status::Pending {
            self.state.confirmation_sent(self.list_id, email);
        }
        Ok(hash)
    }

    /// Updates the member stored under `hash` with the fields present in `input` and returns
    /// its hash, which differs from `hash` after an email change. `status_if_new` is ignored.
    pub(crate) fn update(
        &mut self,
        hash: &str,
        input: &MemberInput,
        tags: TagUpdate,
    ) -> Result<String, Problem> {
        let list = self.list()?;
        let record = list.members.get(hash).ok_or_else(Problem::not_found)?;
        let new_hash = match &input.email_address {
            Some(email) => self.check_email_change(list, hash, record, email)?,
            None => hash.to_string(),
        };
        if let Some(target) = input.status {
            check_transition(record, target, self.state.behaviour.strict_resubscribe)?;
        }
        let merge_values = merge_fields::validate(
            &list.config.merge_fields,
            input.merge_fields.as_ref(),
            WriteKind::Update,
            self.skip_merge_validation,
        )?;

        let list = self.list_mut()?;
        let Some(mut record) = list.members.remove(hash) else {
            return Err(Problem::not_found());
        };
        if let Some(email) = &input.email_address {
            record.email = email.clone();
        }
        if let Some(target) = input.status {
            apply_status(&mut record, target);
        }
        record.merge_fields.extend(merge_values);
        record.echoed.extend(input.echoed.clone());
        record.last_changed = now_timestamp();
        let email = record.email.clone();
        list.members.insert(new_hash.clone(), record);

        match (tags, input.tags.as_deref()) {
            (TagUpdate::Ignore, _) | (_, None) => {}
            (TagUpdate::Add, Some(names)) => {
                add_tags(list, &new_hash, names);
            }
            (TagUpdate::Replace, Some(names)) => {
                if let Some(record) = list.members.get_mut(&new_hash) {
                    record.tags.retain(|tag| names.contains(&tag.name));
                }
                add_tags(list, &new_hash, names);
            }
        }
        if input.status == Some(Status::Pending) {
            self.state.confirmation_sent(self.list_id, &email);
        }
        Ok(new_hash)
    }

    /// Checks a body address against the member's and returns the hash the member will have.
    /// A different hash is an email change, allowed only for a subscribed member and only to
    /// an address that is not in the list in any status.
    fn check_email_change(
        &self,
        list: &ListState,
        hash: &str,
        record: &Record,
        email: &str,
    ) -> Result<String, Problem> {
        if !address::is_valid(email) {
            return Err(Problem::invalid_field(
                "email_address",
                address::INVALID_EMAIL,
            ));
        }
        let new_hash = subscriber_hash(email);
        if new_hash == hash {
            return Ok(new_hash);
        }
        if record.status != Status::Subscribed {
            return Err(Problem::invalid(vec![FieldError::new(
                "email address",
                format!(
                    "This member's status is \"{}.\" You can only update email addresses for \
                     members with a status of \"subscribed.\"",
                    record.status.as_str()
                ),
            )]));
        }
        if let Some(other) = list.members.get(&new_hash) {
            return Err(Problem::invalid(vec![FieldError::new(
                "email_address",
                format!(
                    "\"{email}\" is already in this list with a status of \"{}\".",
                    other.status.as_str()
                ),
            )]));
        }
        if list.forgotten.contains(&new_hash) {
            return Err(Problem::forgotten(email));
        }
        if self.looks_fake(email) {
            return Err(Problem::invalid_field(
                "email_address",
                address::looks_fake_message(email),
            ));
        }
        Ok(new_hash)
    }
}

fn valid_email(input: &MemberInput) -> Result<&str, Problem> {
    let Some(email) = input.email_address.as_deref() else {
        return Err(Problem::invalid(vec![FieldError::new(
            "",
            "Required fields were not provided: email_address",
        )]));
    };
    if !address::is_valid(email) {
        return Err(Problem::invalid_field(
            "email_address",
            address::INVALID_EMAIL,
        ));
    }
    Ok(email)
}

fn creation_status(input: &MemberInput, rule: CreateStatus) -> Result<Status, Problem> {
    let (status, missing_field) = match rule {
        CreateStatus::Status => (input.status, "status"),
        CreateStatus::StatusIfNew => (input.status_if_new.or(input.status), "status_if_new"),
    };
    status.ok_or_else(|| {
        Problem::invalid(vec![FieldError::new(
            missing_field,
            format!("Required fields were not provided: {missing_field}"),
        )])
    })
}

/// Returns the status that decides whether `subscribed` is allowed: for an archived member,
/// its status before archiving.
fn status_before_archive(record: &Record) -> Status {
    match record.status {
        Status::Archived => record.archived_from.unwrap_or(Status::Subscribed),
        status => status,
    }
}

/// Rejects a change to `subscribed` that the compliance rules forbid.
pub(crate) fn check_transition(
    record: &Record,
    target: Status,
    strict_resubscribe: bool,
) -> Result<(), Problem> {
    if target != Status::Subscribed || record.status == Status::Subscribed {
        return Ok(());
    }
    let unsubscribed_blocks = match record.unsubscribed_by {
        Some(UnsubscribedBy::Contact) => true,
        Some(UnsubscribedBy::Api | UnsubscribedBy::Admin) | None => strict_resubscribe,
    };
    let blocked = record.compliance_block
        || match status_before_archive(record) {
            Status::Cleaned => true,
            Status::Unsubscribed => unsubscribed_blocks,
            _ => false,
        };
    if blocked {
        Err(Problem::compliance_state(&record.email))
    } else {
        Ok(())
    }
}

/// Sets a status that [`check_transition`] accepted.
pub(crate) fn apply_status(record: &mut Record, target: Status) {
    let before = status_before_archive(record);
    if target == Status::Unsubscribed {
        if before != Status::Unsubscribed || record.unsubscribed_by.is_none() {
            record.unsubscribed_by = Some(UnsubscribedBy::Api);
        }
    } else {
        record.unsubscribed_by = None;
    }
    if target == Status::Subscribed && record.status != Status::Subscribed {
        record.timestamp_opt = now_timestamp();
    }
    record.status = target;
    record.archived_from = None;
}

/// Adds tags by name to a member, skipping names it already has.
pub(crate) fn add_tags(list: &mut ListState, hash: &str, names: &[String]) -> Vec<String> {
    let mut added = Vec::new();
    for name in names {
        let has_tag = list
            .members
            .get(hash)
            .is_some_and(|record| record.tags.iter().any(|tag| &tag.name == name));
        if has_tag {
            continue;
        }
        let id = list.tag_id(name);
        if let Some(record) = list.members.get_mut(hash) {
            record.tags.push(TagEntry {
                id,
                name: name.clone(),
                date_added: now_timestamp(),
            });
            added.push(name.clone());
        }
    }
    added
}
