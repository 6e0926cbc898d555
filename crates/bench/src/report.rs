//! Results: a line per scenario while running, a table at the end, and the
//! same numbers as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::server::{Target, Usage};

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub concurrency: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Server CPU seconds spent during the scenario.
    pub server_cpu_seconds: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub rss_bytes_per_socket: Option<u64>,
    /// Throughput as a share of the no-op route's, same run.
    pub share_of_noop: Option<f64>,
    pub note: Option<String>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl ScenarioResult {
    pub fn from_histogram(
        name: &str,
        latencies: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
        before: Option<Usage>,
        after: Option<Usage>,
        concurrency: usize,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        let requests = latencies.len();
        let mib = |bytes: u64| bytes as f64 / 1024.0 / 1024.0;
        Self {
            name: name.to_owned(),
            requests,
            errors,
            seconds,
            per_second: requests as f64 / seconds.max(f64::EPSILON),
            concurrency,
            p50_ms: ms(latencies.value_at_quantile(0.50)),
            p90_ms: ms(latencies.value_at_quantile(0.90)),
            p99_ms: ms(latencies.value_at_quantile(0.99)),
            max_ms: ms(latencies.max()),
            server_cpu_seconds: before
                .zip(after)
                .map(|(b, a)| a.cpu_seconds - b.cpu_seconds),
            server_rss_mib: after.map(|a| mib(a.rss_bytes)),
            server_peak_rss_mib: after.map(|a| mib(a.peak_rss_bytes)),
            rss_bytes_per_socket: None,
            share_of_noop: None,
            note: None,
        }
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "  {:>10.0}/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {}",
            self.per_second, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.errors
        );
        if let Some(cpu) = self.server_cpu_seconds {
            line.push_str(&format!("  server CPU {cpu:.2} s"));
        }
        if let Some(rss) = self.server_rss_mib {
            line.push_str(&format!("  RSS {rss:.1} MiB"));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!("\n  {note}"));
        }
        line
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub settings: String,
    pub cores: usize,
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    pub fn new(target: &Target, settings: &str, mut scenarios: Vec<ScenarioResult>) -> Self {
        let noop = scenarios
            .iter()
            .find(|s| s.name.starts_with("noop"))
            .map(|s| s.per_second);
        if let Some(noop) = noop {
            for scenario in scenarios
                .iter_mut()
                .filter(|s| s.concurrency > 1 && !s.name.contains("fan-out"))
            {
                scenario.share_of_noop = Some(scenario.per_second / noop);
            }
        }
        Self {
            server: format!("{} ({})", target.base, target.describe()),
            settings: settings.to_owned(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            scenarios,
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "\nserver: {}\nsettings: {}; {} cores, load generator on the same machine\n\n",
            self.server, self.settings, self.cores
        );
        out.push_str(&format!(
            "{:<48} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>7}\n",
            "scenario",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "CPU s",
            "RSS MiB",
            "/noop"
        ));
        for s in &self.scenarios {
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
            };
            out.push_str(&format!(
                "{:<48} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>8} {:>9} {:>7}\n",
                s.name,
                s.per_second,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms,
                s.errors,
                opt(s.server_cpu_seconds, 2),
                opt(s.server_rss_mib, 1),
                opt(s.share_of_noop, 2),
            ));
        }
        for s in self.scenarios.iter().filter(|s| s.note.is_some()) {
            out.push_str(&format!(
                "\n{}: {}",
                s.name,
                s.note.as_deref().unwrap_or_default()
            ));
        }
        out.push('\n');
        out
    }
}
