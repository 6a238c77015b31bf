//! The soak's report on stdout, and the list of failed checks behind its exit status.

use super::deployment::{LogSummary, RedisUsage};
use super::memory::{Summary, Tolerance, Verdict};
use super::tally::{Counts, Tally};
use super::{Event, HostSamples, SoakArgs};
use std::time::Duration;

/// Warning and error messages listed per process.
const LISTED_MESSAGES: usize = 6;

pub struct Report<'a> {
    pub args: &'a SoakArgs,
    /// Time from the first delivery sent to the last response.
    pub load_elapsed: Duration,
    pub tally: Tally,
    pub events: Vec<Event>,
    /// Time the queue took to drain after the load; `None` if it did not within the timeout.
    pub drain_time: Option<Duration>,
    pub memory: Vec<Summary>,
    pub tolerance: Tolerance,
    /// Redis's memory use before the load and after the drain.
    pub redis: Option<(RedisUsage, RedisUsage)>,
    /// Load averages and queue lengths during the load, each sorted.
    pub host: HostSamples,
    pub unexpected_exits: Vec<String>,
    pub logs: Vec<LogSummary>,
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "-".to_string(),
        |kib| format!("{:.1}", kib as f64 / 1024.0),
    )
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

impl Report<'_> {
    /// Returns every failed check as a sentence; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let kills = self.args.worker_restarts.len() as u64;
        let allowed = kills * crate::soak::deployment::WORKER_CONCURRENCY;
        let mut failures = self.tally.failures(allowed);
        if self.drain_time.is_none() {
            failures.push(format!(
                "the queue still had jobs {} after the load",
                humantime::format_duration(Duration::from(self.args.drain_timeout))
            ));
        }
        for event in self.events.iter().filter(|event| event.failed) {
            failures.push(format!("failed to carry out: {}", event.description));
        }
        failures.extend(self.unexpected_exits.iter().cloned());
        for summary in &self.memory {
            if summary.verdict == Verdict::Grew {
                failures.push(format!(
                    "{} (pid {}) grew from {} MiB to {} MiB",
                    summary.name,
                    summary.pid,
                    mib(summary.baseline_kib),
                    mib(summary.final_kib)
                ));
            }
        }
        failures
    }

    pub fn print(&self) {
        self.print_load();
        self.print_events();
        self.print_outcomes();
        self.print_memory();
        self.print_redis();
        self.print_logs();
        let failures = self.failures();
        println!();
        if failures.is_empty() {
            println!("result: PASS, every check held");
        } else {
            println!("result: FAIL");
            for failure in failures {
                println!("  - {failure}");
            }
        }
    }

    fn print_load(&self) {
        let args = self.args;
        let tally = &self.tally;
        let achieved = tally.sent as f64 / Duration::from(args.duration).as_secs_f64();
        println!(
            "geoffrey soak: {} at {}/s, {} workers, lease {}, Redis outage {}",
            humantime::format_duration(Duration::from(args.duration)),
            args.rate,
            args.workers,
            humantime::format_duration(Duration::from(args.lease)),
            humantime::format_duration(Duration::from(args.redis_outage)),
        );

        println!();
        println!("load");
        println!(
            "  sent              {} ({achieved:.1}/s over the duration; last answer after {})",
            tally.sent,
            seconds(self.load_elapsed)
        );

        println!("  accepted (2xx)    {}", tally.accepted);
        println!("  duplicate (2xx)   {}", tally.duplicate_responses);
        let unavailable_between = tally
            .unavailable_between
            .map(|(first, last)| format!(", sent between {} and {}", seconds(first), seconds(last)))
            .unwrap_or_default();
        println!(
            "  refused (503)     {}{unavailable_between}",
            tally.unavailable
        );
        if tally.unavailable > 0 {
            println!(
                "  503 latency       max {:.2} ms",
                tally.unavailable_latency_max.as_secs_f64() * 1000.0
            );
        }
        println!("  other statuses    {:?}", tally.rejected);
        println!("  no response       {}", tally.no_response);

        let latency = |percentile| {
            tally
                .latency_ms(percentile)
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.2} ms"))
        };
        println!(
            "  2xx latency       p50 {}, p99 {}, p99.9 {}, max {}",
            latency(50.0),
            latency(99.0),
            latency(99.9),
            latency(100.0)
        );

        let queued = &self.host.queued_jobs;
        if let (Some(first), Some(last)) = (queued.first(), queued.last()) {
            println!(
                "  queued jobs       min {first}, median {}, max {last} (ready, delayed and leased, at {} samples)",
                queued[queued.len() / 2],
                queued.len()
            );
        }
        let loads = &self.host.load_averages;
        if let (Some(first), Some(last)) = (loads.first(), loads.last()) {
            println!(
                "  host load average (1 min) min {first:.2}, median {:.2}, max {last:.2}, on {} cores",
                loads[loads.len() / 2],
                std::thread::available_parallelism().map_or(0, usize::from)
            );
        }
    }

    fn print_events(&self) {
        println!();
        println!("disruptions");
        if self.events.is_empty() {
            println!("  none");
        }
        for event in &self.events {
            let failed = if event.failed { " (FAILED)" } else { "" };
            println!("  {:>9}  {}{failed}", seconds(event.at), event.description);
        }
        match self.drain_time {
            Some(time) => println!("  queue drained {} after the load", seconds(time)),
            None => println!("  queue NOT drained within the drain timeout"),
        }
    }

    fn print_outcomes(&self) {
        let tally = &self.tally;
        println!();
        println!("outcomes of the deliveries answered 2xx");
        println!("  {:<22} {:>9} {:>7} {:>9}", "", "once", "lost", "repeated");
        let row = |name: &str, counts: &Counts| {
            println!(
                "  {name:<22} {:>9} {:>7} {:>9}",
                counts.once, counts.lost, counts.repeated
            );
            if !counts.lost_ids.is_empty() {
                println!("    first lost event ids: {:?}", counts.lost_ids);
            }
            if !counts.repeated_ids.is_empty() {
                println!(
                    "    first repeated (event id, count): {:?}",
                    counts.repeated_ids
                );
            }
        };
        row("receiver posts", &tally.posts);
        row("succeeded log entries", &tally.successes);
        if !tally.repeated_at.is_empty() {
            println!("  repeated deliveries by the next disruption after they were sent:");
            for (disruption, count) in self.repeats_by_disruption() {
                println!("    {count:>7}  {disruption}");
            }
        }
        println!("  log entries by outcome: {:?}", tally.outcomes);
        println!(
            "  deliveries answered 503 or not at all whose job ran anyway: {}",
            tally.unacknowledged_with_success
        );
        println!(
            "  posts or log entries of deliveries never sent: {}",
            tally.unknown
        );
    }

    /// Counts the repeated deliveries by the first disruption at or after their sending,
    /// which they were most likely in flight for.
    fn repeats_by_disruption(&self) -> Vec<(String, u64)> {
        let mut groups: Vec<(String, u64)> = self
            .events
            .iter()
            .map(|event| (format!("{}: {}", seconds(event.at), event.description), 0))
            .collect();
        let mut after_last = 0;
        for sent_at in &self.tally.repeated_at {
            match self.events.iter().position(|event| event.at >= *sent_at) {
                Some(index) => groups[index].1 += 1,
                None => after_last += 1,
            }
        }
        groups.push(("sent after the last disruption".to_string(), after_last));
        groups
    }

    fn print_memory(&self) {
        println!();
        println!("processes: resident memory (VmRSS, MiB) and average CPU (% of one core)");
        println!(
            "  final = median of the last fifth of each process's life; baseline = median of a \
             fifth after the first fifth and one lease after the last restart before the final \
             fifth; flat if final <= baseline + max({}%, {} MiB)",
            self.tolerance.percent, self.tolerance.mib
        );
        println!(
            "  {:<22} {:>8} {:>11} {:>7} {:>6} {:>6} {:>8} {:>6} {:>6}  verdict",
            "process", "pid", "life s", "samples", "CPU %", "min", "baseline", "final", "max"
        );
        for summary in &self.memory {
            let life = format!(
                "{:.0}-{:.0}",
                summary.life.0.as_secs_f64(),
                summary.life.1.as_secs_f64()
            );
            let cpu = summary
                .cpu_percent
                .map_or_else(|| "-".to_string(), |percent| format!("{percent:.1}"));
            println!(
                "  {:<22} {:>8} {:>11} {:>7} {:>6} {:>6} {:>8} {:>6} {:>6}  {}",
                summary.name,
                summary.pid,
                life,
                summary.samples,
                cpu,
                mib(summary.min_kib),
                mib(summary.baseline_kib),
                mib(summary.final_kib),
                mib(summary.max_kib),
                summary.verdict.as_str()
            );
        }
    }

    fn print_redis(&self) {
        let Some((before, after)) = self.redis else {
            return;
        };
        println!();
        println!("redis");
        println!(
            "  used_memory {:.1} MiB before the load, {:.1} MiB after the drain; {} keys after",
            before.used_bytes as f64 / 1_048_576.0,
            after.used_bytes as f64 / 1_048_576.0,
            after.keys
        );
        let accepted = self.tally.accepted + self.tally.duplicate_responses;
        if accepted > 0 {
            let growth = after.used_bytes.saturating_sub(before.used_bytes);
            println!(
                "  {:.0} bytes and {:.2} keys per delivery answered 2xx, kept until they expire",
                growth as f64 / accepted as f64,
                after.keys.saturating_sub(before.keys) as f64 / accepted as f64
            );
        }
    }

    fn print_logs(&self) {
        println!();
        println!("warnings and errors the geoffrey processes logged");
        for summary in &self.logs {
            println!(
                "  {}: {} warnings, {} errors",
                summary.name, summary.warnings, summary.errors
            );
            let mut messages: Vec<_> = summary.messages.iter().collect();
            messages.sort_by(|a, b| b.1.cmp(a.1));
            for ((level, message), count) in messages.into_iter().take(LISTED_MESSAGES) {
                println!("    {count:>6} x {level:<5} {message}");
            }
        }
    }
}
