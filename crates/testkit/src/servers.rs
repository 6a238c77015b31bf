//! Real servers for tests, each started on a free port of 127.0.0.1 with its files in a
//! temporary folder, and killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Returns a port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A `redis-server` that writes every command to its append-only file before replying, so
/// a kill and restart loses nothing it acknowledged.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Returns the process id of the running server, or `None` while it is killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed; see the README's test section");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts the server again on the same port and files.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Folder of the pinned PouchDB Server installation.
pub fn pouchdb_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/pouchdb")
}

/// Administrator of every test PouchDB Server.
pub const COUCH_ADMIN: &str = "admin";
pub const COUCH_PASSWORD: &str = "admin-password";

/// A PouchDB Server, the CouchDB-protocol server of the tests, with an admin user (no
/// "admin party"). In memory by default; [`PouchServer::start_on_disk`] keeps the data across
/// [`PouchServer::restart`].
pub struct PouchServer {
    pub port: u16,
    dir: tempfile::TempDir,
    on_disk: bool,
    child: Option<Child>,
}

impl PouchServer {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    pub fn start_on_disk() -> Self {
        Self::start_with(true)
    }

    fn start_with(on_disk: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self {
            port: free_port(),
            dir,
            on_disk,
            child: None,
        };
        server.spawn();
        server.create_admin();
        server
    }

    /// URL with the admin's credentials.
    pub fn admin_url(&self) -> String {
        format!(
            "http://{COUCH_ADMIN}:{COUCH_PASSWORD}@127.0.0.1:{}/",
            self.port
        )
    }

    /// URL without credentials.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Returns the process id of the running server, or `None` while it is killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let binary = pouchdb_dir().join("node_modules/.bin/pouchdb-server");
        assert!(
            binary.exists(),
            "PouchDB Server is not installed; run `npm ci --prefix tools/pouchdb` (scripts/test does)"
        );
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut command = Command::new(binary);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--no-stdout-logs",
            ])
            .arg("--config")
            .arg(self.dir.path().join("config.json"))
            .arg("--dir")
            .arg(&data)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !self.on_disk {
            command.arg("--in-memory");
        }
        self.child = Some(
            command
                .spawn()
                .expect("node must be installed to run PouchDB Server"),
        );
        wait_for_port(self.port, "PouchDB Server");
    }

    /// Creates the admin user. PouchDB Server can accept connections before it answers
    /// requests, so a failed attempt is repeated a few times before the test fails.
    fn create_admin(&self) {
        let mut output = None;
        for _ in 0..5 {
            let attempt = Command::new("curl")
                .args([
                    "-sS",
                    "-f",
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                ])
                .arg(format!("\"{COUCH_PASSWORD}\""))
                .arg(format!(
                    "http://127.0.0.1:{}/_config/admins/{COUCH_ADMIN}",
                    self.port
                ))
                .output()
                .unwrap();
            if attempt.status.success() {
                return;
            }
            output = Some(attempt);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let stderr = output.map(|failed| String::from_utf8_lossy(&failed.stderr).into_owned());
        panic!(
            "creating the PouchDB Server admin on port {} failed: {}",
            self.port,
            stderr.unwrap_or_default()
        );
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts the server again on the same port and configuration.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PouchServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

impl PouchServer {
    /// Creates a CouchDB user whose only role lets it read the database of `instance`, under
    /// the database prefix `geoffrey-`.
    pub async fn create_member(&self, name: &str, password: &str, instance: &str) {
        let url = format!("{}_users/org.couchdb.user:{name}", self.url());
        let user = serde_json::json!({
            "name": name,
            "password": password,
            "type": "user",
            "roles": [format!("geoffrey-{instance}")],
        });
        let response = reqwest::Client::new()
            .put(url)
            .basic_auth(COUCH_ADMIN, Some(COUCH_PASSWORD))
            .json(&user)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "creating user {name} failed: {}",
            response.text().await.unwrap()
        );
    }
}
