//! What is installed beside the binary, from the binary itself: version and
//! commit, shell completions that complete in real shells, man pages, and
//! the example environment file, which must be what the binary generates
//! and must load.
//!
//! zsh, fish and groff are used when installed; with
//! `LANRAGE_REQUIRE_TOOLS=1` (`.ci/packaging` installs them) a missing one
//! fails the test instead of being skipped.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
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

/// Whether `program` can be run; when it cannot, the test says so and
/// skips it, unless `LANRAGE_REQUIRE_TOOLS=1` makes that a failure.
fn installed(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("LANRAGE_REQUIRE_TOOLS").is_none_or(|v| v != "1"),
            "{program} is not installed and LANRAGE_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
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

/// What `shell` completes for `line` with our script, one candidate each.
fn complete(shell: &str, line: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = stdout(&run(&["completions", shell], &[]));
    let helpers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shells");
    let output = match shell {
        "bash" => {
            let path = dir.path().join("lanrage-control.bash");
            std::fs::write(&path, script).unwrap();
            Command::new("bash")
                .arg("--norc")
                .arg(helpers.join("complete.bash"))
                .args([path.as_os_str(), line.as_ref()])
                .output()
        }
        "zsh" => {
            // zsh finds completion functions by file name in its fpath.
            std::fs::write(dir.path().join("_lanrage-control"), script).unwrap();
            Command::new("timeout")
                .args(["30", "zsh", "-f"])
                .arg(helpers.join("complete.zsh"))
                .args([dir.path().as_os_str(), line.as_ref()])
                .output()
        }
        "fish" => {
            let path = dir.path().join("lanrage-control.fish");
            std::fs::write(&path, script).unwrap();
            Command::new("fish")
                .args([
                    "--no-config",
                    "-c",
                    "source $argv[1]; complete --do-complete $argv[2]",
                ])
                .args([path.as_os_str(), line.as_ref()])
                .output()
        }
        _ => unreachable!("no helper for {shell}"),
    }
    .unwrap();
    assert!(
        output.status.success(),
        "{shell} on {line:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // fish prints a description after a tab.
        .map(|l| l.split('\t').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn completions_complete_commands_options_and_values() {
    for shell in ["bash", "zsh", "fish"] {
        if !installed(shell) {
            continue;
        }
        let got = complete(shell, "lanrage-control ser");
        assert!(got.contains("serve"), "{shell}: {got:?}");

        // Past the subcommand: what clap-rs/clap#6421 broke in bash.
        let got = complete(shell, "lanrage-control serve --sqlite-s");
        assert!(got.contains("--sqlite-synchronous"), "{shell}: {got:?}");

        let got = complete(shell, "lanrage-control serve --sqlite-synchronous ");
        assert_eq!(
            got,
            BTreeSet::from(["full".to_owned(), "normal".to_owned()]),
            "{shell}"
        );

        // clap_complete's fish script completes options' values but not
        // positional ones.
        if shell != "fish" {
            let got = complete(shell, "lanrage-control completions ");
            for name in ["bash", "zsh", "fish"] {
                assert!(got.contains(name), "{shell}: {got:?}");
            }
        }
    }
}

/// The environment variable of every setting of `serve`.
fn settings() -> BTreeSet<String> {
    let serve = <lanrage_server::Config as clap::Args>::augment_args(clap::Command::new("serve"));
    serve
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn man_pages_render_and_document_every_setting() {
    let page = stdout(&run(&["man"], &[]));
    assert!(page.contains(".TH lanrage-control 1"), "{page}");
    assert!(page.contains(&format!("commit {}", expected_commit())));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    stdout(&run(&["man", "--out-dir", out.to_str().unwrap()], &[]));
    for page in [
        "lanrage-control.1",
        "lanrage-control-serve.1",
        "lanrage-control-version.1",
        "lanrage-control-config-example.1",
        "lanrage-control-party-join.1",
    ] {
        assert!(out.join(page).is_file(), "{page} missing");
    }
    let serve = std::fs::read_to_string(out.join("lanrage-control-serve.1")).unwrap();
    for setting in settings() {
        assert!(serve.contains(&setting), "{setting} not in the serve page");
    }

    if installed("groff") {
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            let output = Command::new("groff")
                // -k: through preconv, as man reads pages (UTF-8 text).
                .args(["-k", "-man", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

const EXAMPLE: &str = "deploy/control.env.example";

#[test]
fn the_example_environment_file_is_what_config_example_prints() {
    let committed = std::fs::read_to_string(workspace().join(EXAMPLE)).unwrap();

    let generated = stdout(&run(&["config", "example"], &[]));

    assert!(
        committed == generated,
        "{EXAMPLE} is not what `lanrage-control config example` prints now; \
         regenerate it: cargo run -q -p lanrage-cli -- config example > {EXAMPLE}"
    );
}

/// The example's lines as systemd's EnvironmentFile= reads them: the
/// settings given, and the names of those commented out.
fn read_environment_file(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut given, mut commented) = (Vec::new(), Vec::new());
    let is_name = |name: &str| {
        name.starts_with("LANRAGE_")
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(name) = comment.strip_suffix('=')
                && is_name(name)
            {
                commented.push(name.to_owned());
            }
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        assert!(is_name(name), "{line:?}");
        // Nothing systemd and a shell would read differently: no quotes,
        // escapes, expansions or spaces.
        assert!(
            !value.is_empty()
                && !value.contains(|c: char| c.is_whitespace() || "\"'\\$`;#".contains(c)),
            "{line:?}"
        );
        given.push((name.to_owned(), value.to_owned()));
    }
    (given, commented)
}

#[test]
fn the_example_environment_file_holds_every_setting_and_loads() {
    let text = std::fs::read_to_string(workspace().join(EXAMPLE)).unwrap();
    let (given, commented) = read_environment_file(&text);

    let mut named: Vec<_> = given.iter().map(|(name, _)| name.clone()).collect();
    named.extend(commented.iter().cloned());
    let unique: BTreeSet<_> = named.iter().cloned().collect();
    assert_eq!(unique.len(), named.len(), "a setting twice: {named:?}");
    assert_eq!(unique, settings());
    // Settings without a default stay commented out, and only those.
    for optional in [
        "LANRAGE_DATABASE_URL",
        "LANRAGE_RELAY_KEY",
        "LANRAGE_TLS_CERT",
    ] {
        assert!(commented.iter().any(|n| n == optional), "{optional}");
    }
    assert!(
        given
            .iter()
            .any(|(n, v)| n == "LANRAGE_LISTEN" && v == "127.0.0.1:8667")
    );

    let output = run(&["config", "check"], &given);
    assert_eq!(stdout(&output), "settings accepted\n");

    // The check reads the environment: one value out of range fails it.
    let mut broken = given.clone();
    for (name, value) in &mut broken {
        if name == "LANRAGE_PEER_TIMEOUT_SECS" {
            *value = "0".to_owned();
        }
    }
    let output = run(&["config", "check"], &broken);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LANRAGE_PEER_TIMEOUT_SECS"), "{stderr}");
}

#[test]
fn config_check_reads_the_config_file_and_flags_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("control.toml");
    std::fs::write(&file, "peer-timeout-secs = 0\n").unwrap();
    let file = file.to_str().unwrap();

    let output = run(&["config", "check", "--config", file], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--peer-timeout-secs"), "{stderr}");

    // A flag overrides the file, as for serve.
    let output = run(
        &[
            "config",
            "check",
            "--config",
            file,
            "--peer-timeout-secs",
            "60",
        ],
        &[],
    );
    assert_eq!(stdout(&output), "settings accepted\n");

    let output = run(
        &["config", "check", "--tls-cert", "/only/the/cert.pem"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
}
