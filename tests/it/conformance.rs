//! The public conformance scenarios of `fixtures/conformance/`: every
//! `NAME.jsonl` replayed through the binary must raise exactly the incidents
//! of `NAME.expected.jsonl`, compared as that folder's README says.

use std::path::{Path, PathBuf};

use crate::common::{Normalised, compare_multisets, repo_root};
use serde_json::Value;

fn scenarios() -> Vec<PathBuf> {
    let dir = repo_root().join("fixtures/conformance");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("cannot read directory entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl")
        })
        .collect();
    scenarios.sort();
    scenarios
}

fn expected_records(path: &Path) -> Vec<Normalised> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let record: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: not JSON ({error}): {line}", path.display()));
            Normalised::from_record(&record)
        })
        .collect()
}

/// Replays one scenario and returns a readable diff if it disagrees.
fn run_scenario(scenario: &Path) -> Result<(), String> {
    let stem = scenario.file_stem().and_then(|stem| stem.to_str()).expect("scenario name").to_string();
    let dir = scenario.parent().expect("scenario folder");
    let expected_path = dir.join(format!("{stem}.expected.jsonl"));
    if !expected_path.exists() {
        return Err(format!("no {}", expected_path.display()));
    }
    let now = std::fs::read_to_string(dir.join(format!("{stem}.now"))).ok().map(|now| now.trim().to_string());
    let scenario_arg = scenario.to_str().expect("UTF-8 path");
    let run = crate::common::replay_jsonl(&[scenario_arg], now.as_deref());
    let actual: Vec<Normalised> = run.records().iter().map(Normalised::from_record).collect();
    compare_multisets(&expected_records(&expected_path), &actual)
}

#[test]
fn every_conformance_scenario_raises_the_expected_incidents() {
    let scenarios = scenarios();
    assert!(
        scenarios.len() >= 5,
        "expected the public scenarios in fixtures/conformance, found {scenarios:?}"
    );
    let failures: Vec<String> = scenarios
        .iter()
        .filter_map(|scenario| {
            run_scenario(scenario).err().map(|diff| format!("{}:\n{diff}", scenario.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} conformance scenarios disagree:\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_notices_a_wrong_record() {
    // Guards the comparison itself: a changed field or a missing record must show.
    let record: Value = serde_json::from_str(
        r#"{"kind":"stuck","entity":{"type":"project","id":"p"},"owner":"o","severity":"error",
            "status":"resolved","opened_at":"2026-11-27T12:00:00Z","resolved_at":"2026-11-27T12:05:00.000Z",
            "state":"requested"}"#,
    )
    .unwrap();
    let base = Normalised::from_record(&record);
    let mut same_instant = record.clone();
    same_instant["resolved_at"] = "2026-11-27T13:05:00+01:00".into();
    assert_eq!(
        compare_multisets(std::slice::from_ref(&base), &[Normalised::from_record(&same_instant)]),
        Ok(())
    );
    let mut other_state = record.clone();
    other_state["state"] = "provisioning".into();
    assert!(
        compare_multisets(std::slice::from_ref(&base), &[Normalised::from_record(&other_state)]).is_err()
    );
    assert!(compare_multisets(&[base.clone(), base.clone()], std::slice::from_ref(&base)).is_err());
    assert!(compare_multisets(&[], &[base]).is_err());
}
