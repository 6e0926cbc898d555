//! What the binary says about itself: its version and the commit it was
//! built from.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const BIN: &str = env!("CARGO_BIN_EXE_lanrage-control");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `lanrage-control ARGS` with an environment holding nothing but `env`,
/// so settings in the environment of whoever runs the tests do not count.
fn run(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The commit the build script should have found: the one it was told, or
/// git's when the workspace is a git repository of its own, or `unknown`.
fn expected_commit() -> String {
    if let Ok(given) = std::env::var("LANRAGE_GIT_COMMIT")
        && !given.trim().is_empty()
    {
        return given.trim().to_owned();
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let own_repository = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .is_some_and(|top| top == workspace());
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) if own_repository => commit,
        _ => "unknown".to_owned(),
    }
}

#[test]
fn version_names_the_version_and_the_commit() {
    let commit = expected_commit();
    let line = format!(
        "lanrage-control {} (commit {commit})\n",
        env!("CARGO_PKG_VERSION")
    );

    assert_eq!(stdout(&run(&["--version"], &[])), line);
    assert_eq!(stdout(&run(&["version"], &[])), line);
    assert_eq!(
        stdout(&run(&["version", "--json"], &[])),
        format!(
            "{{\"version\":\"{}\",\"commit\":\"{commit}\"}}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    // Client options before a local command are refused, as before `serve`.
    assert_eq!(run(&["--json", "version"], &[]).status.code(), Some(2));
}
