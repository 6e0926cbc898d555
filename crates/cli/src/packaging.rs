//! What packagers and operators install beside the binary: the version and
//! commit, shell completions and man pages, each generated from the command
//! line's own definitions so none can drift from what the binary accepts.

use std::{io::Write, path::PathBuf};

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;
use serde::Serialize;

/// The version and the commit it was built from (`unknown` when the build
/// had no git repository and was not told), as `--version` prints it.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LANRAGE_GIT_COMMIT"),
    ")"
);

/// The binary's name, which completion scripts and man pages are for.
pub const BIN: &str = "lanrage-control";

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print `{"version": …, "commit": …}` instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn version(args: &VersionArgs) -> std::io::Result<()> {
    if args.json {
        // A struct rather than `json!`, which would sort the keys.
        #[derive(Serialize)]
        struct Version {
            version: &'static str,
            commit: &'static str,
        }
        let body = Version {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("LANRAGE_GIT_COMMIT"),
        };
        let body = serde_json::to_string(&body).map_err(std::io::Error::other)?;
        writeln!(std::io::stdout().lock(), "{body}")
    } else {
        writeln!(std::io::stdout().lock(), "{BIN} {VERSION}")
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write a page for every command (lanrage-control.1,
    /// lanrage-control-serve.1, …) into this folder instead of the main
    /// page to stdout.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs, mut command: clap::Command) -> std::io::Result<()> {
    // clap_complete's `generate` panics on a write error; rendering into
    // memory first keeps a closed pipe an error like any other.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, BIN, &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if args.shell == Shell::Bash {
        script = mend_bash(&script);
    }
    std::io::stdout().lock().write_all(script.as_bytes())
}

/// clap_complete's bash script names each subcommand's state one way where
/// it tracks the words typed (`lanrage__control__subcmd__serve`) and
/// another in the `case` arms that offer its options
/// (`lanrage__subcmd__control__subcmd__serve`) when the binary's name holds
/// a hyphen, so nothing past the subcommand would complete
/// (clap-rs/clap#6421, open in 4.6.12). The arms are renamed to the
/// tracked spelling; once clap spells them alike, there is nothing to
/// rename.
fn mend_bash(script: &str) -> String {
    let wrong = format!("{}__subcmd__", BIN.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", BIN.replace('-', "__"));
    script.replace(&wrong, &right)
}

pub fn man(args: &ManArgs, command: clap::Command) -> anyhow::Result<()> {
    match &args.out_dir {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
            .with_context(|| format!("cannot write the man pages into {}", dir.display())),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            Ok(std::io::stdout().lock().write_all(&page)?)
        }
    }
}
