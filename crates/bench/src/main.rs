//! `lanrage-bench`: loads a real control server and prints what an operator
//! needs to size a deployment: requests/s, latency percentiles, errors, the
//! server's CPU time and resident memory, per scenario, and each route's
//! throughput as a share of the no-op ceiling measured in the same run.
//!
//! By default it starts its own server (this binary, re-executed as a child
//! process so the server's CPU and memory are measured apart from the load
//! generator's) on a temporary SQLite file, or on `--database-url`.

mod abuse;
mod http_load;
mod report;
mod server;
mod setup;
mod ws_load;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{Report, ScenarioResult};

#[derive(Debug, Parser)]
#[command(name = "lanrage-bench", about = "Benchmark the LANrage control plane")]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Scenarios to run (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,

    /// Seconds each HTTP scenario runs.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,

    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,

    /// Idle WebSocket members to connect in the `idle-sockets` scenario.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,

    /// Party sizes of the `fanout` scenario.
    #[arg(long, value_delimiter = ',', default_value = "8,64,256,1024")]
    fanout_sizes: Vec<usize>,

    /// Joins measured per party size in the `fanout` scenario.
    #[arg(long, default_value_t = 100)]
    fanout_rounds: usize,

    /// Hostile connections in the `abuse` scenario (4 in 10 slowloris
    /// heads, 3 sockets that never read, 3 resume storms).
    #[arg(long, default_value_t = 1000)]
    hostile_connections: usize,

    /// Resumes a second each never-reading and resume-storm socket of the
    /// `abuse` scenario sends (the server's default socket limit is 50).
    #[arg(long, default_value_t = 10)]
    hostile_rate: u32,

    /// Benchmark a running server instead of starting one (its CPU and
    /// memory are reported only with --server-pid).
    #[arg(long)]
    url: Option<String>,

    /// The process id of the server at --url, to read its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,

    /// Database of the server this starts (default: a temporary SQLite file).
    #[arg(long)]
    database_url: Option<String>,

    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// (internal) Run the server under test; prints its address.
    #[command(hide = true)]
    ServeForBench {
        #[arg(long)]
        database_url: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Noop,
    Heartbeat,
    PartyRead,
    PeerList,
    Churn,
    Register,
    IdleSockets,
    Fanout,
    /// Joins through one instance, members' sockets on a second instance
    /// on the same database (PostgreSQL only).
    CrossInstance,
    /// Hostile connections (slowloris heads, sockets that never read,
    /// resume storms) while a well-behaved client heartbeats and reads.
    Abuse,
}

impl Scenario {
    const ALL: [Scenario; 9] = [
        Self::Noop,
        Self::Heartbeat,
        Self::PartyRead,
        Self::PeerList,
        Self::Churn,
        Self::Register,
        Self::Fanout,
        Self::IdleSockets,
        Self::Abuse,
    ];
}

fn main() -> anyhow::Result<()> {
    // reqwest is built without a rustls provider (the client library's
    // choice, shared by the workspace): this binary's own clients need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(Internal::ServeForBench { database_url }) = cli.internal {
        return runtime.block_on(server::serve_for_bench(database_url));
    }
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Thousands of sockets need thousands of descriptors, here and in the
    // child server (which inherits the limit).
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let wanted = hard.min(1_048_576).max(soft);
    rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, hard)?;
    eprintln!("open-file limit: {wanted}");

    let scratch = tempfile::tempdir()?;
    let target = match &cli.url {
        Some(url) => server::Target::external(url.clone(), cli.server_pid),
        None => {
            let database_url = cli.database_url.clone().unwrap_or_else(|| {
                format!("sqlite://{}", scratch.path().join("bench.db").display())
            });
            server::Target::spawn(&database_url).await?
        }
    };
    eprintln!("server: {} ({})", target.base, target.describe());

    let scenarios = if cli.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        cli.scenarios.clone()
    };
    let duration = Duration::from_secs(cli.duration_secs);
    let mut results: Vec<ScenarioResult> = Vec::new();
    for scenario in scenarios {
        eprintln!("\n== {scenario:?}");
        let found = match scenario {
            Scenario::Noop => http_load::noop(&target, cli.concurrency, duration).await?,
            Scenario::Heartbeat => http_load::heartbeat(&target, cli.concurrency, duration).await?,
            Scenario::PartyRead => {
                http_load::party_read(&target, cli.concurrency, duration).await?
            }
            Scenario::PeerList => http_load::peer_list(&target, cli.concurrency, duration).await?,
            Scenario::Churn => http_load::churn(&target, cli.concurrency, duration).await?,
            Scenario::Register => http_load::register(&target, cli.concurrency, duration).await?,
            Scenario::IdleSockets => vec![ws_load::idle_sockets(&target, cli.sockets).await?],
            Scenario::Abuse => vec![
                abuse::abuse(
                    &target,
                    abuse::Hostiles::around(cli.hostile_connections, cli.hostile_rate),
                    duration.max(Duration::from_secs(10)),
                )
                .await?,
            ],
            Scenario::CrossInstance => {
                let Some(database_url) = cli
                    .database_url
                    .as_deref()
                    .filter(|u| u.starts_with("postgres"))
                else {
                    eprintln!(
                        "  skipped: needs --database-url postgres://… (instances share a database)"
                    );
                    continue;
                };
                let second = server::Target::spawn(database_url).await?;
                let mut found = Vec::new();
                for size in &cli.fanout_sizes {
                    let name =
                        format!("cross-instance fan-out to {size} (join on A → sockets on B)");
                    found.push(
                        ws_load::fanout_between(&target, &second, *size, cli.fanout_rounds, &name)
                            .await?,
                    );
                }
                second.stop().await;
                found
            }
            Scenario::Fanout => {
                let mut found = Vec::new();
                for size in &cli.fanout_sizes {
                    found.push(ws_load::fanout(&target, *size, cli.fanout_rounds).await?);
                }
                found
            }
        };
        for result in &found {
            eprintln!("{}", result.line());
        }
        results.extend(found);
    }

    let report = Report::new(&target, &cli_summary(&cli), results);
    println!("{}", report.table());
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("JSON written to {}", path.display());
    }
    target.stop().await;
    Ok(())
}

fn cli_summary(cli: &Cli) -> String {
    format!(
        "duration {}s, concurrency {}, sockets {}, fan-out sizes {:?} x {} rounds",
        cli.duration_secs, cli.concurrency, cli.sockets, cli.fanout_sizes, cli.fanout_rounds
    )
}
