//! Properties of the engine and the replay command, checked with proptest:
//! bad input never panics, replay is deterministic, duplicates and file
//! boundaries change nothing, and a reference model of each state machine
//! agrees with the engine on which events are illegal.

use crate::common::{EngineReplay, replay_in_process, split_lines};
use lifewatch_core::{
    AccountMachine, AccountState, DisputeMachine, DisputeState, EntityType, EventType, IncidentKind,
    IncidentRecord, Machine, ProjectMachine, ProjectState, Rule, State, Target, Timestamp, parse_event,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// 2026-11-27T12:00:00Z.
const BASE: i64 = 1_795_780_800;

fn time(seconds: i64) -> String {
    Timestamp::from_unix_seconds(BASE + seconds).to_string()
}

fn line(id: &str, event_type: EventType, subject: &str, seconds: i64) -> String {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "test/properties",
        "type": event_type.as_str(),
        "subject": subject,
        "time": time(seconds),
        "data": valid_data(event_type),
    })
    .to_string()
}

/// A `data` object that satisfies the event type, for walks owned by the
/// active account `acc_base`.
fn valid_data(event_type: EventType) -> Value {
    match event_type.as_str() {
        "account.created" | "account.plan_changed" => json!({"plan": "enterprise"}),
        "account.onboarding_failed" | "account.suspended" => json!({"reason": "test"}),
        "project.requested" => json!({"account_id": "acc_base", "region": "test-region-1"}),
        "project.provisioning_started" => json!({"attempt": 1}),
        "project.provisioning_failed" => json!({"error": "test", "retryable": true}),
        "project.quota_exceeded" => json!({"resource": "cpu", "limit": 4, "used": 5}),
        "project.quota_restored" => json!({"resource": "cpu"}),
        "dispute.opened" => json!({"account_id": "acc_base", "amount_cents": 100, "currency": "EUR"}),
        "dispute.closed" => json!({"outcome": "won"}),
        _ => json!({}),
    }
}

fn records_of(lines: &[String], now: Option<Timestamp>) -> Vec<IncidentRecord> {
    let numbered = lines.iter().enumerate().map(|(index, line)| (index as u64 + 1, line.as_bytes()));
    replay_in_process(numbered, now).engine.records()
}

// ---------------------------------------------------------------------------
// The machine tables, read from crates/core, and an independent reference
// model of SPEC.md "Applying events" over them.

/// A row of a machine's table, with the states lifted into [`State`].
struct Row {
    from: Vec<State>,
    /// `None`: the event keeps the state.
    target: Option<State>,
    creates: bool,
}

fn lift<S: Copy + Into<State>>(rule: Rule<S>) -> Row {
    Row {
        from: rule.from.iter().map(|&state| state.into()).collect(),
        target: match rule.target {
            Target::Move(state) => Some(state.into()),
            Target::Keep => None,
        },
        creates: rule.creates,
    }
}

fn row(event_type: EventType) -> Row {
    match event_type {
        EventType::Account(event) => lift(AccountMachine::rule(event)),
        EventType::Project(event) => lift(ProjectMachine::rule(event)),
        EventType::Dispute(event) => lift(DisputeMachine::rule(event)),
    }
}

fn events_of(entity_type: EntityType) -> Vec<EventType> {
    EventType::ALL.into_iter().filter(|event_type| event_type.entity_type() == entity_type).collect()
}

/// The reference model: whether `event_type` is legal from `state`, and the
/// state after it, straight from SPEC.md section 2 "Applying events".
fn reference_step(state: Option<State>, event_type: EventType) -> (bool, Option<State>) {
    let row = row(event_type);
    match state {
        None if row.creates => (true, row.target),
        // A state-keeping event for a missing entity changes nothing.
        None if row.target.is_none() => (false, None),
        // A moving event for a missing entity creates it, illegally.
        None => (false, row.target),
        // A terminal state, or a creation event for an existing entity: nothing changes.
        Some(current) if current.is_terminal() || row.creates => (false, Some(current)),
        Some(current) => (row.from.contains(&current), Some(row.target.unwrap_or(current))),
    }
}

fn legal_events(entity_type: EntityType, state: Option<State>) -> Vec<EventType> {
    events_of(entity_type).into_iter().filter(|&event_type| reference_step(state, event_type).0).collect()
}

const SUBJECTS: [(EntityType, &str); 3] =
    [(EntityType::Account, "acc_walk"), (EntityType::Project, "prj_walk"), (EntityType::Dispute, "dsp_walk")];

/// A legal walk: `choices` pick among the events allowed at each step; the
/// walk stops at a terminal state or when the choices run out.
fn legal_walk(entity_type: EntityType, choices: &[u8]) -> Vec<EventType> {
    let mut state = None;
    let mut walk = Vec::new();
    for &choice in choices {
        let allowed = legal_events(entity_type, state);
        if allowed.is_empty() {
            break;
        }
        let event_type = allowed[choice as usize % allowed.len()];
        walk.push(event_type);
        state = reference_step(state, event_type).1;
    }
    walk
}

/// The stream of a walk: the owning account `acc_base` is created and
/// activated first; events follow 1 to 10 seconds apart, so that with at most
/// 25 steps every visit, and the whole stream, lasts less than the shortest
/// deadline (5 minutes): nothing can be stuck.
fn walk_lines(subject: &str, walk: &[EventType], gaps: &[u8]) -> Vec<String> {
    let mut lines = vec![
        line("base-1", EventType::parse("account.created").unwrap(), "acc_base", 0),
        line("base-2", EventType::parse("account.activated").unwrap(), "acc_base", 1),
    ];
    let mut seconds = 1;
    for (index, &event_type) in walk.iter().enumerate() {
        seconds += 1 + i64::from(gaps.get(index).copied().unwrap_or(0) % 10);
        lines.push(line(&format!("walk-{index}"), event_type, subject, seconds));
    }
    lines
}

fn kinds_for(records: &[IncidentRecord], kind: IncidentKind, subject: &str) -> Vec<IncidentRecord> {
    records.iter().filter(|record| record.kind == kind && record.entity.id == subject).cloned().collect()
}

#[test]
fn the_machine_tables_are_those_of_the_spec() {
    // SPEC.md section 2, transcribed: event, from-states, target ("=" keeps).
    let spec: &[(&str, &[&str], &str)] = &[
        ("account.created", &[], "pending"),
        ("account.activated", &["pending"], "active"),
        ("account.onboarding_failed", &["pending"], "failed"),
        ("account.onboarding_retried", &["failed"], "pending"),
        ("account.suspended", &["active"], "suspended"),
        ("account.reinstated", &["suspended"], "active"),
        ("account.plan_changed", &["active", "suspended"], "="),
        ("account.closed", &["pending", "active", "suspended", "failed"], "closed"),
        ("project.requested", &[], "requested"),
        ("project.provisioning_started", &["requested", "failed"], "provisioning"),
        ("project.provisioned", &["provisioning"], "active"),
        ("project.provisioning_failed", &["provisioning"], "failed"),
        ("project.suspended", &["active"], "suspended"),
        ("project.resumed", &["suspended"], "active"),
        ("project.quota_exceeded", &["requested", "provisioning", "active", "suspended"], "="),
        ("project.quota_restored", &["requested", "provisioning", "active", "suspended", "failed"], "="),
        (
            "project.deletion_requested",
            &["requested", "provisioning", "active", "suspended", "failed"],
            "deleting",
        ),
        ("project.deleted", &["deleting"], "deleted"),
        ("dispute.opened", &[], "open"),
        ("dispute.responded", &["open"], "responded"),
        ("dispute.closed", &["open", "responded"], "closed"),
    ];
    assert_eq!(spec.len(), EventType::ALL.len());
    for &(name, from, target) in spec {
        let event_type = EventType::parse(name).unwrap();
        let entity_type = event_type.entity_type();
        let state = |name: &str| State::parse(entity_type, name).unwrap();
        let row = row(event_type);
        let mut from_states: Vec<State> = from.iter().map(|name| state(name)).collect();
        let mut table_from = row.from.clone();
        from_states.sort();
        table_from.sort();
        assert_eq!(table_from, from_states, "{name}: from-states");
        assert_eq!(row.target, (target != "=").then(|| state(target)), "{name}: target");
        assert_eq!(row.creates, from.is_empty(), "{name}: creation");
    }
    let terminal: Vec<State> = State::all().filter(|state| state.is_terminal()).collect();
    assert_eq!(
        terminal,
        vec![
            State::Account(AccountState::Closed),
            State::Project(ProjectState::Deleted),
            State::Dispute(DisputeState::Closed)
        ]
    );
}

// ---------------------------------------------------------------------------
// Strategies for bad and random input.

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|number| serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Attribute values that are sometimes right and often wrong.
fn attribute_value(name: &'static str) -> BoxedStrategy<Value> {
    let right: BoxedStrategy<Value> = match name {
        "specversion" => Just(json!("1.0")).boxed(),
        "id" => "[a-z0-9-]{1,8}".prop_map(Value::from).boxed(),
        "source" => Just(json!("cloud/test")).boxed(),
        "type" => prop::sample::select(EventType::ALL.to_vec()).prop_map(|t| json!(t.as_str())).boxed(),
        "subject" => "[a-z_]{1,6}".prop_map(Value::from).boxed(),
        "time" => (0i64..100_000).prop_map(|seconds| json!(time(seconds))).boxed(),
        "datacontenttype" => Just(json!("application/json")).boxed(),
        _ => Just(Value::Null).boxed(),
    };
    let wrong = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        Just(json!(3.0)),
        Just(json!("")),
        Just(json!("2026-11-27T12:00:00")),
        Just(json!("9999-12-31T23:59:59+23:59")),
        Just(json!("0000-01-01T00:00:00-23:59")),
        ".{0,300}".prop_map(Value::from),
        json_value(),
    ];
    prop_oneof![3 => right, 1 => wrong].boxed()
}

fn data_value() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(2.5)),
        any::<bool>().prop_map(Value::from),
        "[a-z0-9_-]{0,8}".prop_map(Value::from),
    ];
    // Every field name of core's one table (what the parser has slots for),
    // in the order first used, and a name it ignores.
    let mut known: Vec<&'static str> = Vec::new();
    for spec in EventType::ALL.iter().flat_map(|event_type| event_type.data_fields()) {
        if !known.contains(&spec.name) {
            known.push(spec.name);
        }
    }
    known.push("extra");
    let names = prop::sample::select(known);
    prop_oneof![
        4 => prop::collection::btree_map(names, field, 0..6)
            .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        1 => json_value(),
    ]
}

/// An object shaped like an event, with every attribute maybe missing, maybe
/// right, maybe wrong.
fn event_shaped() -> impl Strategy<Value = Value> {
    let names = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype"];
    let attributes: Vec<BoxedStrategy<Option<Value>>> =
        names.iter().map(|&name| prop::option::weighted(0.9, attribute_value(name)).boxed()).collect();
    (attributes, prop::option::weighted(0.8, data_value())).prop_map(move |(values, data)| {
        let mut object = serde_json::Map::new();
        for (name, value) in names.iter().zip(values) {
            if let Some(value) = value {
                object.insert(name.to_string(), value);
            }
        }
        if let Some(data) = data {
            object.insert("data".to_string(), data);
        }
        Value::Object(object)
    })
}

/// A plausible stream: mostly valid events for a handful of entities, in a
/// random order of a random mix of types, with a few duplicate ids and a few
/// broken lines.
fn plausible_stream() -> impl Strategy<Value = Vec<String>> {
    let one = (0usize..EventType::ALL.len(), 0usize..3, 0i64..7200, 0u8..20);
    prop::collection::vec(one, 0..60).prop_map(|events| {
        events
            .into_iter()
            .enumerate()
            .map(|(index, (type_index, subject_index, seconds, variant))| {
                let event_type = EventType::ALL[type_index];
                let subject = format!("{}_{subject_index}", &event_type.entity_type().as_str()[..3]);
                let id = if variant == 0 { "reused-id".to_string() } else { format!("e{index}") };
                match variant {
                    1 => format!("{{\"specversion\":\"1.0\",\"id\":\"{id}\""),
                    2 => line(&id, event_type, &subject, seconds).replace("\"1.0\"", "\"0.3\""),
                    _ => line(&id, event_type, &subject, seconds),
                }
            })
            .collect()
    })
}

fn replay_strings(lines: &[String]) -> EngineReplay {
    replay_in_process(lines.iter().enumerate().map(|(index, line)| (index as u64 + 1, line.as_bytes())), None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let mut input = Vec::new();
        for line in &lines {
            let _ = parse_event(line);
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let replay = replay_in_process(split_lines(&input), None);
        let _ = replay.engine.records();
    }

    #[test]
    fn arbitrary_json_never_panics(values in prop::collection::vec(json_value(), 0..8)) {
        let lines: Vec<String> = values.iter().map(Value::to_string).collect();
        for line in &lines {
            prop_assert!(parse_event(line.as_bytes()).is_err(), "not event-shaped, yet accepted: {line}");
        }
        let _ = replay_strings(&lines).engine.records();
    }

    #[test]
    fn event_shaped_objects_never_panic(values in prop::collection::vec(event_shaped(), 1..20)) {
        let lines: Vec<String> = values.iter().map(Value::to_string).collect();
        let replay = replay_strings(&lines);
        prop_assert_eq!(replay.accepted + replay.duplicates + replay.rejected.len() as u64, lines.len() as u64);
        let records = replay.engine.records();
        // And with a clock far in the future, every open visit is judged.
        let mut engine = replay.engine;
        engine.handle_time(Timestamp::from_unix_seconds(BASE + 10_000_000));
        prop_assert!(engine.records().len() >= records.len());
    }

    #[test]
    fn the_same_input_gives_the_same_output(lines in plausible_stream()) {
        let first = records_of(&lines, None);
        let second = records_of(&lines, None);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn duplicating_every_event_changes_nothing(lines in plausible_stream()) {
        let once = records_of(&lines, None);
        let each_twice: Vec<String> = lines.iter().flat_map(|line| [line.clone(), line.clone()]).collect();
        prop_assert_eq!(&records_of(&each_twice, None), &once, "each line twice");
        let stream_twice: Vec<String> = lines.iter().chain(&lines).cloned().collect();
        prop_assert_eq!(&records_of(&stream_twice, None), &once, "the whole stream twice");
    }

    #[test]
    fn legal_walks_raise_nothing_illegal_or_stuck(
        which in 0usize..3,
        choices in prop::collection::vec(any::<u8>(), 1..25),
        gaps in prop::collection::vec(any::<u8>(), 25),
    ) {
        let (entity_type, subject) = SUBJECTS[which];
        let walk = legal_walk(entity_type, &choices);
        let records = records_of(&walk_lines(subject, &walk, &gaps), None);
        let trouble: Vec<&IncidentRecord> = records
            .iter()
            .filter(|record| matches!(
                record.kind,
                IncidentKind::IllegalTransition | IncidentKind::Stuck | IncidentKind::InvariantViolation
            ))
            .collect();
        prop_assert!(trouble.is_empty(), "walk {walk:?} raised {trouble:#?}");
    }

    #[test]
    fn one_illegal_event_in_a_legal_walk_raises_exactly_one_illegal_transition(
        which in 0usize..3,
        choices in prop::collection::vec(any::<u8>(), 1..24),
        position_choice in any::<usize>(),
        event_choice in any::<usize>(),
        gaps in prop::collection::vec(any::<u8>(), 25),
    ) {
        let (entity_type, subject) = SUBJECTS[which];
        let walk = legal_walk(entity_type, &choices);
        // The state before each position of the walk, by the reference model.
        let mut states = vec![None];
        for &event_type in &walk {
            let next = reference_step(*states.last().unwrap(), event_type).1;
            states.push(next);
        }
        let position = position_choice % (walk.len() + 1);
        let illegal: Vec<EventType> = events_of(entity_type)
            .into_iter()
            .filter(|&event_type| !reference_step(states[position], event_type).0)
            .collect();
        let inserted = illegal[event_choice % illegal.len()];
        let mut stream = walk.clone();
        stream.insert(position, inserted);
        // The reference model's verdict on the whole stream: the inserted event
        // is illegal, and may make later events of the walk illegal too.
        let mut state = None;
        let mut illegal_steps = 0;
        let mut first_illegal_state = None;
        for &event_type in &stream {
            let (legal, next) = reference_step(state, event_type);
            if !legal {
                if illegal_steps == 0 {
                    first_illegal_state = Some(state);
                }
                illegal_steps += 1;
            }
            state = next;
        }
        let records = records_of(&walk_lines(subject, &stream, &gaps), None);
        let found = kinds_for(&records, IncidentKind::IllegalTransition, subject);
        prop_assert_eq!(found.len(), 1, "stream {:?} raised {:#?}", stream, found);
        prop_assert_eq!(found[0].count, illegal_steps, "stream {:?}", stream);
        let expected_state = first_illegal_state.flatten().map(|state| state.as_str().to_string());
        prop_assert_eq!(&found[0].state, &expected_state, "stream {:?}", stream);
        let elsewhere: Vec<&IncidentRecord> = records
            .iter()
            .filter(|record| record.kind == IncidentKind::IllegalTransition && record.entity.id != subject)
            .collect();
        prop_assert!(elsewhere.is_empty(), "{elsewhere:#?}");
    }
}

proptest! {
    // Each case runs the binary three times: few cases.
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn splitting_a_stream_over_files_changes_nothing(lines in plausible_stream(), cut in any::<(usize, usize)>()) {
        let dir = crate::common::TempDir::new("split");
        let text = |lines: &[String]| lines.iter().map(|line| format!("{line}\n")).collect::<String>();
        let whole = dir.join("whole.jsonl");
        std::fs::write(&whole, text(&lines)).unwrap();
        let (a, b) = (cut.0 % (lines.len() + 1), cut.1 % (lines.len() + 1));
        let (first, second) = (a.min(b), a.max(b));
        let parts: Vec<String> = [&lines[..first], &lines[first..second], &lines[second..]]
            .iter()
            .enumerate()
            .map(|(index, part)| {
                let path = dir.join(format!("part{index}.jsonl"));
                std::fs::write(&path, text(part)).unwrap();
                path.to_str().unwrap().to_string()
            })
            .collect();
        let together = crate::common::replay_jsonl(&[whole.to_str().unwrap()], None).stdout;
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let split = crate::common::replay_jsonl(&parts, None).stdout;
        prop_assert_eq!(String::from_utf8(split).unwrap(), String::from_utf8(together.clone()).unwrap());
        // And the engine, fed the same lines in-process, gives the same records.
        let engine: Vec<Value> =
            records_of(&lines, None).iter().map(|record| serde_json::to_value(record).unwrap()).collect();
        let printed: Vec<Value> = String::from_utf8(together)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        prop_assert_eq!(printed, engine);
    }
}

#[test]
fn splitting_launch_day_over_three_files_changes_nothing() {
    let input =
        std::fs::read_to_string(crate::common::repo_root().join("fixtures/launch-day.jsonl")).unwrap();
    let lines: Vec<&str> = input.lines().collect();
    let dir = crate::common::TempDir::new("launch-day-split");
    let cuts = [0, lines.len() / 3, 2 * lines.len() / 3 + 7, lines.len()];
    let parts: Vec<String> = cuts
        .windows(2)
        .enumerate()
        .map(|(index, window)| {
            let path = dir.join(format!("part{index}.jsonl"));
            std::fs::write(&path, lines[window[0]..window[1]].join("\n") + "\n").unwrap();
            path.to_str().unwrap().to_string()
        })
        .collect();
    let together = crate::common::replay_jsonl(&["fixtures/launch-day.jsonl"], None).stdout;
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let split = crate::common::replay_jsonl(&parts, None).stdout;
    assert!(!together.is_empty());
    assert!(split == together, "replaying launch-day split over three files printed different records");
}

/// The record of each incident in the last outbox entry about it, by id.
fn last_outbox_records(db: &std::path::Path) -> std::collections::BTreeMap<String, Value> {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let count: u32 = connection.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0)).unwrap();
    drop(connection);
    let writer = crate::store::open_writer(db);
    let entries = writer.pending_outbox(0, count as usize + 1).unwrap();
    assert_eq!(entries.len(), count as usize, "nothing was delivered");
    let mut records = std::collections::BTreeMap::new();
    for entry in entries {
        let mut message: Value = serde_json::from_str(&entry.payload).unwrap();
        assert_eq!(message["incident"]["id"], entry.incident_id.as_str());
        records.insert(entry.incident_id, message["incident"].take());
    }
    records
}

proptest! {
    // Each case writes a few small databases: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the batches and wherever the input is split over two
    /// `replay --db` calls, the records replay prints are the ones
    /// `incidents --db` prints, byte for byte, and the ones last published
    /// on INCIDENTS; and they are those of one call in one batch.
    #[test]
    fn records_do_not_depend_on_batches_or_calls(
        lines in plausible_stream(),
        batch in 1usize..9,
        cut in any::<usize>(),
    ) {
        use crate::store::{replay_call, stored_records};
        let lines: Vec<&[u8]> = lines.iter().map(String::as_bytes).collect();
        let dir = crate::common::TempDir::new("records-batches");
        let whole = replay_call(&dir.join("whole.db"), &lines, usize::MAX);
        let printed = replay_call(&dir.join("batched.db"), &lines, batch);
        prop_assert_eq!(&printed, &whole, "batches of {}", batch);
        let stored = stored_records(&dir.join("batched.db"));
        prop_assert_eq!(&stored, &printed, "batches of {}: stored", batch);
        let published = last_outbox_records(&dir.join("batched.db"));
        for line in stored.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let id = record["id"].as_str().unwrap();
            prop_assert_eq!(published.get(id), Some(&record), "batches of {}: published", batch);
        }

        let cut = cut % (lines.len() + 1);
        let split = dir.join("split.db");
        replay_call(&split, &lines[..cut], batch);
        let printed = replay_call(&split, &lines[cut..], batch);
        prop_assert_eq!(&printed, &whole, "split after line {}, batches of {}", cut, batch);
        prop_assert_eq!(&stored_records(&split), &whole, "split after line {}: stored", cut);
        let published = last_outbox_records(&split);
        for line in whole.lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let id = record["id"].as_str().unwrap();
            prop_assert_eq!(published.get(id), Some(&record), "split after line {}: published", cut);
        }
    }
}
