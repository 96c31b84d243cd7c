//! Records the git commit the binary is built from, for `lifewatch --version`.
//! A clean clone has git and its repository; a source tarball may have
//! neither, and then the version is printed without a commit.

use std::path::PathBuf;
use std::process::Command;

/// The trimmed standard output of `git ARGS`, when git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok().filter(|output| output.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string()).filter(|text| !text.is_empty())
}

fn main() {
    // Without this line cargo would rerun the script whenever any file of
    // the package changes; the lines below add the repository's refs.
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves (a checkout, a commit). A worktree keeps its
    // HEAD in its own git directory and the branches in the common one.
    for (flag, file) in
        [("--git-dir", "HEAD"), ("--git-common-dir", "refs/heads"), ("--git-common-dir", "packed-refs")]
    {
        if let Some(dir) = git(&["rev-parse", flag]) {
            let path = PathBuf::from(dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    // A tarball unpacked inside some other repository must not take that
    // repository's commit: the package has to be the top of the work tree.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let ours = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from).is_some_and(|top| {
        let canonical = |path: &PathBuf| path.canonicalize().ok();
        manifest_dir.as_ref().and_then(canonical).is_some_and(|manifest| canonical(&top) == Some(manifest))
    });
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .filter(|commit| ours && commit.bytes().all(|byte| byte.is_ascii_hexdigit()));
    // Cargo sets the package version for build scripts too.
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let version = match commit {
        Some(commit) => format!("{version} ({commit})"),
        None => version,
    };
    println!("cargo:rustc-env=LIFEWATCH_VERSION={version}");
}
