//! Every captured real delivery is accepted and routed by its event name.

use serde_json::json;
use std::collections::BTreeMap;
use testkit::fixtures::{self, FIXTURE_SECRET};
use testkit::geoffrey::{Mode, TestGeoffrey, relay_apps, relay_rule};
use testkit::receiver::Receiver;

async fn captured_deliveries_are_routed_by_event(mode: Mode) {
    let mut deliveries = fixtures::captured();
    assert_eq!(deliveries.len(), 59);
    for delivery in &mut deliveries {
        let signature = geoffrey::api::signature::sign(FIXTURE_SECRET.as_bytes(), &delivery.body);
        delivery.set_header("X-Discourse-Event-Signature", &signature);
    }

    // One relay rule per event name, each naming its event in the message.
    let receiver = Receiver::start().await;
    let mut names: Vec<String> = deliveries.iter().map(|d| d.event().to_string()).collect();
    names.sort();
    names.dedup();
    let rules = names
        .iter()
        .filter(|name| name.as_str() != "ping")
        .map(|name| {
            let mut rule = relay_rule(name, &receiver.url, &[name], "{{event.name}}");
            rule["include_private_messages"] = json!(true);
            rule
        })
        .collect();
    let geoffrey = TestGeoffrey::start(mode).await;
    geoffrey.create_instance("forum", relay_apps(rules)).await;

    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for delivery in &deliveries {
        let (status, body) = geoffrey.send("forum", delivery).await;
        assert_eq!(status, 200, "{}: {body}", delivery.name);
        assert_eq!(body["event"], delivery.event(), "{}", delivery.name);
        if delivery.event() == "ping" {
            assert_eq!(body["status"], "pong");
        } else {
            assert_eq!(body["status"], "accepted", "{}: {body}", delivery.name);
            assert_eq!(body["jobs"], 1, "{}: {body}", delivery.name);
            *expected.entry(delivery.event().to_string()).or_default() += 1;
        }
    }

    let total: usize = expected.values().sum();
    let logs = geoffrey.wait_for_logs("forum", total).await;
    let mut routed: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &logs {
        assert_eq!(
            entry.target.as_deref(),
            Some(entry.event.as_str()),
            "routed to the wrong rule"
        );
        *routed.entry(entry.event.clone()).or_default() += 1;
    }
    assert_eq!(routed, expected);
    let mut texts = receiver.texts();
    texts.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .flat_map(|(name, count)| std::iter::repeat_n(name.clone(), *count))
        .collect();
    wanted.sort();
    assert_eq!(texts, wanted);
}

testkit::in_both_modes!(captured_deliveries_are_routed_by_event,);
