//! The per-account limit on requests in flight.

use crate::common::{Api, read};
use fake_mailchimp::{ApiKey, Behaviour, FakeConfig, OverLimitResponse};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const SLOW: Duration = Duration::from_millis(800);
const SECOND_KEY: &str = "abcdefabcdefabcdefabcdefabcdefab-us6";

async fn slow_api(limit: usize, key_accounts: HashMap<String, String>) -> Api {
    let config = FakeConfig {
        concurrency_limit: limit,
        response_delay: SLOW,
        keys: vec![
            ApiKey::valid(fake_mailchimp::DEFAULT_API_KEY),
            ApiKey::valid(SECOND_KEY),
        ],
        key_accounts,
        ..FakeConfig::default()
    };
    Api::with(config).await
}

/// Sends `count` pings with `key` in the background.
fn spawn_pings(api: &Api, key: &str, count: usize) -> Vec<JoinHandle<u16>> {
    (0..count)
        .map(|_| {
            let request = api.http.get(api.url("/ping")).basic_auth("user", Some(key));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect()
}

/// Waits until the fake has seen `count` requests in flight at once.
async fn wait_for_in_flight(api: &Api, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.fake.max_in_flight() < count {
        assert!(
            Instant::now() < deadline,
            "only {} in flight",
            api.fake.max_in_flight()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn statuses(handles: Vec<JoinHandle<u16>>) -> Vec<u16> {
    let mut statuses = Vec::new();
    for handle in handles {
        statuses.push(handle.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn eleventh_concurrent_request_gets_429() {
    let api = slow_api(10, HashMap::new()).await;
    let slow = spawn_pings(&api, &api.fake.api_key(), 10);
    wait_for_in_flight(&api, 10).await;

    let started = Instant::now();
    let reply = read(
        api.request(reqwest::Method::GET, "/ping")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(started.elapsed() < SLOW, "429 took {:?}", started.elapsed());
    assert_eq!(reply.status, 429);
    assert_eq!(reply.title(), "Too Many Requests");
    assert_eq!(
        reply.detail(),
        "You have exceeded the limit of 10 simultaneous connections."
    );

    assert_eq!(statuses(slow).await, [200; 10]);
    assert_eq!(api.fake.max_in_flight(), 11);
    let after = api.get("/ping").await;
    assert_eq!(after.status, 200);
}

#[tokio::test]
async fn limit_counts_per_account() {
    let api = slow_api(3, HashMap::new()).await;
    let mut handles = spawn_pings(&api, &api.fake.api_key(), 3);
    handles.extend(spawn_pings(&api, SECOND_KEY, 3));
    assert_eq!(statuses(handles).await, [200; 6]);
    assert_eq!(api.fake.max_in_flight(), 3);
}

#[tokio::test]
async fn keys_of_one_account_share_limit() {
    let accounts = HashMap::from([
        (
            fake_mailchimp::DEFAULT_API_KEY.to_string(),
            "acct".to_string(),
        ),
        (SECOND_KEY.to_string(), "acct".to_string()),
    ]);
    let api = slow_api(2, accounts).await;
    let slow = spawn_pings(&api, &api.fake.api_key(), 2);
    wait_for_in_flight(&api, 2).await;
    let third = api
        .http
        .get(api.url("/ping"))
        .basic_auth("user", Some(SECOND_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status().as_u16(), 429);
    assert_eq!(statuses(slow).await, [200, 200]);
}

#[tokio::test]
async fn over_limit_bare_variants() {
    let api = slow_api(1, HashMap::new()).await;
    for (variant, expected) in [
        (OverLimitResponse::Bare429, 429),
        (OverLimitResponse::Bare403, 403),
    ] {
        api.fake.reset();
        api.fake.set_behaviour(Behaviour {
            over_limit: variant,
            ..Behaviour::default()
        });
        let slow = spawn_pings(&api, &api.fake.api_key(), 1);
        wait_for_in_flight(&api, 1).await;
        let reply = api.get("/ping").await;
        assert_eq!(reply.status, expected, "{variant:?}");
        assert_eq!(reply.text, "", "{variant:?}");
        assert_eq!(statuses(slow).await, [200]);
    }
}
