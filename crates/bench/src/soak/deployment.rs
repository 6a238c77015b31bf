//! The deployment under soak: redis-server and PouchDB Server (or servers given by URL), one
//! `geoffrey serve` and the `geoffrey work` processes, with their logs in a work folder.

use super::memory::{Sample, Series};
use super::tally::LogRecord;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testkit::servers::{PouchServer, RedisServer, free_port};

/// Webhook secret of the soak's instance.
pub const SECRET: &str = "soak-secret-0123456789";

/// Log entries read from CouchDB per request.
const LOG_PAGE: usize = 5000;

/// Backend URLs and worker settings of a soak.
pub struct Options {
    pub redis_url: Option<String>,
    pub couch_url: Option<String>,
    pub workers: usize,
    pub lease: Duration,
}

/// A process the soak started, or a backend it samples.
struct Member {
    series: Series,
    /// The process handle; `None` for redis-server and PouchDB Server, which testkit holds.
    child: Option<Child>,
    /// Set when the process exited without the soak killing it.
    unexpected_exit: Option<String>,
    log: Option<PathBuf>,
}

/// Jobs each worker process runs at once, and so the most a killed worker leaves half done.
pub const WORKER_CONCURRENCY: u64 = 4;

pub struct Deployment {
    geoffrey: PathBuf,
    work_dir: PathBuf,
    /// Started by the soak, so it can be restarted; `None` when given by URL.
    redis: Option<Mutex<RedisServer>>,
    /// Keeps the PouchDB Server the soak started until the soak ends.
    couch: Option<PouchServer>,
    redis_url: String,
    couch_url: String,
    lease: Duration,
    /// Name of the instance and prefix of the Redis keys, new for every run.
    pub run_id: String,
    listen: String,
    /// GEOFFREY_SECRET_KEY of every geoffrey process, new for every run.
    secret_key: geoffrey::secret::Secret,
    members: Mutex<Vec<Member>>,
}

impl Deployment {
    /// Starts the backends the options do not name, creates the instance with a relay rule to
    /// `receiver_url`, and starts `geoffrey serve` and the workers.
    pub async fn start(
        options: &Options,
        geoffrey: &Path,
        receiver_url: &str,
    ) -> anyhow::Result<Self> {
        let run_id = format!(
            "soak-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        );
        let work_dir = std::env::temp_dir().join(format!("geoffrey-{run_id}"));
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("cannot create {}", work_dir.display()))?;

        let (redis, redis_url) = match &options.redis_url {
            Some(url) => (None, url.clone()),
            None => {
                let server = RedisServer::start();
                let url = server.url();
                (Some(server), url)
            }
        };
        // On disk, as CouchDB keeps its data. In memory, every log entry of a long run would
        // stay in PouchDB Server's memory.
        let (couch, couch_url) = match &options.couch_url {
            Some(url) => (None, url.clone()),
            None => {
                let server = PouchServer::start_on_disk();
                let url = server.admin_url();
                (Some(server), url)
            }
        };
        let deployment = Self {
            geoffrey: geoffrey.to_path_buf(),
            work_dir,
            redis: redis.map(Mutex::new),
            couch,
            redis_url,
            couch_url,
            lease: options.lease,
            listen: format!("127.0.0.1:{}", free_port()),
            run_id,
            secret_key: geoffrey::keyring::new_key(),
            members: Mutex::new(Vec::new()),
        };
        deployment.watch_backends();

        crate::targets::create_relay_instance(
            |args| deployment.command(args),
            &deployment.run_id,
            SECRET,
            receiver_url,
            "{{topic.id}}",
        )?;
        deployment.spawn("serve", &["serve", "--listen", &deployment.listen])?;
        for worker in 1..=options.workers {
            deployment.spawn(&format!("worker-{worker}"), &["work"])?;
        }
        deployment.wait_until_ready().await?;
        Ok(deployment)
    }

    /// Returns the environment of every geoffrey process the soak starts, commands and
    /// servers alike. Every other `GEOFFREY_*` variable is removed, so the caller's shell
    /// cannot change the setup.
    fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GEOFFREY_STORE__URL", self.couch_url.clone()),
            ("GEOFFREY_QUEUE__URL", self.redis_url.clone()),
            ("GEOFFREY_QUEUE__KEY_PREFIX", self.run_id.clone()),
            // A killed worker's jobs come back after the lease. The receiver responds at
            // once, so a third of the lease is ample for one attempt.
            (
                "GEOFFREY_WORKER__LEASE",
                format!("{}ms", self.lease.as_millis()),
            ),
            (
                "GEOFFREY_WORKER__JOB_TIMEOUT",
                format!("{}ms", (self.lease / 3).as_millis()),
            ),
            (
                "GEOFFREY_WORKER__CONCURRENCY",
                WORKER_CONCURRENCY.to_string(),
            ),
            ("GEOFFREY_LOG", "info".to_string()),
            ("GEOFFREY_LOG_FORMAT", "json".to_string()),
            // The receiver listens on loopback, which outbound requests may not reach unless
            // allowed.
            (
                "GEOFFREY_OUTBOUND__ALLOWED_NETWORKS",
                r#"["127.0.0.1/32"]"#.to_string(),
            ),
            ("GEOFFREY_SECRET_KEY", self.secret_key.expose().to_string()),
            // The soak measures delivery at a set rate; the per-instance limits would refuse
            // deliveries above their defaults.
            ("GEOFFREY_LIMITS__DELIVERIES_PER_SECOND", "0".to_string()),
            ("GEOFFREY_LIMITS__MAX_QUEUED_JOBS", "0".to_string()),
        ]
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.geoffrey);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GEOFFREY_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .envs(self.environment())
            // No geoffrey.toml is read from here.
            .current_dir(&self.work_dir);
        command
    }

    /// Starts a long-running geoffrey process named `name`, logging to a file of that name.
    fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let log = self
            .work_dir
            .join(format!("{}.log", name.replace(' ', "-")));
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", self.geoffrey.display()))?;
        let member = Member {
            series: Series::new(name, child.id(), true),
            child: Some(child),
            unexpected_exit: None,
            log: Some(log),
        };
        self.lock_members().push(member);
        Ok(())
    }

    fn lock_members(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the backends the soak started, and this process (the sender and the receiver), to
    /// the sampled processes.
    fn watch_backends(&self) {
        let mut members = self.lock_members();
        let redis_pid = self
            .redis
            .as_ref()
            .and_then(|redis| redis.lock().ok()?.pid());
        if let Some(pid) = redis_pid {
            members.push(backend("redis-server", pid));
        }
        if let Some(pid) = self.couch.as_ref().and_then(PouchServer::pid) {
            members.push(backend("pouchdb-server", pid));
        }
        members.push(backend("geoffrey-bench", std::process::id()));
    }

    pub fn hook_url(&self) -> String {
        format!("http://{}/hooks/discourse/{}", self.listen, self.run_id)
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn can_restart_redis(&self) -> bool {
        self.redis.is_some()
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.listen);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            self.note_exits();
            if let Some(exit) = self.unexpected_exits().first() {
                anyhow::bail!("{exit}; see the logs in {}", self.work_dir.display());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "geoffrey serve was not ready at {url} within 30 s; see {}",
                    self.work_dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills worker `name` with SIGKILL, as a crash would, and starts a new one under the
    /// name `new_name`.
    pub fn restart_worker(&self, name: &str, new_name: &str) -> anyhow::Result<()> {
        {
            let mut members = self.lock_members();
            let member = members
                .iter_mut()
                .find(|member| member.series.name == name && member.series.ended.is_none())
                .with_context(|| format!("no running process named {name}"))?;
            if let Some(child) = member.child.as_mut() {
                child.kill()?;
                child.wait()?;
            }
            member.series.ended = Some(Instant::now());
        }
        self.spawn(new_name, &["work"])
    }

    /// Kills redis-server with SIGKILL, waits `outage`, and starts it again on the same port
    /// and files. Blocks the calling thread.
    pub fn restart_redis(&self, outage: Duration) -> anyhow::Result<()> {
        let redis = self
            .redis
            .as_ref()
            .context("Redis was given by URL, so the soak cannot restart it")?;
        let mut redis = redis.lock().unwrap_or_else(|p| p.into_inner());
        redis.kill();
        let starts = {
            let mut members = self.lock_members();
            for member in members.iter_mut() {
                if member.series.name.starts_with("redis-server") && member.series.ended.is_none() {
                    member.series.ended = Some(Instant::now());
                }
            }
            members
                .iter()
                .filter(|member| member.series.name.starts_with("redis-server"))
                .count()
        };
        std::thread::sleep(outage);
        redis.restart();
        if let Some(pid) = redis.pid() {
            let name = format!("redis-server start {}", starts + 1);
            self.lock_members().push(backend(&name, pid));
        }
        Ok(())
    }

    /// Marks the geoffrey processes that exited without the soak killing them.
    fn note_exits(&self) {
        let now = Instant::now();
        for member in self.lock_members().iter_mut() {
            let Some(child) = member.child.as_mut() else {
                continue;
            };
            if member.series.ended.is_some() {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                member.series.ended = Some(now);
                member.unexpected_exit = Some(format!(
                    "{} exited on its own with {status}",
                    member.series.name
                ));
            }
        }
    }

    /// Reads the resident set and CPU time of every running process, after noting the
    /// processes that exited.
    pub fn sample(&self) {
        self.note_exits();
        let now = Instant::now();
        let mut members = self.lock_members();
        for member in members.iter_mut().filter(|m| m.series.ended.is_none()) {
            let pid = member.series.pid;
            if let Some(rss_kib) = crate::targets::status_kib(pid, "VmRSS") {
                member.series.samples.push(Sample { at: now, rss_kib });
            }
            if let Some(cpu_time) = crate::targets::cpu_time(pid) {
                member.series.cpu_time = Some(cpu_time);
            }
        }
    }

    pub fn unexpected_exits(&self) -> Vec<String> {
        self.lock_members()
            .iter()
            .filter_map(|member| member.unexpected_exit.clone())
            .collect()
    }

    /// Calls `f` with every sampled series, in the order the processes started.
    pub fn with_series<T>(&self, f: impl FnOnce(&[&Series]) -> T) -> T {
        let members = self.lock_members();
        let series: Vec<&Series> = members.iter().map(|member| &member.series).collect();
        f(&series)
    }

    /// Counts the jobs of the soak's instance that are ready, delayed or leased, from the API
    /// server's `/metrics`.
    pub async fn pending_jobs(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let url = format!("http://{}/metrics", self.listen);
        let text = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let instance = format!("instance=\"{}\"", self.run_id);
        let mut pending = None;
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("geoffrey_queue_jobs{") else {
                continue;
            };
            let counted = ["ready", "delayed", "leased"]
                .iter()
                .any(|state| labels.contains(&format!("state=\"{state}\"")));
            if !labels.contains(&instance) || !counted {
                continue;
            }
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|value| value.parse().ok())
                .with_context(|| format!("unreadable metric line {line:?}"))?;
            *pending.get_or_insert(0) += value as u64;
        }
        pending.with_context(|| format!("{url} has no queue counts for {}", self.run_id))
    }

    /// Reads how much memory Redis uses and how many keys its database holds.
    pub async fn redis_usage(&self) -> anyhow::Result<RedisUsage> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await?;
        let used_bytes = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .context("INFO memory has no used_memory line")?;
        let keys = redis::cmd("DBSIZE").query_async(&mut connection).await?;
        Ok(RedisUsage { used_bytes, keys })
    }

    /// Reads every log entry of the soak's instance straight from CouchDB's `_all_docs`,
    /// not through Geoffrey, so the check does not rely on the code under test.
    pub async fn read_logs(&self, http: &reqwest::Client) -> anyhow::Result<Vec<LogRecord>> {
        let mut url = reqwest::Url::parse(&self.couch_url)?;
        let user = url.username().to_string();
        let password = url.password().map(str::to_string);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let database = format!("geoffrey-{}", self.run_id);
        let url = url.join(&format!("{database}/_all_docs"))?;

        let mut records = Vec::new();
        let mut start_key = serde_json::to_string("log:")?;
        let mut skip = 0;
        loop {
            let limit = LOG_PAGE.to_string();
            let skip_text = skip.to_string();
            let query = [
                ("include_docs", "true"),
                ("startkey", start_key.as_str()),
                ("endkey", "\"log;\""),
                ("limit", limit.as_str()),
                ("skip", skip_text.as_str()),
            ];
            let mut request = http.get(url.clone()).query(&query);
            if !user.is_empty() {
                request = request.basic_auth(&user, password.as_deref());
            }
            let page: serde_json::Value = request.send().await?.error_for_status()?.json().await?;
            let rows = page["rows"].as_array().cloned().unwrap_or_default();
            for row in &rows {
                let doc = &row["doc"];
                records.push(LogRecord {
                    event_id: doc["event_id"].as_str().map(str::to_string),
                    outcome: doc["outcome"].as_str().unwrap_or_default().to_string(),
                });
            }
            let Some(last) = rows.last() else { break };
            if rows.len() < LOG_PAGE {
                break;
            }
            start_key = serde_json::to_string(&last["id"])?;
            skip = 1;
        }
        Ok(records)
    }

    /// Kills every geoffrey process that still runs.
    pub fn stop(&self) {
        let now = Instant::now();
        for member in self.lock_members().iter_mut() {
            if let Some(child) = member.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if member.series.ended.is_none() {
                member.series.ended = Some(now);
            }
        }
    }

    /// Counts the warning and error lines in each geoffrey process's log, by message.
    pub fn log_summaries(&self) -> Vec<LogSummary> {
        self.lock_members()
            .iter()
            .filter_map(|member| {
                let text = std::fs::read_to_string(member.log.as_ref()?).ok()?;
                Some(summarize_log(&member.series.name, &text))
            })
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.stop();
    }
}

fn backend(name: &str, pid: u32) -> Member {
    Member {
        series: Series::new(name, pid, false),
        child: None,
        unexpected_exit: None,
        log: None,
    }
}

/// Redis's `used_memory` and the number of keys in its database.
#[derive(Debug, Clone, Copy)]
pub struct RedisUsage {
    pub used_bytes: u64,
    pub keys: u64,
}

/// Warnings and errors one process logged.
pub struct LogSummary {
    pub name: String,
    pub warnings: u64,
    pub errors: u64,
    /// Count of each warning and error message, keyed by level and message.
    pub messages: BTreeMap<(String, String), u64>,
}

fn summarize_log(name: &str, text: &str) -> LogSummary {
    let mut summary = LogSummary {
        name: name.to_string(),
        warnings: 0,
        errors: 0,
        messages: BTreeMap::new(),
    };
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = entry["level"].as_str().unwrap_or_default();
        match level {
            "WARN" => summary.warnings += 1,
            "ERROR" => summary.errors += 1,
            _ => continue,
        }
        let message = entry["fields"]["message"].as_str().unwrap_or_default();
        *summary
            .messages
            .entry((level.to_string(), message.to_string()))
            .or_default() += 1;
    }
    summary
}
