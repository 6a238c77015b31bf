//! The outbound guard through the whole pipeline: relay targets on loopback are rejected by
//! default, whether the URL names the address, a host name resolves to it, or a redirect
//! leads there, and an allowed network opens them.

use geoffrey::apps::AppRegistry;
use geoffrey::config::OutboundSettings;
use geoffrey::outbound::OutboundClient;
use geoffrey::run::Roles;
use geoffrey::store::Outcome;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testkit::fixtures;
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
use testkit::receiver::Receiver;

/// Starts Geoffrey with `allowed` as `outbound.allowed_networks` and one relay rule to `url`.
async fn relay_with(allowed: &[&str], url: &str) -> TestGeoffrey {
    let allowed: Vec<_> = allowed.iter().map(|net| net.parse().unwrap()).collect();
    let geoffrey = TestGeoffrey::start_with(
        Mode::Embedded,
        |settings| settings.outbound.allowed_networks = allowed,
        None,
        Roles::ALL,
    )
    .await;
    let rule = relay_rule("topics", url, &["topic_created"], "{{topic.title}}");
    geoffrey
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    geoffrey
}

/// Sends a topic and returns the single log entry's outcome and error.
async fn relay_once(geoffrey: &TestGeoffrey) -> (Outcome, String) {
    let (status, _) = geoffrey
        .send("forum", &fixtures::signed("topic_created"))
        .await;
    assert_eq!(status, 200);
    let logs = geoffrey.wait_for_logs("forum", 1).await;
    let entry = &logs[0];
    (entry.outcome, entry.error.clone().unwrap_or_default())
}

/// Accepts connections on `address` and counts them, sending no response.
async fn count_connections(address: &str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, count)
}

#[tokio::test]
async fn loopback_address_is_rejected_by_default() {
    let receiver = Receiver::start().await;
    let geoffrey = relay_with(&[], &receiver.url).await;
    let (outcome, error) = relay_once(&geoffrey).await;
    assert_eq!(outcome, Outcome::FailedPermanently);
    assert!(error.contains("127.0.0.1"), "{error}");
    assert!(error.contains("outbound.allowed_networks"), "{error}");
    assert!(receiver.received().is_empty());

    let status = geoffrey::app_status::read(geoffrey.services.store.as_ref(), "forum", "relay")
        .await
        .unwrap()
        .expect("the relay is marked as misconfigured");
    let reason = status.misconfigured.unwrap_or_default();
    assert!(reason.contains("outbound.allowed_networks"), "{reason}");
}

#[tokio::test]
async fn host_name_is_checked_on_its_resolved_address() {
    // "localhost" is a name, not an address: only the resolver can see where it leads.
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let rejected = relay_with(&[], &by_name).await;
    let (outcome, error) = relay_once(&rejected).await;
    assert_eq!(outcome, Outcome::FailedPermanently, "{error}");
    assert!(error.contains("localhost is 127.0.0.1") || error.contains("localhost is ::1"));
    assert!(receiver.received().is_empty());

    let allowed = relay_with(&["127.0.0.1/32"], &by_name).await;
    let (outcome, error) = relay_once(&allowed).await;
    assert_eq!(outcome, Outcome::Succeeded, "{error}");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn allowed_network_reaches_the_receiver() {
    let receiver = Receiver::start().await;
    let geoffrey = relay_with(&["127.0.0.0/8"], &receiver.url).await;
    let (outcome, error) = relay_once(&geoffrey).await;
    assert_eq!(outcome, Outcome::Succeeded, "{error}");
    assert_eq!(receiver.texts(), ["Spring meetup - who's coming? 🌱"]);
}

#[tokio::test]
async fn redirect_to_a_rejected_address_is_not_followed() {
    let (hidden_url, connections) = count_connections("127.0.0.2:0").await;
    let redirector = axum::Router::new().fallback(move || {
        let location = hidden_url.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", location)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirector).await.unwrap() });

    let geoffrey = relay_with(&["127.0.0.1/32"], &url).await;
    let (outcome, error) = relay_once(&geoffrey).await;
    assert_eq!(outcome, Outcome::FailedPermanently, "{error}");
    assert!(error.contains("127.0.0.2"), "{error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mailchimp_check_names_the_rejection() {
    let section = serde_json::json!({
        "api_key": "0123456789abcdef0123456789abcdef-us6",
        "base_url": "http://169.254.169.254",
        "list_id": "aud1",
    });
    let http = OutboundClient::new(&OutboundSettings::default(), Duration::from_secs(2)).unwrap();
    let apps = AppRegistry::builtin();
    let checks = apps.get("mailchimp").unwrap().check(&section, &http).await;
    assert!(!checks[0].ok, "{checks:?}");
    assert!(checks[0].message.contains("169.254.169.254"), "{checks:?}");
    assert!(
        !checks[0].message.contains("0123456789abcdef"),
        "{checks:?}"
    );
}
