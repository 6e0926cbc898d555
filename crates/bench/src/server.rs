//! The server under test: a child process of this binary (or one already
//! running), and its CPU time and memory read from `/proc`.

use std::process::Stdio;

use anyhow::Context;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// What the benchmark talks to.
#[derive(Debug)]
pub struct Target {
    /// `http://host:port`
    pub base: String,
    pub pid: Option<u32>,
    child: Option<Child>,
}

/// CPU seconds and memory of the server at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

impl Target {
    pub fn external(url: String, pid: Option<u32>) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            pid,
            child: None,
        }
    }

    /// Starts this binary as the server on `database_url`.
    pub async fn spawn(database_url: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve-for-bench", "--database-url", database_url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout from the server")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = lines
            .next_line()
            .await?
            .context("the server exited before printing its address")?;
        Ok(Self {
            base: format!("http://{address}"),
            pid: child.id(),
            child: Some(child),
        })
    }

    pub fn describe(&self) -> String {
        match (&self.child, self.pid) {
            (Some(_), Some(pid)) => format!("started by the benchmark, pid {pid}"),
            (None, Some(pid)) => format!("external, pid {pid}"),
            _ => "external, CPU and memory not measured".into(),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.base.replacen("http", "ws", 1))
    }

    /// The server's CPU time and memory now, if it can be read.
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.pid?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields of the whole line.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Some(Usage {
            cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
            rss_bytes: kib("VmRSS:"),
            peak_rss_bytes: kib("VmHWM:"),
        })
    }

    pub async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The child side: a server with benchmark-friendly settings, its address
/// on stdout.
pub async fn serve_for_bench(database_url: String) -> anyhow::Result<()> {
    let mut config = lanrage_server::Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = Some(database_url);
    // One address generates all the load: per-address limits would measure
    // the limiter, not the server. (The abuse scenario spreads its hostile
    // connections over addresses below the default caps anyway.)
    config.rate_limit = lanrage_server::config::Switch::Off;
    config.max_connections_per_ip = 1_000_000;
    config.ws_max_unauthenticated_per_ip = 1_000_000;
    config.ws_max_sockets_per_peer = 4;
    config.signal_queue_max = 10_000;
    lanrage_server::telemetry::init(config.log_format);
    let server = lanrage_server::Server::start(config).await?;
    println!("{}", server.local_addr()?);
    server.run(std::future::pending()).await?;
    Ok(())
}
