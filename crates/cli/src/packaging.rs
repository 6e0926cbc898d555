//! What packagers and operators need from the binary itself, generated
//! from the command line's own definitions: the version and the git commit
//! it was built from.

use std::io::Write;

use clap::Args;
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
