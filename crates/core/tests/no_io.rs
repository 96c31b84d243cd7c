//! lifewatch-core does no IO (ARCHITECTURE.md): no files, sockets, clock,
//! threads or async runtime; time is only ever an argument. That is what
//! makes a replay give exactly what production gives. These tests fail when
//! the crate gains a dependency not known to do no IO, when anything it
//! depends on pulls in a crate that does IO, or when its source names the
//! standard library's IO, clock or thread APIs or an async runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The dependencies core may have, each with why it does no IO. A crate not
/// listed here fails the test: check that it reads no files, opens no
/// sockets, reads no clock and starts no thread, then add it with a reason.
const ALLOWED_DEPENDENCIES: &[(&str, &str)] = &[
    ("serde", "data model and derives only"),
    ("serde_json", "parses and prints JSON from and to memory"),
    ("thiserror", "a derive for error types"),
    ("xxhash-rust", "hash functions over byte slices"),
    ("foldhash", "hash functions; its random state is seeded without a clock or the OS"),
    ("toml", "parses TOML text from memory (the configuration is read by the binary)"),
    ("hashbrown", "hash tables, built without default features"),
    ("schemars", "JSON Schema generation from types, behind the `schema` feature"),
    ("strum", "derives of enum names"),
    ("chrono", "RFC 3339 parsing and calendar arithmetic, without default features: no clock, no time zones"),
];

/// Crates that do IO (or exist to): none may be anywhere in core's
/// dependency tree, whichever allowed crate brings it in.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "async-nats",
    "futures-io",
    "hyper",
    "reqwest",
    "rusqlite",
    "libsqlite3-sys",
    "libc",
    "nix",
    "rustix",
    "getrandom",
    "tracing-subscriber",
];

/// What core's source must not name. Paths are matched with whitespace
/// removed; names are matched as whole identifiers.
const FORBIDDEN_PATHS: &[(&str, &str)] = &[
    ("std::fs", "files"),
    ("std::net", "sockets"),
    ("std::process", "processes"),
    ("std::thread", "threads"),
    ("std::env", "the environment"),
    ("std::io::stdin", "standard input"),
    ("std::time::SystemTime", "the wall clock"),
    ("std::time::Instant", "the monotonic clock"),
];
const FORBIDDEN_NAMES: &[(&str, &str)] = &[
    ("SystemTime", "the wall clock"),
    ("Instant", "the monotonic clock"),
    ("File", "files"),
    ("TcpStream", "sockets"),
    ("TcpListener", "sockets"),
    ("UdpSocket", "sockets"),
    ("tokio", "an async runtime"),
    ("thread", "threads"),
    ("fs", "files"),
    ("net", "sockets"),
    ("process", "processes"),
];

fn core_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The names of every dependency table of a manifest, target-specific ones included.
fn dependency_names(manifest: &toml::Table) -> BTreeSet<String> {
    let mut tables: Vec<&toml::Table> = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        tables.extend(manifest.get(section).and_then(toml::Value::as_table));
        if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
            tables.extend(
                targets.values().filter_map(|target| target.get(section).and_then(toml::Value::as_table)),
            );
        }
    }
    tables.into_iter().flat_map(|table| table.keys().cloned()).collect()
}

/// Problems with the dependencies a manifest declares.
fn dependency_problems(manifest: &toml::Table) -> Vec<String> {
    dependency_names(manifest)
        .into_iter()
        .filter(|name| !ALLOWED_DEPENDENCIES.iter().any(|(allowed, _)| allowed == name))
        .map(|name| {
            format!(
                "dependency `{name}` is not on the allow-list of crates known to do no IO: core must \
                 not read files, open sockets, read a clock or start threads (ARCHITECTURE.md); if \
                 `{name}` does none of that, add it to ALLOWED_DEPENDENCIES with the reason"
            )
        })
        .collect()
}

/// Every package `root` needs to build and run, transitively, from `cargo
/// metadata`'s resolve (normal dependencies only: dev-dependencies serve the
/// tests and build dependencies run at build time; a lock file cannot tell
/// them apart). Features are as the workspace unifies them, so a package that
/// turns on a feature of a shared crate is seen here too.
fn dependency_closure(metadata: &serde_json::Value, root: &str) -> BTreeSet<String> {
    let empty = Vec::new();
    let packages = metadata["packages"].as_array().unwrap_or(&empty);
    let name_of = |id: &str| {
        packages.iter().find(|package| package["id"] == id).and_then(|package| package["name"].as_str())
    };
    let nodes = metadata["resolve"]["nodes"].as_array().unwrap_or(&empty);
    let root_id = packages
        .iter()
        .find(|package| package["name"] == root)
        .and_then(|package| package["id"].as_str())
        .unwrap_or_default();
    let mut closure = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut pending = vec![root_id.to_string()];
    while let Some(id) = pending.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        closure.extend(name_of(&id).map(str::to_string));
        let Some(node) = nodes.iter().find(|node| node["id"] == id.as_str()) else { continue };
        for dependency in node["deps"].as_array().unwrap_or(&empty) {
            let normal = dependency["dep_kinds"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .any(|kind| kind["kind"].is_null());
            if normal && let Some(package) = dependency["pkg"].as_str() {
                pending.push(package.to_string());
            }
        }
    }
    closure
}

/// `cargo metadata` of the workspace, as JSON.
fn cargo_metadata() -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(core_dir().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// The code of a Rust source file with comments and the contents of string
/// and character literals blanked out (newlines kept), so that only code is
/// searched: a doc comment or a message may mention what code may not use.
fn code_of(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let next = chars.get(index + 1).copied();
        if c == '/' && next == Some('/') {
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while index < chars.len() {
                if chars[index] == '/' && chars.get(index + 1) == Some(&'*') {
                    depth += 1;
                    index += 2;
                } else if chars[index] == '*' && chars.get(index + 1) == Some(&'/') {
                    depth -= 1;
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    code.push(blank(chars[index]));
                    index += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('#' | '"')) && !continues_identifier(&chars, index) {
            let hashes = chars[index + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(index + 1 + hashes) != Some(&'"') {
                code.push(c);
                index += 1;
                continue;
            }
            index += 2 + hashes;
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while index < chars.len() && !chars[index..].starts_with(&closing) {
                code.push(blank(chars[index]));
                index += 1;
            }
            index += closing.len();
        } else if c == '"' {
            index += 1;
            while index < chars.len() && chars[index] != '"' {
                if chars[index] == '\\' {
                    index += 1;
                }
                if let Some(&skipped) = chars.get(index) {
                    code.push(blank(skipped));
                }
                index += 1;
            }
            index += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal such as '\n' or '\u{1}'.
            index += 2;
            while index < chars.len() && chars[index] != '\'' {
                index += 1;
            }
            index += 1;
        } else if c == '\'' && chars.get(index + 2) == Some(&'\'') {
            index += 3;
        } else {
            // Code, or the quote of a lifetime.
            code.push(c);
            index += 1;
        }
    }
    code
}

/// Whether the character before `index` makes it part of an identifier.
fn continues_identifier(chars: &[char], index: usize) -> bool {
    index > 0 && (chars[index - 1].is_alphanumeric() || chars[index - 1] == '_')
}

/// What `source` (one file) names that core must not, one line per finding.
fn source_problems(file: &str, source: &str) -> Vec<String> {
    let code = code_of(source);
    let mut problems = Vec::new();
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    for (path, what) in FORBIDDEN_PATHS {
        if compact.contains(path) {
            problems.push(format!("{file} uses `{path}`: core does no IO ({what})"));
        }
    }
    let identifiers: BTreeSet<&str> =
        code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|word| !word.is_empty()).collect();
    for (name, what) in FORBIDDEN_NAMES {
        if identifiers.contains(name) {
            problems.push(format!("{file} names `{name}`: core does no IO ({what})"));
        }
    }
    problems
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display())).path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn core_depends_only_on_crates_that_do_no_io() {
    let manifest: toml::Table =
        read(&core_dir().join("Cargo.toml")).parse().expect("core's Cargo.toml is TOML");
    let problems = dependency_problems(&manifest);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(dependency_names(&manifest).contains("serde"), "the manifest's dependencies were read");
}

#[test]
fn nothing_core_depends_on_does_io() {
    let closure = dependency_closure(&cargo_metadata(), "lifewatch-core");
    assert!(closure.contains("serde_json"), "the dependency tree was read: {closure:?}");
    let found: Vec<&str> = IO_CRATES.iter().copied().filter(|name| closure.contains(*name)).collect();
    assert!(
        found.is_empty(),
        "lifewatch-core's dependency tree includes {found:?}, which do IO: core must do none (ARCHITECTURE.md)"
    );
}

#[test]
fn core_source_names_no_io_clock_thread_or_runtime() {
    let src = core_dir().join("src");
    let files = rust_files(&src);
    assert!(files.len() > 5, "the source files were found: {files:?}");
    let problems: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let name = path.strip_prefix(&src).unwrap_or(path).display().to_string();
            source_problems(&name, &read(path))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above must be able to fail: each kind of violation is found.
#[test]
fn the_checks_find_what_they_forbid() {
    let manifest: toml::Table =
        "[dependencies]\nserde = \"1\"\n[target.'cfg(unix)'.dependencies]\ntokio = \"1\"\n"
            .parse()
            .expect("TOML");
    let problems = dependency_problems(&manifest);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`tokio`"));

    let metadata = serde_json::json!({
        "packages": [
            {"name": "lifewatch-core", "id": "core"},
            {"name": "toml", "id": "toml"},
            {"name": "mio", "id": "mio"},
            {"name": "proptest", "id": "proptest"},
            {"name": "getrandom", "id": "getrandom"},
        ],
        "resolve": {"nodes": [
            {"id": "core", "deps": [
                {"pkg": "toml", "dep_kinds": [{"kind": null}]},
                {"pkg": "proptest", "dep_kinds": [{"kind": "dev"}]},
            ]},
            {"id": "toml", "deps": [{"pkg": "mio", "dep_kinds": [{"kind": null}]}]},
            {"id": "proptest", "deps": [{"pkg": "getrandom", "dep_kinds": [{"kind": null}]}]},
        ]},
    });
    let closure = dependency_closure(&metadata, "lifewatch-core");
    assert!(closure.contains("mio"), "{closure:?}");
    assert!(!closure.contains("getrandom"), "a dev-dependency's tree counted: {closure:?}");

    let cases = [
        "use std::fs::File;",
        "use std::{collections::HashMap, fs};",
        "let now = std::time::SystemTime::now();",
        "use std::time::{Duration, Instant};",
        "std::thread::spawn(|| {});",
        "use std :: net :: TcpStream;",
        "#[tokio::main]",
        "let text = std::env::var(\"X\");",
        "std::process::exit(1);",
    ];
    for case in cases {
        assert!(!source_problems("case.rs", case).is_empty(), "{case} was not found");
    }
    let fine = [
        "//! Instants and durations in event time; no std::fs here.",
        "/* SystemTime */ let processed = 1; // tokio",
        "let threads_of_the_story = \"fs\".len() + r#\"net\"#.len();",
        "let quote = '\"'; let name = \"std::fs\"; fn f<'a>(x: &'a str) {}",
    ];
    for case in fine {
        let problems = source_problems("case.rs", case);
        assert!(problems.is_empty(), "{case}: {problems:?}");
    }
}
