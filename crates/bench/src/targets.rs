//! The servers under test, each started as a child process on a free port of 127.0.0.1.

use anyhow::Context;
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Returns the CPU time the server process has used so far (user and system), from
    /// `/proc/<pid>/stat`, assuming the usual 100 clock ticks per second.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let cli = |args: &[&str]| -> anyhow::Result<()> {
        let status = command(args).stdout(Stdio::null()).status()?;
        anyhow::ensure!(status.success(), "geoffrey {args:?} failed");
        Ok(())
    };
    cli(&[
        "instance",
        "create",
        "bench",
        "--discourse-url",
        "https://forum.example.com",
        "--webhook-secret",
        SECRET,
    ])?;
    let config = serde_json::json!({
        "discourse_url": "https://forum.example.com",
        "webhook_secret": SECRET,
        "apps": { "relay": { "rules": [{
            "name": "topics", "url": "http://127.0.0.1:9/unused", "events": ["topic_created"],
            "template": "{{topic.title}}"
        }]}}
    });
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string())?;
    cli(&["config", "set", "bench", "--file", &file.to_string_lossy()])?;

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
