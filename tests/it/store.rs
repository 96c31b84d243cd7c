//! End-to-end tests of the SQLite store through the binary: persisting
//! replay, restart, the on-call commands, rebuild, crashes (SIGKILL), and the
//! errors of a database that cannot be used.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TempDir, database_rows, event, lifewatch, repo_root};
use lifewatch_store::Store;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn fixture(name: &str) -> String {
    path_str(&repo_root().join("fixtures").join(name)).to_string()
}

/// `replay --db DB FILES --format jsonl`, which must succeed; its stdout.
fn replay_db(db: &Path, files: &[&str]) -> String {
    let mut args = vec!["replay", "--db", path_str(db), "--format", "jsonl"];
    args.extend_from_slice(files);
    lifewatch(&args, None).assert_success().stdout_text()
}

fn replay_memory(files: &[&str]) -> String {
    let mut args = vec!["replay", "--format", "jsonl"];
    args.extend_from_slice(files);
    lifewatch(&args, None).assert_success().stdout_text()
}

fn stored_incidents(db: &Path) -> String {
    lifewatch(&["incidents", "--db", path_str(db), "--format", "jsonl"], None).assert_success().stdout_text()
}

#[test]
fn persisting_replay_prints_and_stores_what_the_memory_replay_prints() {
    let dir = TempDir::new("store-roundtrip");
    let db = dir.join("lifewatch.db");
    let launch_day = fixture("launch-day.jsonl");
    let expected = replay_memory(&[&launch_day]);
    assert!(expected.lines().count() > 10, "the fixture raises incidents");

    assert_eq!(replay_db(&db, &[&launch_day]), expected);
    assert_eq!(stored_incidents(&db), expected);
    let before = database_rows(&db, &[]);

    // The same file again: every event is a duplicate, every rejected line
    // is already kept, and the final tick repeats the stored one.
    assert_eq!(replay_db(&db, &[&launch_day]), expected);
    assert_eq!(database_rows(&db, &[]), before, "replaying the same file again changed the database");

    let rebuild = lifewatch(&["rebuild", "--db", path_str(&db)], None);
    rebuild.assert_success();
    assert!(rebuild.stdout_text().contains("identical"), "{}", rebuild.stdout_text());
}

#[test]
fn any_batch_size_stores_the_same_and_a_bad_one_is_refused() {
    let dir = TempDir::new("store-batches");
    let launch_day = fixture("launch-day.jsonl");
    let expected = replay_memory(&[&launch_day]);
    let (small, default) = (dir.join("small.db"), dir.join("default.db"));
    let args = ["replay", "--db", path_str(&small), "--batch-lines", "7", &launch_day];
    assert_eq!(lifewatch(&args, None).assert_success().stdout_text(), expected);
    assert_eq!(replay_db(&default, &[&launch_day]), expected);
    assert_eq!(stored_incidents(&small), expected);
    // Batches only change how the rows were written (blocks, list segments,
    // how many `updated` transitions were folded): the log, the rejected
    // inputs and the projections are the same, and agree with the log.
    let summary = |db: &Path| {
        let summary = Store::open_read_only(db).unwrap().summary().unwrap();
        (summary.events, summary.rejected, summary.incidents, summary.clock)
    };
    assert_eq!(summary(&small), summary(&default));
    let rebuild = lifewatch(&["rebuild", "--db", path_str(&small)], None);
    assert!(rebuild.assert_success().stdout_text().contains("identical"), "{}", rebuild.stdout_text());

    for bad in
        [vec!["replay", "--batch-lines", "0", "--db", "x.db", "-"], vec!["replay", "--batch-lines", "5", "-"]]
    {
        let run = lifewatch(&bad, Some(b""));
        assert_eq!(run.code, Some(2), "{bad:?} is a usage error");
    }
}

#[test]
fn a_second_file_continues_where_the_first_stopped() {
    let dir = TempDir::new("store-continue");
    let lines: Vec<String> = std::fs::read_to_string(fixture("launch-day.jsonl"))
        .unwrap()
        .lines()
        .map(|line| format!("{line}\n"))
        .collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let first_path = dir.join("first.jsonl");
    let second_path = dir.join("second.jsonl");
    std::fs::write(&first_path, first.concat()).unwrap();
    std::fs::write(&second_path, second.concat()).unwrap();
    let (first_path, second_path) = (path_str(&first_path), path_str(&second_path));

    let one_stream = replay_memory(&[first_path, second_path]);
    let db = dir.join("lifewatch.db");
    replay_db(&db, &[first_path]);
    assert_eq!(replay_db(&db, &[second_path]), one_stream);
    assert_eq!(stored_incidents(&db), one_stream);
    lifewatch(&["rebuild", "--db", path_str(&db)], None).assert_success();
}

#[test]
fn rebuild_detects_a_tampered_database_and_repair_restores_it() {
    let dir = TempDir::new("store-tamper");
    let db = dir.join("lifewatch.db");
    let expected = replay_db(&db, &[&fixture("launch-day.jsonl")]);
    {
        let connection = rusqlite::Connection::open(&db).unwrap();
        let changed = connection
            .execute(
                "UPDATE incident_records SET record = replace(record, '\"count\":1', '\"count\":7')
                 WHERE id = (SELECT record_id FROM incidents WHERE slot = (
                     SELECT min(slot) FROM incidents JOIN incident_records ON incident_records.id = record_id
                     WHERE record LIKE '%\"count\":1,%'))",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
        connection
            .execute("UPDATE entities SET state = 'closed' WHERE key = (SELECT min(key) FROM entities)", [])
            .unwrap();
    }
    let rebuild = lifewatch(&["rebuild", "--db", path_str(&db)], None);
    assert_eq!(rebuild.code, Some(1), "rebuild must fail on a tampered database: {}", rebuild.stdout_text());
    let report = rebuild.stdout_text();
    assert!(report.contains("count (7 stored, 1 from the log)"), "{report}");
    assert!(report.contains("state closed stored"), "{report}");

    let repair = lifewatch(&["rebuild", "--db", path_str(&db), "--repair"], None);
    assert_eq!(repair.code, Some(1), "repair reports what it replaced");
    lifewatch(&["rebuild", "--db", path_str(&db)], None).assert_success();
    assert_eq!(stored_incidents(&db), expected);
}

#[test]
fn on_call_commands_read_the_database() {
    let dir = TempDir::new("store-oncall");
    let db = dir.join("lifewatch.db");
    let db_arg = path_str(&db);
    let records = replay_db(&db, &[&fixture("launch-day.jsonl")]);
    let records: Vec<serde_json::Value> =
        records.lines().map(|line| serde_json::from_str(line).unwrap()).collect();

    let open = lifewatch(&["incidents", "--db", db_arg, "--status", "open", "--format", "jsonl"], None);
    let open = open.assert_success().records();
    let expected_open = records.iter().filter(|record| record["status"] == "open").count();
    assert_eq!(open.len(), expected_open);
    let platform = lifewatch(
        &["incidents", "--db", db_arg, "--owner", "platform-oncall", "--kind", "stuck", "--format", "jsonl"],
        None,
    );
    for record in platform.assert_success().records() {
        assert_eq!(record["owner"], "platform-oncall");
        assert_eq!(record["kind"], "stuck");
    }
    let table = lifewatch(&["incidents", "--db", db_arg], None);
    assert!(table.assert_success().stdout_text().contains("SEVERITY"));

    // show: the entity of the first stuck project incident.
    let stuck = records
        .iter()
        .find(|record| record["kind"] == "stuck" && record["entity"]["type"] == "project")
        .expect("launch day has a stuck project");
    let entity_id = stuck["entity"]["id"].as_str().unwrap();
    let show = lifewatch(&["show", "--db", db_arg, entity_id, "--format", "jsonl"], None);
    let lines = show.assert_success().records();
    assert!(lines.iter().any(|line| line["entity"]["id"] == entity_id));
    assert!(lines.iter().any(|line| line["event"]["type"] == "project.requested"));
    assert!(lines.iter().any(|line| line["incident"]["id"] == stuck["id"]));
    let show_table = lifewatch(&["show", "--db", db_arg, entity_id], None);
    let text = show_table.assert_success().stdout_text();
    assert!(text.contains("→ requested"), "{text}");
    assert!(lifewatch(&["show", "--db", db_arg, "nobody_here"], None).code == Some(1));

    // report stuck at the stored clock agrees with the open stuck incidents;
    // later, more is stuck, without incidents yet (the clock has not moved).
    let stuck_db = dir.join("stuck.db");
    let stuck_records = replay_db(&stuck_db, &[&fixture("stuck.jsonl")]);
    let open_stuck: Vec<serde_json::Value> = stuck_records
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["kind"] == "stuck" && record["status"] == "open")
        .collect();
    assert!(!open_stuck.is_empty());
    let report = lifewatch(&["report", "stuck", "--db", path_str(&stuck_db), "--format", "jsonl"], None);
    let report = report.assert_success().records();
    assert_eq!(report.len(), open_stuck.len());
    for (line, record) in report.iter().zip(&open_stuck) {
        assert_eq!(line["incident_id"], record["id"]);
        assert_eq!(line["owner"], record["owner"]);
    }
    let later =
        lifewatch(&["report", "stuck", "--db", path_str(&stuck_db), "--now", "2030-01-01T00:00:00Z"], None);
    let later = later.assert_success().stdout_text();
    assert!(later.contains("PAST DEADLINE"), "{later}");
    assert!(later.lines().count() > report.len() + 3, "{later}");

    // rejected: every rejected line of the fixture is kept with its origin.
    let rejected =
        lifewatch(&["rejected", "--db", db_arg, "--format", "jsonl"], None).assert_success().records();
    assert_eq!(rejected.len(), 39);
    assert!(rejected.iter().all(|line| line["origin"].as_str().unwrap().contains("launch-day.jsonl:")));
    let malformed =
        lifewatch(&["rejected", "--db", db_arg, "--reason", "malformed_json", "--format", "jsonl"], None);
    assert_eq!(malformed.assert_success().records().len(), 9);

    // redrive: the same validation rejects them again; nothing changes.
    let redrive = lifewatch(&["redrive", "--db", db_arg], None);
    assert!(redrive.assert_success().stdout_text().contains("39 still rejected"));
}

#[test]
fn a_second_writer_is_refused_while_read_only_commands_work() {
    let dir = TempDir::new("store-two-writers");
    let db = dir.join("lifewatch.db");
    let expected = replay_db(&db, &[&fixture("launch-day.jsonl")]);

    // A writer that holds the database: replay from a standard input that
    // stays open.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args(["replay", "--db", path_str(&db), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.join("lifewatch.db.lock");
    let pid = holder.id().to_string();
    wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&lock).is_ok_and(|text| text.contains(&format!("pid {pid} ")))
    });

    let second = lifewatch(&["replay", "--db", path_str(&db), &fixture("stuck.jsonl")], None);
    assert_eq!(second.code, Some(1));
    assert!(second.stderr.contains("is locked by another writer"), "{}", second.stderr);
    assert!(second.stderr.contains(&format!("pid {pid} started")), "{}", second.stderr);
    assert!(second.stderr.contains(path_str(&db)), "{}", second.stderr);
    let redrive = lifewatch(&["redrive", "--db", path_str(&db)], None);
    assert_eq!(redrive.code, Some(1), "redrive needs the writer lock too");

    assert_eq!(stored_incidents(&db), expected);
    lifewatch(&["rejected", "--db", path_str(&db)], None).assert_success();
    lifewatch(&["report", "stuck", "--db", path_str(&db)], None).assert_success();
    lifewatch(&["rebuild", "--db", path_str(&db)], None).assert_success();

    drop(holder.stdin.take());
    let status = holder.wait().unwrap();
    assert!(status.success());
    // The lock went with the holder.
    replay_db(&db, &[&fixture("stuck.jsonl")]);
}

/// Polls `condition` until it holds, or panics after `limit`.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "condition not reached within {limit:?}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn unusable_databases_give_clear_errors_and_lose_nothing() {
    let dir = TempDir::new("store-errors");
    let stuck = fixture("stuck.jsonl");

    // Read-only file: refused, nothing lost.
    let db = dir.join("readonly.db");
    let expected = replay_db(&db, &[&fixture("launch-day.jsonl")]);
    let mut permissions = std::fs::metadata(&db).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&db, permissions.clone()).unwrap();
    let run = lifewatch(&["replay", "--db", path_str(&db), &stuck], None);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains(&format!("{} is read-only", db.display())), "{}", run.stderr);
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&db, permissions).unwrap();
    assert_eq!(stored_incidents(&db), expected);

    // Not a SQLite file at all.
    let text = dir.join("notes.db");
    std::fs::write(&text, "these are my notes, not a database\n".repeat(200)).unwrap();
    let run = lifewatch(&["replay", "--db", path_str(&text), &stuck], None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!("{} is not a lifewatch database", text.display())),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "these are my notes, not a database\n".repeat(200));

    // Another application's SQLite database.
    let other = dir.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    for args in
        [vec!["replay", "--db", path_str(&other), &stuck], vec!["incidents", "--db", path_str(&other)]]
    {
        let run = lifewatch(&args, None);
        assert_eq!(run.code, Some(1));
        assert!(run.stderr.contains("is not a lifewatch database"), "{}", run.stderr);
    }

    // A newer schema.
    let newer = dir.join("newer.db");
    replay_db(&newer, &[&stuck]);
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let run = lifewatch(&["replay", "--db", path_str(&newer), &stuck], None);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("has schema version 99, newer than"), "{}", run.stderr);

    // A corrupt file: pages in the middle overwritten.
    let corrupt = dir.join("corrupt.db");
    replay_db(&corrupt, &[&fixture("launch-day.jsonl")]);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    assert!(bytes.len() > 64 * 1024, "the database spans many pages");
    for byte in &mut bytes[16 * 1024..48 * 1024] {
        *byte = 0x5a;
    }
    std::fs::write(&corrupt, bytes).unwrap();
    let run = lifewatch(&["replay", "--db", path_str(&corrupt), &stuck], None);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains(&format!("{} is corrupt", corrupt.display())), "{}", run.stderr);

    // A missing database for a read-only command.
    let run = lifewatch(&["incidents", "--db", path_str(&dir.join("missing.db"))], None);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("missing.db does not exist"), "{}", run.stderr);
}

/// A small deterministic generator for the kill moments (xorshift64*).
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

/// `replay --db` in batches of 10,000 lines, so that a kill lands between
/// commits as well as inside one.
fn spawn_replay(db: &Path, input: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .args([
            "replay",
            "--db",
            path_str(db),
            path_str(input),
            "--format",
            "jsonl",
            "--batch-lines",
            "10000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = TempDir::new("store-crash");
    let input = dir.join("faults.jsonl");
    lifewatch(
        &["simulate", "--seed", "5", "--accounts", "20000", "--faults", "--out", path_str(&input)],
        None,
    )
    .assert_success();
    let expected = replay_memory(&[path_str(&input)]);
    let db = dir.join("crash.db");

    // Time one persisting replay of the same input on a scratch database to
    // choose kill moments that land inside a run.
    let started = Instant::now();
    let mut scratch = spawn_replay(&dir.join("scratch.db"), &input);
    assert!(scratch.wait().unwrap().success());
    let full_run = started.elapsed().as_millis() as u64;

    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("kill moments seed {seed}, full run {full_run} ms");
    let mut moments = Moments(seed);
    let mut kills = 0;
    let mut attempts = 0;
    while kills < 20 {
        attempts += 1;
        assert!(attempts < 200, "could not interrupt 20 runs in 200 attempts");
        let mut child = spawn_replay(&db, &input);
        let moment = Duration::from_millis(moments.next_below(full_run));
        // Not waiting for a condition: the moment itself is what is random.
        std::thread::sleep(moment);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }

    let mut last = spawn_replay(&db, &input);
    assert!(last.wait().unwrap().success());
    assert!(
        stored_incidents(&db) == expected,
        "incidents after {kills} kills differ from one uninterrupted replay"
    );
    let store = Store::open_read_only(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    lifewatch(&["rebuild", "--db", path_str(&db)], None).assert_success();
}

/// A store whose writer committed events but never set the clock (a
/// `replay --db` killed or still running before its last tick): `report
/// stuck` judges what is committed at the latest committed event time and
/// says so, instead of an all-clear.
#[test]
fn report_stuck_never_gives_a_false_all_clear_before_the_clock_is_set() {
    let dir = TempDir::new("store-no-clock");
    let db = dir.join("lifewatch.db");
    let mut writer = lifewatch_store::Writer::open(&db, lifewatch_core::Config::shipped()).unwrap();
    // Requested at 10:00 and still requested when a later event (10:20) of
    // another entity was committed: past the 5m deadline at that instant.
    writer.feed(
        &event(
            "e1",
            "project.requested",
            "prj_a",
            "2026-11-27T10:00:00Z",
            serde_json::json!({"account_id": "acc_a", "region": "eu-west-1"}),
        ),
        "t",
    );
    writer.feed(
        &event("e2", "account.created", "acc_b", "2026-11-27T10:20:00Z", serde_json::json!({"plan": "free"})),
        "t",
    );
    writer.commit().unwrap();
    drop(writer);
    assert_eq!(
        Store::open_read_only(&db).unwrap().clock().unwrap(),
        None,
        "the test needs a store without a clock"
    );

    let run = lifewatch(&["report", "stuck", "--db", path_str(&db)], None);
    let text = run.assert_success().stdout_text();
    assert!(text.contains("prj_a"), "{text}");
    assert!(text.contains("stuck at 2026-11-27T10:20:00Z (the latest committed event): 1 entity"), "{text}");
    assert!(run.stderr.contains("the store's clock has not been set"), "{}", run.stderr);
    assert!(!run.stderr.contains("nothing is stuck"), "{}", run.stderr);
    let lines = lifewatch(&["report", "stuck", "--db", path_str(&db), "--format", "jsonl"], None);
    let lines = lines.assert_success().records();
    assert!(lines.iter().any(|line| line["entity"]["id"] == "prj_a"), "{lines:?}");
}

/// Commands that read or repair a database never create one: a mistyped
/// path is named and fails (exit 1), and no file appears.
#[test]
fn read_and_repair_commands_refuse_a_missing_database() {
    let dir = TempDir::new("store-missing");
    let db = dir.join("typo.db");
    let db_arg = path_str(&db);
    for args in [
        vec!["redrive", "--db", db_arg],
        vec!["rebuild", "--db", db_arg, "--repair"],
        vec!["rebuild", "--db", db_arg],
        vec!["incidents", "--db", db_arg],
        vec!["show", "--db", db_arg, "prj_a"],
        vec!["rejected", "--db", db_arg],
        vec!["report", "stuck", "--db", db_arg],
    ] {
        let run = lifewatch(&args, None);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("does not exist"), "{args:?}: {}", run.stderr);
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

// ---------------------------------------------------------------------------
// Incident ids and records do not depend on how the input was split over
// `replay --db` calls or batches (docs/contract.md section 7, "ids and
// retraction" and "when `account_id` and `region` are taken").

/// One `replay --db` call, in-process as `src/commands/replay_db.rs` does
/// it: `lines` fed through a [`Writer`](lifewatch_store::Writer) on `db`,
/// committed every `batch` lines, then the clock ticked to the latest event
/// time and committed. Returns the records the call prints, one JSON line each.
pub(crate) fn replay_call(db: &Path, lines: &[&[u8]], batch: usize) -> String {
    let mut writer = open_writer(db);
    for (index, line) in lines.iter().enumerate() {
        writer.feed(line, &format!("input:{}", index + 1));
        if (index + 1) % batch == 0 {
            writer.commit().unwrap_or_else(|error| panic!("cannot commit to {}: {error:?}", db.display()));
        }
    }
    if let Some(now) = writer.engine().latest_event_time() {
        writer.tick(now);
    }
    writer.commit().unwrap_or_else(|error| panic!("cannot commit to {}: {error:?}", db.display()));
    let engine = writer.engine();
    engine.sorted_incidents().into_iter().filter_map(|index| engine.record(index)).map(json_line).collect()
}

/// Opens a writer on `db` as `replay --db` does, right after the previous
/// writer on it was dropped. The other tests of this binary start child
/// processes all the time, and a child between its fork and its exec holds
/// a copy of every descriptor of this process, the writer lock's included:
/// for that moment the lock outlives the writer, so a `Locked` is retried
/// until a deadline.
pub(crate) fn open_writer(db: &Path) -> lifewatch_store::Writer {
    use lifewatch_store::{Durability, StoreError, Writer, WriterOptions};
    let options = WriterOptions { durability: Durability::Normal, ..WriterOptions::default() };
    let mut opened = None;
    wait_for(Duration::from_secs(30), || {
        match Writer::open_with(db, lifewatch_core::Config::shipped(), options) {
            Ok(writer) => opened = Some(writer),
            Err(StoreError::Locked { .. }) => {}
            Err(error) => panic!("cannot open {}: {error:?}", db.display()),
        }
        opened.is_some()
    });
    opened.expect("wait_for returns once the writer is open")
}

fn json_line(record: lifewatch_core::IncidentRecord) -> String {
    serde_json::to_string(&record).unwrap() + "\n"
}

/// What `incidents --db DB --format jsonl` prints, read in-process.
pub(crate) fn stored_records(db: &Path) -> String {
    let store = Store::open_read_only(db).unwrap();
    let page = lifewatch_store::query::incidents(&store, &Default::default()).unwrap();
    page.incidents.into_iter().map(json_line).collect()
}

/// Replays `lines` in one call, then split in two calls at each of `cuts`,
/// each into a fresh database, and checks that the split replay prints and
/// stores the same records as the whole one. Returns how many incidents the
/// split replays retracted, all cuts together.
fn assert_split_changes_nothing(name: &str, lines: &[&[u8]], cuts: impl IntoIterator<Item = usize>) -> u64 {
    let mut retracted = 0;
    let dir = TempDir::new(&format!("split-{name}"));
    let whole_db = dir.join("whole.db");
    let whole = replay_call(&whole_db, lines, usize::MAX);
    assert_eq!(stored_records(&whole_db), whole, "{name}: one call stores what it prints");
    for cut in cuts {
        let db = dir.join(format!("split-{cut}.db"));
        replay_call(&db, &lines[..cut], usize::MAX);
        let printed = replay_call(&db, &lines[cut..], usize::MAX);
        assert!(
            printed == whole,
            "{name} split after line {cut}: the second call printed\n{printed}\nnot\n{whole}"
        );
        let stored = stored_records(&db);
        assert!(stored == whole, "{name} split after line {cut}: the database holds\n{stored}\nnot\n{whole}");
        retracted += retractions(&db);
    }
    retracted
}

/// How many `retracted` transitions a database holds.
fn retractions(db: &Path) -> u64 {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    connection
        .query_row("SELECT count(*) FROM incident_transitions WHERE transition = 'retracted'", [], |row| {
            row.get::<_, u32>(0)
        })
        .map(u64::from)
        .unwrap()
}

/// A small deterministic generator (SplitMix64): `count` numbers below `bound`.
fn random_below(seed: u64, count: usize, bound: u64) -> Vec<u64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % bound
        })
        .collect()
}

/// `count` random line boundaries of a stream of `len` lines.
fn split_points(seed: u64, count: usize, len: usize) -> Vec<usize> {
    random_below(seed, count, len as u64 + 1).into_iter().map(|point| point as usize).collect()
}

/// A simulated stream with faults, delivered partly out of time order as
/// several producers would deliver it: one line in eight arrives up to 600
/// lines late (minutes, so past the deadlines of the visits it ends). That
/// is what lets the clock of a first call open stuck incidents that the
/// second call's events retract.
fn simulated(seed: u64, accounts: u64) -> Vec<String> {
    let options = lifewatch_sim::SimulateOptions { seed, accounts, faults: true, ..Default::default() };
    let lines: Vec<String> = lifewatch_sim::Simulator::new(options).map(|line| line.line).collect();
    let delays = random_below(seed, 2 * lines.len(), 4_800);
    let mut arrival: Vec<(u64, String)> = lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let late = delays[2 * index].is_multiple_of(8);
            let delay = if late { delays[2 * index + 1] / 8 } else { 0 };
            (index as u64 + delay, line)
        })
        .collect();
    arrival.sort_by_key(|(at, _)| *at);
    arrival.into_iter().map(|(_, line)| line).collect()
}

#[test]
fn splitting_the_input_over_two_calls_at_any_line_changes_no_id_or_record() {
    let mut fixtures: Vec<_> = std::fs::read_dir(repo_root().join("fixtures"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "jsonl"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "{fixtures:?}");
    for path in fixtures {
        let input = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> =
            crate::common::split_lines(&input).into_iter().map(|(_, line)| line).collect();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        // Every line boundary of the small fixtures; launch day at random ones.
        if lines.len() <= 200 {
            assert_split_changes_nothing(&name, &lines, 0..=lines.len());
        } else {
            assert_split_changes_nothing(&name, &lines, split_points(7, 8, lines.len()));
        }
    }
    // The fixtures are in time order, so a first call's clock retracts
    // little in them; this stream is the issue's case.
    let lines = retracted_then_real();
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let retracted = assert_split_changes_nothing("retracted-then-real", &lines, 0..=lines.len());
    assert!(retracted > 0, "no split retracted anything");
}

#[test]
fn splitting_a_simulated_stream_with_faults_over_two_calls_changes_no_id_or_record() {
    let small = simulated(3, 6);
    let small: Vec<&[u8]> = small.iter().map(|line| line.as_bytes()).collect();
    let retracted = assert_split_changes_nothing("small-sim", &small, 0..=small.len());
    assert!(retracted > 0, "the late lines retract nothing: the test would prove little");

    let large = simulated(11, 300);
    assert!(large.len() > 3000, "{} lines", large.len());
    let large: Vec<&[u8]> = large.iter().map(|line| line.as_bytes()).collect();
    let retracted = assert_split_changes_nothing("large-sim", &large, split_points(11, 8, large.len()));
    assert!(retracted > 0, "the late lines retract nothing: the test would prove little");
}

/// The issue's case: the first call's clock (its latest event, 10:20) opens
/// stuck incidents for visits that the second call's late events show ended
/// in time (10:10), and a regional outage from them; both are retracted.
/// Later the same keys have real incidents: a project stuck again in
/// provisioning after a retry, and another outage in the region. They must
/// get the ids one call gives them, the retracted ones' ordinals given back.
fn retracted_then_real() -> Vec<Vec<u8>> {
    use crate::common::event;
    use serde_json::json;
    let at = |time: &str| format!("2026-11-27T{time}:00Z");
    let region = json!({"account_id": "acc_1", "region": "eu-west-1"});
    let mut lines = vec![
        event("a1", "account.created", "acc_1", &at("09:00"), json!({"plan": "enterprise"})),
        event("a2", "account.activated", "acc_1", &at("09:01"), json!({})),
    ];
    for n in 1..=5 {
        let project = format!("prj_{n}");
        lines.push(event(&format!("r{n}"), "project.requested", &project, &at("10:00"), region.clone()));
        lines.push(event(
            &format!("s{n}"),
            "project.provisioning_started",
            &project,
            &at("10:01"),
            json!({}),
        ));
    }
    // The first call ends here: its clock is 10:20, past the 10:16 deadlines.
    lines.push(event("p1", "account.plan_changed", "acc_1", &at("10:20"), json!({"plan": "team"})));
    lines.push(event("f1", "project.provisioning_failed", "prj_1", &at("10:10"), json!({"error": "x"})));
    for n in 2..=5 {
        let project = format!("prj_{n}");
        lines.push(event(&format!("d{n}"), "project.provisioned", &project, &at("10:10"), json!({})));
    }
    lines.push(event("t1", "project.provisioning_started", "prj_1", &at("10:30"), json!({})));
    for n in 6..=10 {
        let project = format!("prj_{n}");
        lines.push(event(&format!("r{n}"), "project.requested", &project, &at("10:30"), region.clone()));
    }
    lines.push(event("p2", "account.plan_changed", "acc_1", &at("11:00"), json!({"plan": "enterprise"})));
    lines
}

#[test]
fn the_issue_stream_has_a_real_stuck_incident_and_outage_after_the_retracted_ones() {
    let lines = retracted_then_real();
    let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let dir = TempDir::new("retracted-then-real");
    let whole = replay_call(&dir.join("whole.db"), &lines, usize::MAX);
    let records: Vec<serde_json::Value> =
        whole.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let stuck_prj_1 = records.iter().find(|record| record["key"] == "stuck:project:prj_1:provisioning");
    assert!(stuck_prj_1.is_some_and(|record| record["status"] == "open"), "{whole}");
    assert!(records.iter().any(|record| record["kind"] == "regional_outage"), "{whole}");
    // Split after the 10:20 event: the first call's clock opens what the
    // second retracts; the database still agrees with its log.
    let db = dir.join("split.db");
    replay_call(&db, &lines[..13], usize::MAX);
    assert_eq!(replay_call(&db, &lines[13..], usize::MAX), whole);
    assert!(retractions(&db) >= 6, "five stuck incidents and an outage were retracted");
    let rebuild = lifewatch(&["rebuild", "--db", path_str(&db)], None);
    assert!(rebuild.assert_success().stdout_text().contains("identical"), "{}", rebuild.stdout_text());
}

/// The issue's example: `project.quota_exceeded p` (illegal: p does not
/// exist, so it has no account yet), then `project.requested p`. The
/// illegal_transition incident last changed before p had an account or a
/// region: every path shows them `null` (docs/contract.md, "Record fields").
#[test]
fn a_record_keeps_the_account_and_region_of_its_last_change_in_every_path() {
    use crate::common::event;
    use serde_json::json;
    let dir = TempDir::new("stale-fields");
    let input = dir.join("input.jsonl");
    let quota = json!({"resource": "cpu", "limit": 4, "used": 5});
    let lines = [
        event("1", "project.quota_exceeded", "p", "2026-11-27T10:00:00Z", quota),
        event(
            "2",
            "project.requested",
            "p",
            "2026-11-27T10:01:00Z",
            json!({"account_id": "a", "region": "r"}),
        ),
    ];
    std::fs::write(
        &input,
        lines.iter().flat_map(|line| [line.as_slice(), b"\n"].concat()).collect::<Vec<u8>>(),
    )
    .unwrap();
    let input = path_str(&input);
    let memory = replay_memory(&[input]);
    let illegal: serde_json::Value = serde_json::from_str(memory.lines().next().unwrap()).unwrap();
    assert_eq!(illegal["kind"], "illegal_transition", "{memory}");
    assert_eq!((&illegal["account_id"], &illegal["region"]), (&json!(null), &json!(null)), "{memory}");
    for batch in ["1", "2"] {
        let db = dir.join(format!("batch-{batch}.db"));
        let args = ["replay", "--db", path_str(&db), "--batch-lines", batch, "--format", "jsonl", input];
        assert_eq!(lifewatch(&args, None).assert_success().stdout_text(), memory, "batches of {batch}");
        assert_eq!(stored_incidents(&db), memory, "batches of {batch}");
        let rebuild = lifewatch(&["rebuild", "--db", path_str(&db)], None);
        assert!(rebuild.assert_success().stdout_text().contains("identical"), "{}", rebuild.stdout_text());
    }
}

/// A rejected line keeps at most its first 64 KiB, with its length and a
/// `cut` mark in the listing; longer payloads are stored compressed and read
/// back byte for byte; a cut input is not re-driven.
#[test]
fn rejected_lines_are_stored_capped_and_compressed() {
    let (_dir, db) = crate::common::temp_db("store-rejected-compact");
    let long: Vec<u8> = [&b"{\"note\":\""[..], &b"all work and no play ".repeat(10_000)].concat();
    let medium = b"not json at all, ".repeat(80);
    let mut input = long.clone();
    input.push(b'\n');
    input.extend_from_slice(&medium);
    input.extend_from_slice(b"\nx\n");
    let run = lifewatch(&["replay", "-", "--db", path_str(&db)], Some(&input));
    run.assert_success();
    assert!(run.stderr.contains("3 rejected (malformed_json 3)"), "{}", run.stderr);

    let listed = lifewatch(&["rejected", "--db", path_str(&db), "--format", "jsonl"], None);
    let listed = listed.assert_success().records();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let kept = String::from_utf8_lossy(&long[..64 * 1024]).into_owned();
    assert_eq!(listed[0]["payload"], kept.as_str());
    assert_eq!(listed[0]["length"], long.len());
    assert_eq!(listed[0]["cut"], true);
    assert_eq!(listed[1]["payload"], String::from_utf8_lossy(&medium).as_ref());
    assert_eq!(listed[1]["length"], medium.len());
    assert_eq!(listed[1]["cut"], false);
    assert_eq!(listed[2]["payload"], "x");
    assert_eq!(listed[2]["cut"], false);

    // What is stored: the long and the medium payloads as zstd frames, far
    // smaller than the text; the one-byte line as it is.
    let connection = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<(i64, i64, i64)> = connection
        .prepare("SELECT length(payload), compressed, length FROM rejected ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(connection);
    assert!(stored[0].0 < 4096 && stored[0].1 == 1, "{stored:?}");
    assert_eq!(stored[0].2, long.len() as i64);
    assert!(stored[1].0 < medium.len() as i64 && stored[1].1 == 1, "{stored:?}");
    assert_eq!(stored[2], (1, 0, 1));

    let redrive = lifewatch(&["redrive", "--db", path_str(&db)], None);
    assert!(
        redrive.assert_success().stdout_text().contains("3 tried, 0 accepted"),
        "{}",
        redrive.stdout_text()
    );
    let again = lifewatch(&["rejected", "--db", path_str(&db), "--format", "jsonl"], None);
    assert_eq!(again.assert_success().records(), listed, "re-driving changed nothing");
}

/// Makes a directory and a file unwritable for as long as it lives, and
/// writable again when dropped (so that the temporary directory can be
/// removed, even when the test fails). Mode bits are enough for other users;
/// root ignores them, so as root the immutable attribute (`chattr +i`) is
/// set too.
struct Unwritable<'a> {
    paths: [&'a Path; 2],
    immutable: bool,
}

impl<'a> Unwritable<'a> {
    fn new(dir: &'a Path, file: &'a Path) -> Unwritable<'a> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let mut guard = Unwritable { paths: [file, dir], immutable: false };
        if std::fs::File::create(dir.join("probe")).is_ok() {
            let _ = std::fs::remove_file(dir.join("probe"));
            let status = Command::new("chattr").arg("+i").args(guard.paths).status();
            guard.immutable = status.is_ok_and(|status| status.success());
        }
        assert!(
            std::fs::File::create(dir.join("probe")).is_err(),
            "cannot make a directory unwritable here (as root, `chattr +i` is needed)"
        );
        guard
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").args(self.paths).status();
        }
        let _ = std::fs::set_permissions(self.paths[1], std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(self.paths[0], std::fs::Permissions::from_mode(0o644));
    }
}

/// The read-only commands work on a database in a directory that cannot be
/// written (where SQLite cannot create the WAL's shared-memory file), with
/// a file that cannot be written either, and print what they print on a
/// writable copy.
#[test]
fn read_only_commands_work_in_a_read_only_directory() {
    let dir = TempDir::new("store-read-only-dir");
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let db = locked.join("lifewatch.db");
    let copy = dir.join("copy.db");
    let fixture = fixture("provisioning_failed.jsonl");
    replay_db(&db, &[&fixture]);
    replay_db(&copy, &[&fixture]);
    let commands: [&[&str]; 5] = [
        &["incidents", "--format", "jsonl"],
        &["show", "prj_1", "--format", "jsonl"],
        &["rejected", "--format", "jsonl"],
        &["report", "stuck", "--format", "jsonl"],
        &["verify"],
    ];
    let expected: Vec<String> = commands
        .iter()
        .map(|command| {
            let mut args = command.to_vec();
            args.extend(["--db", path_str(&copy)]);
            lifewatch(&args, None).assert_success().stdout_text()
        })
        .collect();
    let _unwritable = Unwritable::new(&locked, &db);
    for (command, expected) in commands.iter().zip(expected) {
        let mut args = command.to_vec();
        args.extend(["--db", path_str(&db)]);
        let run = lifewatch(&args, None);
        assert_eq!(run.code, Some(0), "{command:?} in a read-only directory: {}", run.stderr);
        assert_eq!(
            run.stdout_text().replace(path_str(&db), "DB"),
            expected.replace(path_str(&copy), "DB"),
            "{command:?}"
        );
    }

    // A write-ahead log that holds commits needs the WAL index to be read,
    // which cannot be made there: the error says the directory must be
    // writable. The copy is taken while a connection has a commit in its
    // log, so that the log is not checkpointed away.
    let logged = dir.join("logged");
    std::fs::create_dir(&logged).unwrap();
    let logged_db = logged.join("lifewatch.db");
    {
        let connection = rusqlite::Connection::open(&copy).unwrap();
        connection.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        connection.execute_batch("CREATE TABLE scratch (x); INSERT INTO scratch VALUES (1);").unwrap();
        std::fs::copy(&copy, &logged_db).unwrap();
        std::fs::copy(dir.join("copy.db-wal"), logged.join("lifewatch.db-wal")).unwrap();
    }
    assert!(
        std::fs::metadata(logged.join("lifewatch.db-wal")).unwrap().len() > 0,
        "the log holds the commit"
    );
    let _unwritable = Unwritable::new(&logged, &logged_db);
    let run = lifewatch(&["incidents", "--db", path_str(&logged_db)], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("make the directory writable"), "a clear message: {}", run.stderr);
}

/// A valid event may carry half a megabyte of `account_id` and `region`: the
/// incident record copies them cut to `MAX_RECORD_TEXT` bytes with a marker,
/// and `replay`, the stored record and `incidents --db` give the same
/// bounded record.
#[test]
fn long_event_strings_are_cut_in_the_record_on_every_path() {
    let dir = TempDir::new("long-strings");
    let account = "a".repeat(530_000);
    let region = format!("eu-{}", "é".repeat(100_000));
    let mut input = event(
        "evt_1",
        "dispute.opened",
        "dsp_1",
        "2026-11-27T10:00:00Z",
        serde_json::json!({"account_id": account, "amount_cents": 100, "currency": "EUR"}),
    );
    input.push(b'\n');
    input.extend(event(
        "evt_2",
        "project.requested",
        "prj_1",
        "2026-11-27T10:00:01Z",
        serde_json::json!({"account_id": "acc_1", "region": region}),
    ));
    input.push(b'\n');
    let file = dir.path().join("long.jsonl");
    std::fs::write(&file, &input).unwrap();
    let file = file.to_str().unwrap();
    let now = "2026-11-28T00:00:00Z";

    let replayed = lifewatch(&["replay", file, "--now", now], None);
    replayed.assert_success();
    let records = replayed.records();
    assert!(records.len() >= 2, "a billing dispute and a stuck project: {records:?}");
    for record in &records {
        let text = record.to_string();
        assert!(text.len() < 8 * 1024, "a bounded record: {} bytes", text.len());
        for field in ["account_id", "region", "summary"] {
            if let Some(value) = record[field].as_str() {
                assert!(
                    value.len() <= lifewatch_core::MAX_RECORD_TEXT + 32,
                    "{field}: {} bytes",
                    value.len()
                );
            }
        }
    }
    let dispute = records.iter().find(|record| record["kind"] == "billing_dispute").unwrap();
    assert!(dispute["account_id"].as_str().unwrap().ends_with("…[cut from 530000 bytes]"), "{dispute}");
    let project = records.iter().find(|record| record["entity"]["id"] == "prj_1").unwrap();
    assert!(project["region"].as_str().unwrap().ends_with("…[cut from 200003 bytes]"), "{project}");

    let db = dir.path().join("long.db");
    let db = db.to_str().unwrap();
    let persisted = lifewatch(&["replay", file, "--now", now, "--db", db], None);
    persisted.assert_success();
    assert_eq!(persisted.records(), records, "replay --db prints the same records");
    let stored = lifewatch(&["incidents", "--db", db, "--format", "jsonl"], None);
    stored.assert_success();
    assert_eq!(stored.records(), records, "incidents --db gives the same records");
}

/// Junk is stored compactly: the texts every rejected row repeated (input
/// name, reason, detail) are kept once, so 20,000 junk lines take well
/// under the 124 bytes a line they took with the texts on every row and in
/// the index that keeps an input once. Replaying the same input again adds
/// nothing, and the listing shows the origins as they were.
#[test]
fn junk_lines_are_stored_compactly_and_once() {
    let (_dir, db) = crate::common::temp_db("store-junk-compact");
    let junk: Vec<u8> = (0..20_000).flat_map(|line| format!("junk {line}\n").into_bytes()).collect();
    lifewatch(&["replay", "-", "--db", path_str(&db), "--quiet"], Some(&junk)).assert_success();
    lifewatch(&["replay", "-", "--db", path_str(&db), "--quiet"], Some(&junk)).assert_success();
    let connection = rusqlite::Connection::open(&db).unwrap();
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;").unwrap();
    drop(connection);
    let bytes = std::fs::metadata(&db).unwrap().len();
    assert!(bytes < 20_000 * 70, "{bytes} bytes for 20,000 junk lines");
    let listed = lifewatch(&["rejected", "--db", path_str(&db), "--format", "jsonl"], None);
    let listed = listed.assert_success().records();
    assert_eq!(listed.len(), 20_000, "the second replay of the same input added nothing");
    assert_eq!(listed[19_999]["origin"], "<stdin>:20000");
    assert_eq!(listed[19_999]["payload"], "junk 19999");
    assert_eq!(listed[0]["reason"], "malformed_json");
}
