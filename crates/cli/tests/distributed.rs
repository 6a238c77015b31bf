//! The distributed mode as operators run it: two `geoffrey serve` and two `geoffrey work`
//! processes sharing a real redis-server and a real PouchDB Server, through a worker crash
//! and a Redis restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::fixtures::FIXTURE_SECRET;
use testkit::receiver::Receiver;
use testkit::servers::{PouchServer, RedisServer, free_port};

const GEOFFREY: &str = env!("CARGO_BIN_EXE_geoffrey");
const DELIVERIES: u64 = 240;

struct Backends {
    redis: RedisServer,
    couch: PouchServer,
    dir: tempfile::TempDir,
    /// GEOFFREY_SECRET_KEY, the same for every process.
    secret_key: String,
}

impl Backends {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(GEOFFREY);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("GEOFFREY_STORE__URL", self.couch.admin_url())
            .env("GEOFFREY_QUEUE__URL", self.redis.url())
            .env("GEOFFREY_WORKER__JOB_TIMEOUT", "1500ms")
            .env("GEOFFREY_WORKER__LEASE", "2s")
            .env("GEOFFREY_WORKER__POLL_INTERVAL", "50ms")
            .env("GEOFFREY_WORKER__BACKOFF_BASE", "100ms")
            .env("GEOFFREY_WORKER__BACKOFF_MAX", "500ms")
            .env("GEOFFREY_OUTBOUND__ALLOWED_NETWORKS", "[\"127.0.0.1/32\"]")
            .env("GEOFFREY_SECRET_KEY", &self.secret_key)
            .env_remove("GEOFFREY_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = self.command(args).stdin(Stdio::piped()).spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "geoffrey {args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn body(n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({ "topic": { "id": n, "title": format!("Topic {n}") } })).unwrap()
}

/// Sends delivery `n` to `url` until an API server takes it, as Discourse would when it
/// gets 503 or no response. Returns the `status` field of the response that accepted it.
async fn deliver(client: &reqwest::Client, urls: &[String], n: u64) -> String {
    let body = body(n);
    let signature = geoffrey::api::signature::sign(FIXTURE_SECRET.as_bytes(), &body);
    for attempt in 0..400 {
        let url = &urls[(n as usize + attempt) % urls.len()];
        let response = client
            .post(url)
            .header("X-Discourse-Event", "topic_created")
            .header("X-Discourse-Event-Type", "topic")
            .header("X-Discourse-Event-Id", n.to_string())
            .header("X-Discourse-Event-Signature", &signature)
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = response {
            if response.status().is_success() {
                let reply: Value = response.json().await.unwrap();
                return reply["status"].as_str().unwrap().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("delivery {n} was never accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_survives_worker_crash_and_redis_restart() {
    let mut backends = Backends {
        secret_key: geoffrey::keyring::new_key().expose().to_string(),
        redis: RedisServer::start(),
        couch: PouchServer::start_on_disk(),
        dir: tempfile::tempdir().unwrap(),
    };
    let receiver = Receiver::start().await;
    backends.run(
        &[
            "instance",
            "create",
            "forum",
            "--discourse-url",
            "https://forum.example.com",
            "--webhook-secret",
            FIXTURE_SECRET,
        ],
        None,
    );
    let config = json!({
        "discourse_url": "https://forum.example.com",
        "webhook_secret": "********",
        "apps": { "relay": { "rules": [{
            "name": "topics", "url": receiver.url, "events": ["topic_created"],
            "template": "{{topic.id}}"
        }]}}
    });
    backends.run(&["config", "set", "forum"], Some(&config.to_string()));

    let ports = [free_port(), free_port()];
    let servers: Vec<Child> = ports
        .iter()
        .map(|port| backends.spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]))
        .collect();
    let mut workers: Vec<Option<Child>> = vec![
        Some(backends.spawn(&["work"])),
        Some(backends.spawn(&["work"])),
    ];
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/hooks/discourse/forum"))
        .collect();
    let client = reqwest::Client::new();

    // Deliveries go out 12 at a time. After a third of them one worker is killed, and after
    // two thirds Redis is killed and restarted.
    let mut statuses: HashMap<u64, String> = HashMap::new();
    for chunk in (1..=DELIVERIES).collect::<Vec<_>>().chunks(12) {
        let sent = chunk.iter().map(|&n| {
            let (client, urls) = (client.clone(), urls.clone());
            async move { (n, deliver(&client, &urls, n).await) }
        });
        for (n, status) in futures_join(sent).await {
            statuses.insert(n, status);
        }
        let done = chunk[chunk.len() - 1];
        if done == DELIVERIES / 3 {
            stop(workers[0].take().unwrap());
        }
        if done == 2 * DELIVERIES / 3 {
            backends.redis.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            backends.redis.restart();
        }
    }
    assert!(
        statuses.values().all(|status| status == "accepted"),
        "{statuses:?}"
    );

    // Each delivery again, through the other server: all duplicates.
    for n in [1, DELIVERIES / 2, DELIVERIES] {
        let other = vec![urls[(n as usize + 1) % 2].clone()];
        assert_eq!(deliver(&client, &other, n).await, "duplicate");
    }

    let expected: BTreeSet<u64> = (1..=DELIVERIES).collect();
    testkit::eventually(
        Duration::from_secs(60),
        "every topic at the chat",
        || async {
            let seen: BTreeSet<u64> = receiver
                .texts()
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect();
            (seen == expected).then_some(())
        },
    )
    .await;
    let logs = testkit::eventually(
        Duration::from_secs(30),
        "a success log per delivery",
        || async {
            let output = backends.run(
                &[
                    "logs",
                    "forum",
                    "--json",
                    "--outcome",
                    "succeeded",
                    "-n",
                    "1000",
                ],
                None,
            );
            let logs: Vec<Value> = output
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            (logs.len() as u64 >= DELIVERIES).then_some(logs)
        },
    )
    .await;

    for child in servers.into_iter().chain(workers.into_iter().flatten()) {
        stop(child);
    }
    let event_ids: BTreeSet<u64> = logs
        .iter()
        .map(|entry| entry["event_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(logs.len() as u64, DELIVERIES, "one success per delivery");
    assert_eq!(event_ids, expected);
    // A job whose worker died after posting is posted again: at-least-once, within reason.
    let posts = receiver.texts().len() as u64;
    assert!(
        posts <= DELIVERIES + 12,
        "{posts} posts for {DELIVERIES} deliveries"
    );
    assert!(Path::new(backends.dir.path()).exists());
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
