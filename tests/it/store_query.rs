//! The typed read side (`lifewatch_store::query`) on a real database.

use std::path::Path;

use lifewatch_core::{
    Config, IncidentKind, IncidentRecord, RejectReason, Severity, State, Status, Timestamp, Transition,
};
use lifewatch_store::query::{self, Cursor, IncidentQuery, Order, RejectedFilter};
use lifewatch_store::{Store, Writer};

use crate::common::{event, temp_db};

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// `count` projects in two regions: each stuck in requested (5m deadline)
/// until it starts provisioning 10 minutes later, then failing; every third
/// one is left in requested. Clock at 11:30.
fn build(path: &Path, count: usize) -> Vec<IncidentRecord> {
    let mut writer = Writer::open(path, Config::shipped()).unwrap();
    let account = "acc_q";
    writer.feed(
        &event(
            "q-a1",
            "account.created",
            account,
            "2026-11-27T09:00:00Z",
            serde_json::json!({"plan": "enterprise"}),
        ),
        "in:1",
    );
    writer.feed(
        &event("q-a2", "account.activated", account, "2026-11-27T09:01:00Z", serde_json::json!({})),
        "in:2",
    );
    for index in 0..count {
        let project = format!("prj_q{index}");
        let region = if index % 2 == 0 { "eu-west-1" } else { "us-east-1" };
        let minute = |m: usize| format!("2026-11-27T10:{:02}:00Z", index + m);
        writer.feed(
            &event(
                &format!("q-{index}-1"),
                "project.requested",
                &project,
                &minute(0),
                serde_json::json!({"account_id": account, "region": region}),
            ),
            "in",
        );
        if index % 3 != 0 {
            writer.feed(
                &event(
                    &format!("q-{index}-2"),
                    "project.provisioning_started",
                    &project,
                    &minute(10),
                    serde_json::json!({}),
                ),
                "in",
            );
            writer.feed(
                &event(
                    &format!("q-{index}-3"),
                    "project.provisioning_failed",
                    &project,
                    &minute(11),
                    serde_json::json!({"error": "no capacity"}),
                ),
                "in",
            );
        }
    }
    writer.reject(
        b"{not json",
        &lifewatch_core::Rejection::new(RejectReason::MalformedJson, "not JSON"),
        "in:bad",
    );
    writer.tick(at("2026-11-27T11:30:00Z"));
    writer.commit().unwrap();
    let mut records = writer.engine().records();
    records.sort_by(|a, b| (a.opened_at, &a.key).cmp(&(b.opened_at, &b.key)));
    records
}

#[test]
fn pages_of_incidents_add_up_to_the_whole_list_in_either_order() {
    let (_dir, path) = temp_db("pages");
    let all = build(&path, 20);
    let store = Store::open_read_only(&path).unwrap();
    let whole = query::incidents(&store, &IncidentQuery::default()).unwrap();
    assert_eq!(whole.next_cursor, None);
    assert_eq!(whole.incidents, store.incidents(&Default::default()).unwrap(), "the CLI's order");
    assert_eq!(whole.incidents.len(), all.len());
    assert!(all.len() > 20, "{} incidents", all.len());

    for order in [Order::OldestFirst, Order::NewestFirst] {
        let mut pages = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = query::incidents(
                &store,
                &IncidentQuery { limit: Some(7), cursor: cursor.clone(), order, ..Default::default() },
            )
            .unwrap();
            assert!(page.incidents.len() <= 7);
            pages.extend(page.incidents);
            match page.next_cursor {
                // The cursor goes through its text, as a web client hands it back.
                Some(next) => cursor = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        let mut expected = whole.incidents.clone();
        if order == Order::NewestFirst {
            expected.reverse();
        }
        assert_eq!(pages, expected, "{order:?}");
    }
    assert!("12.x.key".parse::<Cursor>().is_err());
}

#[test]
fn every_filter_narrows_the_list() {
    let (_dir, path) = temp_db("filters");
    let all = build(&path, 12);
    let store = Store::open_read_only(&path).unwrap();
    let list = |query: IncidentQuery| query::incidents(&store, &query).unwrap().incidents;
    let expect = |keep: &dyn Fn(&IncidentRecord) -> bool| -> Vec<IncidentRecord> {
        all.iter().filter(|record| keep(record)).cloned().collect()
    };
    let cases: Vec<(IncidentQuery, Vec<IncidentRecord>)> = vec![
        (
            IncidentQuery { status: Some(Status::Open), ..Default::default() },
            expect(&|record| record.status == Status::Open),
        ),
        (
            IncidentQuery { kind: Some(IncidentKind::Stuck), ..Default::default() },
            expect(&|record| record.kind == IncidentKind::Stuck),
        ),
        (
            IncidentQuery { severity: Some(Severity::Error), ..Default::default() },
            expect(&|record| record.severity == Severity::Error),
        ),
        (
            IncidentQuery { region: Some("us-east-1".into()), ..Default::default() },
            expect(&|record| record.region.as_deref() == Some("us-east-1")),
        ),
        (
            IncidentQuery { entity: Some("prj_q4".into()), ..Default::default() },
            expect(&|record| record.entity.id == "prj_q4"),
        ),
        (IncidentQuery { owner: Some("nobody".into()), ..Default::default() }, Vec::new()),
    ];
    for (query, expected) in cases {
        let listed = list(query.clone());
        assert!(!listed.is_empty() || expected.is_empty());
        assert_eq!(listed, expected, "{query:?}");
    }
}

#[test]
fn an_incident_comes_with_its_transitions() {
    let (_dir, path) = temp_db("detail");
    let all = build(&path, 4);
    let store = Store::open_read_only(&path).unwrap();
    let stuck = all
        .iter()
        .find(|record| record.kind == IncidentKind::Stuck && record.status == Status::Resolved)
        .unwrap();
    let detail = query::incident(&store, &stuck.id).unwrap().unwrap();
    assert_eq!(&detail.record, stuck);
    let transitions: Vec<Transition> = detail.transitions.iter().map(|change| change.transition).collect();
    // Opened and resolved by the same batch.
    assert_eq!(transitions.first(), Some(&Transition::Opened));
    assert_eq!(transitions.last(), Some(&Transition::Resolved));
    assert_eq!(query::incident(&store, "inc_0000000000000000").unwrap(), None);
}

#[test]
fn an_entity_has_its_timeline_incidents_and_nothing_is_known_about_a_stranger() {
    let (_dir, path) = temp_db("entity");
    build(&path, 4);
    let store = Store::open_read_only(&path).unwrap();
    let detail = query::entity(&store, "prj_q1").unwrap().unwrap();
    assert_eq!(detail.entities.len(), 1);
    assert_eq!(detail.entities[0].region.as_deref(), Some("us-east-1"));
    let entered: Vec<Option<&str>> =
        detail.timeline.iter().map(|entry| entry.entered.map(State::as_str)).collect();
    assert_eq!(entered, [Some("requested"), Some("provisioning"), Some("failed")]);
    assert!(detail.timeline[2].still_there);
    assert!(detail.incidents.iter().all(|record| record.entity.id == "prj_q1"));
    assert!(detail.incidents.iter().any(|record| record.kind == IncidentKind::Stuck));
    assert_eq!(query::entity(&store, "prj_nobody").unwrap(), None);
    let rejected = query::rejected(&store, &RejectedFilter::default()).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].payload, "{not json");
}

#[test]
fn the_stuck_report_uses_the_engines_rule_and_names_its_incidents() {
    let (_dir, path) = temp_db("stuck");
    build(&path, 6);
    let store = Store::open_read_only(&path).unwrap();
    let config = Config::shipped();
    // At the stored clock: prj_q0 and prj_q3 stayed in requested (5m), and the
    // clock opened a stuck incident for each; the failed ones are within 30m
    // only until 10:46 at the latest, so they are stuck too at 11:30.
    let report = query::stuck_report(&store, &config, None).unwrap().unwrap();
    assert_eq!(report.now, at("2026-11-27T11:30:00Z"));
    let open_stuck = query::incidents(
        &store,
        &IncidentQuery { status: Some(Status::Open), kind: Some(IncidentKind::Stuck), ..Default::default() },
    )
    .unwrap()
    .incidents;
    let named: Vec<&str> = report.entities.iter().filter_map(|item| item.incident_id.as_deref()).collect();
    assert_eq!(named.len(), open_stuck.len());
    for record in &open_stuck {
        assert!(named.contains(&record.id.as_str()), "{} is not in the report", record.id);
    }
    // Exactly at a deadline, nothing is stuck (t == entered_at + deadline).
    let first_requested = at("2026-11-27T10:00:00Z");
    let report = query::stuck_report(&store, &config, Some(at("2026-11-27T10:05:00Z"))).unwrap().unwrap();
    assert!(report.entities.iter().all(|item| item.entered_at != first_requested), "{report:?}");
    let report = query::stuck_report(&store, &config, Some(at("2026-11-27T10:05:01Z"))).unwrap().unwrap();
    assert!(report.entities.iter().any(|item| item.entered_at == first_requested), "{report:?}");
}

#[test]
fn an_empty_store_reports_nothing_stuck_without_a_clock() {
    let (_dir, path) = temp_db("empty");
    Writer::open(&path, Config::shipped()).unwrap();
    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(query::stuck_report(&store, &Config::shipped(), None).unwrap(), None);
    let page = query::incidents(&store, &IncidentQuery { limit: Some(3), ..Default::default() }).unwrap();
    assert_eq!(page.incidents, Vec::new());
    assert_eq!(page.next_cursor, None);
}
