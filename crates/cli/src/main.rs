//! `lanrage-control`: the LANrage control plane server and its command line.

mod commands;
mod packaging;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lanrage_server::{Config, Server, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "lanrage-control",
    version = packaging::VERSION,
    about = "LANrage control plane: rendezvous server for LAN-party mesh VPNs"
)]
struct Cli {
    /// Client options may also come before the command group.
    #[command(flatten)]
    leading: commands::LeadingArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane server (SQLite under ~/.lanrage/ by default).
    Serve(Box<Config>),
    /// Create, join (by ID or code), show, leave or watch a party on a
    /// control server; read its path plan and relay; as its host, hand out
    /// join codes, change its settings, hand it over or remove a member.
    Party(commands::party::PartyArgs),
    /// Send hole-punching signals to party members, or read yours.
    Signal(commands::signal::SignalArgs),
    /// List relays and their state, or register one and report its
    /// status (operators).
    Relay(commands::relay::RelayArgs),
    /// Log out (revoke the kept token), or rotate the peer's WireGuard key.
    Auth(commands::auth::AuthArgs),
    /// Who you are, the server and whether it answers, your token and
    /// your current party.
    Status(commands::status::StatusArgs),
    /// Operators, with the server's admin key: list, show and end parties,
    /// remove a member, list and deregister relays, revoke or ban a peer,
    /// the server's numbers.
    Admin(commands::admin::AdminArgs),
    /// Print the version and the git commit this binary was built from.
    Version(packaging::VersionArgs),
    /// Print a shell completion script to stdout.
    Completions(packaging::CompletionsArgs),
    /// Write the man page (roff) to stdout, or every command's page to a
    /// folder.
    Man(packaging::ManArgs),
    /// The server's settings: an example environment file, or a check of
    /// the settings `serve` would run with.
    Config(packaging::ConfigArgs),
}

/// Whether `args` run a command that reads `serve`'s settings, which a
/// `--config` file may hold: `serve` and `config check`.
fn reads_serve_settings(args: &[std::ffi::OsString]) -> bool {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("serve") => true,
        Some("config") => args.get(2).is_some_and(|a| a == "check"),
        _ => false,
    }
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if reads_serve_settings(&args) {
        // `serve --config FILE`: the file's settings, under flags and
        // environment variables.
        args = match lanrage_server::config_file::with_config_file(args, |name| {
            std::env::var_os(name)
        }) {
            Ok(args) => args,
            Err(error) => {
                eprintln!(
                    "error: {}",
                    anyhow::Error::from(error)
                        .chain()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(": ")
                );
                return ExitCode::from(2);
            }
        };
    }
    let matches = Cli::command().get_matches_from(args);
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // Client options written before the group (`--server URL party show`)
    // count as if written after it, unless the same option is also there.
    let leading = std::mem::take(&mut cli.leading);
    if let Some((name, group)) = matches.subcommand() {
        match &mut cli.command {
            Command::Serve(_)
            | Command::Version(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Config(_)
                if !leading.is_empty() =>
            {
                eprintln!(
                    "error: --server, --peer-id, --registration-key and --json before the command are for client commands, not {name}"
                );
                return ExitCode::from(2);
            }
            Command::Serve(_)
            | Command::Version(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Config(_) => {}
            Command::Party(args) => args.client = leading.merge_into(args.client.clone(), group),
            Command::Signal(args) => {
                args.client = leading.merge_into(args.client.clone(), group);
            }
            Command::Relay(args) => args.client = leading.merge_into(args.client.clone(), group),
            Command::Auth(args) => args.client = leading.merge_into(args.client.clone(), group),
            Command::Status(args) => {
                args.client = leading.merge_into(args.client.clone(), group);
            }
            Command::Admin(args) => args.client = leading.merge_into(args.client.clone(), group),
        }
    }
    // The parser only turned text into values; whether the server can run
    // with them is decided here, before anything starts, as a usage error.
    if let Command::Serve(config)
    | Command::Config(packaging::ConfigArgs {
        command: packaging::ConfigCommand::Check(config),
    }) = &cli.command
        && let Err(error) = config.validate()
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    if let Command::Party(args) = &cli.command
        && let Err(error) = args.check()
    {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Serve(config) => block_on(serve(*config)),
        Command::Party(args) => block_on(commands::party::run(args)),
        Command::Signal(args) => block_on(commands::signal::run(args)),
        Command::Relay(args) => block_on(commands::relay::run(args)),
        Command::Auth(args) => block_on(commands::auth::run(args)),
        Command::Status(args) => block_on(commands::status::run(args)),
        Command::Admin(args) => block_on(commands::admin::run(args)),
        // The rest only print: no runtime, no network.
        Command::Version(args) => packaging::version(&args).map_err(Into::into),
        Command::Completions(args) => {
            packaging::completions(&args, Cli::command()).map_err(Into::into)
        }
        Command::Man(args) => packaging::man(&args, Cli::command()),
        Command::Config(args) => packaging::config(&args, &Cli::command()).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output stopped reading (`| head`): not a failure.
        Err(error) if commands::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `future` to completion on a multi-threaded runtime of its own.
fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(future)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    let database = config.database_url();
    let server = Server::start(config).await?;
    // Handlers go in before the address is announced: a signal sent as soon
    // as the server is up must stop it gracefully, not kill it.
    let shutdown = shutdown_signal()?;
    tracing::info!(address = %server.local_addr()?, %database, "LANrage control plane listening");
    server.run(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Registers for SIGINT (Ctrl-C) and SIGTERM now; the future completes on
/// the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every argument and option of every command says what it is in
    /// `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "lanrage-control", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:#?}");
    }
}
