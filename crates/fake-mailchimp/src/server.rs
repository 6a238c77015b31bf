//! [`FakeMailchimp`]: a running fake server and the Rust side of its test controls.

use crate::config::{Behaviour, FakeConfig};
use crate::control::{ControlError, Simulation, first_key};
use crate::http::connection::{ClosableListener, ConnectionHandle};
use crate::inject::{self, Injection};
use crate::member::{Member, MemberSeed};
use crate::observe::{FakeEvent, LoggedRequest};
use crate::state::Shared;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A fake Marketing API server running on a tokio runtime.
///
/// Clones share the server. It stops serving once the last clone is dropped, after open
/// requests finish. The control methods panic on a list or member that does not exist,
/// because that is a mistake in the test.
#[derive(Clone)]
pub struct FakeMailchimp {
    inner: Arc<Running>,
}

struct Running {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    /// Dropping the sender stops the server.
    _shutdown: oneshot::Sender<()>,
}

impl FakeMailchimp {
    /// Starts a server on 127.0.0.1 on a free port.
    ///
    /// # Panics
    /// If no port on 127.0.0.1 can be bound.
    pub async fn start(config: FakeConfig) -> FakeMailchimp {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::bind(loopback, config)
            .await
            .expect("the fake Mailchimp server needs a free port on 127.0.0.1")
    }

    /// Starts a server on `addr`. Port 0 picks a free port.
    pub async fn bind(addr: SocketAddr, config: FakeConfig) -> std::io::Result<FakeMailchimp> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = crate::http::router(shared.clone())
            .into_make_service_with_connect_info::<ConnectionHandle>();
        let (shutdown, stopped) = oneshot::channel::<()>();

        tokio::spawn(async move {
            let server = axum::serve(ClosableListener::new(listener), app).with_graceful_shutdown(
                async move {
                    let _ = stopped.await;
                },
            );
            if let Err(error) = server.await {
                tracing::error!(%error, %local_addr, "fake Mailchimp server failed");
            }
        });
        tracing::info!(%local_addr, "fake Mailchimp server started");

        Ok(FakeMailchimp {
            inner: Arc::new(Running {
                shared,
                local_addr,
                _shutdown: shutdown,
            }),
        })
    }

    /// Returns the address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Returns the base URL without the API version, such as `http://127.0.0.1:41234`.
    /// Clients append `/3.0/...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.local_addr)
    }

    /// Returns the first configured key, or an empty string when none is configured.
    pub fn api_key(&self) -> String {
        first_key(&self.inner.shared.config)
    }

    /// Returns the configuration the server started with.
    pub fn config(&self) -> &FakeConfig {
        &self.inner.shared.config
    }

    /// Returns the member with this address, in any status, or `None` when the list or the
    /// member does not exist.
    pub fn member(&self, list_id: &str, email: &str) -> Option<Member> {
        self.inner.shared.lock().member(list_id, email)
    }

    /// Returns the members of a list in creation order, or none for an unknown list.
    pub fn members(&self, list_id: &str) -> Vec<Member> {
        self.inner.shared.lock().members(list_id)
    }

    /// Places a member directly into a list, bypassing all API rules and replacing any member
    /// with the same address. See [`MemberSeed`] for the accepted statuses.
    #[track_caller]
    pub fn seed_member(&self, list_id: &str, seed: MemberSeed) {
        let result = self.inner.shared.lock().seed(list_id, &seed);
        or_panic(result);
    }

    /// Simulates the contact clicking an unsubscribe link. Only `pending` brings them back.
    #[track_caller]
    pub fn unsubscribe_by_self(&self, list_id: &str, email: &str) {
        self.simulate(list_id, email, Simulation::UnsubscribeByContact);
    }

    /// Simulates an admin unsubscribing the contact in the Mailchimp app.
    #[track_caller]
    pub fn unsubscribe_by_admin(&self, list_id: &str, email: &str) {
        self.simulate(list_id, email, Simulation::UnsubscribeByAdmin);
    }

    /// Simulates a hard bounce: the member becomes `cleaned`.
    #[track_caller]
    pub fn bounce(&self, list_id: &str, email: &str) {
        self.simulate(list_id, email, Simulation::Bounce);
    }

    /// Simulates the contact confirming a double opt-in: `pending` becomes `subscribed`.
    ///
    /// # Panics
    /// Also when the member is not pending.
    #[track_caller]
    pub fn confirm(&self, list_id: &str, email: &str) {
        self.simulate(list_id, email, Simulation::Confirm);
    }

    /// Archives a member as an admin would, ignoring the DELETE behaviour switches.
    #[track_caller]
    pub fn archive(&self, list_id: &str, email: &str) {
        self.simulate(list_id, email, Simulation::Archive);
    }

    /// Sets or lifts a compliance block, which makes `subscribed` fail with Member In
    /// Compliance State whatever the member's status.
    #[track_caller]
    pub fn set_compliance_block(&self, list_id: &str, email: &str, blocked: bool) {
        let simulation = if blocked {
            Simulation::BlockCompliance
        } else {
            Simulation::UnblockCompliance
        };
        self.simulate(list_id, email, simulation);
    }

    /// Simulates an admin's permanent delete: the member goes and the address is forgotten.
    /// An address that is not in the list is forgotten too.
    #[track_caller]
    pub fn admin_delete_permanent(&self, list_id: &str, email: &str) {
        let result = self
            .inner
            .shared
            .lock()
            .admin_delete_permanent(list_id, email);
        or_panic(result);
    }

    /// Exempts an address (compared case-insensitively) from the fake-address denylist.
    pub fn allow_address(&self, email: &str) {
        self.inner.shared.lock().allow_address(email);
    }

    /// Puts an address and all its `+tag` variants on the signup throttle.
    pub fn throttle_address(&self, email: &str) {
        self.inner.shared.lock().throttle_address(email);
    }

    /// Adds a failure for a future request. [`Injection`] explains how requests are counted.
    pub fn inject(&self, injection: Injection) {
        self.inner
            .shared
            .lock()
            .injections
            .push(inject::arm(injection));
    }

    /// Replaces the behaviour switches from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.inner.shared.lock().behaviour = behaviour;
    }

    /// Returns the current behaviour switches.
    pub fn behaviour(&self) -> Behaviour {
        self.inner.shared.lock().behaviour
    }

    /// Returns every API request received since the start or the last reset, in arrival order.
    /// Control requests under `/_fake` are not logged.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let state = self.inner.shared.lock();
        state
            .requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// Returns the highest number of API requests in flight at once for any one account. A
    /// request rejected for going over the limit is included, so a client that exceeded the
    /// limit shows a value above it.
    pub fn max_in_flight(&self) -> usize {
        self.inner.shared.lock().max_in_flight
    }

    /// Returns the events so far, such as confirmation emails, in order.
    pub fn events(&self) -> Vec<FakeEvent> {
        self.inner.shared.lock().events.clone()
    }

    /// Returns the server to its configured state: members, forgotten addresses, allowed and
    /// throttled addresses, injections, behaviour switches, logs, events, ids and the
    /// in-flight maximum.
    pub fn reset(&self) {
        self.inner.shared.reset();
    }

    #[track_caller]
    fn simulate(&self, list_id: &str, email: &str, simulation: Simulation) {
        let result = self
            .inner
            .shared
            .lock()
            .simulate(list_id, email, simulation);
        or_panic(result);
    }
}

/// Panics with the error, outside the state lock so that the lock is not poisoned.
#[track_caller]
fn or_panic(result: Result<(), ControlError>) {
    if let Err(error) = result {
        panic!("fake Mailchimp: {error}");
    }
}
