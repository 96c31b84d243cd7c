//! Damage never goes unnoticed: `verify`, `rebuild`'s comparison of the
//! incidents' rows, a writer refusing a damaged database, and `backup`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifewatch_core::Config;
use lifewatch_store::Writer;

use crate::common::{TempDir, database_rows, event, lifewatch, repo_root};

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A database holding the launch-day fixture, written by `replay --db`.
fn launch_day(dir: &TempDir) -> std::path::PathBuf {
    let db = dir.join("lifewatch.db");
    let fixture = repo_root().join("fixtures").join("launch-day.jsonl");
    lifewatch(&["replay", "--db", path_str(&db), path_str(&fixture)], None).assert_success();
    db
}

fn verify(db: &Path) -> crate::common::Run {
    lifewatch(&["verify", "--db", path_str(db)], None)
}

/// Polls `condition` until it holds, or panics after `limit`.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "condition not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_sound_database_verifies_with_an_ok_line_per_check() {
    let dir = TempDir::new("verify-sound");
    let db = launch_day(&dir);
    let run = verify(&db);
    let report = run.assert_success().stdout_text();
    for check in ["integrity", "log", "projections", "log-end"] {
        assert!(report.lines().any(|line| line.starts_with("ok") && line.contains(check)), "{report}");
    }
    let jsonl = lifewatch(&["verify", "--db", path_str(&db), "--format", "jsonl"], None);
    let records = jsonl.assert_success().records();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|record| record["problems"] == serde_json::json!([])), "{records:?}");
}

#[test]
fn a_flipped_owner_in_an_incident_row_is_reported_by_rebuild_and_verify() {
    let dir = TempDir::new("verify-owner");
    let db = launch_day(&dir);
    let (id, owner) = {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let (id, owner): (String, String) = connection
            .query_row("SELECT id, owner FROM incidents ORDER BY slot LIMIT 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        // One byte of the owner flipped, as a damaged page would; the
        // incident's record (its JSON) is left as it was.
        let mut flipped = owner.clone().into_bytes();
        flipped[0] ^= 0x02;
        let flipped = String::from_utf8(flipped).unwrap();
        connection.execute("UPDATE incidents SET owner = ?1 WHERE id = ?2", [&flipped, &id]).unwrap();
        (id, owner)
    };
    // What the issue saw: the incident is silently missing from its team's list.
    let listed =
        lifewatch(&["incidents", "--db", path_str(&db), "--owner", &owner, "--format", "jsonl"], None);
    assert!(!listed.assert_success().stdout_text().contains(&id));

    let rebuild = lifewatch(&["rebuild", "--db", path_str(&db)], None);
    let report = rebuild.stdout_text();
    assert_eq!(rebuild.code, Some(1), "rebuild must see the flipped owner: {report}");
    assert!(report.lines().any(|line| line.contains(&id) && line.contains("owner")), "{report}");

    let run = verify(&db);
    let report = run.stdout_text();
    assert_eq!(run.code, Some(1), "{report}");
    assert!(
        report.lines().any(|line| line.starts_with("FAIL") && line.contains(&id) && line.contains("owner")),
        "{report}"
    );
    assert!(report.lines().any(|line| line.starts_with("ok") && line.contains("integrity")), "{report}");

    let outbox = |db: &Path| -> i64 {
        let connection = rusqlite::Connection::open(db).unwrap();
        connection.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0)).unwrap()
    };
    let queued = outbox(&db);
    let repair = lifewatch(&["rebuild", "--db", path_str(&db), "--repair"], None);
    assert_eq!(repair.code, Some(1), "repair reports what it replaced");
    assert_eq!(outbox(&db), queued, "the record subscribers were sent is right: nothing to publish");
    verify(&db).assert_success();
    let listed =
        lifewatch(&["incidents", "--db", path_str(&db), "--owner", &owner, "--format", "jsonl"], None);
    assert!(listed.assert_success().stdout_text().contains(&id));
}

#[test]
fn a_damaged_index_page_is_reported_by_verify_and_a_writer_refuses_the_database() {
    let dir = TempDir::new("verify-index");
    let db = launch_day(&dir);
    let (page, page_size) = {
        let connection = rusqlite::Connection::open(&db).unwrap();
        // Everything into the database file, so that the page edited below
        // is the one SQLite reads.
        connection.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        let page: u32 = connection
            .query_row("SELECT rootpage FROM sqlite_schema WHERE name = 'incidents_by_opened'", [], |row| {
                row.get(0)
            })
            .unwrap();
        let page_size: u32 = connection.pragma_query_value(None, "page_size", |row| row.get(0)).unwrap();
        (page, page_size)
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        file.seek(SeekFrom::Start(u64::from(page - 1) * u64::from(page_size))).unwrap();
        file.write_all(&vec![0xab; page_size as usize]).unwrap();
        file.sync_all().unwrap();
    }
    let damaged = std::fs::read(&db).unwrap();

    let run = verify(&db);
    assert_eq!(std::fs::read(&db).unwrap(), damaged, "verify wrote into the database");
    let report = run.stdout_text();
    assert_eq!(run.code, Some(1), "{report}");
    assert!(
        report.lines().any(|line| line.starts_with("FAIL")
            && line.contains("integrity")
            && line.contains(&format!("page {page}"))),
        "verify must give integrity_check's message: {report}"
    );

    let fixture = repo_root().join("fixtures").join("stuck.jsonl");
    let writer = lifewatch(&["replay", "--db", path_str(&db), path_str(&fixture)], None);
    assert_eq!(writer.code, Some(1), "a writer must refuse a damaged database: {}", writer.stderr);
    assert!(writer.stderr.contains("quick_check"), "{}", writer.stderr);
    assert!(writer.stderr.contains(&format!("lifewatch verify --db {}", path_str(&db))), "{}", writer.stderr);
    assert_eq!(std::fs::read(&db).unwrap(), damaged, "the refused writer wrote into the database");
}

#[test]
fn a_backup_taken_while_a_writer_holds_the_database_verifies_and_holds_the_same_rows() {
    let dir = TempDir::new("verify-backup");
    let db = launch_day(&dir);
    let copy = dir.join("copy.db");

    // A writer that holds the database: replay from a standard input that
    // stays open.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(["replay", "--db", path_str(&db), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.join("lifewatch.db.lock");
    let pid = holder.id().to_string();
    wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&lock).is_ok_and(|text| text.contains(&format!("pid {pid} ")))
    });

    lifewatch(&["backup", "--db", path_str(&db), "--out", path_str(&copy)], None).assert_success();
    let again = lifewatch(&["backup", "--db", path_str(&db), "--out", path_str(&copy)], None);
    assert_eq!(again.code, Some(1), "a backup must not overwrite a file");
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    assert_eq!(database_rows(&copy, &[]), database_rows(&db, &[]));

    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    verify(&copy).assert_success();
}

#[test]
fn a_checkpoint_past_the_end_of_the_log_is_reported_by_verify() {
    let dir = TempDir::new("verify-log-end");
    let db = dir.join("lifewatch.db");
    {
        let mut writer = Writer::open(&db, Config::shipped()).unwrap();
        for (batch, position) in [(0, 10), (1, 20)] {
            for index in 0..5 {
                let raw = event(
                    &format!("e-{batch}-{index}"),
                    "account.created",
                    &format!("acc_{batch}{index}"),
                    &format!("2026-11-27T10:{batch}{index}:00Z"),
                    serde_json::json!({"plan": "free"}),
                );
                writer.feed(&raw, "test");
            }
            writer.set_checkpoint("nats:LIFECYCLE", position);
            writer.commit().unwrap();
        }
    }
    verify(&db).assert_success();
    // The second batch's events lost, its checkpoint kept: what a database
    // file copied in the middle of a checkpoint, without its WAL, can hold.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM event_blocks WHERE first_seq > 5", [])
        .unwrap();

    let run = verify(&db);
    let report = run.stdout_text();
    assert_eq!(run.code, Some(1), "{report}");
    assert!(
        report.lines().any(|line| line.starts_with("FAIL")
            && line.contains("log-end")
            && line.contains("checkpoint nats:LIFECYCLE")
            && line.contains("ends at event 5")),
        "{report}"
    );
}

#[test]
fn a_damaged_log_block_and_a_missing_one_are_named_by_verify() {
    let dir = TempDir::new("verify-log");
    let db = launch_day(&dir);
    let (damaged, missing) = {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let blocks: Vec<(i64, i64, Vec<u8>)> = connection
            .prepare("SELECT first_seq, count, data FROM event_blocks ORDER BY first_seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(blocks.len() >= 4, "the fixture fills several blocks");
        // One byte flipped in the middle of the second block's frame.
        let (first, _, mut data) = blocks[1].clone();
        let middle = data.len() / 2;
        data[middle] ^= 0x10;
        connection
            .execute("UPDATE event_blocks SET data = ?1 WHERE first_seq = ?2", rusqlite::params![data, first])
            .unwrap();
        // The third block gone.
        let (gone, count, _) = blocks[2];
        connection.execute("DELETE FROM event_blocks WHERE first_seq = ?1", [gone]).unwrap();
        (first, (gone, gone + count - 1))
    };
    let run = verify(&db);
    let report = run.stdout_text();
    assert_eq!(run.code, Some(1), "{report}");
    let failed = |text: &str| {
        report.lines().any(|line| line.starts_with("FAIL") && line.contains("log ") && line.contains(text))
    };
    assert!(failed(&format!("the block of events from {damaged}")), "{report}");
    assert!(failed(&format!("events {} to {} are missing from the log", missing.0, missing.1)), "{report}");
}
