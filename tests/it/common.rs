//! Helpers shared by the end-to-end tests: running the `lifewatch` binary,
//! reading its records, and normalising them for comparison.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use lifewatch_core::Timestamp;
use serde_json::Value;

/// The root of the repository (the binary package).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The exit status code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Run {
    /// Standard output as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("lifewatch printed invalid UTF-8 on stdout")
    }

    /// Panics with the whole output unless the run exited 0.
    pub fn assert_success(&self) -> &Run {
        assert_eq!(
            self.code,
            Some(0),
            "lifewatch failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout_text(),
            self.stderr
        );
        self
    }

    /// Standard output parsed as JSON Lines.
    pub fn records(&self) -> Vec<Value> {
        self.stdout_text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"))
            })
            .collect()
    }
}

/// Runs `lifewatch ARGS` in the repository root, with `stdin` as standard
/// input (empty when `None`).
pub fn lifewatch(args: &[&str], stdin: Option<&[u8]>) -> Run {
    lifewatch_in(repo_root(), args, stdin)
}

/// Runs `lifewatch ARGS` in `dir`.
pub fn lifewatch_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        // A developer's own defaults must not leak into the tests.
        .env_remove("LIFEWATCH_DB")
        .env_remove("LIFEWATCH_NATS_URL")
        .env_remove("NATS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start lifewatch");
    let input = stdin.unwrap_or_default().to_vec();
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // Write from another thread so that a large input cannot deadlock against
    // a full stdout pipe.
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything (e.g. a usage error).
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("cannot wait for lifewatch");
    writer.join().expect("stdin writer panicked");
    Run {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `lifewatch replay FILES [--now NOW] --format jsonl`, which must succeed.
pub fn replay_jsonl(files: &[&str], now: Option<&str>) -> Run {
    let mut args = vec!["replay"];
    args.extend_from_slice(files);
    if let Some(now) = now {
        args.extend_from_slice(&["--now", now]);
    }
    args.extend_from_slice(&["--format", "jsonl"]);
    let run = lifewatch(&args, None);
    run.assert_success();
    run
}

/// A fresh, empty directory for one test under Cargo's target tmp dir,
/// removed when dropped. The one temporary-directory helper of the tests.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name starts with `name`.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{unique}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("cannot clear temp dir");
        }
        std::fs::create_dir_all(&dir).expect("cannot create temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database path in a fresh temporary directory; the directory lives as
/// long as the returned guard.
pub fn temp_db(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let path = dir.join("lifewatch.db");
    (dir, path)
}

/// One event line (no newline) with the given attributes and `data`.
pub fn event(id: &str, event_type: &str, subject: &str, time: &str, data: Value) -> Vec<u8> {
    serde_json::json!({"specversion": "1.0", "id": id, "source": "test/it", "type": event_type,
                       "subject": subject, "time": time, "data": data})
    .to_string()
    .into_bytes()
}

/// Every row of every table of a database (but `skip`), table by table in
/// name order and rows in rowid order, for "nothing changed" and "these two
/// databases are the same" comparisons. Tables are listed from the schema,
/// so a new table is compared without touching the tests.
pub fn database_rows(db: &Path, skip: &[&str]) -> Vec<String> {
    let connection = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database");
    let mut tables: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("list the tables");
    tables.retain(|table| !skip.contains(&table.as_str()));
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = connection.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).expect("select");
        let columns = statement.column_count();
        // Wall-clock columns (when an outbox entry was queued) differ between
        // two runs that store the same things.
        let wall_clock: Vec<bool> = (0..columns)
            .map(|index| statement.column_name(index).is_ok_and(|name| name == "queued_at_ms"))
            .collect();
        let mut query = statement.query([]).expect("query");
        while let Some(row) = query.next().expect("row") {
            let values: Vec<String> = (0..columns)
                .map(|index| match wall_clock[index] {
                    true => "<wall clock>".to_string(),
                    false => format!("{:?}", row.get_ref(index).expect("column")),
                })
                .collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

/// An incident reduced to the fields the conformance README compares:
/// kind, entity, owner, severity, status, opened_at and resolved_at as
/// instants, and state for `stuck` only.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Normalised {
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub kind: String,
    pub entity_type: String,
    pub entity_id: String,
    pub state: Option<String>,
    pub owner: String,
    pub severity: String,
    pub status: String,
}

fn text(record: &Value, path: &[&str]) -> String {
    let mut value = record;
    for key in path {
        value = &value[*key];
    }
    value
        .as_str()
        .unwrap_or_else(|| panic!("field {} is not a string in {record}", path.join(".")))
        .to_string()
}

fn instant(record: &Value, field: &str) -> Option<Timestamp> {
    match &record[field] {
        Value::Null => None,
        Value::String(time) => Some(
            Timestamp::parse_rfc3339(time)
                .unwrap_or_else(|| panic!("{field} {time:?} is not RFC 3339 in {record}")),
        ),
        other => panic!("{field} is {other}, not a time, in {record}"),
    }
}

impl Normalised {
    /// Reduces one record (as printed by replay or written in an expected file).
    pub fn from_record(record: &Value) -> Normalised {
        let kind = text(record, &["kind"]);
        let state = if kind == "stuck" { record["state"].as_str().map(str::to_string) } else { None };
        Normalised {
            opened_at: instant(record, "opened_at").unwrap_or_else(|| panic!("no opened_at in {record}")),
            resolved_at: instant(record, "resolved_at"),
            entity_type: text(record, &["entity", "type"]),
            entity_id: text(record, &["entity", "id"]),
            owner: text(record, &["owner"]),
            severity: text(record, &["severity"]),
            status: text(record, &["status"]),
            kind,
            state,
        }
    }
}

impl std::fmt::Display for Normalised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resolved = self.resolved_at.map_or_else(|| "-".to_string(), |at| at.to_string());
        write!(
            f,
            "{} {:<20} {:<19} {}:{} state={} owner={} severity={} {}",
            self.opened_at,
            resolved,
            self.kind,
            self.entity_type,
            self.entity_id,
            self.state.as_deref().unwrap_or("-"),
            self.owner,
            self.severity,
            self.status
        )
    }
}

/// Compares two multisets of records; `Err` holds a readable diff.
pub fn compare_multisets(expected: &[Normalised], actual: &[Normalised]) -> Result<(), String> {
    let mut missing: Vec<Normalised> = expected.to_vec();
    missing.sort();
    let mut unexpected: Vec<Normalised> = Vec::new();
    let mut sorted_actual = actual.to_vec();
    sorted_actual.sort();
    for record in sorted_actual {
        match missing.iter().position(|wanted| *wanted == record) {
            Some(position) => {
                missing.remove(position);
            }
            None => unexpected.push(record),
        }
    }
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut diff = String::new();
    for record in &missing {
        diff.push_str(&format!("  - expected, not raised: {record}\n"));
    }
    for record in &unexpected {
        diff.push_str(&format!("  + raised, not expected: {record}\n"));
    }
    Err(diff)
}

/// The outcome of feeding lines to the engine in-process, as `replay` does.
pub struct EngineReplay {
    /// The engine after the clock was moved to the end.
    pub engine: lifewatch_core::Engine,
    /// Where the clock ended.
    pub clock: Option<Timestamp>,
    /// Non-blank lines read.
    pub lines: u64,
    /// Events applied.
    pub accepted: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Rejected lines: 1-based line number and rejection.
    pub rejected: Vec<(u64, lifewatch_core::Rejection)>,
}

/// Splits `input` into lines as `replay` does: `\n` ends a line, a trailing
/// `\r` is dropped, lines holding only white space are skipped.
pub fn split_lines(input: &[u8]) -> Vec<(u64, &[u8])> {
    let mut lines: Vec<&[u8]> = input.split(|&byte| byte == b'\n').collect();
    if input.ends_with(b"\n") || input.is_empty() {
        lines.pop();
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| (index as u64 + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// Feeds `lines` to a fresh engine on the shipped configuration, then moves
/// the clock to `now` or, by default, the latest accepted event time.
pub fn replay_in_process<'a>(
    lines: impl IntoIterator<Item = (u64, &'a [u8])>,
    now: Option<Timestamp>,
) -> EngineReplay {
    let mut engine = lifewatch_core::Engine::new(lifewatch_core::Config::shipped());
    let (mut count, mut accepted, mut duplicates, mut rejected) = (0, 0, 0, Vec::new());
    for (number, line) in lines {
        count += 1;
        match lifewatch_core::parse_event(line) {
            Ok(event) => match engine.handle_event(&event) {
                lifewatch_core::Outcome::Accepted => accepted += 1,
                lifewatch_core::Outcome::Duplicate => duplicates += 1,
            },
            Err(rejection) => rejected.push((number, rejection)),
        }
    }
    let clock = now.or(engine.latest_event_time());
    if let Some(clock) = clock {
        engine.handle_time(clock);
    }
    EngineReplay { engine, clock, lines: count, accepted, duplicates, rejected }
}
