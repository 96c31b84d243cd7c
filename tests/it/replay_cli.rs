//! `replay` for long runs and on-call use: `--status`, the table's open-first
//! order, `--quiet`, `--max-rejections`, `-o`, the help texts, and progress
//! that never reaches standard error when it is not a terminal (here it is a
//! pipe, as in every script and log).

use lifewatch_core::Config;
use lifewatch_store::Store;
use serde_json::Value;

use crate::common::{TempDir, lifewatch, temp_db};

const OUTAGE: &str = "fixtures/regional_outage.jsonl";
const BAD: &str = "fixtures/bad-input.jsonl";
/// The totals line of `replay fixtures/bad-input.jsonl`.
const BAD_TOTALS: &str = "replay: 39 lines, 6 accepted, 2 duplicates, 31 rejected (malformed_json 5, \
missing_attribute 3, invalid_attribute 15, unknown_type 1, invalid_data 7); 2 entities";

/// `replay ARGS`, in memory and then into a fresh database (`--db`), each
/// checked to succeed.
fn both_paths(args: &[&str]) -> [crate::common::Run; 2] {
    let mut memory = vec!["replay"];
    memory.extend_from_slice(args);
    let in_memory = lifewatch(&memory, None);
    in_memory.assert_success();
    let (_dir, db) = temp_db("replay-cli");
    let mut persisting = vec!["replay", "--db", db.to_str().expect("a UTF-8 temp path")];
    persisting.extend_from_slice(args);
    let with_db = lifewatch(&persisting, None);
    with_db.assert_success();
    [in_memory, with_db]
}

fn is_open(record: &Value) -> bool {
    record["resolved_at"].is_null()
}

#[test]
fn status_prints_only_the_incidents_open_or_resolved_at_the_end_on_both_paths() {
    let [all, _] = both_paths(&[OUTAGE]);
    let all = all.records();
    let open: Vec<Value> = all.iter().filter(|record| is_open(record)).cloned().collect();
    let resolved: Vec<Value> = all.iter().filter(|record| !is_open(record)).cloned().collect();
    assert!(!open.is_empty() && !resolved.is_empty(), "the fixture has both: {all:?}");
    for run in both_paths(&[OUTAGE, "--status", "open"]) {
        // The same records, in the contract's order, only the open ones.
        assert_eq!(run.records(), open, "{}", run.stderr);
        assert!(run.stderr.contains("replay: 59 lines, 59 accepted"), "{}", run.stderr);
    }
    for run in both_paths(&[OUTAGE, "--status", "resolved", "--format", "jsonl"]) {
        assert_eq!(run.records(), resolved, "{}", run.stderr);
    }
    let bad = lifewatch(&["replay", OUTAGE, "--status", "closed"], None);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("open") && bad.stderr.contains("resolved"), "{}", bad.stderr);
}

/// The rows of an incident table: (opened_at, resolved_at or "open", kind).
fn table_rows(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .skip(1)
        .filter(|line| line.starts_with("inc_"))
        .map(|line| {
            // ID, STATUS (a word and a duration), SEVERITY, KIND, …
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_string(), cells[1].to_string(), cells[4].to_string())
        })
        .collect()
}

#[test]
fn a_table_lists_the_open_incidents_first_then_the_resolved_each_in_the_usual_order() {
    let [jsonl, _] = both_paths(&[OUTAGE]);
    let as_row = |record: &Value| {
        let status = if record["resolved_at"].is_null() { "open" } else { "resolved" };
        (
            record["id"].as_str().unwrap().to_string(),
            status.to_string(),
            record["kind"].as_str().unwrap().to_string(),
        )
    };
    let records = jsonl.records();
    let mut expected: Vec<_> = records.iter().filter(|record| is_open(record)).map(as_row).collect();
    expected.extend(records.iter().filter(|record| !is_open(record)).map(as_row));
    // The fixture's contract order interleaves them, so the grouping shows.
    assert_ne!(expected, records.iter().map(as_row).collect::<Vec<_>>());
    for run in both_paths(&[OUTAGE, "-o", "table"]) {
        let text = run.stdout_text();
        assert_eq!(table_rows(&text), expected, "{text}");
        assert!(text.contains("\n17 incidents, 4 open as of "), "{text}");
    }
    for run in both_paths(&[OUTAGE, "--format", "table", "--status", "open"]) {
        let text = run.stdout_text();
        assert_eq!(table_rows(&text), expected[..4], "{text}");
        assert!(text.contains("\n4 incidents, 4 open as of "), "{text}");
    }
}

#[test]
fn quiet_lists_no_rejected_line_only_the_totals_by_reason() {
    let [loud, _] = both_paths(&[BAD]);
    assert_eq!(loud.stderr.matches(": rejected: ").count(), 31, "{}", loud.stderr);
    for flag in ["--quiet", "-q"] {
        for run in both_paths(&[BAD, flag]) {
            assert_eq!(run.stderr, format!("{BAD_TOTALS}\n"));
            assert_eq!(run.stdout, loud.stdout, "the incidents do not change");
        }
    }
}

#[test]
fn max_rejections_lists_the_first_n_then_how_many_more_and_goes_on() {
    let [all, _] = both_paths(&[BAD]);
    let listed: Vec<&str> = all.stderr.lines().filter(|line| line.contains(": rejected: ")).collect();
    assert_eq!(listed.len(), 31);
    for run in both_paths(&[BAD, "--max-rejections", "3"]) {
        let mut expected: Vec<String> = listed[..3].iter().map(|line| line.to_string()).collect();
        expected.push("… and 28 more rejections; see the totals".to_string());
        expected.push(BAD_TOTALS.to_string());
        assert_eq!(run.stderr.lines().collect::<Vec<_>>(), expected);
        // The replay went on past the limit: the same incidents, exit 0.
        assert_eq!(run.stdout, all.stdout);
    }
    for run in both_paths(&[BAD, "--max-rejections", "0"]) {
        assert_eq!(run.stderr, format!("… and 31 more rejections; see the totals\n{BAD_TOTALS}\n"));
    }
    for run in both_paths(&[BAD, "--max-rejections", "31"]) {
        assert_eq!(run.stderr, all.stderr, "no note when every rejection was listed");
    }
    let [one_more, _] = both_paths(&[BAD, "--max-rejections", "30"]);
    assert!(one_more.stderr.contains("\n… and 1 more rejection; see the totals\n"), "{}", one_more.stderr);
    let both = lifewatch(&["replay", BAD, "--quiet", "--max-rejections", "3"], None);
    assert_eq!(both.code, Some(2), "{}", both.stderr);
    assert!(both.stderr.contains("--max-rejections"), "{}", both.stderr);
}

/// Every line of `stderr` is a rejection, the note after the first N, a
/// totals line, or (with --db) the restore warning: no progress bar, no
/// carriage return, no escape sequence.
fn assert_no_progress(stderr: &str) {
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "{stderr:?}");
    for line in stderr.lines() {
        assert!(
            line.contains(": rejected: ") || line.starts_with("… and ") || line.starts_with("replay: "),
            "not a rejection nor the totals: {line:?}"
        );
    }
}

#[test]
fn no_progress_is_drawn_when_standard_error_is_not_a_terminal() {
    // Enough lines that a replay on a terminal updates its bar many times
    // (every 4,096 lines), from a file (a bar) and from standard input (a spinner).
    let dir = TempDir::new("replay-progress");
    let stream = dir.join("stream.jsonl");
    let stream_arg = stream.to_str().expect("a UTF-8 temp path");
    lifewatch(&["simulate", "--accounts", "2000", "--faults", "--out", stream_arg], None).assert_success();
    let bytes = std::fs::read(&stream).expect("the simulated stream");
    assert!(bytes.iter().filter(|&&byte| byte == b'\n').count() > 5 * 4096);
    let db = dir.join("lifewatch.db");
    let db_arg = db.to_str().expect("a UTF-8 temp path");
    for (args, stdin) in [
        (vec!["replay", stream_arg, "--max-rejections", "2"], None),
        (vec!["replay", "-", "--max-rejections", "2"], Some(&bytes[..])),
        (vec!["replay", "--db", db_arg, stream_arg, "--max-rejections", "2"], None),
        (vec!["replay", "--db", db_arg, "-", "--quiet"], Some(&bytes[..])),
    ] {
        let run = lifewatch(&args, stdin);
        run.assert_success();
        assert_no_progress(&run.stderr);
        assert_eq!(run.stderr.lines().filter(|line| line.starts_with("replay: ")).count(), 1, "{args:?}");
    }
    for args in [vec!["rebuild", "--db", db_arg], vec!["rebuild", "--db", db_arg, "--repair"]] {
        let run = lifewatch(&args, None);
        run.assert_success();
        assert_eq!(run.stderr, "", "{args:?}");
        assert_eq!(
            run.stdout_text(),
            "rebuild: the stored projections are identical to what the log gives\n"
        );
    }
}

#[test]
fn rebuild_progress_counts_every_event_of_the_log_from_zero_to_the_total() {
    let (_dir, db) = temp_db("rebuild-progress");
    let db_arg = db.to_str().expect("a UTF-8 temp path");
    lifewatch(&["replay", "--db", db_arg, "fixtures/launch-day.jsonl"], None).assert_success();
    let store = Store::open_read_only(&db).expect("open the database");
    let mut calls: Vec<(u64, u64)> = Vec::new();
    let (_, stats) = store
        .restore_with_progress(Config::shipped(), &mut |done, total| calls.push((done, total)))
        .expect("restore");
    let total = stats.events + stats.no_longer_valid;
    assert!(total > 0);
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[1].1 == total), "{calls:?}");
}

#[test]
fn help_says_what_each_format_prints_and_how_long_replays_are_kept_readable() {
    let help = lifewatch(&["replay", "--help"], None);
    help.assert_success();
    let text = help.stdout_text();
    for expected in [
        "-o, --format",
        "jsonl: one incident record per line, as in the contract",
        "json: one JSON array of the same records",
        "table: the same incidents as columns for people, open ones first",
        "--status <STATUS>",
        "-q, --quiet",
        "--max-rejections <N>",
        "the exit status stays 0",
        "lifewatch replay fixtures/launch-day.jsonl --status open -o table",
    ] {
        assert!(text.contains(expected), "replay --help lacks {expected:?}:\n{text}");
    }
}

/// `replay --db` into a directory that does not exist names the directory
/// and is a usage error, before anything is read.
#[test]
fn replay_db_names_a_missing_directory() {
    let dir = crate::common::TempDir::new("replay-missing-dir");
    let db = dir.path().join("no-such-dir").join("lw.db");
    let run = crate::common::lifewatch(&["replay", OUTAGE, "--db", db.to_str().unwrap()], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-dir does not exist"), "{}", run.stderr);
    assert!(!db.parent().unwrap().exists());
}
