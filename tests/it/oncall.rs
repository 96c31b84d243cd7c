//! The on-call commands as an on-call engineer reads them: tables that fit
//! 120 columns with the incident id, status age and runbook; `--wide`;
//! `show` by incident id and by region; the filters of `incidents` and
//! `report stuck`; times typed as `now` or `-1h`; `-o json`.

use serde_json::Value;

use crate::common::{TempDir, lifewatch};

/// A database replayed from `fixture` in a temporary directory.
fn replayed(name: &str, fixture: &str) -> (TempDir, String) {
    let dir = TempDir::new(name);
    let db = dir.path().join("oncall.db").to_str().unwrap().to_string();
    lifewatch(&["replay", fixture, "--db", &db], None).assert_success();
    (dir, db)
}

fn jsonl(args: &[&str]) -> Vec<Value> {
    lifewatch(args, None).assert_success().records()
}

#[test]
fn the_incident_table_fits_120_columns_with_ids_ages_and_runbooks() {
    let (_dir, db) = replayed("oncall-table", "fixtures/launch-day.jsonl");
    let records = jsonl(&["incidents", "--db", &db, "--format", "jsonl"]);
    let text = lifewatch(&["incidents", "--db", &db], None).assert_success().stdout_text();
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "{} columns: {line}", line.chars().count());
    }
    let rows: Vec<&str> = text.lines().filter(|line| line.starts_with("inc_")).collect();
    assert_eq!(rows.len(), records.len());
    for (row, record) in rows.iter().zip(&records) {
        assert!(row.starts_with(record["id"].as_str().unwrap()), "{row}");
        let status = if record["resolved_at"].is_null() { "open " } else { "resolved " };
        assert!(row[22..].starts_with(status), "{row}");
        let runbook = format!(
            "runbook for {}: {}",
            record["kind"].as_str().unwrap(),
            record["runbook"].as_str().unwrap()
        );
        assert!(text.contains(&runbook), "{runbook} missing");
    }
    // Durations are rounded to two units as a person reads them.
    let age = rows[0].split_whitespace().nth(2).unwrap();
    assert!(
        age.len() <= 6 && !age.contains("ms") && age.chars().filter(|c| c.is_ascii_alphabetic()).count() <= 2,
        "{age}"
    );
    assert!(text.contains(&format!(" open as of {}", lifewatch_clock(&db))), "{text}");

    let wide = lifewatch(&["incidents", "--db", &db, "--wide"], None).assert_success().stdout_text();
    let header = wide.lines().next().unwrap();
    for column in ["ID", "OPENED", "RESOLVED", "ENTITY", "RUNBOOK", "SUMMARY"] {
        assert!(header.contains(column), "{header}");
    }
    for record in &records {
        assert!(wide.contains(record["summary"].as_str().unwrap()), "whole summaries with --wide");
    }
}

/// The store's clock, as `report stuck --format jsonl` names it.
fn lifewatch_clock(db: &str) -> String {
    let run = lifewatch(&["report", "stuck", "--db", db, "--format", "jsonl"], None);
    let line =
        run.assert_success().stderr.lines().find(|line| line.contains("stuck at")).unwrap().to_string();
    line.split_whitespace().nth(3).unwrap().to_string()
}

#[test]
fn an_open_stuck_incident_is_aged_at_the_clock_it_is_shown_at() {
    // The stored summary says how long it was stuck when it opened; the
    // table says how long it has been open as of the replay's end.
    let text =
        lifewatch(&["replay", "fixtures/stuck.jsonl", "--now", "2026-11-28T00:00:00Z", "-o", "table"], None)
            .assert_success()
            .stdout_text();
    let records = jsonl(&["replay", "fixtures/stuck.jsonl", "--now", "2026-11-28T00:00:00Z"]);
    let open: Vec<&Value> = records
        .iter()
        .filter(|record| record["kind"] == "stuck" && record["resolved_at"].is_null())
        .collect();
    assert!(!open.is_empty());
    for record in open {
        let opened = chrono::DateTime::parse_from_rfc3339(record["opened_at"].as_str().unwrap()).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z").unwrap();
        let minutes = (end - opened).num_minutes();
        let row = text.lines().find(|line| line.starts_with(record["id"].as_str().unwrap())).unwrap();
        let age = row.split_whitespace().nth(2).unwrap();
        let expected = if minutes >= 60 * 24 {
            format!("{}d", minutes / (60 * 24))
        } else if minutes >= 60 {
            format!("{}h", minutes / 60)
        } else {
            format!("{minutes}m")
        };
        assert!(age.starts_with(&expected), "{age} for {minutes} minutes: {row}");
    }
}

#[test]
fn show_takes_an_incident_id_an_entity_or_a_region() {
    let (_dir, db) = replayed("oncall-show", "fixtures/regional_outage.jsonl");
    let records = jsonl(&["incidents", "--db", &db, "--format", "jsonl"]);
    let outage = records.iter().find(|record| record["kind"] == "regional_outage").unwrap();
    let id = outage["id"].as_str().unwrap();

    let shown = lifewatch(&["show", "--db", &db, id], None).assert_success().stdout_text();
    assert!(shown.contains(&format!("id       {id}")), "{shown}");
    assert!(shown.contains("runbook  ops/runbooks/regional_outage.md"), "{shown}");
    assert!(shown.contains("transitions:"), "{shown}");
    let lines = jsonl(&["show", "--db", &db, id, "--format", "jsonl"]);
    assert_eq!(lines[0]["incident"], *outage);
    assert_eq!(lines[1]["transition"]["transition"], "opened");

    let region = outage["region"].as_str().unwrap();
    let shown = lifewatch(&["show", "--db", &db, region], None).assert_success().stdout_text();
    assert!(shown.starts_with(&format!("region {region}: ")), "{shown}");
    let in_region: Vec<&Value> = records.iter().filter(|record| record["region"] == region).collect();
    for record in &in_region {
        assert!(shown.contains(record["id"].as_str().unwrap()), "{shown}");
    }
    let as_json: Value = serde_json::from_str(
        &lifewatch(&["show", "--db", &db, region, "-o", "json"], None).assert_success().stdout_text(),
    )
    .unwrap();
    assert_eq!(as_json.as_array().unwrap().len(), in_region.len());

    let missing = lifewatch(&["show", "--db", &db, "no_such_thing"], None);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("no incident, entity or region"), "{}", missing.stderr);
}

#[test]
fn incidents_filter_by_region_severity_and_entity_and_name_the_valid_values() {
    let (_dir, db) = replayed("oncall-filters", "fixtures/launch-day.jsonl");
    let all = jsonl(&["incidents", "--db", &db, "--format", "jsonl"]);
    let pick =
        |field: &str| all.iter().find_map(|record| record[field].as_str().map(str::to_string)).unwrap();
    let region = pick("region");
    let severity = pick("severity");
    let entity = all[0]["entity"]["id"].as_str().unwrap().to_string();
    for (flag, value, keep) in [
        (
            "--region",
            region.as_str(),
            &(|record: &Value| record["region"] == region.as_str()) as &dyn Fn(&Value) -> bool,
        ),
        ("--severity", severity.as_str(), &|record: &Value| record["severity"] == severity.as_str()),
        ("--entity", entity.as_str(), &|record: &Value| record["entity"]["id"] == entity.as_str()),
    ] {
        let expected: Vec<Value> = all.iter().filter(|record| keep(record)).cloned().collect();
        assert!(!expected.is_empty() && expected.len() < all.len(), "{flag} selects some");
        assert_eq!(jsonl(&["incidents", "--db", &db, flag, value, "--format", "jsonl"]), expected, "{flag}");
    }
    let wrong = lifewatch(&["incidents", "--db", &db, "--severity", "urgent"], None);
    assert_eq!(wrong.code, Some(2));
    assert!(wrong.stderr.contains("critical, error, warning, info"), "{}", wrong.stderr);
    let wrong = lifewatch(&["incidents", "--db", &db, "--kind", "stuk"], None);
    assert_eq!(wrong.code, Some(2));
    let nobody = lifewatch(&["incidents", "--db", &db, "--owner", "platform-oncal"], None);
    nobody.assert_success();
    assert!(nobody.stderr.contains("owners with incidents: ") && nobody.stderr.contains("platform-oncall"));
    let nowhere = lifewatch(&["incidents", "--db", &db, "--region", "mars-1"], None);
    assert!(nowhere.stderr.contains("regions with incidents: ") && nowhere.stderr.contains(&region));
}

#[test]
fn report_stuck_by_owner_and_at_times_typed_as_now_or_before_now() {
    let (_dir, db) = replayed("oncall-report", "fixtures/stuck.jsonl");
    let at = "2026-11-28T00:00:00Z";
    let all = jsonl(&["report", "stuck", "--db", &db, "--now", at, "--format", "jsonl"]);
    let owner = all[0]["owner"].as_str().unwrap().to_string();
    let mine = jsonl(&["report", "stuck", "--db", &db, "--now", at, "--owner", &owner, "--format", "jsonl"]);
    let expected: Vec<Value> = all.iter().filter(|item| item["owner"] == owner.as_str()).cloned().collect();
    assert_eq!(mine, expected);
    assert!(!mine.is_empty() && mine.len() < all.len(), "the fixture has stuck entities of two teams");
    let wrong = lifewatch(&["report", "stuck", "--db", &db, "--owner", "nobody"], None);
    assert_eq!(wrong.code, Some(2));
    assert!(wrong.stderr.contains("platform-oncall"), "{}", wrong.stderr);

    for now in ["now", "-1h", "-2d"] {
        let run = lifewatch(&["report", "stuck", "--db", &db, "--now", now], None);
        assert!(run.assert_success().stdout_text().contains("(--now)"), "{now}");
    }
    let since = lifewatch(&["incidents", "--db", &db, "--since", "-1h", "--format", "jsonl"], None);
    since.assert_success();
}

#[test]
fn json_is_one_document_holding_what_jsonl_prints() {
    let (_dir, db) = replayed("oncall-json", "fixtures/bad-input.jsonl");
    for args in [
        &["incidents", "--db", &db][..],
        &["rejected", "--db", &db],
        &["report", "stuck", "--db", &db],
        &["verify", "--db", &db],
        &["show", "--db", &db, "acc_b2"],
        &["replay", "fixtures/launch-day.jsonl"],
    ] {
        let lines = jsonl(&[args, &["--format", "jsonl"]].concat());
        let document = lifewatch(&[args, &["-o", "json"]].concat(), None).assert_success().stdout_text();
        let document: Value =
            serde_json::from_str(&document).unwrap_or_else(|error| panic!("{args:?}: {error}"));
        assert_eq!(document, Value::Array(lines), "{args:?}");
    }
}
