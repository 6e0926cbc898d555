//! Records the git commit the binary is built from, for `--version` and
//! `lanrage-control version`, as `LANRAGE_GIT_COMMIT`.
//!
//! Order of precedence: `LANRAGE_GIT_COMMIT` in the build's environment (a
//! packager building from a tarball knows the commit; git does not), then
//! `git rev-parse --short HEAD` when this crate sits in its own repository,
//! else `unknown`. Building never fails for want of git.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

const UNKNOWN: &str = "unknown";

fn main() {
    println!("cargo:rerun-if-env-changed=LANRAGE_GIT_COMMIT");
    let commit = match std::env::var("LANRAGE_GIT_COMMIT") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_owned(),
        _ => from_git().unwrap_or_else(|| UNKNOWN.to_owned()),
    };
    println!("cargo:rustc-env=LANRAGE_GIT_COMMIT={commit}");
}

/// `git` run in this crate's folder; its trimmed stdout when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn from_git() -> Option<String> {
    // A copy of this crate inside someone else's repository (vendored, or
    // unpacked from a tarball into a checkout) must not report their commit:
    // the repository has to be this workspace, two folders up.
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.join("../..").canonicalize().ok()?;
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?)
        .canonicalize()
        .ok()?;
    if top != workspace {
        return None;
    }
    watch_head();
    git(&["rev-parse", "--short", "HEAD"])
}

/// Reruns this script when HEAD moves: a checkout changes HEAD itself, a
/// commit changes the branch's ref. `--git-path` finds both in a linked
/// worktree too, where `.git` is a file and refs live in the main
/// repository.
fn watch_head() {
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        return;
    };
    watch(&absolute(&head));
    // Detached HEAD has no ref to follow; HEAD itself changes then.
    let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) else {
        return;
    };
    if let Some(loose) = git(&["rev-parse", "--git-path", &branch]) {
        let loose = absolute(&loose);
        if loose.exists() {
            watch(&loose);
        } else {
            // The ref is packed for now; a commit writes it as a loose file,
            // which the nearest existing folder above it sees appear.
            if let Some(folder) = loose.ancestors().skip(1).find(|p| p.is_dir()) {
                watch(folder);
            }
        }
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        let packed = absolute(&packed);
        // A path that does not exist would rerun the script on every build.
        if packed.exists() {
            watch(&packed);
        }
    }
}

/// git answers `--git-path` relative to the folder it ran in.
fn absolute(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(manifest) if path.is_relative() => PathBuf::from(manifest).join(path),
        _ => path,
    }
}

/// Reruns this script when `path` changes, named relative to this crate's
/// folder: cargo reuses a build for another copy of the workspace that
/// shares its target folder (the build does not depend on where the tree
/// is), and a relative path makes it look at that copy's git files, not
/// those of the copy built first. The reverse is not caught: after a build
/// without git, a checkout sharing the target folder keeps `unknown` until
/// build.rs changes (`touch crates/cli/build.rs`).
fn watch(path: &Path) {
    let relative = std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|manifest| PathBuf::from(manifest).canonicalize().ok())
        .zip(path.canonicalize().ok())
        .map(|(base, path)| relative_to(&base, &path));
    let path = relative.as_deref().unwrap_or(path);
    println!("cargo:rerun-if-changed={}", path.display());
}

/// `path` as seen from `base`, both absolute and canonical.
fn relative_to(base: &Path, path: &Path) -> PathBuf {
    let base: Vec<_> = base.components().collect();
    let path: Vec<_> = path.components().collect();
    let common = base.iter().zip(&path).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    for component in &path[common..] {
        relative.push(component);
    }
    relative
}
