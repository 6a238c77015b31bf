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
