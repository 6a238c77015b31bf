//! The in-memory state of one fake server, shared by the HTTP handlers, the request gate and
//! the test-facing handle. One mutex guards all of it. Every operation takes the lock briefly
//! and releases it before any `.await`.

use crate::config::{Behaviour, FakeConfig, ListConfig};
use crate::ids::{IdGenerator, is_md5_hex, now_timestamp, subscriber_hash};
use crate::inject::ArmedInjection;
use crate::member::Record;
use crate::observe::{FakeEvent, LoggedRequest};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Configuration plus mutable state.
pub(crate) struct Shared {
    pub config: FakeConfig,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(config: FakeConfig) -> Self {
        let state = State::new(&config);
        Self {
            config,
            state: Mutex::new(state),
        }
    }

    /// Locks the state. A panic while the lock was held leaves plain data behind, so a
    /// poisoned lock is used as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the state to the configuration, keeping the count of requests now in flight so
    /// that their completion still balances it.
    pub(crate) fn reset(&self) {
        let mut state = self.lock();
        let in_flight = std::mem::take(&mut state.in_flight);
        *state = State::new(&self.config);
        state.in_flight = in_flight;
    }
}

pub(crate) struct State {
    pub behaviour: Behaviour,
    pub lists: BTreeMap<String, ListState>,
    /// Lower-cased addresses exempt from the fake-address denylist.
    pub allowed: HashSet<String>,
    /// Addresses without `+tag`, lower-cased, that hit the signup throttle.
    pub throttled: HashSet<String>,
    pub ids: IdGenerator,
    /// Logged requests, each with the sequence number the gate uses to record its status.
    pub requests: Vec<(u64, LoggedRequest)>,
    pub events: Vec<FakeEvent>,
    pub injections: Vec<ArmedInjection>,
    /// API requests in flight per account.
    pub in_flight: HashMap<String, usize>,
    pub max_in_flight: usize,
    next_request_seq: u64,
    next_member_seq: u64,
}

impl State {
    fn new(config: &FakeConfig) -> Self {
        let lists = config
            .lists
            .iter()
            .enumerate()
            .map(|(index, list)| (list.id.clone(), ListState::new(list.clone(), index)))
            .collect();
        let throttled = config
            .throttled_addresses
            .iter()
            .map(|email| crate::address::base_address(email))
            .collect();
        Self {
            behaviour: config.behaviour,
            lists,
            allowed: HashSet::new(),
            throttled,
            ids: IdGenerator::new(config.id_seed),
            requests: Vec::new(),
            events: Vec::new(),
            injections: Vec::new(),
            in_flight: HashMap::new(),
            max_in_flight: 0,
            next_request_seq: 0,
            next_member_seq: 0,
        }
    }

    pub(crate) fn next_member_seq(&mut self) -> u64 {
        self.next_member_seq += 1;
        self.next_member_seq
    }

    /// Appends a request to the log and returns its sequence number.
    pub(crate) fn log_request(&mut self, request: LoggedRequest) -> u64 {
        self.next_request_seq += 1;
        self.requests.push((self.next_request_seq, request));
        self.next_request_seq
    }

    /// Records the response status of a logged request. Does nothing if a reset removed it.
    pub(crate) fn set_request_status(&mut self, seq: u64, status: u16) {
        if let Some((_, request)) = self.requests.iter_mut().rev().find(|(s, _)| *s == seq) {
            request.status = status;
        }
    }

    pub(crate) fn confirmation_sent(&mut self, list_id: &str, email: &str) {
        self.events.push(FakeEvent::ConfirmationEmailSent {
            list_id: list_id.to_string(),
            email: email.to_string(),
        });
    }
}

/// One list with its members.
pub(crate) struct ListState {
    pub config: ListConfig,
    /// Members by subscriber hash.
    pub members: HashMap<String, Record>,
    /// Hashes of permanently deleted addresses.
    pub forgotten: HashSet<String>,
    /// Tag ids by name, shared by all members of the list.
    pub tag_ids: HashMap<String, u64>,
    pub web_id: u64,
    pub date_created: String,
}

impl ListState {
    fn new(config: ListConfig, index: usize) -> Self {
        Self {
            config,
            members: HashMap::new(),
            forgotten: HashSet::new(),
            tag_ids: HashMap::new(),
            web_id: 10_000 + index as u64,
            date_created: now_timestamp(),
        }
    }

    /// Resolves a member path segment to the hash of a stored member. A 32-hex segment is a
    /// hash in either case, and is tried as a `contact_id` when no member has that hash. A
    /// segment with `@` is an address. Anything else is a `contact_id`.
    pub(crate) fn resolve(&self, segment: &str) -> Option<String> {
        if segment.contains('@') {
            let hash = subscriber_hash(segment);
            return self.members.contains_key(&hash).then_some(hash);
        }
        let lower = segment.trim().to_lowercase();
        if is_md5_hex(&lower) && self.members.contains_key(&lower) {
            return Some(lower);
        }
        self.members
            .iter()
            .find(|(_, record)| record.ids.contact_id == lower)
            .map(|(hash, _)| hash.clone())
    }

    /// Returns the id of a tag name, creating one for a new name.
    pub(crate) fn tag_id(&mut self, name: &str) -> u64 {
        let next = self.tag_ids.len() as u64 + 1;
        *self.tag_ids.entry(name.to_string()).or_insert(next)
    }

    /// Returns the members in creation order.
    pub(crate) fn members_in_order(&self) -> Vec<(&String, &Record)> {
        let mut members: Vec<_> = self.members.iter().collect();
        members.sort_by_key(|(_, record)| record.seq);
        members
    }
}
