//! Test controls on the state: seeding members and simulating what happens on Mailchimp's
//! side (a contact unsubscribes, an email bounces, a confirmation is clicked, an admin
//! deletes). None of these go through the API rules.

use crate::address;
use crate::config::FakeConfig;
use crate::ids::{now_timestamp, subscriber_hash};
use crate::member::{Member, MemberSeed, Record, Status, UnsubscribedBy, echoed_defaults};
use crate::merge_fields;
use crate::removal::mark_archived;
use crate::rules::add_tags;
use crate::state::{ListState, State};

/// A test control that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("list {0:?} is not configured in the fake")]
    UnknownList(String),
    #[error("no member {email:?} in list {list_id:?}")]
    UnknownMember { list_id: String, email: String },
    #[error(
        "invalid seed status {0:?}. Use subscribed, unsubscribed, cleaned, pending, \
         transactional, archived or forgotten"
    )]
    InvalidStatus(String),
    #[error("invalid unsubscribed_by {0:?}. Use self, api or admin")]
    InvalidUnsubscribedBy(String),
    #[error("member {email:?} is {status}, not pending, so there is nothing to confirm")]
    NotPending { email: String, status: String },
}

/// A simulated change to one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simulation {
    /// The contact clicked an unsubscribe link.
    UnsubscribeByContact,
    /// An admin unsubscribed the contact in the Mailchimp app.
    UnsubscribeByAdmin,
    /// A hard bounce: the member becomes cleaned.
    Bounce,
    /// The contact clicked the confirmation link: pending becomes subscribed.
    Confirm,
    /// An admin archived the member. Unlike DELETE, this ignores the behaviour switches.
    Archive,
    /// A compliance review blocks `subscribed` for this member.
    BlockCompliance,
    /// The compliance block is lifted.
    UnblockCompliance,
}

impl State {
    fn list_for_control(&mut self, list_id: &str) -> Result<&mut ListState, ControlError> {
        self.lists
            .get_mut(list_id)
            .ok_or_else(|| ControlError::UnknownList(list_id.to_string()))
    }

    /// Places a member into a list, replacing any member with the same address.
    pub(crate) fn seed(&mut self, list_id: &str, seed: &MemberSeed) -> Result<(), ControlError> {
        let hash = subscriber_hash(&seed.email);
        if seed.status == "forgotten" {
            let list = self.list_for_control(list_id)?;
            list.members.remove(&hash);
            list.forgotten.insert(hash);
            return Ok(());
        }
        let status = Status::parse(&seed.status)
            .ok_or_else(|| ControlError::InvalidStatus(seed.status.clone()))?;
        let unsubscribed_by = match seed.unsubscribed_by.as_deref() {
            Some(text) => Some(
                UnsubscribedBy::parse(text)
                    .ok_or_else(|| ControlError::InvalidUnsubscribedBy(text.to_string()))?,
            ),
            None if status == Status::Unsubscribed => Some(UnsubscribedBy::Api),
            None => None,
        };
        let list = self.list_for_control(list_id)?;
        let mut merge_values = serde_json::Map::new();
        for field in &list.config.merge_fields {
            merge_values.insert(field.tag.clone(), merge_fields::blank_value());
        }
        merge_values.extend(seed.merge_fields.clone());

        let now = now_timestamp();
        let record = Record {
            seq: self.next_member_seq(),
            email: seed.email.trim().to_string(),
            status,
            archived_from: (status == Status::Archived).then_some(Status::Subscribed),
            unsubscribed_by,
            compliance_block: false,
            merge_fields: merge_values,
            tags: Vec::new(),
            ids: self.ids.next_member(),
            echoed: echoed_defaults(),
            timestamp_opt: now.clone(),
            last_changed: now,
        };
        let list = self.list_for_control(list_id)?;
        list.forgotten.remove(&hash);
        list.members.insert(hash.clone(), record);
        add_tags(list, &hash, &seed.tags);
        Ok(())
    }

    /// Applies a simulated change to the member with this address.
    pub(crate) fn simulate(
        &mut self,
        list_id: &str,
        email: &str,
        simulation: Simulation,
    ) -> Result<(), ControlError> {
        let list = self.list_for_control(list_id)?;
        let Some(record) = list.members.get_mut(&subscriber_hash(email)) else {
            return Err(ControlError::UnknownMember {
                list_id: list_id.to_string(),
                email: email.to_string(),
            });
        };
        match simulation {
            Simulation::UnsubscribeByContact => {
                unsubscribe(record, UnsubscribedBy::Contact);
            }
            Simulation::UnsubscribeByAdmin => unsubscribe(record, UnsubscribedBy::Admin),
            Simulation::Bounce => {
                record.status = Status::Cleaned;
                record.archived_from = None;
                record.unsubscribed_by = None;
            }
            Simulation::Confirm if record.status == Status::Pending => {
                record.status = Status::Subscribed;
                record.timestamp_opt = now_timestamp();
            }
            Simulation::Confirm => {
                return Err(ControlError::NotPending {
                    email: record.email.clone(),
                    status: record.status.as_str().to_string(),
                });
            }
            Simulation::Archive => mark_archived(record),
            Simulation::BlockCompliance => record.compliance_block = true,
            Simulation::UnblockCompliance => record.compliance_block = false,
        }
        record.last_changed = now_timestamp();
        Ok(())
    }

    /// Deletes a member as an admin would and adds the address to the forgotten set. Works also
    /// when the address is not in the list, to model one deleted before the test started.
    pub(crate) fn admin_delete_permanent(
        &mut self,
        list_id: &str,
        email: &str,
    ) -> Result<(), ControlError> {
        let hash = subscriber_hash(email);
        let list = self.list_for_control(list_id)?;
        list.members.remove(&hash);
        list.forgotten.insert(hash);
        Ok(())
    }

    /// Exempts an address from the fake-address denylist.
    pub(crate) fn allow_address(&mut self, email: &str) {
        self.allowed.insert(email.trim().to_lowercase());
    }

    /// Puts an address, and every `+tag` variant of it, on the signup throttle.
    pub(crate) fn throttle_address(&mut self, email: &str) {
        self.throttled.insert(address::base_address(email));
    }

    pub(crate) fn member(&self, list_id: &str, email: &str) -> Option<Member> {
        let list = self.lists.get(list_id)?;
        let hash = subscriber_hash(email);
        list.members
            .get(&hash)
            .map(|record| record.to_member(&hash, list_id))
    }

    pub(crate) fn members(&self, list_id: &str) -> Vec<Member> {
        self.lists
            .get(list_id)
            .map(|list| {
                list.members_in_order()
                    .into_iter()
                    .map(|(hash, record)| record.to_member(hash, list_id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn unsubscribe(record: &mut Record, by: UnsubscribedBy) {
    record.status = Status::Unsubscribed;
    record.archived_from = None;
    record.unsubscribed_by = Some(by);
}

/// Returns the config's first key, or an empty string when none is configured.
pub(crate) fn first_key(config: &FakeConfig) -> String {
    config
        .keys
        .first()
        .map(|key| key.key.clone())
        .unwrap_or_default()
}
