//! `geoffrey-bench soak`: a distributed Geoffrey under steady load for a set time, through
//! worker crashes and Redis restarts, with checks of every outcome and of memory.
//!
//! The soak starts redis-server and PouchDB Server on free ports of 127.0.0.1 (unless given
//! their URLs), one `geoffrey serve`, `--workers` `geoffrey work` processes and a chat webhook
//! receiver. It creates an instance whose relay rule posts each `topic_created` to the
//! receiver, with the topic id as the text, and sends signed deliveries at `--rate` per
//! second for `--duration`. At the `--worker-restarts` points it kills the first worker with
//! SIGKILL and starts a new one. At the `--redis-restarts` points it kills redis-server with
//! SIGKILL and starts it again after `--redis-outage`. Every `--sample-interval` it reads the
//! resident set (VmRSS) of each process.
//!
//! When the load ends it waits for the queue to drain, then checks the outcomes (see `tally`)
//! and the memory (see `memory`), prints a report, and returns whether every check passed.

mod deployment;
mod memory;
mod report;
mod sender;
mod tally;

use deployment::{Deployment, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::receiver::Receiver;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Length of the load, such as 20m.
    #[arg(long, default_value = "10m")]
    duration: humantime::Duration,
    /// Deliveries sent per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Number of `geoffrey work` processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// When to kill the first worker with SIGKILL and start a new one: comma-separated shares
    /// of the duration (25%) or times from the start (5m), or `none`. The memory check
    /// compares windows after the last restart, so leave the second half free of restarts.
    #[arg(long, value_delimiter = ',', default_value = "25%", value_parser = parse_point)]
    worker_restarts: Vec<Point>,
    /// When to kill redis-server with SIGKILL and start it again, in the same form.
    #[arg(long, value_delimiter = ',', default_value = "50%", value_parser = parse_point)]
    redis_restarts: Vec<Point>,
    /// Time redis-server stays down at each restart.
    #[arg(long, default_value = "2s")]
    redis_outage: humantime::Duration,
    /// `worker.lease` of the workers: a killed worker's jobs run again this long after they
    /// were taken. `worker.job_timeout` is set to a third of it.
    #[arg(long, default_value = "30s")]
    lease: humantime::Duration,
    /// Time between two readings of each process's resident memory.
    #[arg(long, default_value = "5s")]
    sample_interval: humantime::Duration,
    /// Allowed growth of a process's resident memory, in percent of its baseline.
    #[arg(long, default_value_t = 20.0)]
    rss_tolerance_percent: f64,
    /// Allowed growth of a process's resident memory in MiB, where that is more than the
    /// percentage.
    #[arg(long, default_value_t = 4.0)]
    rss_tolerance_mib: f64,
    /// Maximum wait after the load for the queue to drain.
    #[arg(long, default_value = "5m")]
    drain_timeout: humantime::Duration,
    /// Redis to use instead of starting redis-server, such as redis://127.0.0.1:6390/. The
    /// soak cannot restart it, so it skips the Redis restarts.
    #[arg(long)]
    redis_url: Option<String>,
    /// CouchDB to use instead of starting PouchDB Server, with an admin's credentials, such as
    /// http://admin:password@127.0.0.1:5984/.
    #[arg(long)]
    couch_url: Option<String>,
    /// The geoffrey binary to run; defaults to the one next to this binary.
    #[arg(long)]
    pub geoffrey: Option<PathBuf>,
}

/// A moment of the load: a share of its duration, or a time from its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Share(f64),
    After(Duration),
    Never,
}

impl Point {
    fn resolve(self, duration: Duration) -> Option<Duration> {
        match self {
            Point::Share(share) => Some(duration.mul_f64(share)),
            Point::After(after) => Some(after),
            Point::Never => None,
        }
    }
}

fn parse_point(text: &str) -> Result<Point, String> {
    let text = text.trim();
    if text == "none" {
        return Ok(Point::Never);
    }
    if let Some(percent) = text.strip_suffix('%') {
        let percent: f64 = percent
            .trim()
            .parse()
            .map_err(|_| format!("invalid percentage {text:?}; use a number such as 33%"))?;
        if !(0.0..100.0).contains(&percent) {
            return Err(format!("{text} is outside the load; use 0% to 99.9%"));
        }
        return Ok(Point::Share(percent / 100.0));
    }
    humantime::parse_duration(text)
        .map(Point::After)
        .map_err(|err| format!("invalid point {text:?} ({err}); use 33% or 5m"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    RestartWorker,
    RestartRedis,
}

/// One disruption as it happened.
pub struct Event {
    /// Time from the start of the load.
    pub at: Duration,
    /// Time the restart took, the outage included.
    pub took: Duration,
    pub description: String,
    pub failed: bool,
}

/// Returns the disruptions in time order; fails on a point after the end of the load.
fn plan(args: &SoakArgs, duration: Duration) -> anyhow::Result<Vec<(Duration, Action)>> {
    let mut plan = Vec::new();
    let points = [
        (&args.worker_restarts, Action::RestartWorker),
        (&args.redis_restarts, Action::RestartRedis),
    ];
    for (points, action) in points {
        for point in points {
            let Some(at) = point.resolve(duration) else {
                continue;
            };
            anyhow::ensure!(
                at < duration,
                "the restart at {} is not within the load of {}; use an earlier point",
                humantime::format_duration(at),
                humantime::format_duration(duration)
            );
            plan.push((at, action));
        }
    }
    plan.sort_by_key(|(at, _)| *at);
    Ok(plan)
}

fn validate(args: &SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number of deliveries per second"
    );
    anyhow::ensure!(
        args.workers > 0,
        "--workers must be at least 1, because the soak restarts the first worker"
    );
    anyhow::ensure!(
        Duration::from(args.lease) >= Duration::from_secs(3),
        "--lease must be at least 3s, so that a third of it is a usable job timeout"
    );
    anyhow::ensure!(
        !Duration::from(args.sample_interval).is_zero(),
        "--sample-interval must be longer than 0"
    );
    Ok(())
}

/// Runs the soak and prints its report; returns whether every check passed.
pub async fn run(args: SoakArgs, geoffrey: &Path) -> anyhow::Result<bool> {
    validate(&args)?;
    let duration = Duration::from(args.duration);
    let plan = plan(&args, duration)?;
    let receiver = Receiver::start().await;
    let deployment = start_deployment(&args, geoffrey, &receiver, &plan).await?;

    let redis_before = redis_usage(&deployment).await;
    let load = drive(&args, &deployment, plan).await?;

    let http = reqwest::Client::new();
    let drain_time = drain(&deployment, &http, Duration::from(args.drain_timeout)).await;
    let redis_after = redis_usage(&deployment).await;
    let logs = deployment.read_logs(&http).await?;
    let posts = receiver.texts();
    deployment.stop();

    let tolerance = memory::Tolerance {
        percent: args.rss_tolerance_percent,
        mib: args.rss_tolerance_mib,
    };
    let report = report::Report {
        args: &args,
        load_elapsed: load.elapsed,
        tally: tally::count(&load.sent, &posts, &logs),
        memory: judge_memory(&args, &deployment, &load, tolerance),
        events: load.events,
        drain_time,
        tolerance,
        redis: redis_before.zip(redis_after),
        host: load.host,
        unexpected_exits: deployment.unexpected_exits(),
        logs: deployment.log_summaries(),
    };
    report.print();
    Ok(report.failures().is_empty())
}

async fn start_deployment(
    args: &SoakArgs,
    geoffrey: &Path,
    receiver: &Receiver,
    plan: &[(Duration, Action)],
) -> anyhow::Result<Arc<Deployment>> {
    let options = Options {
        redis_url: args.redis_url.clone(),
        couch_url: args.couch_url.clone(),
        workers: args.workers,
        lease: Duration::from(args.lease),
    };
    let deployment = Deployment::start(&options, geoffrey, &receiver.url).await?;
    eprintln!(
        "soak: instance {} at {}; process logs, rss.csv and host.csv in {}",
        deployment.run_id,
        deployment.hook_url(),
        deployment.work_dir().display()
    );
    let restarts_redis = plan.iter().any(|(_, a)| *a == Action::RestartRedis);
    if !deployment.can_restart_redis() && restarts_redis {
        eprintln!("soak: Redis is given by URL, so the Redis restarts are skipped");
    }
    Ok(Arc::new(deployment))
}

/// The deliveries, restarts and host samples of the load.
struct Load {
    start: Instant,
    /// Time from the start to the last response.
    elapsed: Duration,
    sent: Vec<tally::Sent>,
    events: Vec<Event>,
    host: HostSamples,
}

/// Sends the load while the sampler and the planned restarts run beside it.
async fn drive(
    args: &SoakArgs,
    deployment: &Arc<Deployment>,
    plan: Vec<(Duration, Action)>,
) -> anyhow::Result<Load> {
    let duration = Duration::from(args.duration);
    let start = Instant::now();
    let interval = Duration::from(args.sample_interval);
    let sampler = sample_until(deployment.clone(), start, start + duration, interval);
    let sampler = tokio::spawn(sampler);
    let outage = Duration::from(args.redis_outage);
    let restarts = tokio::spawn(disrupt(deployment.clone(), start, plan, outage));

    let url = deployment.hook_url();
    let sent = sender::send(&url, deployment::SECRET, args.rate, start, duration).await?;
    let events = restarts.await?;
    let host = sampler.await?;
    let host_file = deployment.work_dir().join("host.csv");
    if let Err(err) = host.write_csv(&host_file) {
        eprintln!("soak: writing {} failed: {err}", host_file.display());
    }
    Ok(Load {
        start,
        elapsed: start.elapsed(),
        sent,
        events,
        host,
    })
}

/// Writes every memory sample to `rss.csv` and applies the flatness rule to each process.
fn judge_memory(
    args: &SoakArgs,
    deployment: &Deployment,
    load: &Load,
    tolerance: memory::Tolerance,
) -> Vec<memory::Summary> {
    let start = load.start;
    let load_end = start + Duration::from(args.duration);
    // Jobs a restart held up run again within a lease, so processes count as settled then.
    let lease = Duration::from(args.lease);
    let disruptions: Vec<memory::Disruption> = load
        .events
        .iter()
        .map(|event| memory::Disruption {
            started: start + event.at,
            settled: start + event.at + event.took + lease,
        })
        .collect();
    let samples_file = deployment.work_dir().join("rss.csv");
    deployment.with_series(|series| {
        if let Err(err) = memory::write_csv(&samples_file, series, start) {
            eprintln!("soak: writing {} failed: {err}", samples_file.display());
        }
        series
            .iter()
            .map(|series| memory::summarize(series, start, load_end, &disruptions, tolerance))
            .collect()
    })
}

/// Reads Redis's memory use; a failure only leaves it out of the report.
async fn redis_usage(deployment: &Deployment) -> Option<deployment::RedisUsage> {
    match deployment.redis_usage().await {
        Ok(usage) => Some(usage),
        Err(err) => {
            eprintln!("soak: reading Redis's memory use failed: {err:#}");
            None
        }
    }
}

/// Host load and queue length, sampled along with the processes' memory.
#[derive(Default)]
pub struct HostSamples {
    /// The host's one-minute load average at each sample, to show what else ran.
    pub load_averages: Vec<f64>,
    /// The instance's ready, delayed and leased jobs at each sample, to show whether the
    /// workers kept up.
    pub queued_jobs: Vec<u64>,
    /// Both in time order, with the time from the start of the load, for `host.csv`.
    pub timeline: Vec<(Duration, Option<f64>, Option<u64>)>,
}

impl HostSamples {
    /// Writes the timeline as CSV: seconds from the start, load average, queued jobs.
    fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut text = String::from("seconds,load_average,queued_jobs\n");
        for (at, load_average, queued) in &self.timeline {
            let load_average = load_average
                .map(|value| value.to_string())
                .unwrap_or_default();
            let queued = queued.map(|value| value.to_string()).unwrap_or_default();
            text.push_str(&format!(
                "{:.1},{load_average},{queued}\n",
                at.as_secs_f64()
            ));
        }
        std::fs::write(path, text)
    }
}

/// Samples every process's memory, the host's load and the queue each `interval` from
/// `start` until `end`.
async fn sample_until(
    deployment: Arc<Deployment>,
    start: Instant,
    end: Instant,
    interval: Duration,
) -> HostSamples {
    let http = reqwest::Client::new();
    let mut ticks = tokio::time::interval(interval);
    let mut samples = HostSamples::default();
    loop {
        ticks.tick().await;
        if Instant::now() >= end {
            samples.load_averages.sort_by(f64::total_cmp);
            samples.queued_jobs.sort_unstable();
            return samples;
        }
        deployment.sample();
        let load_average: Option<f64> = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok());
        samples.load_averages.extend(load_average);
        // The counts cannot be read while Redis is down; those samples are left out.
        let queued = deployment.pending_jobs(&http).await.ok();
        samples.queued_jobs.extend(queued);
        samples
            .timeline
            .push((start.elapsed(), load_average, queued));
    }
}

/// Carries out the planned restarts at their times from `start`.
async fn disrupt(
    deployment: Arc<Deployment>,
    start: Instant,
    plan: Vec<(Duration, Action)>,
    outage: Duration,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut worker_starts = 1;
    for (at, action) in plan {
        tokio::time::sleep_until((start + at).into()).await;
        let began = Instant::now();
        let at = began - start;
        let (description, result) = match action {
            Action::RestartWorker => {
                let old = worker_name(worker_starts);
                let new = worker_name(worker_starts + 1);
                worker_starts += 1;
                let description = format!("killed {old} with SIGKILL and started {new}");
                (description, deployment.restart_worker(&old, &new))
            }
            Action::RestartRedis if !deployment.can_restart_redis() => {
                let description = "skipped the Redis restart: Redis was given by URL".into();
                (description, Ok(()))
            }
            Action::RestartRedis => {
                let description = format!(
                    "killed redis-server with SIGKILL and started it again after {}",
                    humantime::format_duration(outage)
                );
                let deployment = deployment.clone();
                let restarted =
                    tokio::task::spawn_blocking(move || deployment.restart_redis(outage)).await;
                (description, restarted.unwrap_or_else(|err| Err(err.into())))
            }
        };
        if let Err(err) = &result {
            eprintln!("soak: {description} failed: {err:#}");
        } else {
            eprintln!("soak: {:>5.0} s: {description}", at.as_secs_f64());
        }
        events.push(Event {
            at,
            took: began.elapsed(),
            description,
            failed: result.is_err(),
        });
    }
    events
}

/// Returns the name of the first worker's `start`-th process.
fn worker_name(start: usize) -> String {
    if start == 1 {
        "worker-1".to_string()
    } else {
        format!("worker-1 start {start}")
    }
}

/// Waits until the soak's instance has no ready, delayed or leased jobs. Returns the time
/// that took, or `None` after `timeout`.
async fn drain(
    deployment: &Deployment,
    http: &reqwest::Client,
    timeout: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut next_report = started;
    loop {
        let pending = deployment.pending_jobs(http).await;
        if matches!(pending, Ok(0)) {
            return Some(started.elapsed());
        }
        if Instant::now() >= next_report {
            match &pending {
                Ok(count) => eprintln!("soak: waiting for {count} queued jobs"),
                Err(err) => eprintln!("soak: reading the queue counts failed: {err:#}"),
            }
            next_report += Duration::from_secs(10);
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        soak: SoakArgs,
    }

    fn args(options: &[&str]) -> SoakArgs {
        let command_line = std::iter::once("soak").chain(options.iter().copied());
        Cli::parse_from(command_line).soak
    }

    #[test]
    fn points_parse() {
        assert_eq!(parse_point("33%"), Ok(Point::Share(0.33)));
        assert_eq!(
            parse_point("5m"),
            Ok(Point::After(Duration::from_secs(300)))
        );
        assert_eq!(parse_point("none"), Ok(Point::Never));
        assert!(parse_point("100%").is_err());
        assert!(parse_point("soon").is_err());
    }

    #[test]
    fn plan_orders_restarts() {
        let args = args(&["--worker-restarts", "20%,60%", "--redis-restarts", "5m"]);
        let plan = plan(&args, Duration::from_secs(600)).expect("a valid plan");
        let times: Vec<u64> = plan.iter().map(|(at, _)| at.as_secs()).collect();
        assert_eq!(times, vec![120, 300, 360]);
        assert_eq!(plan[1].1, Action::RestartRedis);
    }

    #[test]
    fn plan_skips_none() {
        let args = args(&["--worker-restarts", "none", "--redis-restarts", "none"]);
        let plan = plan(&args, Duration::from_secs(600)).expect("a valid plan");
        assert!(plan.is_empty());
    }

    #[test]
    fn plan_rejects_points_after_the_end() {
        let args = args(&["--redis-restarts", "15m"]);
        assert!(plan(&args, Duration::from_secs(600)).is_err());
    }
}
