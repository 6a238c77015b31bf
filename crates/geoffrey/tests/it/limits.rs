//! Per-instance intake limits through the API: a noisy instance gets 429 (or 413) while a
//! quiet one on the same server is still accepted.

use geoffrey::config::InstanceLimitOverrides;
use geoffrey::run::Roles;
use testkit::fixtures::{self, Delivery};
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};

/// Starts an API server without workers, so that jobs stay queued, with `noisy` limited by
/// `own` and `quiet` on the defaults. Both relay new topics.
async fn noisy_and_quiet(mode: Mode, own: InstanceLimitOverrides) -> TestGeoffrey {
    let roles = Roles {
        server: true,
        worker: false,
    };
    let geoffrey = TestGeoffrey::start_with(
        mode,
        |settings| {
            settings.limits.instances.insert("noisy".into(), own);
        },
        None,
        roles,
    )
    .await;
    for name in ["noisy", "quiet"] {
        let rule = relay_rule("all", "http://127.0.0.1:9/hook", &["topic_created"], "x");
        geoffrey.create_instance(name, relay_apps(vec![rule])).await;
    }
    geoffrey
}

/// Returns the topic fixture with its own event id and title, signed again, so that it is
/// no duplicate of another.
fn topic(event_id: u32) -> Delivery {
    let mut delivery = fixtures::signed("topic_created");
    let mut body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    body["topic"]["title"] = format!("Topic {event_id}").into();
    delivery.body = serde_json::to_vec(&body).unwrap();
    let signature =
        geoffrey::api::signature::sign(fixtures::FIXTURE_SECRET.as_bytes(), &delivery.body);
    delivery.set_header("X-Discourse-Event-Signature", &signature);
    delivery.set_header("X-Discourse-Event-Id", &event_id.to_string());
    delivery
}

async fn delivery_rate_is_limited_per_instance(mode: Mode) {
    let own = InstanceLimitOverrides {
        deliveries_per_second: Some(1),
        burst: Some(2),
        ..InstanceLimitOverrides::default()
    };
    let geoffrey = noisy_and_quiet(mode, own).await;
    let mut statuses = Vec::new();
    for event_id in 1..=3 {
        statuses.push(geoffrey.send("noisy", &topic(event_id)).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);

    let url = format!("{}/hooks/discourse/noisy", geoffrey.base_url);
    let mut request = geoffrey.http.post(&url).body(topic(4).body);
    for (name, value) in &topic(4).headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("limits.deliveries_per_second"),
        "{message}"
    );

    let (status, body) = geoffrey.send("quiet", &topic(5)).await;
    assert_eq!(status, 200, "{body}");
}

async fn full_queue_rejects_only_its_instance(mode: Mode) {
    let own = InstanceLimitOverrides {
        max_queued_jobs: Some(2),
        ..InstanceLimitOverrides::default()
    };
    let geoffrey = noisy_and_quiet(mode, own).await;
    let mut statuses = Vec::new();
    for event_id in 1..=3 {
        statuses.push(geoffrey.send("noisy", &topic(event_id)).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let stats = geoffrey.services.queue.stats(Some("noisy")).await.unwrap();
    assert_eq!(stats.ready, 2, "the rejected delivery queued nothing");

    let (status, body) = geoffrey.send("quiet", &topic(4)).await;
    assert_eq!(status, 200, "{body}");
    // Jobs of the rejected delivery were not queued; the same delivery sent again later,
    // once the queue has room, would be accepted.
    let (status, body) = geoffrey.send("noisy", &topic(3)).await;
    assert_eq!(status, 429, "{body}");
}

async fn instance_body_limit_gives_413(mode: Mode) {
    let own = InstanceLimitOverrides {
        max_body_bytes: Some(100),
        ..InstanceLimitOverrides::default()
    };
    let geoffrey = noisy_and_quiet(mode, own).await;
    let (status, body) = geoffrey.send("noisy", &topic(1)).await;
    assert_eq!(status, 413);
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("limit of 100 bytes"), "{message}");
    let (status, _) = geoffrey.send("quiet", &topic(2)).await;
    assert_eq!(status, 200);
}

testkit::in_both_modes!(
    delivery_rate_is_limited_per_instance,
    full_queue_rejects_only_its_instance,
    instance_body_limit_gives_413,
);
