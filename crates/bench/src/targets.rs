//! The servers under test, each started as a child process on a free port of 127.0.0.1.

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::servers::{PouchServer, RedisServer};

const SECRET: &str = "bench-secret-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// An axum handler that reads the body and returns 200: the ceiling.
    Bare,
    /// `geoffrey run` on the embedded SQLite store and queue, without workers.
    Embedded,
    /// `geoffrey serve` on a Redis queue and a CouchDB-protocol store (PouchDB Server).
    Redis,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Embedded => "embedded",
            Kind::Redis => "redis",
        }
    }
}

pub struct Target {
    pub url: String,
    pub secret: String,
    child: Child,
    /// Keeps the data folder and the backend servers until the target stops.
    _keep: Option<Keep>,
}

/// Resources that must live as long as a target's process.
struct Keep {
    _dir: tempfile::TempDir,
    _servers: Option<(RedisServer, PouchServer)>,
}

impl Target {
    /// Returns the peak resident set size of the server process so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_kib(self.child.id(), "VmHWM")
    }

    /// Returns the CPU time the server process has used so far (user and system).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.child.id())
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a memory field such as `VmRSS` or `VmHWM` of process `pid` from `/proc/<pid>/status`,
/// in KiB. Returns `None` when the process is gone or the field is missing.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| {
        line.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the CPU time process `pid` has used so far (user and system), from
/// `/proc/<pid>/stat`, assuming the usual 100 clock ticks per second.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn start(kind: Kind, geoffrey: &Path) -> anyhow::Result<Target> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let target = match kind {
        Kind::Bare => {
            let child = Command::new(std::env::current_exe()?)
                .args(["--serve-bare", &listen])
                .stdout(Stdio::null())
                .spawn()
                .context("cannot start the bare endpoint")?;
            Target {
                url: format!("http://{listen}/hook"),
                secret: SECRET.into(),
                child,
                _keep: None,
            }
        }
        Kind::Embedded => start_geoffrey(geoffrey, &listen, None)?,
        Kind::Redis => {
            let servers = (RedisServer::start(), PouchServer::start());
            start_geoffrey(geoffrey, &listen, Some(servers))?
        }
    };
    wait_until_listening(port).await?;
    Ok(target)
}

/// Starts a Geoffrey API server without workers, on the embedded backends or, with
/// `servers`, on Redis and PouchDB Server.
fn start_geoffrey(
    geoffrey: &Path,
    listen: &str,
    servers: Option<(RedisServer, PouchServer)>,
) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let secret_key = geoffrey::keyring::new_key().expose().to_string();
    let command = |args: &[&str]| {
        let mut command = Command::new(geoffrey);
        command
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("GEOFFREY_LOG", "warn")
            // The benchmark measures throughput, which the per-instance limits would cap.
            .env("GEOFFREY_LIMITS__DELIVERIES_PER_SECOND", "0")
            .env("GEOFFREY_LIMITS__MAX_QUEUED_JOBS", "0");
        if let Some((redis, couch)) = &servers {
            command
                .env("GEOFFREY_QUEUE__URL", redis.url())
                .env("GEOFFREY_STORE__URL", couch.admin_url())
                .env("GEOFFREY_SECRET_KEY", &secret_key);
        }
        command
    };
    // The workers are off, so the rule's URL is never called.
    create_relay_instance(
        command,
        "bench",
        SECRET,
        "http://127.0.0.1:9/unused",
        "{{topic.title}}",
    )?;

    let child = command(&["serve", "--listen", listen])
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start geoffrey serve")?;
    let url = format!("http://{listen}/hooks/discourse/bench");
    let keep = Keep {
        _dir: dir,
        _servers: servers,
    };
    Ok(Target {
        url,
        secret: SECRET.into(),
        child,
        _keep: Some(keep),
    })
}

/// Creates instance `name` with webhook secret `secret` and one relay rule that posts
/// `template` to `relay_url` for every `topic_created`. It runs `geoffrey instance create` and
/// `geoffrey config set` as built by `command`, which sets the binary, store and queue.
pub fn create_relay_instance(
    command: impl Fn(&[&str]) -> Command,
    name: &str,
    secret: &str,
    relay_url: &str,
    template: &str,
) -> anyhow::Result<()> {
    run_cli(
        command(&[
            "instance",
            "create",
            name,
            "--discourse-url",
            "https://forum.example.com",
            "--webhook-secret",
            secret,
        ]),
        None,
    )?;
    let config = serde_json::json!({
        "discourse_url": "https://forum.example.com",
        "webhook_secret": secret,
        "apps": { "relay": { "rules": [{
            "name": "topics", "url": relay_url, "events": ["topic_created"],
            "template": template
        }]}}
    });
    run_cli(command(&["config", "set", name]), Some(&config.to_string()))
}

/// Runs a geoffrey CLI command with `stdin` as its input; fails with its stderr when it fails.
fn run_cli(mut command: Command, stdin: Option<&str>) -> anyhow::Result<()> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start geoffrey")?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    // The arguments only, because the environment contains the store's credentials.
    let args: Vec<_> = command
        .get_args()
        .map(|arg| arg.to_string_lossy())
        .collect();
    anyhow::ensure!(
        output.status.success(),
        "geoffrey {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

async fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the target did not listen on port {port} within 5 s")
}

/// Serves the bare endpoint, which reads the body and returns 200 with a small JSON object.
pub async fn serve_bare(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|body: axum::body::Bytes| async move {
            axum::Json(serde_json::json!({ "status": "accepted", "bytes": body.len() }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
