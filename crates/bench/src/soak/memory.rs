//! Resident memory of the soak's processes, and the rule that decides whether it stayed flat.
//!
//! The rule applies to each Geoffrey process over its own life: from its start (or the start
//! of the load, if later) to the end of the load (or its kill). The final figure is the median
//! VmRSS of the samples in the last fifth of that life. The baseline is the median over the
//! stretch that starts once the process has settled and lasts a fifth of its life, or until
//! the last fifth begins. A process has settled after the first fifth of its life and one
//! lease after the end of the last restart (of a worker or of Redis) that began during its
//! life and before its last fifth. Memory stayed flat when the final figure exceeds the
//! baseline by at most the tolerance: a percentage of the baseline or a fixed amount,
//! whichever is larger. A process without a sample in either window is not judged.
//!
//! The baseline waits for the restarts because the API server's resident set steps up at a
//! Redis outage and stays there. In trial soaks at 200 deliveries per second on two cores it
//! rose by about 20 MiB at the outage and not at a second one. Comparing a window before a
//! restart with one after it would report that step as growth, which is not how a leak looks.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub rss_kib: u64,
}

/// The samples of one process.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub pid: u32,
    /// Whether the flatness rule applies; redis-server and PouchDB Server are sampled for
    /// information only.
    pub judged: bool,
    pub started: Instant,
    /// When the soak killed the process or saw it exit; `None` while it runs.
    pub ended: Option<Instant>,
    pub samples: Vec<Sample>,
    /// CPU time (user and system) the process had used at its last sample.
    pub cpu_time: Option<Duration>,
}

impl Series {
    pub fn new(name: impl Into<String>, pid: u32, judged: bool) -> Self {
        Self {
            name: name.into(),
            pid,
            judged,
            started: Instant::now(),
            ended: None,
            samples: Vec::new(),
            cpu_time: None,
        }
    }
}

/// Allowed growth from the baseline: `percent` of it or `mib`, whichever is larger.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub percent: f64,
    pub mib: f64,
}

impl Tolerance {
    fn allowed_kib(&self, baseline_kib: u64) -> f64 {
        (baseline_kib as f64 * self.percent / 100.0).max(self.mib * 1024.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Flat,
    Grew,
    /// Sampled for information only.
    Informational,
    /// No sample in the baseline or final window, for example because the process settled
    /// too late after a restart.
    TooShort,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Flat => "flat",
            Verdict::Grew => "GREW",
            Verdict::Informational => "info",
            Verdict::TooShort => "too short",
        }
    }
}

#[derive(Debug)]
pub struct Summary {
    pub name: String,
    pub pid: u32,
    /// Start and end of the judged life, as offsets from the start of the load.
    pub life: (Duration, Duration),
    pub samples: usize,
    pub min_kib: Option<u64>,
    pub max_kib: Option<u64>,
    pub baseline_kib: Option<u64>,
    pub final_kib: Option<u64>,
    /// Average share of one core used from the process's start to its last sample.
    pub cpu_percent: Option<f64>,
    pub verdict: Verdict,
}

/// A restart during the load: when it began, and when processes count as settled after it.
#[derive(Debug, Clone, Copy)]
pub struct Disruption {
    pub started: Instant,
    pub settled: Instant,
}

/// Applies the rule to `series` for a load that ran from `load_start` to `load_end`, with
/// restarts at `disruptions`.
pub fn summarize(
    series: &Series,
    load_start: Instant,
    load_end: Instant,
    disruptions: &[Disruption],
    tolerance: Tolerance,
) -> Summary {
    let born = series.started.max(load_start);
    let died = series.ended.unwrap_or(load_end).min(load_end).max(born);
    let fifth = (died - born) / 5;
    let final_start = died - fifth;

    let settled = disruptions
        .iter()
        .filter(|disruption| disruption.started >= born && disruption.started < final_start)
        .map(|disruption| disruption.settled)
        .fold(born + fifth, Instant::max);
    let baseline_end = (settled + fifth).min(final_start);
    let baseline = median_between(&series.samples, settled, baseline_end);
    let final_rss = median_between(&series.samples, final_start, died + Duration::from_nanos(1));

    let verdict = match (series.judged, baseline, final_rss) {
        (false, _, _) => Verdict::Informational,
        (true, Some(baseline), Some(final_rss)) => {
            let growth = final_rss.saturating_sub(baseline) as f64;
            if growth <= tolerance.allowed_kib(baseline) {
                Verdict::Flat
            } else {
                Verdict::Grew
            }
        }
        (true, _, _) => Verdict::TooShort,
    };

    let last_sample = series.samples.last().map(|sample| sample.at);
    let cpu_percent = series.cpu_time.zip(last_sample).and_then(|(cpu, at)| {
        let wall = at.checked_duration_since(series.started)?.as_secs_f64();
        (wall > 0.0).then(|| 100.0 * cpu.as_secs_f64() / wall)
    });
    let values = series.samples.iter().map(|sample| sample.rss_kib);
    Summary {
        name: series.name.clone(),
        pid: series.pid,
        life: (born - load_start, died - load_start),
        samples: series.samples.len(),
        min_kib: values.clone().min(),
        max_kib: values.max(),
        baseline_kib: baseline,
        final_kib: final_rss,
        cpu_percent,
        verdict,
    }
}

/// Writes every sample as CSV to `path`: process, pid, seconds from `load_start`, RSS in KiB.
pub fn write_csv(path: &Path, series: &[&Series], load_start: Instant) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "process,pid,seconds,rss_kib")?;
    for series in series {
        for sample in &series.samples {
            let seconds = sample
                .at
                .saturating_duration_since(load_start)
                .as_secs_f64();
            writeln!(
                out,
                "{},{},{seconds:.1},{}",
                series.name, series.pid, sample.rss_kib
            )?;
        }
    }
    out.flush()
}

/// Returns the median RSS of the samples taken at or after `from` and before `until`.
fn median_between(samples: &[Sample], from: Instant, until: Instant) -> Option<u64> {
    let mut window: Vec<u64> = samples
        .iter()
        .filter(|sample| sample.at >= from && sample.at < until)
        .map(|sample| sample.rss_kib)
        .collect();
    if window.is_empty() {
        return None;
    }
    window.sort_unstable();
    Some(window[window.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Tolerance = Tolerance {
        percent: 20.0,
        mib: 4.0,
    };

    /// Builds a series sampled once a second for `seconds`, with RSS `rss(second)` in KiB.
    fn series(start: Instant, seconds: u64, rss: impl Fn(u64) -> u64) -> Series {
        let mut series = Series::new("serve", 1, true);
        series.started = start;
        series.samples = (0..seconds)
            .map(|second| Sample {
                at: start + Duration::from_secs(second),
                rss_kib: rss(second),
            })
            .collect();
        series
    }

    #[test]
    fn steady_series_is_flat() {
        let start = Instant::now();
        let series = series(start, 100, |second| 16_000 + second % 7 * 100);
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::Flat);
        assert_eq!(summary.samples, 100);
    }

    #[test]
    fn warm_up_growth_is_ignored() {
        let start = Instant::now();
        let series = series(
            start,
            100,
            |second| if second < 20 { 4_000 } else { 30_000 },
        );
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.baseline_kib, Some(30_000));
        assert_eq!(summary.verdict, Verdict::Flat);
    }

    #[test]
    fn steady_growth_is_caught() {
        let start = Instant::now();
        // 200 KiB a second: 33,000 KiB at the baseline, 45,000 KiB at the end.
        let series = series(start, 100, |second| 27_000 + second * 200);
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::Grew);
    }

    #[test]
    fn growth_within_fixed_allowance_is_flat() {
        let start = Instant::now();
        // Grows by about 3 MiB between the windows: over 20% of the baseline of about 11.5 MiB,
        // but within the 4 MiB allowance.
        let series = series(start, 100, |second| 10_240 + second * 51);
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::Flat);
    }

    #[test]
    fn killed_process_is_judged_over_its_own_life() {
        let start = Instant::now();
        let mut killed = series(start, 50, |second| 16_000 + second * 10);
        killed.ended = Some(start + Duration::from_secs(50));
        let summary = summarize(
            &killed,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.life, (Duration::ZERO, Duration::from_secs(50)));
        assert_eq!(summary.final_kib, Some(16_450));
        assert_eq!(summary.verdict, Verdict::Flat);
    }

    #[test]
    fn step_at_a_restart_is_not_growth() {
        let start = Instant::now();
        // A step from 11 to 31 MiB at a restart at 50 s, flat afterwards.
        let series = series(
            start,
            100,
            |second| if second < 50 { 11_264 } else { 31_744 },
        );
        let restart = Disruption {
            started: start + Duration::from_secs(50),
            settled: start + Duration::from_secs(55),
        };
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[restart],
            TOLERANCE,
        );
        assert_eq!(summary.baseline_kib, Some(31_744));
        assert_eq!(summary.verdict, Verdict::Flat);
    }

    #[test]
    fn growth_after_the_last_restart_is_caught() {
        let start = Instant::now();
        let series = series(start, 100, |second| 20_000 + second * 200);
        let restart = Disruption {
            started: start + Duration::from_secs(30),
            settled: start + Duration::from_secs(40),
        };
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[restart],
            TOLERANCE,
        );
        // Baseline window 40 s to 60 s, final window 80 s to 100 s.
        assert_eq!(summary.baseline_kib, Some(30_000));
        assert_eq!(summary.final_kib, Some(38_000));
        assert_eq!(summary.verdict, Verdict::Grew);
    }

    #[test]
    fn late_restart_is_ignored() {
        let start = Instant::now();
        let series = series(start, 100, |_| 16_000);
        let late = Disruption {
            started: start + Duration::from_secs(90),
            settled: start + Duration::from_secs(99),
        };
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[late],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::Flat);
    }

    #[test]
    fn settling_into_the_last_fifth_is_too_short() {
        let start = Instant::now();
        let series = series(start, 100, |_| 16_000);
        let restart = Disruption {
            started: start + Duration::from_secs(70),
            settled: start + Duration::from_secs(85),
        };
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[restart],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::TooShort);
    }

    #[test]
    fn process_without_samples_is_too_short() {
        let start = Instant::now();
        let series = series(start, 0, |_| 0);
        let summary = summarize(
            &series,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::TooShort);
    }

    #[test]
    fn backend_is_informational() {
        let start = Instant::now();
        let mut redis = series(start, 100, |second| 8_000 + second * 1_000);
        redis.judged = false;
        let summary = summarize(
            &redis,
            start,
            start + Duration::from_secs(100),
            &[],
            TOLERANCE,
        );
        assert_eq!(summary.verdict, Verdict::Informational);
    }
}
