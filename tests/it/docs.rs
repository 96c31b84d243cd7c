//! The doc test: every shell example of README.md, docs/*.md and
//! ops/runbooks/*.md runs as written, against the binary under test.
//!
//! The conventions, which this test enforces so that no example escapes it:
//!
//! - A runnable example is a ```` ```sh ```` block. Its lines run in one
//!   `bash` with `set -euo pipefail`, from a directory that looks like the
//!   repository root (`fixtures/`, `ops/`, `scripts/` and `schemas/` are
//!   links to the real ones), with the binary under test first on `PATH`.
//!   The blocks of one file share that directory, in the order written, so a
//!   later block may use the database an earlier one made.
//! - A transcript is a ```` ```console ```` block: each `$ ` line is a command,
//!   the lines after it are what it prints on standard output, compared
//!   exactly (trailing spaces aside).
//! - Attributes follow the language on the fence line: `nats` starts a
//!   `nats-server` for the block (the block names it `nats://127.0.0.1:4222`,
//!   and `NATS_URL` is set); `no-test: REASON` marks a block that cannot run
//!   here, with its reason. Few may be so marked (`MAX_UNTESTED`).
//! - In every block `/tmp/` stands for a directory of the test's own and
//!   `4222` (and `9464`) for a free port, so examples stay the ones a reader
//!   copies.
//! - A runbook's `$DB` is a database replayed from the fixture of the same
//!   name (`ops/runbooks/stuck.md` → `fixtures/stuck.jsonl`), or from
//!   `fixtures/launch-day.jsonl` when there is none (`monitor_down.md`).
//! - A block without a language that holds a `$ ` or `lifewatch ` line, or a
//!   shell block spelt otherwise (`bash`, `shell`), fails the test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TempDir;
use crate::nats_support::{NatsServer, free_port};

/// How long one block (or one transcript command) may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(90);

/// How many blocks may be marked `no-test` across all the documents: the
/// builds, installs and benchmarks that cannot run inside a test.
const MAX_UNTESTED: usize = 8;

/// What a fenced block is.
#[derive(Debug, PartialEq)]
enum Kind {
    /// ```` ```sh ````: a script.
    Script,
    /// ```` ```console ````: commands and their output.
    Transcript,
}

/// One fenced shell block of a document.
#[derive(Debug)]
struct Block {
    /// The document, relative to the repository root.
    file: String,
    /// The line of its opening fence, from 1.
    line: usize,
    kind: Kind,
    needs_nats: bool,
    /// The reason it is not run, when it is marked `no-test`.
    untested: Option<String>,
    /// Its text, with the fence's indentation removed.
    body: String,
}

impl Block {
    fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The documents whose examples are tested: README.md, docs/*.md and
/// ops/runbooks/*.md, relative to the repository root.
fn documents() -> Vec<String> {
    let root = crate::common::repo_root();
    let mut files = vec!["README.md".to_string()];
    for dir in ["docs", "ops/runbooks"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|error| panic!("cannot list {dir}: {error}"))
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".md"))
            .map(|name| format!("{dir}/{name}"))
            .collect();
        names.sort();
        files.extend(names);
    }
    files
}

/// The shell blocks of one document, or the first violation of the
/// conventions, naming the file and line.
fn parse(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else { continue };
        let place = format!("{file}:{}", index + 1);
        let indent = line.len() - trimmed.len();
        let mut body = String::new();
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                closed = true;
                break;
            }
            let spaces = inner.len() - inner.trim_start_matches(' ').len();
            body.push_str(&inner[spaces.min(indent)..]);
            body.push('\n');
        }
        if !closed {
            return Err(format!("{place}: the block is never closed"));
        }
        let (language, attributes) = match info.trim().split_once(char::is_whitespace) {
            Some((language, attributes)) => (language, attributes.trim()),
            None => (info.trim(), ""),
        };
        let kind = match language {
            "sh" => Kind::Script,
            "console" => Kind::Transcript,
            "bash" | "shell" | "zsh" => {
                return Err(format!(
                    "{place}: write shell examples as ```sh (or ```console for a transcript)"
                ));
            }
            "" if body.lines().any(|l| l.starts_with("$ ") || l.starts_with("lifewatch ")) => {
                return Err(format!(
                    "{place}: a shell example without a language: mark it ```sh, or ```console for a transcript"
                ));
            }
            _ => continue,
        };
        let mut needs_nats = false;
        let mut untested = None;
        let mut rest = attributes;
        while !rest.is_empty() {
            if let Some(reason) = rest.strip_prefix("no-test:") {
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(format!("{place}: `no-test:` needs a reason"));
                }
                untested = Some(reason.to_string());
                rest = "";
            } else if let Some(after) = rest.strip_prefix("nats") {
                needs_nats = true;
                rest = after.trim_start();
            } else {
                return Err(format!(
                    "{place}: unknown fence attribute in `{rest}` (known: nats, no-test: REASON)"
                ));
            }
        }
        blocks.push(Block { file: file.to_string(), line: index + 1, kind, needs_nats, untested, body });
    }
    Ok(blocks)
}

/// A directory that looks like the repository root for the examples: links
/// to the real `fixtures/`, `scripts/` and `schemas/`, a copy of `ops/`
/// (`check` refuses runbooks reached through a symbolic link), and room for
/// the databases the examples make.
fn workspace(name: &str) -> TempDir {
    let dir = TempDir::new(name);
    let root = crate::common::repo_root();
    for entry in ["fixtures", "scripts", "schemas"] {
        std::os::unix::fs::symlink(root.join(entry), dir.join(entry))
            .unwrap_or_else(|error| panic!("cannot link {entry}: {error}"));
    }
    let copied = Command::new("cp").arg("-R").arg(root.join("ops")).arg(dir.join("ops")).status();
    assert!(copied.is_ok_and(|status| status.success()), "cannot copy ops/ into {}", dir.display());
    std::fs::create_dir(dir.join("tmp")).unwrap_or_else(|error| panic!("cannot create tmp: {error}"));
    dir
}

/// What one run of `bash` gave.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `script` in `bash -c` with `set -euo pipefail` in `dir`, with the
/// binary under test first on `PATH` and `env` set, for at most
/// `BLOCK_LIMIT`; then ends whatever the script left running (its process
/// group), so a failed example leaves no server behind.
fn run_bash(dir: &Path, script: &str, env: &[(&str, String)]) -> Outcome {
    use std::os::unix::process::CommandExt;
    let bin_dir =
        Path::new(env!("CARGO_BIN_EXE_lifewatch")).parent().map(Path::to_path_buf).unwrap_or_default();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out_file = dir.join(".block-stdout");
    let err_file = dir.join(".block-stderr");
    let stdout = std::fs::File::create(&out_file).unwrap_or_else(|error| panic!("stdout file: {error}"));
    let stderr = std::fs::File::create(&err_file).unwrap_or_else(|error| panic!("stderr file: {error}"));
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .env("TMPDIR", dir.join("tmp"))
        .env_remove("LIFEWATCH_DB")
        .env_remove("NATS_URL")
        .env_remove("LIFEWATCH_NATS_URL")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start bash: {error}"));
    let deadline = Instant::now() + BLOCK_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("cannot wait for bash: {error}"),
        }
    };
    // Whatever the block started in the background (a server, a monitor)
    // is in bash's process group: end it, whether the block passed or not.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let mut stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n(stopped after {BLOCK_LIMIT:?})"));
    }
    Outcome {
        success: status.is_some_and(|status| status.success()),
        stdout: std::fs::read_to_string(&out_file).unwrap_or_default(),
        stderr,
    }
}

/// The block's text as run: `/tmp/` is the workspace's own `tmp/`, `4222`
/// the port of the test's server and `9464` (the web server's default) a
/// free port of its own.
fn substitute(text: &str, dir: &Path, (port, web_port): (u16, u16)) -> String {
    text.replace("/tmp/", &format!("{}/tmp/", dir.display()))
        .replace("4222", &port.to_string())
        .replace("9464", &web_port.to_string())
}

/// Lines without trailing spaces and without trailing empty lines.
fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let end = lines.iter().rposition(|line| !line.is_empty()).map_or(0, |last| last + 1);
    lines[..end].join("\n")
}

/// Runs one block, returning a failure message naming its place.
fn run_block(block: &Block, dir: &Path, env: &[(&str, String)]) -> Result<(), String> {
    let server = block.needs_nats.then(|| NatsServer::start(&[]));
    let port = server.as_ref().map_or_else(free_port, |server| server.port);
    let ports = (port, free_port());
    let mut env = env.to_vec();
    if server.is_some() {
        env.push(("NATS_URL", format!("nats://127.0.0.1:{port}")));
    }
    match block.kind {
        Kind::Script => {
            let outcome = run_bash(dir, &substitute(&block.body, dir, ports), &env);
            if outcome.success {
                Ok(())
            } else {
                Err(format!(
                    "{} failed:\n{}\n--- stderr:\n{}--- stdout:\n{}",
                    block.place(),
                    block.body,
                    outcome.stderr,
                    outcome.stdout
                ))
            }
        }
        Kind::Transcript => {
            for (command, expected) in transcript(&block.body) {
                let outcome = run_bash(dir, &substitute(&command, dir, ports), &env);
                if !outcome.success {
                    return Err(format!("{}: `{command}` failed:\n{}", block.place(), outcome.stderr));
                }
                let (expected, actual) = (normalise(&expected), normalise(&outcome.stdout));
                if expected != actual {
                    return Err(format!(
                        "{}: `{command}` printed\n{actual}\n--- where the document shows\n{expected}",
                        block.place()
                    ));
                }
            }
            Ok(())
        }
    }
}

/// A transcript's commands, each with the output shown after it.
fn transcript(body: &str) -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push((command.to_string(), String::new()));
        } else if let Some((_, output)) = steps.last_mut() {
            output.push_str(line);
            output.push('\n');
        }
    }
    steps
}

/// The environment of a document's blocks: a runbook's `$DB` is a database
/// replayed from the fixture of the same name.
fn document_env(file: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let Some(name) = file.strip_prefix("ops/runbooks/").and_then(|name| name.strip_suffix(".md")) else {
        return Vec::new();
    };
    let db = dir.join("runbook.db");
    // A runbook of an incident kind has the fixture of that kind; the
    // runbooks of the monitor's own risks (monitor_down.md, database.md, …)
    // work on the launch day.
    let fixture = match format!("fixtures/{name}.jsonl") {
        own if crate::common::repo_root().join(&own).is_file() => own,
        _ => "fixtures/launch-day.jsonl".to_string(),
    };
    let outcome =
        run_bash(dir, &format!("lifewatch replay --db '{}' {fixture} > /dev/null", db.display()), &[]);
    assert!(outcome.success, "{file}: cannot replay {fixture} for $DB: {}", outcome.stderr);
    vec![("DB", db.display().to_string())]
}

#[test]
fn every_shell_example_runs_as_written() {
    let root = crate::common::repo_root();
    let mut failures = Vec::new();
    let mut untested = Vec::new();
    let mut ran = 0;
    for file in documents() {
        let text =
            std::fs::read_to_string(root.join(&file)).unwrap_or_else(|error| panic!("{file}: {error}"));
        let blocks = match parse(&file, &text) {
            Ok(blocks) => blocks,
            Err(message) => {
                failures.push(message);
                continue;
            }
        };
        if blocks.iter().all(|block| block.untested.is_some()) {
            untested.extend(
                blocks
                    .iter()
                    .map(|block| format!("{}: {}", block.place(), block.untested.as_deref().unwrap_or(""))),
            );
            continue;
        }
        let dir = workspace("docs");
        let env = document_env(&file, &dir);
        for block in blocks {
            if let Some(reason) = &block.untested {
                untested.push(format!("{}: {reason}", block.place()));
                continue;
            }
            ran += 1;
            if let Err(message) = run_block(&block, &dir, &env) {
                failures.push(message);
            }
        }
    }
    eprintln!("doc test: {ran} blocks run; not run:\n  {}", untested.join("\n  "));
    assert!(failures.is_empty(), "{} example(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(ran >= 20, "only {ran} blocks ran: is the extraction broken?");
    assert!(
        untested.len() <= MAX_UNTESTED,
        "{} blocks are marked no-test, at most {MAX_UNTESTED} may be:\n{}",
        untested.len(),
        untested.join("\n")
    );
}

#[test]
fn the_extraction_follows_the_conventions() {
    let text = "intro\n\n```sh nats\nlifewatch publish x\n```\n\n1. step\n   ```console\n   $ lifewatch check\n   KIND\n   ```\n\n```sh no-test: builds a release\ncargo build --release\n```\n\n```json\n{}\n```\n";
    let blocks = parse("x.md", text).unwrap_or_else(|message| panic!("{message}"));
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    assert!(blocks[0].needs_nats && blocks[0].kind == Kind::Script && blocks[0].line == 3);
    assert_eq!(blocks[1].kind, Kind::Transcript);
    assert_eq!(transcript(&blocks[1].body), vec![("lifewatch check".to_string(), "KIND\n".to_string())]);
    assert_eq!(blocks[2].untested.as_deref(), Some("builds a release"));

    for (bad, why) in [
        ("```\nlifewatch check\n```\n", "without a language"),
        ("```bash\nls\n```\n", "write shell examples as ```sh"),
        ("```sh no-test:\nls\n```\n", "needs a reason"),
        ("```sh natz\nls\n```\n", "unknown fence attribute"),
        ("```sh\nls\n", "never closed"),
    ] {
        match parse("bad.md", bad) {
            Err(message) => assert!(message.contains(why) && message.starts_with("bad.md:1"), "{message}"),
            Ok(blocks) => panic!("accepted {bad:?} as {blocks:?}"),
        }
    }
}
