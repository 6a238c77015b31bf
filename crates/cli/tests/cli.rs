//! The `geoffrey` binary as a user runs it: commands, a crash with `kill -9`, and SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use testkit::fixtures;
use testkit::receiver::{Receiver, Reply};

const GEOFFREY: &str = env!("CARGO_BIN_EXE_geoffrey");
/// Lets jobs reach the receivers the tests start on loopback.
const ALLOW_LOOPBACK: &str = "[\"127.0.0.1/32\"]";

/// Runs `geoffrey` with `args` on the data folder `dir`, feeding `stdin`.
fn geoffrey(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    geoffrey_with_env(dir, &[], args, stdin)
}

/// Runs `geoffrey` like [`geoffrey`], with extra environment variables.
fn geoffrey_with_env(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut child = Command::new(GEOFFREY)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .env_remove("GEOFFREY_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Creates the instance `forum` with the fixture secret and a relay rule to `url`.
fn create_forum(dir: &Path, url: &str) {
    let output = geoffrey(
        dir,
        &[
            "instance",
            "create",
            "forum",
            "--discourse-url",
            "https://forum.example.com",
            "--webhook-secret",
            fixtures::FIXTURE_SECRET,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let config = json!({
        "discourse_url": "https://forum.example.com",
        "webhook_secret": "********",
        "apps": { "relay": { "rules": [{
            "name": "topics", "url": url, "events": ["topic_created"],
            "template": "New topic {{topic.title}}"
        }]}}
    });
    let output = geoffrey(dir, &["config", "set", "forum"], Some(&config.to_string()));
    assert!(output.status.success(), "{}", stderr(&output));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `geoffrey run` on a free port with short leases, returning the process and its URL.
fn spawn_run(dir: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new(GEOFFREY)
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .current_dir(dir)
        .env("GEOFFREY_WORKER__JOB_TIMEOUT", "1500ms")
        .env("GEOFFREY_WORKER__LEASE", "2s")
        .env("GEOFFREY_WORKER__SHUTDOWN_GRACE", "10s")
        .env("GEOFFREY_WORKER__POLL_INTERVAL", "50ms")
        .env("GEOFFREY_OUTBOUND__ALLOWED_NETWORKS", ALLOW_LOOPBACK)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

async fn send_fixture(base_url: &str, name: &str) -> u16 {
    let delivery = fixtures::signed(name);
    let client = reqwest::Client::new();
    let url = format!("{base_url}/hooks/discourse/forum");
    // The server needs a moment to start listening.
    testkit::eventually(Duration::from_secs(10), "the server to answer", || async {
        let mut request = client.post(&url).body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16())
    })
    .await
}

fn logs_json(dir: &Path) -> Vec<Value> {
    let output = geoffrey(dir, &["logs", "forum", "--json"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn wait_for_request(receiver: &Receiver, count: usize) {
    testkit::eventually(Duration::from_secs(10), "the chat request", || async {
        (receiver.received().len() >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn killed_worker_job_runs_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    // The first request hangs, as if the chat were slow when the process died.
    receiver.script([Reply::after(Duration::from_secs(60), 200)]);
    create_forum(dir.path(), &receiver.url);

    let (mut first, base_url) = spawn_run(dir.path());
    assert_eq!(send_fixture(&base_url, "topic_created").await, 200);
    wait_for_request(&receiver, 1).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        logs_json(dir.path()).is_empty(),
        "the killed attempt left no outcome"
    );

    let (mut second, _) = spawn_run(dir.path());
    let logs = testkit::eventually(Duration::from_secs(15), "the job to finish", || async {
        let logs = logs_json(dir.path());
        (!logs.is_empty()).then_some(logs)
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["outcome"], "succeeded");
    assert_eq!(
        logs[0]["attempt"], 2,
        "the attempt lost with the process counts"
    );
    assert_eq!(receiver.texts().len(), 2);
}

#[tokio::test]
async fn sigterm_finishes_the_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.script([Reply::after(Duration::from_millis(800), 200)]);
    create_forum(dir.path(), &receiver.url);

    let (mut child, base_url) = spawn_run(dir.path());
    assert_eq!(send_fixture(&base_url, "topic_created").await, 200);
    wait_for_request(&receiver, 1).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "geoffrey exited with {status}");
    let logs = logs_json(dir.path());
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["outcome"], "succeeded");
    assert_eq!(logs[0]["attempt"], 1);
}

#[test]
fn instance_create_prints_webhook_settings() {
    let dir = tempfile::tempdir().unwrap();
    let output = geoffrey(
        dir.path(),
        &[
            "instance",
            "create",
            "forum",
            "--discourse-url",
            "https://forum.example.com/",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("http://127.0.0.1:8080/hooks/discourse/forum"),
        "{text}"
    );
    let secret_line = text
        .lines()
        .find(|line| line.trim_start().starts_with("Secret:"))
        .unwrap();
    let secret = secret_line.split_whitespace().last().unwrap();
    assert_eq!(secret.len(), 64, "{secret_line}");

    let output = geoffrey(dir.path(), &["instance", "list"], None);
    assert_eq!(stdout(&output), "forum\n");
    let output = geoffrey(dir.path(), &["config", "show", "forum"], None);
    let shown = stdout(&output);
    assert!(!shown.contains(secret), "config show must mask the secret");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["discourse_url"], "https://forum.example.com");
}

#[test]
fn invalid_instance_names_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Forum", "my/forum", "1forum"] {
        let output = geoffrey(
            dir.path(),
            &[
                "instance",
                "create",
                name,
                "--discourse-url",
                "https://f.example.com",
            ],
            None,
        );
        assert!(!output.status.success(), "{name}");
        assert!(
            stderr(&output).contains(&format!("invalid instance name {name:?}")),
            "{}",
            stderr(&output)
        );
    }
    let output = geoffrey(dir.path(), &["instance", "list"], None);
    assert_eq!(stdout(&output), "");
}

#[test]
fn invalid_config_is_rejected_with_each_field() {
    let dir = tempfile::tempdir().unwrap();
    create_forum(dir.path(), "https://chat.example.com/hooks/x");
    let before = stdout(&geoffrey(dir.path(), &["config", "show", "forum"], None));

    let config = json!({
        "discourse_url": "not a url",
        "webhook_secret": "********",
        "apps": { "relay": { "rules": [{
            "name": "topics", "url": "https://chat.example.com/x", "events": [],
            "template": "{{ unclosed"
        }]}}
    });
    let output = geoffrey(
        dir.path(),
        &["config", "set", "forum"],
        Some(&config.to_string()),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    for field in [
        "discourse_url",
        "apps.relay.rules[0].events",
        "apps.relay.rules[0].template",
    ] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    let after = stdout(&geoffrey(dir.path(), &["config", "show", "forum"], None));
    assert_eq!(before, after, "a rejected configuration changes nothing");
}

#[test]
fn stale_revision_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    create_forum(dir.path(), "https://chat.example.com/hooks/x");
    let shown = stdout(&geoffrey(dir.path(), &["config", "show", "forum"], None));
    let output = geoffrey(dir.path(), &["config", "set", "forum"], Some(&shown));
    assert!(output.status.success(), "{}", stderr(&output));

    // Saving the same text again names a revision that is no longer current.
    let output = geoffrey(dir.path(), &["config", "set", "forum"], Some(&shown));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("was changed since revision"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn config_set_writes_an_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    create_forum(dir.path(), "https://chat.example.com/hooks/audited-token");
    let shown = stdout(&geoffrey(dir.path(), &["config", "show", "forum"], None));
    let mut config: Value = serde_json::from_str(&shown).unwrap();
    config["discourse_api_username"] = json!("bot");
    config["apps"]["relay"]["rules"][0]["url"] = json!("https://chat.example.com/hooks/new-token");
    let output = geoffrey(
        dir.path(),
        &["config", "set", "forum"],
        Some(&config.to_string()),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let store = geoffrey::store::sqlite::SqliteStore::open(
        &dir.path().join("instances"),
        Duration::from_secs(1),
    )
    .unwrap();
    let entries = geoffrey::audit::list(store.as_ref(), "forum", 10)
        .await
        .unwrap();
    // Before it: the relay rule added by `create_forum`, and the creation.
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[2].action, "instance_created");
    assert_eq!(entries[2].actor, geoffrey::audit::Actor::cli());
    let entry = &entries[0];
    assert_eq!(entry.actor, geoffrey::audit::Actor::cli());
    assert_eq!(entry.action, "config_saved");
    let paths: Vec<&str> = entry.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["apps.relay.rules[0].url", "discourse_api_username"]);
    assert!(entry.changes[0].secret);
    let text = serde_json::to_string(&entries).unwrap();
    for secret in ["audited-token", "new-token", fixtures::FIXTURE_SECRET] {
        assert!(!text.contains(secret), "the audit contains {secret}");
    }
}

#[test]
fn unknown_instance_commands_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["config", "show", "ghost"],
        vec!["logs", "ghost"],
        vec!["failed", "list", "ghost"],
    ] {
        let output = geoffrey(dir.path(), &args, None);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains("\"ghost\" not found"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn failed_jobs_can_be_listed_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(400)]);
    create_forum(dir.path(), &receiver.url);
    let (mut child, base_url) = spawn_run(dir.path());
    assert_eq!(send_fixture(&base_url, "topic_created").await, 200);

    let listed = testkit::eventually(Duration::from_secs(10), "a failed job", || async {
        let output = geoffrey(dir.path(), &["failed", "list", "forum"], None);
        let text = stdout(&output);
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert!(
        listed.contains("relay.post_message[topics] topic_created"),
        "{listed}"
    );
    assert!(listed.contains("HTTP 400"), "{listed}");

    let output = geoffrey(dir.path(), &["failed", "replay", "forum", "--all"], None);
    assert!(
        stderr(&output).contains("Replayed 1"),
        "{}",
        stderr(&output)
    );
    let logs = testkit::eventually(Duration::from_secs(10), "the replayed job", || async {
        let logs = logs_json(dir.path());
        (logs.len() == 2).then_some(logs)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let outcomes: Vec<_> = logs
        .iter()
        .map(|entry| entry["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed_permanently", "succeeded"]);

    let output = geoffrey(
        dir.path(),
        &["logs", "forum", "--outcome", "succeeded"],
        None,
    );
    assert_eq!(stdout(&output).lines().count(), 1);
    let output = geoffrey(dir.path(), &["logs", "forum", "--outcome", "fine"], None);
    assert!(
        stderr(&output).contains("unknown outcome \"fine\""),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn logs_follow_prints_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    create_forum(dir.path(), &receiver.url);
    let (mut server, base_url) = spawn_run(dir.path());
    let mut follower = Command::new(GEOFFREY)
        .args(["logs", "forum", "--follow", "--data-dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .map(|line| line.unwrap())
    });

    assert_eq!(send_fixture(&base_url, "topic_created").await, 200);
    let line = tokio::task::spawn_blocking(move || lines.join().unwrap())
        .await
        .unwrap();
    follower.kill().unwrap();
    follower.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let line = line.expect("a followed log line");
    assert!(line.contains("succeeded"), "{line}");
    assert!(
        line.contains("relay.post_message[topics] topic_created #4111"),
        "{line}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(GEOFFREY)
        .args([
            "--log-format",
            "json",
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .current_dir(dir.path())
        .env_remove("GEOFFREY_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    testkit::eventually(Duration::from_secs(10), "the server to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(entry["fields"]["message"].is_string(), "{line}");
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(text.contains("API server listening"), "{text}");
}

#[test]
fn embedded_mode_creates_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    create_forum(dir.path(), "http://127.0.0.1:9/hook");
    let key_file = dir.path().join("secret.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);

    let database = std::fs::read(dir.path().join("instances/forum.sqlite")).unwrap();
    let text = String::from_utf8_lossy(&database);
    assert!(!text.contains(fixtures::FIXTURE_SECRET));
    assert!(text.contains("sealed:v1:"));
}

#[test]
fn secrets_rotate_to_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let new_key = |dir: &Path| stdout(&geoffrey(dir, &["secrets", "new-key"], None));
    let (old, new) = (new_key(dir.path()), new_key(dir.path()));
    let (old, new) = (old.trim(), new.trim());
    assert_eq!(old.len(), 64);
    assert_ne!(old, new);
    let with_old = [("GEOFFREY_SECRET_KEY", old)];
    let with_new = [("GEOFFREY_SECRET_KEY", new)];
    let during_rotation = [
        ("GEOFFREY_SECRET_KEY", new),
        ("GEOFFREY_PREVIOUS_SECRET_KEY", old),
    ];
    let create = [
        "instance",
        "create",
        "forum",
        "--discourse-url",
        "https://forum.example.com",
    ];
    let output = geoffrey_with_env(dir.path(), &with_old, &create, None);
    assert!(output.status.success(), "{}", stderr(&output));

    // The new key alone cannot read what the old key sealed, and the error names the missing key.
    let output = geoffrey_with_env(dir.path(), &with_new, &["secrets", "rotate"], None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("GEOFFREY_PREVIOUS_SECRET_KEY"),
        "{}",
        stderr(&output)
    );

    let output = geoffrey_with_env(dir.path(), &during_rotation, &["secrets", "rotate"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("forum: encrypted 1 secret(s) again"),
        "{}",
        stdout(&output)
    );

    // Now the new key alone reads everything, and the old one no longer does.
    let output = geoffrey_with_env(dir.path(), &with_new, &["secrets", "rotate"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("already encrypted with the current key"),
        "{}",
        stdout(&output)
    );
    let output = geoffrey_with_env(dir.path(), &with_new, &["config", "show", "forum"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    let output = geoffrey_with_env(dir.path(), &with_old, &["config", "show", "forum"], None);
    assert!(
        stderr(&output).contains("cannot read the secret webhook_secret"),
        "{}",
        stderr(&output)
    );
    assert!(!stdout(&output).contains(old));
    assert!(!stderr(&output).contains(old));
}

#[test]
fn invalid_secret_key_is_named_but_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = "not-a-key-but-still-secret";
    let output = geoffrey_with_env(
        dir.path(),
        &[("GEOFFREY_SECRET_KEY", bad_key)],
        &[
            "instance",
            "create",
            "forum",
            "--discourse-url",
            "https://f.example.com",
        ],
        None,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("GEOFFREY_SECRET_KEY is not a valid key"),
        "{message}"
    );
    assert!(!message.contains(bad_key), "{message}");
    assert!(!dir.path().join("instances/forum.sqlite").exists());
}

/// Starts `geoffrey run` with stdout and stderr piped; returns the process, its URL and the
/// lines it prints on stdout as they come.
fn spawn_run_reading_stdout(dir: &Path) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Command::new(GEOFFREY)
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .current_dir(dir)
        .env_remove("GEOFFREY_LOG")
        .env_remove("GEOFFREY_UI__ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, format!("http://127.0.0.1:{port}"), received)
}

/// Sends SIGTERM and returns what the process wrote to stderr.
async fn stop_and_read_stderr(child: Child) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success());
    stderr(&output)
}

#[tokio::test]
async fn run_prints_a_one_time_setup_link() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base_url, lines) = spawn_run_reading_stdout(dir.path());
    let mut printed = Vec::new();
    let link = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no setup link on stdout; it printed {printed:?}"));
        if let Some(start) = line.find("http://") {
            if line.contains("/ui/setup?token=") {
                break line[start..].trim().to_string();
            }
        }
        printed.push(line);
    };
    assert!(
        printed
            .iter()
            .any(|line| line.contains(&format!("{base_url}/ui/"))),
        "the UI's address is printed: {printed:?}"
    );
    assert!(
        link.starts_with(&format!("{base_url}/ui/setup?token=")),
        "{link}"
    );
    let token = link.split("token=").nth(1).unwrap().to_string();

    let http = testkit::ui::http_client();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let created = http
        .post(format!("{base_url}/ui/setup"))
        .form(&[
            ("token", token.as_str()),
            ("password", "a chosen password"),
            ("repeat", "a chosen password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    testkit::ui::UiClient::sign_in(&base_url, "admin", "a chosen password")
        .await
        .expect("the chosen password signs in");

    let log = stop_and_read_stderr(child).await;
    assert!(
        !log.contains(&token),
        "the token stays out of the log: {log}"
    );
    assert!(log.contains("setup link"), "{log}");

    // With an administrator, a restart prints no link.
    let (child, _, lines) = spawn_run_reading_stdout(dir.path());
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.contains("/ui/"), "{first}");
    assert!(
        lines.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing after the UI's address"
    );
    stop_and_read_stderr(child).await;
}
