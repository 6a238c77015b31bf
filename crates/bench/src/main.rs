//! `geoffrey-bench`: measures how many signed webhook deliveries per second a Geoffrey
//! accepts, with latency percentiles and the server's peak memory, next to a bare axum
//! endpoint measured in the same run as the ceiling.
//!
//! Every target runs as its own process, started and stopped by the bench, so its memory
//! can be read from `/proc/<pid>/status` (VmHWM, the peak resident set). The load generator
//! keeps `--connections` requests in flight for `--duration`. Every delivery has its own
//! event id and body, so none is a duplicate, and each becomes one queued job.
//!
//! `geoffrey-bench logs` fills a store with a million log entries and times the queries of
//! the web UI's log pages and dashboard (see `logs`).
//!
//! `geoffrey-bench soak` instead runs a distributed Geoffrey at a steady rate for a long
//! time, through worker and Redis restarts, and checks outcomes and memory (see `soak`).

mod load;
mod logs;
mod soak;
mod targets;

/// One target's measurement in one round.
struct Round {
    report: load::Report,
    peak_rss_kib: Option<u64>,
    /// Server CPU time per request sent, in microseconds.
    cpu_per_request_us: Option<f64>,
}

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "geoffrey-bench",
    about = "Benchmark Geoffrey's webhook intake",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Targets to measure, in order: bare, embedded, redis.
    #[arg(long, value_delimiter = ',', default_value = "bare,embedded,redis")]
    targets: Vec<targets::Kind>,
    /// Measuring time per target, after a one-second warm-up.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Rounds over all targets; each figure is the median round of its target. The targets
    /// share two cores with the load generator, so single rounds vary.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests kept in flight at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The geoffrey binary to measure; defaults to the one next to this binary.
    #[arg(long)]
    geoffrey: Option<PathBuf>,
    /// Sends the load to a running Geoffrey's hook URL instead of starting targets, such as
    /// http://127.0.0.1:8080/hooks/discourse/forum. The instance needs a relay rule for
    /// topic_created, so that deliveries make jobs.
    #[arg(long, requires = "secret")]
    url: Option<String>,
    /// The webhook secret of the instance behind --url.
    #[arg(long)]
    secret: Option<String>,
    /// Serves the bare endpoint on this address instead of benchmarking; used internally.
    #[arg(long, hide = true)]
    serve_bare: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Runs a distributed Geoffrey at a steady rate while restarting a worker and Redis, then
    /// checks that every accepted delivery has one outcome and that memory stayed flat. Exits
    /// with status 1 when a check fails.
    Soak(Box<soak::SoakArgs>),
    /// Fills a store with log entries and times the log pages' queries: the first page, a
    /// deep page, filtered pages, one job's attempts and the dashboard's hourly counts.
    Logs(logs::LogsArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(BenchCommand::Logs(logs_args)) = args.command {
        runtime.block_on(logs::run(logs_args))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(BenchCommand::Soak(soak_args)) = args.command {
        let geoffrey = geoffrey_binary(soak_args.geoffrey.clone())?;
        let passed = runtime.block_on(soak::run(*soak_args, &geoffrey))?;
        return Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Some(addr) = args.serve_bare {
        runtime.block_on(targets::serve_bare(addr))?;
        return Ok(ExitCode::SUCCESS);
    }
    runtime.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// Returns `path`, or the geoffrey binary next to this one; fails when the file is missing.
fn geoffrey_binary(path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let geoffrey = match path {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("geoffrey"),
    };
    if !Path::new(&geoffrey).exists() {
        anyhow::bail!(
            "geoffrey binary not found at {}; build it with `cargo build --release` or pass --geoffrey",
            geoffrey.display()
        );
    }
    Ok(geoffrey)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let (Some(url), Some(secret)) = (&args.url, &args.secret) {
        let report =
            load::drive(url, secret, args.connections, Duration::from(args.duration)).await;
        println!(
            "{url}: {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            report.per_second(),
            report.percentile_ms(50.0),
            report.percentile_ms(99.0),
            report.errors
        );
        return Ok(());
    }
    let geoffrey = geoffrey_binary(args.geoffrey)?;
    let duration = Duration::from(args.duration);
    let mut results: Vec<(targets::Kind, Vec<Round>)> = args
        .targets
        .iter()
        .map(|kind| (*kind, Vec::new()))
        .collect();
    for round in 1..=args.rounds.max(1) {
        for (kind, rounds) in &mut results {
            let target = targets::start(*kind, &geoffrey).await?;
            let cpu_before = target.cpu_time();
            let report = load::drive(&target.url, &target.secret, args.connections, duration).await;
            // CPU per request over the whole run, warm-up included.
            let cpu = target
                .cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after - before);
            let cpu_per_request_us = cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / report.sent() as f64);
            let peak_rss_kib = target.peak_rss_kib();
            target.stop();
            eprintln!(
                "round {round}: {} {:.0}/s",
                kind.as_str(),
                report.per_second()
            );
            rounds.push(Round {
                report,
                peak_rss_kib,
                cpu_per_request_us,
            });
        }
    }

    println!(
        "{:<10} {:>12} {:>8} {:>10} {:>10} {:>10} {:>12} {:>8} {:>11}",
        "target",
        "accepted/s",
        "of bare",
        "p50 ms",
        "p99 ms",
        "max ms",
        "peak RSS MiB",
        "errors",
        "CPU us/req"
    );
    let mut bare_rate = None;
    for (kind, mut rounds) in results {
        rounds.sort_by(|a, b| a.report.per_second().total_cmp(&b.report.per_second()));
        let median = &rounds[rounds.len() / 2];
        let rate = median.report.per_second();
        if kind == targets::Kind::Bare {
            bare_rate = Some(rate);
        }
        let share = bare_rate.map(|bare| format!("{:.0}%", 100.0 * rate / bare));
        let peak = rounds.iter().filter_map(|round| round.peak_rss_kib).max();
        println!(
            "{:<10} {:>12.0} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>12} {:>8} {:>11}",
            kind.as_str(),
            rate,
            share.unwrap_or_else(|| "n/a".into()),
            median.report.percentile_ms(50.0),
            median.report.percentile_ms(99.0),
            median.report.percentile_ms(100.0),
            peak.map(|kib| format!("{:.1}", kib as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".into()),
            median.report.errors,
            median
                .cpu_per_request_us
                .map_or_else(|| "n/a".to_string(), |us| format!("{us:.0}")),
        );
    }
    Ok(())
}
