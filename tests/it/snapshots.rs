//! One insta snapshot per scenario fixture in `fixtures/*.jsonl`: the replay of
//! the fixture as a readable report (incidents, then rejected lines and
//! totals). Snapshots are reviewed against SPEC.md, never updated blindly; on
//! CI (`CI=true`) insta writes nothing and a mismatch fails the test.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::common::{EngineReplay, replay_in_process, split_lines};
use lifewatch_core::{IncidentRecord, Timestamp};

/// The `--now` of a fixture: the content of `NAME.now` beside it, if any.
fn now_of(fixture: &Path) -> Option<Timestamp> {
    let text = std::fs::read_to_string(fixture.with_extension("now")).ok()?;
    Some(Timestamp::parse_rfc3339(text.trim()).expect("a .now file holds one RFC 3339 time"))
}

/// The readable report of one replay.
fn report(replay: &EngineReplay, now_given: bool) -> String {
    let records = replay.engine.records();
    let mut out = String::new();
    let clock = replay.clock.map_or_else(|| "none (no accepted event)".to_string(), |at| at.to_string());
    let why = if now_given { "--now" } else { "latest accepted event" };
    writeln!(out, "clock ends at {clock} ({why})").unwrap();
    writeln!(out).unwrap();
    out.push_str(&incident_table(&records));
    let open = records.iter().filter(|record| record.resolved_at.is_none()).count();
    writeln!(out, "{} incidents, {open} open", records.len()).unwrap();
    writeln!(out).unwrap();
    if replay.rejected.is_empty() {
        writeln!(out, "no rejected lines").unwrap();
    } else {
        writeln!(out, "rejected lines:").unwrap();
        for (line, rejection) in &replay.rejected {
            writeln!(out, "  line {line}: {rejection}").unwrap();
        }
    }
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, rejection) in &replay.rejected {
        *by_reason.entry(rejection.reason.as_str()).or_default() += 1;
    }
    let reasons: Vec<String> = by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    writeln!(
        out,
        "totals: {} lines, {} accepted, {} duplicates, {} rejected{}",
        replay.lines,
        replay.accepted,
        replay.duplicates,
        replay.rejected.len(),
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) }
    )
    .unwrap();
    out
}

/// The incidents as aligned columns, in replay's order (opened_at, then key).
fn incident_table(records: &[IncidentRecord]) -> String {
    let header = ["OPENED", "RESOLVED", "KIND", "ENTITY", "STATE", "SEVERITY", "OWNER", "COUNT", "SUMMARY"];
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|record| {
            [
                record.opened_at.to_string(),
                record.resolved_at.map_or_else(|| "open".to_string(), |at| at.to_string()),
                record.kind.as_str().to_string(),
                format!("{} {}", record.entity.entity_type.as_str(), record.entity.id),
                record.state.clone().unwrap_or_else(|| "-".to_string()),
                record.severity.as_str().to_string(),
                record.owner.clone(),
                record.count.to_string(),
                record.summary.clone(),
            ]
            .map(|cell| escape_controls(&cell))
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            write!(line, "{cell:<width$}  ").unwrap();
        }
        writeln!(out, "{}", line.trim_end()).unwrap();
    }
    out
}

/// `text` with control characters written as `\u{..}`, so that a snapshot
/// of hostile event fields (fixtures/hostile.jsonl) holds no raw ESC.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { format!("\\u{{{:x}}}", u32::from(c)) } else { c.to_string() })
        .collect()
}

/// A character a terminal acts on instead of showing: what no table may print.
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[test]
fn hostile_event_fields_are_escaped_in_every_table() {
    // Event-supplied strings (source, event id, region, plan, reasons and
    // errors in summaries, a rejected subject) carry ESC sequences that clear
    // the screen or set the window title, BEL, C1 controls, bidi overrides,
    // and CR LF followed by text shaped like a table row.
    let dir = crate::common::TempDir::new("hostile");
    let db = dir.join("hostile.db");
    let db = db.to_str().expect("UTF-8 path");
    let fixture = "fixtures/hostile.jsonl";
    let commands: [&[&str]; 9] = [
        &["replay", fixture, "--format", "table"],
        &["replay", "--db", db, fixture, "--format", "table"],
        &["incidents", "--db", db],
        &["incidents", "--db", db, "--wide"],
        &["show", "--db", db, "acc_h"],
        &["show", "--db", db, "prj_h"],
        &["rejected", "--db", db],
        &["report", "stuck", "--db", db, "--now", "2026-11-27T13:00:00Z"],
        &["rebuild", "--db", db],
    ];
    let mut transcript = String::new();
    for args in commands {
        let run = crate::common::lifewatch(args, None);
        let stdout = run.assert_success().stdout_text();
        let shown = args.join(" ").replace(db, "DB");
        if let Some(bad) = stdout.chars().find(|&c| is_terminal_control(c)) {
            panic!("lifewatch {shown} printed {bad:?} raw:\n{stdout}");
        }
        assert!(
            !run.stderr.chars().any(is_terminal_control),
            "lifewatch {shown} printed a control character on stderr:\n{}",
            run.stderr
        );
        writeln!(transcript, "$ lifewatch {shown}\n{stdout}").unwrap();
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn fixture_reports() {
    insta::glob!("../../fixtures", "*.jsonl", |path| {
        let input = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let now = now_of(path);
        let replay = replay_in_process(split_lines(&input), now);
        insta::assert_snapshot!(report(&replay, now.is_some()));
    });
}

#[test]
fn the_binary_agrees_with_the_reports() {
    // The reports come from the engine in-process; the binary must print the
    // same records for every fixture, so the snapshots speak for it too.
    let dir = crate::common::repo_root().join("fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/ is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "jsonl"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "expected the scenario fixtures, found {fixtures:?}");
    for fixture in fixtures {
        let input = std::fs::read(&fixture).expect("fixture is readable");
        let now = now_of(&fixture);
        let expected: Vec<serde_json::Value> = replay_in_process(split_lines(&input), now)
            .engine
            .records()
            .iter()
            .map(|record| serde_json::to_value(record).expect("records serialise"))
            .collect();
        let now_text = now.map(|now| now.to_string());
        let run = crate::common::replay_jsonl(&[fixture.to_str().expect("UTF-8 path")], now_text.as_deref());
        assert_eq!(run.records(), expected, "{}: the binary and the engine disagree", fixture.display());
    }
}
