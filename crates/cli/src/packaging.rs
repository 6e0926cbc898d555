//! What packagers and operators install beside the binary: the version and
//! commit, shell completions, man pages and the example environment file,
//! each generated from the command line's own definitions so none can
//! drift from what the binary accepts.

use std::{io::Write, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use clap_complete::Shell;
use lanrage_server::Config;
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

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting of `serve` as an environment file (`NAME=value`
    /// lines, as systemd's EnvironmentFile= reads them), each with its
    /// default and its help; settings without a default are commented out.
    Example,
    /// Check the settings `serve` would run with (flags, environment,
    /// --config file) as `serve` checks them at start, then exit: status 0
    /// when they are accepted, 2 with the reason when not. Nothing is
    /// opened or bound.
    Check(Box<Config>),
}

pub fn config(args: &ConfigArgs, command: &clap::Command) -> std::io::Result<()> {
    match args.command {
        ConfigCommand::Example => std::io::stdout()
            .lock()
            .write_all(config_example(command).as_bytes()),
        // `main` checked the settings as `serve` does before it got here.
        ConfigCommand::Check(_) => writeln!(std::io::stdout().lock(), "settings accepted"),
    }
}

const EXAMPLE_HEADER: &str = "\
# Settings of `lanrage-control serve` as environment variables, one
# NAME=value a line, as systemd's EnvironmentFile= reads them. Each is shown
# with its default; settings without one are commented out. Flags given to
# `serve` override these, and these override a --config file.
#
# Generated by `lanrage-control config example`. Copy it, edit the copy
# (mode 0600 once it holds a secret) and check it:
#   sh -c 'set -a; . ./control.env; exec lanrage-control config check'
";

/// Width of the comment lines, `# ` included.
const WIDTH: usize = 78;

/// The environment file of every setting of `serve` (the subcommand of
/// `command` named so), in the order `serve --help` lists them.
pub fn config_example(command: &clap::Command) -> String {
    let mut text = EXAMPLE_HEADER.to_owned();
    let Some(serve) = command.find_subcommand("serve") else {
        return text;
    };
    for arg in serve.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut paragraphs: Vec<String> = help
            .split("\n\n")
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty())
            .collect();
        let values: Vec<_> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        // clap drops the full stop ending a one-paragraph help.
        if let Some(last) = paragraphs.last_mut() {
            if !last.ends_with('.') {
                last.push('.');
            }
            if !values.is_empty() {
                last.push_str(&format!(" One of: {}.", values.join(", ")));
            }
        }
        text.push('\n');
        for (i, paragraph) in paragraphs.iter().enumerate() {
            if i > 0 {
                text.push_str("#\n");
            }
            for line in wrap(paragraph, WIDTH - 2) {
                text.push_str("# ");
                text.push_str(&line);
                text.push('\n');
            }
        }
        let name = env.to_string_lossy();
        let defaults: Vec<_> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy())
            .collect();
        if defaults.is_empty() {
            text.push_str(&format!("#{name}=\n"));
        } else {
            text.push_str(&format!("{name}={}\n", defaults.join(",")));
        }
    }
    text
}

/// `text` in lines of at most `width` characters, broken between words (a
/// word longer than `width` gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_words_whole_and_lines_short() {
        let text = "one two three four five six seven";
        assert_eq!(
            wrap(text, 9),
            ["one two", "three", "four five", "six seven"]
        );
        assert_eq!(wrap("unbreakable-word x", 4), ["unbreakable-word", "x"]);
        assert!(wrap("", 10).is_empty());
    }
}
