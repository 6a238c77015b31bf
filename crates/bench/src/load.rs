//! The load generator: a fixed number of concurrent request loops over keep-alive
//! connections, each sending unique signed deliveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WARM_UP: Duration = Duration::from_secs(1);

pub struct Report {
    /// Requests sent, warm-up included.
    sent: u64,
    /// Latency of every accepted delivery in the measured period, in microseconds.
    latencies_us: Vec<u64>,
    pub errors: u64,
    elapsed: Duration,
}

impl Report {
    pub fn sent(&self) -> u64 {
        self.sent.max(1)
    }

    pub fn per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Returns the latency at `percentile` (0 to 100) in milliseconds.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = (percentile / 100.0 * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[rank] as f64 / 1000.0
    }
}

/// Returns a `topic_created` body, about 1 KB like a real one, unique for `n`.
pub fn body(n: u64) -> Vec<u8> {
    let topic = serde_json::json!({
        "topic": {
            "id": n,
            "title": format!("Benchmark topic number {n}"),
            "fancy_title": format!("Benchmark topic number {n}"),
            "slug": "benchmark-topic",
            "posts_count": 1,
            "created_at": "2026-12-04T10:00:00.000Z",
            "archetype": "regular",
            "category_id": 4,
            "tags": ["benchmark"],
            "visible": true,
            "closed": false,
            "archived": false,
            "user_id": 7,
            "created_by": { "id": 7, "username": "bench_user", "name": "Bench User",
                            "avatar_template": "/user_avatar/forum.example.com/bench_user/{size}/1_2.png" },
            "last_poster": { "id": 7, "username": "bench_user", "name": "Bench User",
                             "avatar_template": "/user_avatar/forum.example.com/bench_user/{size}/1_2.png" },
            "tags_descriptions": {},
            "thumbnails": null,
            "participant_count": 1,
            "word_count": 120,
            "views": 0,
            "like_count": 0,
            "highest_post_number": 1,
            "pinned": false,
            "pinned_globally": false,
            "featured_link": null,
            "deleted_at": null,
            "has_deleted": false,
            "bookmarked": false,
            "pending_posts": []
        }
    });
    serde_json::to_vec(&topic).unwrap_or_default()
}

/// Builds the `topic_created` delivery with event id `n` and body [`body`]`(n)`, signed with
/// `secret` as Discourse signs it.
pub fn signed_request(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    n: u64,
) -> reqwest::RequestBuilder {
    let body = body(n);
    let signature = geoffrey::api::signature::sign(secret.as_bytes(), &body);
    client
        .post(url)
        .header("X-Discourse-Event", "topic_created")
        .header("X-Discourse-Event-Type", "topic")
        .header("X-Discourse-Event-Id", n.to_string())
        .header("X-Discourse-Event-Signature", signature)
        .body(body)
}

/// Sends deliveries for the warm-up plus `duration`; returns what the measured part saw.
pub async fn drive(url: &str, secret: &str, connections: usize, duration: Duration) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build();
    let Ok(client) = client else {
        return Report {
            sent: 0,
            latencies_us: Vec::new(),
            errors: 1,
            elapsed: duration,
        };
    };
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + WARM_UP;
    let stop_at = measure_from + duration;

    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, counter) = (client.clone(), counter.clone());
        let (url, secret) = (url.to_string(), secret.to_string());
        loops.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < stop_at {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let request = signed_request(&client, &url, &secret, n);
                let sent = Instant::now();
                let response = request.send().await;
                let ok = matches!(&response, Ok(r) if r.status().is_success());
                if let Ok(response) = response {
                    let _ = response.bytes().await;
                }
                if sent < measure_from || sent >= stop_at {
                    continue;
                }
                if ok {
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.push(micros);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }

    let mut report = Report {
        sent: 0,
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: duration,
    };
    while let Some(result) = loops.join_next().await {
        if let Ok((latencies, errors)) = result {
            report.latencies_us.extend(latencies);
            report.errors += errors;
        }
    }
    report.sent = counter.load(Ordering::Relaxed);
    report.latencies_us.sort_unstable();
    report
}
