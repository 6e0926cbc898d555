//! The optional TOML config file of `serve`: every setting by its flag
//! name, under flags and environment variables in precedence.
//!
//! ```toml
//! listen = "0.0.0.0:8667"
//! database-url = "sqlite:///var/lib/lanrage/control.db"
//! peer-timeout-secs = 300
//! cors-origins = ["https://lanrage.example"]
//! ```
//!
//! The file is read before the command line is parsed: each setting it
//! holds that neither a flag nor its environment variable gives is added
//! as a flag, so it is parsed, then checked by [`Config::validate`], like
//! any other, and a bad value fails at start naming the flag.
//!
//! [`Config::validate`]: crate::Config::validate

use std::{ffi::OsString, path::PathBuf};

use clap::CommandFactory;

use crate::config::Settings;

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error(
        "unknown setting {key:?} in {path} (settings are named like the flags of `serve --help`)"
    )]
    Unknown { key: String, path: PathBuf },
    #[error("setting {key:?} in {path} must be a string, number, boolean or list of those")]
    Type { key: String, path: PathBuf },
}

/// The path given by `--config PATH`, `--config=PATH` or `LANRAGE_CONFIG`.
fn config_path(args: &[OsString], env: &impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    env("LANRAGE_CONFIG").map(PathBuf::from)
}

fn value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(value_text)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        _ => None,
    }
}

/// `args` (the arguments after `serve`) with the config file's settings
/// added where neither a flag nor an environment variable sets them.
/// `env` looks up environment variables.
pub fn with_config_file(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<OsString>, ConfigFileError> {
    let Some(path) = config_path(&args, &env) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })?;
    let command = Settings::command();
    let mut args = args;
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(setting) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            return Err(ConfigFileError::Unknown {
                key: key.clone(),
                path: path.clone(),
            });
        };
        let on_command_line = args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{long}") || a.starts_with(&format!("--{long}="))
        });
        let in_environment = setting
            .get_env()
            .and_then(|name| env(&name.to_string_lossy()))
            .is_some();
        if on_command_line || in_environment {
            continue;
        }
        let value = value_text(value).ok_or_else(|| ConfigFileError::Type {
            key: key.clone(),
            path: path.clone(),
        })?;
        args.push(format!("--{long}={value}").into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::Config;

    /// The arguments `serve --config FILE ARGS` becomes, with `env` as the
    /// environment.
    fn expand(file: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.toml");
        std::fs::write(&path, file).unwrap();
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let mut all: Vec<OsString> = vec!["serve".into(), "--config".into(), path.into()];
        all.extend(args.iter().map(OsString::from));
        let all = with_config_file(all, |name| env.get(name).cloned()).map_err(|e| {
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                text.push_str(&format!(": {source}"));
            }
            text
        })?;
        Ok(all
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect())
    }

    /// The settings `serve --config FILE` runs with, checked as `serve`
    /// checks them.
    fn parse(file: &str) -> Result<Config, String> {
        let args = expand(file, &[], &[])?;
        let config = Settings::try_parse_from(args)
            .map(|s| s.config)
            .map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn file_settings_apply_under_flags_and_environment() {
        let file = "peer-timeout-secs = 120\ntoken_ttl_secs = 60\nrelay-timeout-secs = 900\n\
                    cors-origins = [\"https://a.example\", \"https://b.example\"]\n";
        let args = expand(
            file,
            &["--relay-timeout-secs", "30"],
            &[("LANRAGE_TOKEN_TTL_SECS", "45")],
        )
        .unwrap();
        assert!(
            args.contains(&"--peer-timeout-secs=120".to_owned()),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--token-ttl-secs")),
            "the environment wins: {args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--relay-timeout-secs=")),
            "a flag wins: {args:?}"
        );
        let config = parse(file).unwrap();
        assert_eq!(config.peer_timeout_secs, 120);
        assert_eq!(config.token_ttl_secs, 60);
        assert_eq!(
            config.cors_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn bad_files_fail_naming_the_setting() {
        let unknown = parse("peer-timeout = 5\n").unwrap_err();
        assert!(unknown.contains("peer-timeout"), "{unknown}");
        let invalid = parse("peer-timeout-secs = 0\n").unwrap_err();
        assert!(invalid.contains("--peer-timeout-secs"), "{invalid}");
        let broken = parse("peer-timeout-secs = \n").unwrap_err();
        assert!(broken.contains("not valid TOML"), "{broken}");
        let nested = parse("[listen]\nport = 1\n").unwrap_err();
        assert!(nested.contains("listen"), "{nested}");
    }
}
