//! The JSON Schemas under `schemas/`: generated from lifewatch-core's types,
//! checked in, and held to what the parser and the engine really do.
//!
//! - The checked-in files must equal what `lifewatch_core::all_schemas` generates;
//!   `LIFEWATCH_BLESS_SCHEMAS=1 cargo test --test schemas` rewrites them.
//! - Every event the parser accepts (fixtures, a simulated stream) is valid by
//!   `event.schema.json`, by its type's `data/<type>.schema.json` and by the
//!   official CloudEvents schema; the bad events of a built-in list that the
//!   parser rejects are rejected by `event.schema.json` too.
//! - The records `lifewatch replay` prints are valid by `incident.schema.json`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::Validator;
use lifewatch_core::{EventType, RejectReason, all_schemas, parse_event, schema_file_text};
use lifewatch_sim::{SimulateOptions, Simulator};
use serde_json::{Value, json};

const BLESS_VARIABLE: &str = "LIFEWATCH_BLESS_SCHEMAS";
/// The official schema, copied verbatim; not generated.
const CLOUDEVENTS_SCHEMA: &str = "cloudevents-1.0.schema.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schemas_dir() -> PathBuf {
    root().join("schemas")
}

/// The generated schema at `path` (relative to `schemas/`), from memory rather than
/// the checked-in file, so that these tests do not race with a bless run.
fn generated(path: &str) -> Value {
    all_schemas()
        .into_iter()
        .find_map(|(name, schema)| (name == path).then_some(schema))
        .unwrap_or_else(|| panic!("no generated schema {path}"))
}

/// A validator that also asserts `format` (date-time, uri-reference), as a strict
/// emitter-side validator would.
fn validator(schema: &Value) -> Validator {
    jsonschema::options().should_validate_formats(true).build(schema).unwrap()
}

fn event_validator() -> Validator {
    validator(&generated("event.schema.json"))
}

fn cloudevents_validator() -> Validator {
    let text = fs::read_to_string(schemas_dir().join(CLOUDEVENTS_SCHEMA)).unwrap();
    validator(&serde_json::from_str(&text).unwrap())
}

/// Validator of each type's standalone `data` schema, by type name.
fn data_validators() -> Vec<(&'static str, Validator)> {
    EventType::ALL
        .iter()
        .map(|event_type| {
            let name = event_type.as_str();
            (name, validator(&generated(&format!("data/{name}.schema.json"))))
        })
        .collect()
}

fn errors(validator: &Validator, instance: &Value) -> String {
    validator
        .iter_errors(instance)
        .map(|error| format!("{error} at {}", error.instance_path()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks one event the parser accepted against every schema that applies to it.
fn assert_valid_event(
    line: &str,
    origin: &str,
    event: &Validator,
    cloudevents: &Validator,
    data: &[(&'static str, Validator)],
) {
    let value: Value = serde_json::from_str(line).unwrap();
    assert!(event.is_valid(&value), "{origin}: event.schema.json rejects {line}: {}", errors(event, &value));
    assert!(
        cloudevents.is_valid(&value),
        "{origin}: the CloudEvents schema rejects {line}: {}",
        errors(cloudevents, &value)
    );
    let type_name = value["type"].as_str().unwrap();
    let (_, data_validator) = data.iter().find(|(name, _)| *name == type_name).unwrap();
    let data_value = value.get("data").cloned().unwrap_or(Value::Null);
    assert!(
        data_validator.is_valid(&data_value),
        "{origin}: data/{type_name}.schema.json rejects the data of {line}: {}",
        errors(data_validator, &data_value)
    );
}

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let bless = std::env::var(BLESS_VARIABLE).is_ok_and(|value| value == "1");
    let dir = schemas_dir();
    let generated = all_schemas();
    let mut problems = Vec::new();
    for (path, schema) in &generated {
        jsonschema::meta::validate(schema)
            .unwrap_or_else(|error| panic!("generated {path} is not a valid JSON Schema: {error}"));
        let file = dir.join(path);
        let expected = schema_file_text(schema);
        if fs::read_to_string(&file).ok().as_deref() == Some(expected.as_str()) {
            continue;
        }
        if bless {
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, expected).unwrap();
            eprintln!("wrote schemas/{path}");
        } else {
            problems.push(format!("schemas/{path} is missing or differs from the generated schema"));
        }
    }
    // A schema file nobody generates any more (an event type was removed) is stale too.
    let known: BTreeSet<&str> = generated.iter().map(|(path, _)| path.as_str()).collect();
    for file in schema_files(&dir) {
        let relative = file.strip_prefix(&dir).unwrap().to_string_lossy().replace('\\', "/");
        if relative == CLOUDEVENTS_SCHEMA || known.contains(relative.as_str()) {
            continue;
        }
        if bless {
            fs::remove_file(&file).unwrap();
            eprintln!("removed schemas/{relative}");
        } else {
            problems.push(format!("schemas/{relative} is not generated by lifewatch_core::all_schemas"));
        }
    }
    assert!(
        problems.is_empty(),
        "the checked-in JSON Schemas drifted from lifewatch-core's types:\n  {}\n\
         Regenerate them with `{BLESS_VARIABLE}=1 cargo test --test schemas`, review the diff, and commit it.",
        problems.join("\n  ")
    );
}

/// Every `*.schema.json` under `dir`, recursively.
fn schema_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|path| path.to_string_lossy().ends_with(".schema.json")).collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_envelope_embeds_exactly_the_standalone_data_schemas() {
    let event = generated("event.schema.json");
    for event_type in EventType::ALL {
        let name = event_type.as_str();
        let mut standalone = generated(&format!("data/{name}.schema.json"));
        standalone.as_object_mut().unwrap().remove("$schema");
        assert_eq!(event["$defs"][name], standalone, "{name}");
    }
}

#[test]
fn every_accepted_fixture_line_is_valid_by_the_schemas() {
    let (event, cloudevents, data) = (event_validator(), cloudevents_validator(), data_validators());
    let fixtures: Vec<PathBuf> = files_under(&root().join("fixtures"))
        .into_iter()
        .filter(|path| {
            let name = path.to_string_lossy();
            // hostile.jsonl puts control characters in `source`, which SPEC.md
            // (a non-empty string) and lifewatch accept but the CloudEvents
            // schema (a URI reference) does not: it tests terminal output.
            name.ends_with(".jsonl")
                && !name.ends_with(".expected.jsonl")
                && !name.ends_with("/hostile.jsonl")
        })
        .collect();
    assert!(!fixtures.is_empty(), "no fixture found under fixtures/");
    let mut accepted = 0;
    for fixture in &fixtures {
        let bytes = fs::read(fixture).unwrap();
        for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if parse_event(line).is_err() {
                continue;
            }
            let origin = format!("{}:{}", fixture.strip_prefix(root()).unwrap().display(), index + 1);
            let text = std::str::from_utf8(line)
                .unwrap_or_else(|error| panic!("{origin}: the parser accepts invalid UTF-8: {error}"));
            assert_valid_event(text, &origin, &event, &cloudevents, &data);
            accepted += 1;
        }
    }
    assert!(accepted > 0, "no fixture line was accepted by the parser");
}

#[test]
fn simulated_events_are_valid_by_the_schemas_and_its_bad_lines_invalid() {
    let (event, cloudevents, data) = (event_validator(), cloudevents_validator(), data_validators());
    let (mut good, mut bad) = (0, 0);
    for seed in [1, 2] {
        let options = SimulateOptions { seed, accounts: 200, faults: true, ..Default::default() };
        for (index, sim_line) in Simulator::new(options).enumerate() {
            let origin = format!("simulate seed {seed} line {}", index + 1);
            let line = &sim_line.line;
            let parsed = parse_event(line.as_bytes());
            if sim_line.subject.is_some() {
                assert!(parsed.is_ok(), "{origin}: the parser rejects {line}");
                assert_valid_event(line, &origin, &event, &cloudevents, &data);
                good += 1;
                continue;
            }
            // A deliberately malformed line that is still JSON: the schema must reject it
            // when the parser rejects it for its attributes, type or data.
            let (Err(rejection), Ok(value)) = (parsed, serde_json::from_str::<Value>(line)) else {
                continue;
            };
            if !SCHEMA_REASONS.contains(&rejection.reason) || has_integral_float(&value) {
                continue;
            }
            assert!(!event.is_valid(&value), "{origin}: event.schema.json accepts {line} ({rejection})");
            bad += 1;
        }
    }
    assert!(good > 2000, "only {good} simulated events checked");
    assert!(bad > 0, "no malformed simulated line checked");
}

/// The rejection reasons a JSON Schema can express.
const SCHEMA_REASONS: [RejectReason; 4] = [
    RejectReason::MissingAttribute,
    RejectReason::InvalidAttribute,
    RejectReason::UnknownType,
    RejectReason::InvalidData,
];

/// Whether `value` holds a number like `64.0`: an integer to JSON Schema, which
/// compares values, but not to the parser, which wants integers written as such.
/// A documented limit of the schemas (schemas/README.md).
fn has_integral_float(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.as_f64().is_some_and(|float| number.is_f64() && float.fract() == 0.0),
        Value::Array(items) => items.iter().any(has_integral_float),
        Value::Object(members) => members.values().any(has_integral_float),
        _ => false,
    }
}

/// A valid `project.requested`; the cases below change one thing in it.
fn good_event() -> Value {
    json!({
        "specversion": "1.0",
        "id": "evt-1",
        "source": "cloud/provisioner",
        "type": "project.requested",
        "subject": "prj_42",
        "time": "2026-11-27T12:00:00Z",
        "datacontenttype": "application/json",
        "data": { "account_id": "acc_7", "region": "eu-west-1" },
    })
}

/// `good_event()` with `attribute` set to `value`, or removed when `value` is `None`.
fn with(attribute: &str, value: Option<Value>) -> Value {
    let mut event = good_event();
    let members = event.as_object_mut().unwrap();
    match value {
        Some(value) => members.insert(attribute.to_string(), value),
        None => members.remove(attribute),
    };
    event
}

/// An event of `event_type` with `data` (omitted when `None`).
fn event_of(event_type: &str, subject: &str, data: Option<Value>) -> Value {
    let mut event = with("type", Some(json!(event_type)));
    event["subject"] = json!(subject);
    match data {
        Some(data) => event["data"] = data,
        None => {
            event.as_object_mut().unwrap().remove("data");
        }
    }
    event
}

#[test]
fn the_event_schema_rejects_what_the_parser_rejects() {
    use RejectReason::{InvalidAttribute, InvalidData, MissingAttribute, UnknownType};
    let quota = |limit: Value| {
        event_of(
            "project.quota_exceeded",
            "prj_1",
            Some(json!({ "resource": "cpu", "limit": limit, "used": 5 })),
        )
    };
    let cases: Vec<(Value, RejectReason)> = vec![
        (with("specversion", None), MissingAttribute),
        (with("specversion", Some(json!("0.3"))), InvalidAttribute),
        (with("specversion", Some(json!(1.0))), InvalidAttribute),
        (with("id", None), MissingAttribute),
        (with("id", Some(Value::Null)), MissingAttribute),
        (with("id", Some(json!(""))), InvalidAttribute),
        (with("id", Some(json!(7))), InvalidAttribute),
        (with("id", Some(json!("x".repeat(257)))), InvalidAttribute),
        (with("source", None), MissingAttribute),
        (with("source", Some(json!(""))), InvalidAttribute),
        (with("source", Some(json!(["cloud"]))), InvalidAttribute),
        (with("type", None), MissingAttribute),
        (with("type", Some(json!("project.exploded"))), UnknownType),
        (with("type", Some(json!("Project.Requested"))), UnknownType),
        (with("type", Some(json!(3))), InvalidAttribute),
        (with("subject", None), MissingAttribute),
        (with("subject", Some(json!(""))), InvalidAttribute),
        (with("subject", Some(json!("prj 42"))), InvalidAttribute),
        (with("subject", Some(json!("prj/42"))), InvalidAttribute),
        (with("subject", Some(json!("prj_ü"))), InvalidAttribute),
        (with("subject", Some(json!("p".repeat(129)))), InvalidAttribute),
        (with("time", None), MissingAttribute),
        (with("time", Some(json!("yesterday"))), InvalidAttribute),
        (with("time", Some(json!("2026-11-27"))), InvalidAttribute),
        (with("time", Some(json!("2026-11-27T12:00:00"))), InvalidAttribute),
        (with("time", Some(json!("2026-11-27 12:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!("2026-11-27T12:00:00+0200"))), InvalidAttribute),
        (with("time", Some(json!("2026-13-01T00:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!("2026-02-29T00:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!("2026-11-27T24:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!("3000-01-01T00:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!("１２３４-11-27T12:00:00Z"))), InvalidAttribute),
        (with("time", Some(json!(1_795_737_600))), InvalidAttribute),
        (with("datacontenttype", Some(json!("text/plain"))), InvalidAttribute),
        (with("datacontenttype", Some(json!(""))), InvalidAttribute),
        (with("datacontenttype", Some(json!(1))), InvalidAttribute),
        (with("data", None), InvalidData),
        (with("data", Some(Value::Null)), InvalidData),
        (with("data", Some(json!([]))), InvalidData),
        (with("data", Some(json!("account_id=acc_7"))), InvalidData),
        (with("data", Some(json!({ "account_id": "acc_7" }))), InvalidData),
        (with("data", Some(json!({ "account_id": "acc_7", "region": null }))), InvalidData),
        (with("data", Some(json!({ "account_id": "acc_7", "region": 3 }))), InvalidData),
        (with("data", Some(json!({ "account_id": true, "region": "eu-west-1" }))), InvalidData),
        (event_of("account.activated", "acc_1", Some(json!("yes"))), InvalidData),
        (event_of("account.activated", "acc_1", Some(json!(7))), InvalidData),
        (event_of("account.created", "acc_1", None), InvalidData),
        (event_of("account.created", "acc_1", Some(json!({ "plan": "free", "region": 1 }))), InvalidData),
        (event_of("account.suspended", "acc_1", Some(json!({}))), InvalidData),
        (event_of("account.plan_changed", "acc_1", Some(json!({ "plan": null }))), InvalidData),
        (event_of("project.provisioning_started", "prj_1", Some(json!({ "attempt": "2" }))), InvalidData),
        (event_of("project.provisioning_started", "prj_1", Some(json!({ "attempt": 1.5 }))), InvalidData),
        (event_of("project.provisioning_failed", "prj_1", Some(json!({ "retryable": true }))), InvalidData),
        (
            event_of(
                "project.provisioning_failed",
                "prj_1",
                Some(json!({ "error": "x", "retryable": "no" })),
            ),
            InvalidData,
        ),
        (quota(json!("3")), InvalidData),
        (quota(json!(true)), InvalidData),
        (quota(json!(3.5)), InvalidData),
        (quota(json!(1e20)), InvalidData),
        (quota(Value::Null), InvalidData),
        (event_of("project.quota_restored", "prj_1", Some(json!({ "resource": 1 }))), InvalidData),
        (
            event_of("dispute.opened", "dsp_1", Some(json!({ "account_id": "acc_1", "currency": "EUR" }))),
            InvalidData,
        ),
        (event_of("dispute.closed", "dsp_1", Some(json!({ "outcome": ["won"] }))), InvalidData),
    ];
    let event = event_validator();
    for (case, expected) in cases {
        let line = case.to_string();
        let rejection = parse_event(line.as_bytes()).expect_err(&line);
        assert_eq!(rejection.reason, expected, "the parser's reason for {line}");
        assert!(
            !event.is_valid(&case),
            "event.schema.json accepts {line}, which the parser rejects ({rejection})"
        );
    }
    // Integers too large for i64, as an emitter would write them.
    let huge = r#"{"specversion":"1.0","id":"q","source":"s","type":"project.quota_exceeded","subject":"p","time":"2026-11-27T12:00:00Z","data":{"resource":"cpu","limit":99999999999999999999,"used":5}}"#;
    assert_eq!(parse_event(huge.as_bytes()).unwrap_err().reason, InvalidData);
    assert!(!event.is_valid(&serde_json::from_str(huge).unwrap()));
}

#[test]
fn the_event_schema_accepts_what_the_parser_accepts_at_the_edges() {
    let cases = [
        with("datacontenttype", None),
        with("datacontenttype", Some(Value::Null)),
        with("id", Some(json!("x".repeat(256)))),
        with("subject", Some(json!("P".repeat(128)))),
        with("subject", Some(json!("A-z_0-9"))),
        with("time", Some(json!("2026-11-27T13:00:00.250+01:00"))),
        with("time", Some(json!("2026-11-27T12:00:00.000000001-05:30"))),
        with("time", Some(json!("2024-02-29T00:00:00Z"))),
        with("traceparent", Some(json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))),
        with("data", Some(json!({ "account_id": "acc_7", "region": "eu-west-1", "extra": [1, 2] }))),
        event_of("account.activated", "acc_1", None),
        event_of("account.activated", "acc_1", Some(Value::Null)),
        event_of("account.activated", "acc_1", Some(json!({ "note": "anything" }))),
        event_of("account.created", "acc_1", Some(json!({ "plan": "free", "region": null }))),
        event_of("account.created", "acc_1", Some(json!({ "plan": "free" }))),
        event_of("project.provisioning_started", "prj_1", Some(json!({ "attempt": null }))),
        event_of("project.provisioning_started", "prj_1", Some(json!({ "attempt": -1 }))),
        event_of("project.provisioning_failed", "prj_1", Some(json!({ "error": "x", "retryable": false }))),
        event_of(
            "project.quota_exceeded",
            "prj_1",
            Some(json!({ "resource": "cpu", "limit": i64::MAX, "used": i64::MIN })),
        ),
        event_of(
            "dispute.opened",
            "dsp_1",
            Some(json!({ "account_id": "acc_1", "amount_cents": 1999, "currency": "EUR" })),
        ),
    ];
    let (event, cloudevents, data) = (event_validator(), cloudevents_validator(), data_validators());
    for case in cases {
        let line = case.to_string();
        if let Err(rejection) = parse_event(line.as_bytes()) {
            panic!("the parser rejects {line}: {rejection}");
        }
        assert_valid_event(&line, "edge case", &event, &cloudevents, &data);
    }
}

#[test]
fn replayed_incident_records_are_valid_by_the_incident_schema() {
    let incident = validator(&generated("incident.schema.json"));
    let output = Command::new(env!("CARGO_BIN_EXE_lifewatch"))
        .current_dir(root())
        .args(["replay", "fixtures/conformance/11_regional_outage.jsonl", "--format", "jsonl"])
        .output()
        .unwrap();
    assert!(output.status.success(), "replay failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut kinds = BTreeSet::new();
    for line in stdout.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert!(
            incident.is_valid(&record),
            "incident.schema.json rejects {line}: {}",
            errors(&incident, &record)
        );
        kinds.insert(record["kind"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains("regional_outage"), "expected a regional_outage record, got {kinds:?}");
}
