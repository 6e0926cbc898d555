//! Structured logs: level from `RUST_LOG` (default `info`), text or JSON.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber; a second call is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a journal, a file or a pipe
    // gets plain text (and `NO_COLOR` turns them off anyway).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A request path as logged: a join code is a credential, so the segment
/// after `/invites/` is replaced by `{code}`.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/invites/") {
        Some(rest) => {
            let after_code = rest.find('/').map_or("", |at| &rest[at..]);
            format!("/invites/{{code}}{after_code}").into()
        }
        None => path.into(),
    }
}

/// An error with its chain of causes, for logs: `top: cause: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_codes_stay_out_of_logged_paths() {
        assert_eq!(loggable_path("/invites/FROG-7421"), "/invites/{code}");
        assert_eq!(
            loggable_path("/invites/frog%207421/join"),
            "/invites/{code}/join"
        );
        assert_eq!(
            loggable_path("/parties/p/invites/frog"),
            "/parties/p/invites/frog"
        );
        assert_eq!(loggable_path("/health"), "/health");
    }
}
