//! The steady sender: signed deliveries at a fixed rate, each request on a task of its own,
//! so that a slow response does not delay the deliveries after it.

use super::tally::{Response, Sent};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::MissedTickBehavior;

/// Time between two rounds of sending. Each round sends the deliveries due by the clock, so a
/// late round sends a few more and the average rate stays the one asked for.
const TICK: Duration = Duration::from_millis(10);

/// Largest number of requests in flight. When it is reached, sending waits, and the rate
/// achieved falls below the one asked for.
const MAX_IN_FLIGHT: usize = 4096;

/// Time a request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Time between two progress lines on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(60);

/// Counts kept while sending, for the progress lines.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    succeeded: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
}

impl Progress {
    fn record(&self, response: Response) {
        let counter = match response {
            Response::Accepted | Response::Duplicate => &self.succeeded,
            Response::Unavailable => &self.unavailable,
            Response::Rejected(_) | Response::Missing => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn print(&self, elapsed: Duration) {
        eprintln!(
            "soak: {:>5.0} s: sent {}, answered 2xx {}, 503 {}, other {}",
            elapsed.as_secs_f64(),
            self.sent.load(Ordering::Relaxed),
            self.succeeded.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
        );
    }
}

/// Sends deliveries with event ids 1, 2, ... to `url` at `rate` per second from `start` until
/// `start + duration`. Returns every delivery with its response once all have one.
pub async fn send(
    url: &str,
    secret: &str,
    rate: f64,
    start: Instant,
    duration: Duration,
) -> anyhow::Result<Vec<Sent>> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let progress = Arc::new(Progress::default());
    let (results, mut received) = mpsc::unbounded_channel();

    let mut ticks = tokio::time::interval_at(start.into(), TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut next_event_id: u64 = 1;
    let mut next_progress = start + PROGRESS_INTERVAL;
    loop {
        ticks.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()).floor() as u64;
        while next_event_id <= due {
            let permit = in_flight.clone().acquire_owned().await?;
            let request = crate::load::signed_request(&client, url, secret, next_event_id);
            let (task_progress, results) = (progress.clone(), results.clone());
            let event_id = next_event_id;
            tokio::spawn(async move {
                let at = start.elapsed();
                let sent_at = Instant::now();
                let response = classify(request.send().await).await;
                let latency = sent_at.elapsed();
                task_progress.record(response);
                let _ = results.send(Sent {
                    event_id,
                    at,
                    latency,
                    response,
                });
                drop(permit);
            });
            progress.sent.fetch_add(1, Ordering::Relaxed);
            next_event_id += 1;
        }
        if Instant::now() >= next_progress {
            progress.print(start.elapsed());
            next_progress += PROGRESS_INTERVAL;
        }
    }
    drop(results);

    let mut sent = Vec::with_capacity(usize::try_from(next_event_id).unwrap_or(0));
    while let Some(delivery) = received.recv().await {
        sent.push(delivery);
    }
    progress.print(start.elapsed());
    sent.sort_unstable_by_key(|delivery| delivery.event_id);
    Ok(sent)
}

async fn classify(result: reqwest::Result<reqwest::Response>) -> Response {
    let Ok(response) = result else {
        return Response::Missing;
    };
    let status = response.status();
    if status.as_u16() == 503 {
        return Response::Unavailable;
    }
    if !status.is_success() {
        return Response::Rejected(status.as_u16());
    }
    match response.json::<serde_json::Value>().await {
        Ok(body) if body["status"] == "duplicate" => Response::Duplicate,
        Ok(_) => Response::Accepted,
        // The response was cut off, so whether the delivery was kept is unknown.
        Err(_) => Response::Missing,
    }
}
