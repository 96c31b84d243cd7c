//! `lifewatch comms`, `GET /api/incidents/{id}/comms` and the incident
//! page's Communication section: the templates of `ops/comms/` filled from a
//! real incident, the same on every surface.

use serde_json::Value;

use crate::common::{lifewatch, temp_db};
use crate::web::Served;

/// The id of the first incident of `kind` in `db`.
fn first(db: &str, kind: &str) -> String {
    let run = lifewatch(&["incidents", "--db", db, "--kind", kind, "-o", "jsonl"], None);
    run.assert_success();
    run.records()[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn comms_fills_every_template_of_the_incident_s_kind() {
    let (_dir, db) = temp_db("comms");
    let db = db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/regional_outage.jsonl", "--db", db], None).assert_success();
    let (_other, failed_db) = temp_db("comms-failed");
    let failed_db = failed_db.to_str().unwrap();
    lifewatch(&["replay", "fixtures/provisioning_failed.jsonl", "--db", failed_db], None).assert_success();
    let outage = first(db, "regional_outage");
    let run = lifewatch(&["comms", "--db", db, &outage, "-o", "json"], None);
    run.assert_success();
    let templates: Vec<Value> = serde_json::from_slice(&run.stdout).unwrap();
    let names: Vec<&str> = templates.iter().map(|template| template["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "status-page: investigating",
            "status-page: identified",
            "status-page: monitoring",
            "status-page: resolved",
            "support-macro",
            "follow-up-email"
        ]
    );
    for template in &templates {
        let text = template["text"].as_str().unwrap();
        assert!(!text.contains("{{"), "a placeholder left in {}: {text}", template["name"]);
    }
    // The record's values and the outage's count of projects.
    let resolved = templates[3]["text"].as_str().unwrap();
    assert!(
        resolved.contains("in eu-west-1") && resolved.contains("since 2026-11-27T12:12:00Z"),
        "{resolved}"
    );
    assert!(resolved.contains("All 6 projects affected"), "{resolved}");
    assert!(templates[4]["text"].as_str().unwrap().contains(&outage), "the macro quotes the reference");

    // One template, as text.
    let run = lifewatch(&["comms", "--db", db, &outage, "--template", "support-macro"], None);
    run.assert_success();
    assert!(run.stdout_text().starts_with("=== support-macro ===\n"), "{}", run.stdout_text());
    assert_eq!(run.stdout_text().matches("===").count(), 2, "only the one template");

    // Another kind, another file.
    let failed = first(failed_db, "provisioning_failed");
    let run = lifewatch(&["comms", "--db", failed_db, &failed, "--template", "follow-up-email"], None);
    run.assert_success();
    assert!(run.stdout_text().contains("Subject: Your project prj_"), "{}", run.stdout_text());

    // Named mistakes.
    let run = lifewatch(&["comms", "--db", db, &outage, "--template", "tweet"], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("no template \"tweet\"") && run.stderr.contains("\"support-macro\""),
        "{}",
        run.stderr
    );
    let run = lifewatch(&["comms", "--db", db, "inc_nope"], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("no incident \"inc_nope\""), "{}", run.stderr);

    // The API and the page give the same texts.
    let served = Served::start(std::path::Path::new(db), &[]);
    let (status, api) = served.json(&format!("/api/incidents/{outage}/comms"));
    assert_eq!(status, 200);
    assert_eq!(api, Value::from(templates.clone()));
    let (status, _) = served.json("/api/incidents/inc_nope/comms");
    assert_eq!(status, 404);
    let (status, page) = served.text(&format!("/incidents/{outage}"));
    assert_eq!(status, 200);
    assert!(page.contains("href=\"#comms\"") && page.contains("<summary>support-macro</summary>"), "{page}");
    assert!(page.contains("All 6 projects affected"), "{page}");
}
