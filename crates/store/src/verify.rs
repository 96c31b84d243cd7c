//! Finding damage: `verify` (every check, read-only), and the quick check a
//! writer runs before it writes anything.
//!
//! A damaged database must never go unnoticed: a flipped byte in a page of
//! the incidents table changes what `incidents --owner` returns while the
//! record still looks right, and a writer that goes on writing into a
//! damaged B-tree spreads the damage. [`Store::verify`] runs SQLite's full
//! integrity check, reads every block of the log, compares the stored
//! projections with what the log gives, and checks that the log reaches
//! every position the database says was committed (checkpoints, ticks,
//! rejected inputs, incident transitions): a log that ends before them lost
//! committed batches, as a database file copied without its WAL does.

use std::path::Path;

use lifewatch_core::Config;
use rusqlite::{Connection, OptionalExtension};

use crate::error::StoreError;
use crate::read::Store;

/// The outcome of one check of [`Store::verify`].
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize)]
pub struct Check {
    /// `integrity`, `log`, `projections` or `log-end`.
    pub check: &'static str,
    /// What was checked, when nothing is wrong; what could not be checked otherwise.
    pub summary: String,
    /// What is wrong, one problem each; empty when the check passed.
    pub problems: Vec<String>,
}

impl Check {
    /// Whether the check found nothing wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every check of [`Store::verify`], in the order they ran.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize)]
pub struct Verification {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Verification {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }
}

/// The most problems one check lists (SQLite's integrity check stops at
/// 100 too): past them, one line says how many more there are.
const MAX_PROBLEMS: usize = 100;

/// Problems of one check, at most [`MAX_PROBLEMS`] of them kept.
#[derive(Default)]
struct Problems {
    kept: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(problem);
        } else {
            self.more += 1;
        }
    }

    fn into_check(mut self, check: &'static str, summary: String) -> Check {
        if self.more > 0 {
            self.kept.push(format!("… and {} more", self.more));
        }
        Check { check, summary, problems: self.kept }
    }
}

impl Store {
    /// Checks the whole database, in one read transaction, without writing
    /// anything: SQLite's `PRAGMA integrity_check`, every block of the log
    /// (its checksum, its events, the continuity of seqs), the stored
    /// projections against a fresh engine on `config` refolded from the log
    /// (as `rebuild` does), and the log's end against every position that
    /// was committed with a batch. Damage is reported in the checks; an
    /// `Err` only when the database cannot be read at all.
    pub fn verify(&self, config: Config) -> Result<Verification, StoreError> {
        self.snapshot(|store| {
            let connection = store.connection();
            let path = store.path();
            let mut checks = vec![integrity(connection, path)?];
            let (log, last_seq) = log(connection, path)?;
            checks.push(log);
            checks.push(projections(store, config));
            checks.push(log_end(connection, last_seq));
            Ok(checks)
        })
        .map(|checks| Verification { checks })
    }
}

/// `PRAGMA quick_check` for a writer about to open `path`: `Ok` when SQLite
/// finds nothing wrong, [`StoreError::Damaged`] with what it found
/// otherwise. It reads every page (not the indexes' agreement with their
/// tables, which `verify`'s full check adds), so that a writer never writes
/// into a damaged B-tree.
pub(crate) fn quick_check(connection: &Connection, path: &Path) -> Result<(), StoreError> {
    let lines = match pragma_lines(connection, "PRAGMA quick_check") {
        Ok(lines) => lines,
        Err(error) if is_corrupt(&error) => vec![error.to_string()],
        Err(error) => return Err(StoreError::sqlite(path, "check the database", error)),
    };
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    const SHOWN: usize = 5;
    let mut detail = lines.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if lines.len() > SHOWN {
        detail.push_str(&format!("; and {} more", lines.len() - SHOWN));
    }
    Err(StoreError::Damaged { path: path.to_path_buf(), detail })
}

/// The lines of a check pragma's answer (a row may hold several lines).
fn pragma_lines(connection: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let rows: Vec<String> =
        connection.prepare(sql)?.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows
        .iter()
        .flat_map(|row| row.lines())
        // The heading SQLite puts before the problems of each attached database.
        .filter(|line| !line.is_empty() && !line.starts_with("*** in database "))
        .map(str::to_string)
        .collect())
}

fn is_corrupt(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// SQLite's full integrity check: every page, and every index against its
/// table. It stops at the first page it cannot read as a B-tree page (with
/// "database disk image is malformed"), which the quick check, walking the
/// pages only, describes: its lines are added then.
fn integrity(connection: &Connection, path: &Path) -> Result<Check, StoreError> {
    let mut problems = Problems::default();
    let is_ok = |lines: &[String]| lines.len() == 1 && lines[0] == "ok";
    match pragma_lines(connection, "PRAGMA integrity_check") {
        Ok(lines) if is_ok(&lines) => {}
        Ok(lines) => lines.into_iter().for_each(|line| problems.push(line)),
        Err(error) if is_corrupt(&error) => {
            problems.push(format!("integrity_check stopped: {error}"));
            match pragma_lines(connection, "PRAGMA quick_check") {
                Ok(lines) if is_ok(&lines) => {}
                Ok(lines) => lines.into_iter().for_each(|line| problems.push(format!("quick_check: {line}"))),
                Err(error) => problems.push(format!("quick_check stopped: {error}")),
            }
        }
        Err(error) => return Err(StoreError::sqlite(path, "check integrity", error)),
    }
    Ok(problems.into_check("integrity", "PRAGMA integrity_check: ok".to_string()))
}

/// Every block of the log; with the seq of its last event.
fn log(connection: &Connection, path: &Path) -> Result<(Check, i64), StoreError> {
    let mut problems = Problems::default();
    let extent = crate::blocks::check_log(connection, path, |problem| problems.push(problem))?;
    let summary = format!(
        "{} events in {} blocks: every checksum matches, seqs run from 1 to {} without a gap",
        extent.events, extent.blocks, extent.last_seq
    );
    Ok((problems.into_check("log", summary), extent.last_seq))
}

/// The stored projections against what the log gives (what `rebuild` does).
fn projections(store: &Store, config: Config) -> Check {
    let mut problems = Problems::default();
    let mut summary = "the stored projections and incidents are what the log gives".to_string();
    match store.restore(config).and_then(|(engine, stats)| Ok((store.compare(&engine)?, stats))) {
        Ok((differences, stats)) => {
            summary = format!("{summary} ({} events refolded)", stats.events);
            differences.iter().for_each(|difference| problems.push(difference.to_string()));
        }
        Err(error) => problems.push(format!("cannot compare with the log: {error}")),
    }
    problems.into_check("projections", summary)
}

/// The log's end against every position committed with a batch: a
/// checkpoint's `log_seq` (schema 10), and the seq after which each tick,
/// rejected input and incident transition was stored. Each was written in
/// the transaction of a batch whose events end at or before it, so a log
/// that ends earlier lost committed batches.
fn log_end(connection: &Connection, last_seq: i64) -> Check {
    let mut problems = Problems::default();
    let mut positions = Vec::new();
    let checkpoints: rusqlite::Result<Vec<(String, i64, Option<i64>)>> = connection
        .prepare("SELECT name, position, log_seq FROM checkpoints ORDER BY name")
        .and_then(|mut statement| {
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?.collect()
        });
    match checkpoints {
        Ok(checkpoints) => {
            for (name, position, log_seq) in checkpoints {
                positions.push(format!("{name} at {position}"));
                if let Some(log_seq) = log_seq
                    && log_seq > last_seq
                {
                    problems.push(format!(
                        "checkpoint {name} (position {position}) was committed when the log ended at \
                         event {log_seq}, but the log ends at event {last_seq}: committed batches are \
                         lost (a database copied without its WAL, or a truncated WAL); restore from a \
                         backup, or replay the input from before event {}",
                        last_seq + 1
                    ));
                }
            }
        }
        Err(error) => problems.push(format!("cannot read the checkpoints: {error}")),
    }
    for (table, what) in [
        ("ticks", "clock ticks"),
        ("rejected", "rejected inputs"),
        ("incident_transitions", "incident transitions"),
    ] {
        let sql = format!("SELECT max(after_seq) FROM {table}");
        match connection.query_row(&sql, [], |row| row.get::<_, Option<i64>>(0)).optional() {
            Ok(Some(Some(after))) if after > last_seq => problems.push(format!(
                "{what} were stored after event {after}, but the log ends at event {last_seq}: \
                 committed batches are lost"
            )),
            Ok(_) => {}
            Err(error) => problems.push(format!("cannot read {what}: {error}")),
        }
    }
    let reached = if positions.is_empty() {
        "no checkpoints".to_string()
    } else {
        format!("checkpoints {}", positions.join(", "))
    };
    problems.into_check(
        "log-end",
        format!(
            "the log ends at event {last_seq}, at or after every committed position ({reached}, ticks, \
             rejected inputs, transitions)"
        ),
    )
}
