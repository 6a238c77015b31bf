//! The shared store suite against the CouchDB store and a real PouchDB Server, plus access
//! control between instances.

use geoffrey::store::couch::CouchStore;
use geoffrey::store::{Store, StoreError};
use serde_json::json;
use std::sync::Arc;
use testkit::servers::PouchServer;

async fn open_store() -> (Arc<dyn Store>, PouchServer) {
    let server = PouchServer::start();
    let store = CouchStore::connect(&server.admin_url(), "geoffrey-")
        .await
        .unwrap();
    (store, server)
}

testkit::store_suite!(open_store());

#[tokio::test]
async fn instance_credentials_cannot_read_other_instances() {
    let (store, server) = open_store().await;
    for name in ["north", "south"] {
        store.create_database(name).await.unwrap();
        store
            .put(name, "CONFIG", None, &json!({ "name": name }))
            .await
            .unwrap();
    }
    server
        .create_member("north-manager", "north-password", "north")
        .await;

    let own = store
        .get_as("north", "CONFIG", "north-manager", "north-password")
        .await
        .unwrap();
    assert_eq!(own.unwrap().body["name"], "north");

    let other = store
        .get_as("south", "CONFIG", "north-manager", "north-password")
        .await;
    assert!(matches!(other, Err(StoreError::Unauthorized)), "{other:?}");
    let wrong_password = store
        .get_as("north", "CONFIG", "north-manager", "guess")
        .await;
    assert!(
        matches!(wrong_password, Err(StoreError::Unauthorized)),
        "{wrong_password:?}"
    );

    // Without credentials the store itself reads nothing either.
    let anonymous = CouchStore::connect(&server.url(), "geoffrey-")
        .await
        .unwrap();
    let result = anonymous.get("north", "CONFIG").await;
    assert!(
        matches!(result, Err(StoreError::Unauthorized)),
        "{result:?}"
    );
}

#[tokio::test]
async fn config_changes_are_reported_through_the_changes_feed() {
    let (store, server) = open_store().await;
    store.create_database("watched").await.unwrap();
    let rev = store
        .put("watched", "CONFIG", None, &json!({ "n": 1 }))
        .await
        .unwrap();

    // A second store, like another API server, learns about writes made through the first.
    let other = CouchStore::connect(&server.admin_url(), "geoffrey-")
        .await
        .unwrap();
    let mut changes = other.changes();
    other.watch("watched");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store
        .put("watched", "CONFIG", Some(&rev), &json!({ "n": 2 }))
        .await
        .unwrap();

    let change = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.id.as_deref() == Some("CONFIG") {
                return change;
            }
        }
    })
    .await
    .expect("a CONFIG change within 5 seconds");
    assert_eq!(change.db, "watched");
}

#[tokio::test]
async fn server_without_credentials_serves_the_original_route() {
    use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
    let operator = TestGeoffrey::start(Mode::Distributed).await;
    let rule = relay_rule("all", "http://127.0.0.1:9/hook", &["*"], "{{event.name}}");
    operator
        .create_instance("forum", relay_apps(vec![rule]))
        .await;
    let couch = operator.couch.as_ref().unwrap();
    couch
        .create_member("forum-hooks", "member-password", "forum")
        .await;

    // A second API server that has no CouchDB credentials of its own.
    let mut settings = testkit::geoffrey::test_settings(operator.dir.path());
    settings.store.url = Some(geoffrey::secret::Secret::new(couch.url()));
    settings.queue.url = operator.services.settings.queue.url.clone();
    settings.secret_key = operator.services.settings.secret_key.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let roles = geoffrey::run::Roles {
        server: true,
        worker: false,
    };
    let running = geoffrey::run::start(settings, Some(listener), roles)
        .await
        .unwrap();
    let base = format!("http://{}", running.addr.unwrap());
    let client = reqwest::Client::new();
    let post = |key: &str| {
        client
            .post(format!("{base}/api/posts/new?key={key}"))
            .body(r#"{"post_id":7}"#)
            .send()
    };

    let accepted = post("forum-hooks:member-password@forum").await.unwrap();
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await.unwrap());
    let wrong = post("forum-hooks:guess@forum").await.unwrap();
    assert_eq!(wrong.status(), 401);
    // Without credentials the signed route cannot read CONFIG and responds 503.
    let delivery = testkit::fixtures::signed("ping");
    let mut request = client
        .post(format!("{base}/hooks/discourse/forum"))
        .body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 503);
    running.stop().await;
}
